//! `ci/expectations.toml`: known behaviour per kernel range, as data.
//!
//! ```toml
//! [[expect]]
//! case = "signals::handler_*"      # glob on the case id: `*` any run, `?` one character
//! kernel = "<6.12"                 # optional, default "*": comparators joined by commas
//! cpu = "EPYC-*"                   # optional glob on the qemu -cpu model
//! append = "*init_pkru=*"          # optional glob on the run's extra kernel command line
//! accel = "kvm"                    # optional: only runs under this accelerator (kvm | tcg)
//! verdict = "fail"                 # pass | fail | skip | timeout | error
//! reason = "signal frame written with the interrupted PKRU"
//! fix = "70044df250d0"             # optional: upstream commit that changed it
//! ```
//!
//! The kernel range is compared with the run's kernel version: the leading numbers of
//! [`KernelInfo::version`](crate::KernelInfo) (the Debian package version, e.g. `6.1.153-1`,
//! whose sublevel is exact where `uname -r` says `6.1.0-37`), else of `uname`, else of the
//! stream header's `kernel=`. See [`kernel_version_of`]. The first matching entry wins.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ReportError, Result, io_err};
use crate::glob::glob_match;
use crate::kernel_version::{KernelRange, KernelVersion};
use crate::model::{GuestRun, Verdict};

/// One `[[expect]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Glob on the case id.
    pub case: String,
    /// Kernel versions it applies to.
    pub kernel: KernelRange,
    /// Optional glob on the qemu CPU model.
    pub cpu: Option<String>,
    /// Optional glob on the extra kernel command line.
    pub append: Option<String>,
    /// Optional accelerator (`kvm` or `tcg`): behaviour that differs between emulation and
    /// hardware (e.g. the XINUSE-dependent cases) is conditioned on it.
    pub accel: Option<String>,
    /// The expected verdict: PASS, FAIL, SKIP, TIMEOUT or ERROR.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// The upstream commit that changed the behaviour.
    pub fix: Option<String>,
    /// 1-based line of the entry in its file (0 when built in code).
    pub line: usize,
}

/// `id` without a trailing `@<round>` iteration suffix.
fn without_round(id: &str) -> &str {
    match id.rsplit_once('@') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => id,
    }
}

impl Expectation {
    /// Whether the entry applies to `case_id` in `run`.
    ///
    /// A repeated round's id (`id@N`, from `pkeys-suite --iterations`) matches as `id` does.
    pub fn matches(&self, run: &GuestRun, case_id: &str) -> bool {
        (glob_match(&self.case, case_id) || glob_match(&self.case, without_round(case_id)))
            && self.cpu.as_deref().is_none_or(|g| glob_match(g, &run.cpu))
            && self
                .append
                .as_deref()
                .is_none_or(|g| glob_match(g, &run.append))
            && self.accel.as_deref().is_none_or(|a| a == run.accel)
            && self.kernel.contains(kernel_version_of(run).as_ref())
    }
}

/// A loaded expectations file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// Where it was read from, if from a file.
    pub source: Option<PathBuf>,
    /// The entries, in file order.
    pub entries: Vec<Expectation>,
}

/// The version an expectation's `kernel` range is compared with: the leading numbers of
/// `kernel.version`, else `kernel.uname`, else the header's `kernel=`.
pub fn kernel_version_of(run: &GuestRun) -> Option<KernelVersion> {
    [
        Some(run.kernel.version.as_str()),
        run.kernel.uname.as_deref(),
        run.meta.get("kernel").map(String::as_str),
    ]
    .into_iter()
    .flatten()
    .find_map(KernelVersion::extract)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    expect: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    case: Spanned<String>,
    #[serde(default)]
    kernel: Option<Spanned<String>>,
    #[serde(default)]
    cpu: Option<String>,
    #[serde(default)]
    append: Option<String>,
    #[serde(default)]
    accel: Option<Spanned<String>>,
    verdict: Spanned<String>,
    reason: Spanned<String>,
    #[serde(default)]
    fix: Option<String>,
}

impl Expectations {
    /// No expectations: classification leaves every verdict as it is.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads and validates an expectations file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::parse(&text, path)
    }

    /// Parses expectations; errors name `path`, the line and the key.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let err = |span: Option<Range<usize>>, message: String| ReportError::Expectations {
            path: path.to_owned(),
            line: span.map_or(0, |s| line_of(text, s.start)),
            message,
        };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| err(e.span(), e.message().trim().to_owned()))?;
        let mut entries = Vec::with_capacity(raw.expect.len());
        for (i, entry) in raw.expect.into_iter().enumerate() {
            let line = line_of(text, entry.span().start);
            let entry = entry.into_inner();
            let key_err = |key: &str, span: Range<usize>, why: String| {
                err(Some(span), format!("expect[{i}].{key}: {why}"))
            };
            let kernel = match &entry.kernel {
                Some(k) => k
                    .get_ref()
                    .parse::<KernelRange>()
                    .map_err(|e| key_err("kernel", k.span(), e.to_string()))?,
                None => KernelRange::any(),
            };
            let verdict: Verdict =
                entry
                    .verdict
                    .get_ref()
                    .parse()
                    .map_err(|e: crate::model::UnknownVerdict| {
                        key_err("verdict", entry.verdict.span(), e.to_string())
                    })?;
            if matches!(verdict, Verdict::XFail | Verdict::XPass) {
                return Err(key_err(
                    "verdict",
                    entry.verdict.span(),
                    format!(
                        "`{}` is an outcome, not an expectation: write the verdict the case \
                         reports (pass, fail, skip, timeout, error)",
                        entry.verdict.get_ref()
                    ),
                ));
            }
            let accel = match entry.accel {
                Some(a) if matches!(a.get_ref().as_str(), "kvm" | "tcg") => Some(a.into_inner()),
                Some(a) => {
                    return Err(key_err(
                        "accel",
                        a.span(),
                        format!("`{}`: expected kvm or tcg", a.get_ref()),
                    ));
                }
                None => None,
            };
            if entry.case.get_ref().trim().is_empty() {
                return Err(key_err("case", entry.case.span(), "empty pattern".into()));
            }
            if entry.reason.get_ref().trim().is_empty() {
                return Err(key_err(
                    "reason",
                    entry.reason.span(),
                    "say why this kernel behaves so".into(),
                ));
            }
            entries.push(Expectation {
                case: entry.case.into_inner(),
                kernel,
                cpu: entry.cpu,
                append: entry.append,
                accel,
                verdict,
                reason: entry.reason.into_inner(),
                fix: entry.fix.filter(|f| !f.trim().is_empty()),
                line,
            });
        }
        Ok(Expectations {
            source: Some(path.to_owned()),
            entries,
        })
    }

    /// The first entry that applies to `case_id` in `run`.
    pub fn lookup(&self, run: &GuestRun, case_id: &str) -> Option<&Expectation> {
        self.entries.iter().find(|e| e.matches(run, case_id))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KernelInfo;

    #[test]
    fn accel_conditions_an_entry() {
        let e = Expectations::parse(
            "[[expect]]\ncase = \"signals::*\"\naccel = \"kvm\"\nverdict = \"fail\"\nreason = \"hw\"\n",
            Path::new("e.toml"),
        )
        .unwrap();
        let mut r = run("6.1.150-1", "host", "");
        assert!(
            e.lookup(&r, "signals::x").is_none(),
            "a TCG run is not matched"
        );
        r.accel = "kvm".into();
        assert!(e.lookup(&r, "signals::x").is_some());
        let bad = Expectations::parse(
            "[[expect]]\ncase = \"a\"\naccel = \"hvf\"\nverdict = \"fail\"\nreason = \"r\"\n",
            Path::new("e.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("expect[0].accel: `hvf`: expected kvm or tcg"),
            "{bad}"
        );
    }

    fn run(version: &str, cpu: &str, append: &str) -> GuestRun {
        let kernel = KernelInfo {
            spec: "x".into(),
            version: version.into(),
            ..KernelInfo::default()
        };
        GuestRun::new("r", kernel, cpu, append)
    }

    const GOOD: &str = r#"
# comment
[[expect]]
case = "signals::*"
kernel = "<6.12"
verdict = "fail"
reason = "old kernel"
fix = "70044df250d0"

[[expect]]
case = "alloc::?"
cpu = "EPYC-*"
append = "*init_pkru=*"
verdict = "SKIP"
reason = "amd"
"#;

    #[test]
    fn parses_and_matches() {
        let e = Expectations::parse(GOOD, "e.toml").unwrap();
        assert_eq!(e.entries.len(), 2);
        assert_eq!(e.entries[0].line, 3);
        assert_eq!(e.entries[1].verdict, Verdict::Skip);
        let old = run("6.1.153-1", "max", "");
        let new = run("6.12.43-1", "max", "");
        assert!(e.lookup(&old, "signals::a").is_some());
        assert!(e.lookup(&new, "signals::a").is_none());
        let amd = run("6.12.43-1", "EPYC-Milan", "init_pkru=0x55555550");
        assert_eq!(e.lookup(&amd, "alloc::x").unwrap().reason, "amd");
        assert!(
            e.lookup(&run("6.12", "EPYC-Milan", ""), "alloc::x")
                .is_none()
        );
    }

    #[test]
    fn version_prefers_package_then_uname() {
        let mut r = run("", "max", "");
        r.kernel.uname = Some("6.1.0-37-cloud-amd64".into());
        assert_eq!(kernel_version_of(&r).unwrap().to_string(), "6.1.0");
        r.kernel.version = "6.1.153-1".into();
        assert_eq!(kernel_version_of(&r).unwrap().to_string(), "6.1.153");
    }

    fn error_of(text: &str) -> String {
        Expectations::parse(text, "ci/expectations.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let msg = error_of(
            "[[expect]]\ncase = \"a\"\nverdict = \"fail\"\nreason = \"r\"\nkernal = \"<6\"\n",
        );
        assert!(msg.starts_with("ci/expectations.toml:5:"), "{msg}");
        assert!(msg.contains("kernal"), "{msg}");
    }

    #[test]
    fn bad_range_names_key() {
        let msg = error_of(
            "[[expect]]\ncase = \"a\"\nkernel = \"<six\"\nverdict = \"fail\"\nreason = \"r\"\n",
        );
        assert!(
            msg.starts_with("ci/expectations.toml:3: expect[0].kernel:"),
            "{msg}"
        );
    }

    #[test]
    fn bad_verdict_names_key() {
        let msg = error_of("[[expect]]\ncase = \"a\"\nverdict = \"xfail\"\nreason = \"r\"\n");
        assert!(
            msg.starts_with("ci/expectations.toml:3: expect[0].verdict:"),
            "{msg}"
        );
        let msg = error_of("[[expect]]\ncase = \"a\"\nverdict = \"broken\"\nreason = \"r\"\n");
        assert!(msg.contains("unknown verdict"), "{msg}");
    }

    #[test]
    fn missing_key_is_named() {
        let msg = error_of("\n[[expect]]\ncase = \"a\"\nreason = \"r\"\n");
        assert!(msg.contains("verdict"), "{msg}");
        assert!(msg.starts_with("ci/expectations.toml:2:"), "{msg}");
    }

    #[test]
    fn syntax_error_has_line() {
        let msg = error_of("[[expect]]\ncase = \"a\nverdict = 1\n");
        assert!(msg.starts_with("ci/expectations.toml:2:"), "{msg}");
    }

    #[test]
    fn a_repeated_round_matches_like_its_case() {
        assert_eq!(without_round("a::b@12"), "a::b");
        assert_eq!(without_round("a::b@x"), "a::b@x");
        assert_eq!(without_round("a::b"), "a::b");
    }
}
