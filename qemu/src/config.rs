//! `ci/kernels.toml`: the kernels the runner knows and the default guest matrix.
//!
//! ```toml
//! [defaults]                      # every key optional; each can be overridden per [[guest]]
//! cpus = ["max"]                  # qemu -cpu models
//! memory = "512M"                 # qemu -m
//! smp = 1                         # qemu -smp
//! accel = "auto"                  # optional: auto | kvm | tcg (also per [[guest]]; default: --accel)
//! timeout = 300                   # seconds for the suite, from its first line (boot excluded)
//! boot_timeout = 120              # seconds until the suite's first line
//! append = ""                     # extra kernel command line
//! args = []                       # extra suite arguments (one per element)
//!
//! [kernels."6.12"]                # `debian:6.12` on the command line
//! description = "Debian 13 (trixie) 6.12"
//! suites = ["trixie", "trixie-security"]        # Debian suites to search
//! package = "linux-image-6.12.*+deb13-cloud-amd64"  # glob over package names; newest wins
//!
//! [kernels.patched]               # or a kernel you built (relative to this file)
//! path = "../../linux/arch/x86/boot/bzImage"
//!
//! [[guest]]                       # one matrix row: a kernel on one or more CPU models
//! kernel = "6.12"
//! cpus = ["max", "Skylake-Server", "EPYC-Milan"]
//!
//! [[guest]]
//! kernel = "6.12"
//! label = "init_pkru"             # guest names: <kernel>-<cpu> or <kernel>-<label>-<cpu>
//! append = "init_pkru=0x55555550"
//! ```
//!
//! Unknown keys are errors; every error names the file, line and key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use toml::Spanned;

/// The `[defaults]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// qemu `-cpu` models a `[[guest]]` runs on when it names none.
    pub cpus: Vec<String>,
    /// qemu `-m`.
    pub memory: String,
    /// qemu `-smp`.
    pub smp: u32,
    /// Seconds the suite may run in a guest, from its first line (boot excluded).
    pub timeout: u64,
    /// Seconds until the suite's first line appears (else: infrastructure failure, retried).
    pub boot_timeout: u64,
    /// Extra kernel command line.
    pub append: Spanned<String>,
    /// Extra suite arguments.
    pub args: Vec<String>,
    /// Accelerator (`auto`, `kvm`, `tcg`); `None`: what `--accel` says.
    pub accel: Option<crate::accel::AccelChoice>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            cpus: vec!["max".to_owned()],
            memory: "512M".to_owned(),
            smp: 1,
            timeout: 300,
            boot_timeout: 120,
            append: Spanned::new(0..0, String::new()),
            args: Vec::new(),
            accel: None,
        }
    }
}

/// A `[kernels.<name>]` entry: a Debian package series or a local image.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KernelEntry {
    /// Free text shown in listings.
    #[serde(default)]
    pub description: Option<String>,
    /// Debian suites searched for the package (e.g. `["trixie", "trixie-security"]`).
    #[serde(default)]
    pub suites: Option<Spanned<Vec<String>>>,
    /// Glob over package names (`*` any run of characters, `?` one); the newest version wins.
    #[serde(default)]
    pub package: Option<Spanned<String>>,
    /// A bzImage/vmlinuz path instead of a package (relative paths: to the config file).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
}

/// Where a kernel entry's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// The newest package matching `package` in `suites`.
    Debian {
        /// Debian suites to search.
        suites: Vec<String>,
        /// Package-name glob.
        package: String,
    },
    /// A local image.
    Path(PathBuf),
}

/// A `[[guest]]` entry as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuestEntry {
    /// The `[kernels.<name>]` to boot.
    pub kernel: Spanned<String>,
    /// Distinguishes rows of the same kernel (e.g. a non-default `init_pkru`).
    #[serde(default)]
    pub label: Option<Spanned<String>>,
    /// CPU models (default: `[defaults] cpus`).
    #[serde(default)]
    pub cpus: Option<Spanned<Vec<String>>>,
    /// Extra kernel command line, after `[defaults] append`.
    #[serde(default)]
    pub append: Option<Spanned<String>>,
    /// Extra suite arguments, after `[defaults] args`.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Seconds (default: `[defaults] timeout`).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// qemu `-m` (default: `[defaults] memory`).
    #[serde(default)]
    pub memory: Option<String>,
    /// qemu `-smp` (default: `[defaults] smp`).
    #[serde(default)]
    pub smp: Option<u32>,
    /// Accelerator for this guest (default: `[defaults] accel`, else `--accel`).
    #[serde(default)]
    pub accel: Option<crate::accel::AccelChoice>,
}

/// The file as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[defaults]`.
    #[serde(default)]
    pub defaults: Defaults,
    /// `[kernels.<name>]`.
    #[serde(default)]
    pub kernels: BTreeMap<String, Spanned<KernelEntry>>,
    /// `[[guest]]`.
    #[serde(default, rename = "guest")]
    pub guests: Vec<GuestEntry>,
}

/// One guest of the matrix, with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPlan {
    /// `<kernel>-<cpu>` or `<kernel>-<label>-<cpu>`: unique, used for file names.
    pub name: String,
    /// The kernel entry's name.
    pub kernel: String,
    /// qemu `-cpu`.
    pub cpu: String,
    /// Extra kernel command line.
    pub append: String,
    /// Extra suite arguments.
    pub args: Vec<String>,
    /// Seconds for the suite, from its first line (boot excluded).
    pub timeout: u64,
    /// Seconds until the suite's first line.
    pub boot_timeout: u64,
    /// qemu `-m`.
    pub memory: String,
    /// qemu `-smp`.
    pub smp: u32,
    /// Accelerator the entry asks for (`None`: `--accel` decides).
    pub accel: Option<crate::accel::AccelChoice>,
}

/// A loaded and validated `kernels.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The parsed file.
    pub file: ConfigFile,
    text: String,
}

/// `file:line:col` of a byte offset.
fn location(path: &Path, text: &str, span: &Range<usize>) -> String {
    let offset = span.start.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{}:{line}:{col}", path.display())
}

/// Whether a character may appear in a guest name (it becomes a file name).
fn name_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Config::parse(path, &text)
    }

    /// Parses and validates config text; `path` names the file in errors and anchors
    /// relative kernel paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let loc = match e.span() {
                Some(span) => location(path, text, &span),
                None => path.display().to_string(),
            };
            anyhow::anyhow!("{loc}: {}", e.message().trim())
        })?;
        let config = Config {
            path: path.to_path_buf(),
            file,
            text: text.to_owned(),
        };
        config.validate()?;
        Ok(config)
    }

    fn at(&self, span: &Range<usize>) -> String {
        location(&self.path, &self.text, span)
    }

    fn validate(&self) -> Result<()> {
        let d = &self.file.defaults;
        if d.cpus.is_empty() {
            bail!(
                "{}: defaults.cpus: must name at least one CPU model",
                self.path.display()
            );
        }
        check_append(d.append.get_ref())
            .map_err(|e| anyhow::anyhow!("{}: defaults.append: {e}", self.at(&d.append.span())))?;
        for (name, entry) in &self.file.kernels {
            let at = self.at(&entry.span());
            if name.is_empty() || !name.chars().all(name_char_ok) {
                bail!(
                    "{at}: kernels.{name}: a kernel name may only hold letters, digits, `.`, `_`, `-`, `+`"
                );
            }
            self.kernel_source_of(name, entry.get_ref())?;
        }
        let mut names = BTreeMap::new();
        for (i, guest) in self.file.guests.iter().enumerate() {
            let kernel = guest.kernel.get_ref();
            if !self.file.kernels.contains_key(kernel) {
                bail!(
                    "{}: guest[{i}].kernel: unknown kernel `{kernel}` (known: {})",
                    self.at(&guest.kernel.span()),
                    self.kernel_names().join(", ")
                );
            }
            if let Some(label) = &guest.label
                && (label.get_ref().is_empty() || !label.get_ref().chars().all(name_char_ok))
            {
                bail!(
                    "{}: guest[{i}].label: may only hold letters, digits, `.`, `_`, `-`, `+`",
                    self.at(&label.span())
                );
            }
            if let Some(cpus) = &guest.cpus
                && cpus.get_ref().is_empty()
            {
                bail!(
                    "{}: guest[{i}].cpus: must name at least one CPU model",
                    self.at(&cpus.span())
                );
            }
            if let Some(append) = &guest.append {
                check_append(append.get_ref()).map_err(|e| {
                    anyhow::anyhow!("{}: guest[{i}].append: {e}", self.at(&append.span()))
                })?;
            }
            for plan in self.expand_guest(guest) {
                if let Some(prev) = names.insert(plan.name.clone(), i) {
                    bail!(
                        "{}: guest[{i}]: guest name `{}` is already used by guest[{prev}] (add a distinct `label`)",
                        self.at(&guest.kernel.span()),
                        plan.name
                    );
                }
            }
        }
        Ok(())
    }

    /// The kernel names, sorted.
    pub fn kernel_names(&self) -> Vec<String> {
        self.file.kernels.keys().cloned().collect()
    }

    fn kernel_source_of(&self, name: &str, entry: &KernelEntry) -> Result<KernelSource> {
        match (&entry.suites, &entry.package, &entry.path) {
            (Some(suites), Some(package), None) => {
                if suites.get_ref().is_empty() {
                    bail!(
                        "{}: kernels.{name}.suites: must name at least one suite",
                        self.at(&suites.span())
                    );
                }
                if package.get_ref().trim().is_empty() {
                    bail!(
                        "{}: kernels.{name}.package: empty package pattern",
                        self.at(&package.span())
                    );
                }
                Ok(KernelSource::Debian {
                    suites: suites.get_ref().clone(),
                    package: package.get_ref().clone(),
                })
            }
            (None, None, Some(path)) => {
                let base = self.path.parent().unwrap_or(Path::new("."));
                Ok(KernelSource::Path(base.join(path.get_ref())))
            }
            (_, _, Some(path)) => bail!(
                "{}: kernels.{name}: give either `path` or `suites` + `package`, not both",
                self.at(&path.span())
            ),
            (Some(s), None, None) => bail!(
                "{}: kernels.{name}: `suites` without `package`",
                self.at(&s.span())
            ),
            (None, Some(p), None) => bail!(
                "{}: kernels.{name}: `package` without `suites`",
                self.at(&p.span())
            ),
            (None, None, None) => {
                let span = self
                    .file
                    .kernels
                    .get(name)
                    .map(Spanned::span)
                    .unwrap_or(0..0);
                bail!(
                    "{}: kernels.{name}: needs `suites` + `package` (a Debian package) or `path`",
                    self.at(&span)
                )
            }
        }
    }

    /// Where the image of kernel `name` comes from; an unknown name is an error listing the
    /// known ones.
    pub fn kernel_source(&self, name: &str) -> Result<KernelSource> {
        let Some(entry) = self.file.kernels.get(name) else {
            bail!(
                "unknown kernel `{name}` in {} (known: {})",
                self.path.display(),
                self.kernel_names().join(", ")
            );
        };
        self.kernel_source_of(name, entry.get_ref())
    }

    /// Every Debian suite named by any kernel entry, in first-seen order.
    pub fn all_suites(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for entry in self.file.kernels.values() {
            if let Some(suites) = &entry.get_ref().suites {
                for s in suites.get_ref() {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
            }
        }
        out
    }

    fn expand_guest(&self, guest: &GuestEntry) -> Vec<GuestPlan> {
        let d = &self.file.defaults;
        let cpus = guest.cpus.as_ref().map_or(&d.cpus, |c| c.get_ref());
        let append = join_append(
            d.append.get_ref(),
            guest.append.as_ref().map(|a| a.get_ref().as_str()),
        );
        let mut args = d.args.clone();
        args.extend(guest.args.iter().flatten().cloned());
        cpus.iter()
            .map(|cpu| {
                let kernel = guest.kernel.get_ref().clone();
                let name = match &guest.label {
                    Some(label) => format!("{kernel}-{}-{}", label.get_ref(), cpu_slug(cpu)),
                    None => format!("{kernel}-{}", cpu_slug(cpu)),
                };
                GuestPlan {
                    name,
                    kernel,
                    cpu: cpu.clone(),
                    append: append.clone(),
                    args: args.clone(),
                    timeout: guest.timeout.unwrap_or(d.timeout),
                    boot_timeout: d.boot_timeout,
                    memory: guest.memory.clone().unwrap_or_else(|| d.memory.clone()),
                    smp: guest.smp.unwrap_or(d.smp),
                    accel: guest.accel.or(d.accel),
                }
            })
            .collect()
    }

    /// All guests of the matrix, in file order.
    pub fn guests(&self) -> Vec<GuestPlan> {
        self.file
            .guests
            .iter()
            .flat_map(|g| self.expand_guest(g))
            .collect()
    }
}

/// A CPU model as it appears in a guest name (`qemu64,+pku` → `qemu64_pku`).
pub fn cpu_slug(cpu: &str) -> String {
    cpu.chars()
        .filter_map(|c| match c {
            '+' => None,
            c if name_char_ok(c) => Some(c),
            _ => Some('_'),
        })
        .collect()
}

/// Joins command-line fragments with one space, skipping empty ones.
pub fn join_append(base: &str, extra: Option<&str>) -> String {
    [Some(base), extra]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses an unsigned integer the way the kernel's `kstrtouint(s, 0, ...)` does:
/// `0x` hex, leading `0` octal, else decimal.
pub fn parse_kernel_uint(s: &str) -> Option<u32> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// Checks a kernel command line: an `init_pkru=` that denies key 0 (access- or write-disable
/// bit 0 or 1 set) would make init's exec fail and panic the guest, so it is refused, as is
/// one that is not a number.
pub fn check_append(append: &str) -> Result<(), String> {
    for word in append.split_whitespace() {
        let Some(value) = word.strip_prefix("init_pkru=") else {
            continue;
        };
        let Some(pkru) = parse_kernel_uint(value) else {
            return Err(format!(
                "`{word}`: init_pkru must be a 32-bit number (e.g. 0x55555550)"
            ));
        };
        if pkru & 0x3 != 0 {
            return Err(format!(
                "`{word}` denies key 0 (bit {} set): every exec would fail and the guest would panic; \
                 clear bits 0-1 (e.g. init_pkru={:#010x})",
                if pkru & 1 != 0 { 0 } else { 1 },
                pkru & !0x3
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const GOOD: &str = r#"
[defaults]
cpus = ["max", "Skylake-Server"]

[kernels."6.12"]
suites = ["trixie", "trixie-security"]
package = "linux-image-6.12.*+deb13-cloud-amd64"

[kernels.local]
path = "bzImage"

[[guest]]
kernel = "6.12"

[[guest]]
kernel = "6.12"
label = "init_pkru"
cpus = ["max"]
append = "init_pkru=0x55555550"
"#;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("ci/kernels.toml"), text)
    }

    #[test]
    fn good_config_expands() {
        let c = parse(GOOD).unwrap();
        let names: Vec<_> = c.guests().into_iter().map(|g| g.name).collect();
        assert_eq!(
            names,
            ["6.12-max", "6.12-Skylake-Server", "6.12-init_pkru-max"]
        );
        let g = &c.guests()[2];
        assert_eq!(g.append, "init_pkru=0x55555550");
        assert_eq!(g.timeout, 300);
        assert_eq!(c.all_suites(), ["trixie", "trixie-security"]);
        assert_eq!(
            c.kernel_source("local").unwrap(),
            KernelSource::Path(PathBuf::from("ci/bzImage"))
        );
        assert!(
            c.kernel_source("nope")
                .unwrap_err()
                .to_string()
                .contains("unknown kernel `nope`")
        );
    }

    #[rstest]
    #[case::unknown_key(
        "[defaults]\ncpu = [\"max\"]\n",
        "ci/kernels.toml:2:1: unknown field `cpu`"
    )]
    #[case::bad_type("[defaults]\ntimeout = \"5\"\n", "ci/kernels.toml:2:11:")]
    #[case::syntax("[kernels.x\n", "ci/kernels.toml:1:")]
    #[case::unknown_kernel(
        "[kernels.a]\npath = \"x\"\n[[guest]]\nkernel = \"b\"\n",
        "ci/kernels.toml:4:10: guest[0].kernel: unknown kernel `b` (known: a)"
    )]
    #[case::both(
        "[kernels.a]\npath = \"x\"\nsuites = [\"sid\"]\npackage = \"p\"\n",
        "ci/kernels.toml:2:8: kernels.a: give either `path` or `suites` + `package`"
    )]
    #[case::neither(
        "[kernels.a]\ndescription = \"x\"\n",
        "kernels.a: needs `suites` + `package`"
    )]
    #[case::no_package(
        "[kernels.a]\nsuites = [\"sid\"]\n",
        "ci/kernels.toml:2:10: kernels.a: `suites` without `package`"
    )]
    #[case::dup_name(
        "[kernels.a]\npath = \"x\"\n[[guest]]\nkernel = \"a\"\n[[guest]]\nkernel = \"a\"\n",
        "ci/kernels.toml:6:10: guest[1]: guest name `a-max` is already used by guest[0]"
    )]
    #[case::bad_pkru(
        "[kernels.a]\npath = \"x\"\n[[guest]]\nkernel = \"a\"\nappend = \"init_pkru=0x55555555\"\n",
        "ci/kernels.toml:5:10: guest[0].append: `init_pkru=0x55555555` denies key 0"
    )]
    #[case::bad_label(
        "[kernels.a]\npath = \"x\"\n[[guest]]\nkernel = \"a\"\nlabel = \"a b\"\n",
        "ci/kernels.toml:5:9: guest[0].label"
    )]
    #[case::empty_cpus("[defaults]\ncpus = []\n", "defaults.cpus: must name at least one")]
    fn config_errors(#[case] text: &str, #[case] expected: &str) {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(expected), "error `{err}` lacks `{expected}`");
        assert!(!err.contains('\n'), "error is not one line: {err}");
    }

    #[rstest]
    #[case("", true)]
    #[case("quiet init_pkru=0x55555550", true)]
    #[case("init_pkru=0", true)]
    #[case("init_pkru=0x55555554", true)]
    #[case("init_pkru=0x55555555", false)]
    #[case("init_pkru=0x55555556", false)]
    #[case("init_pkru=1", false)]
    #[case("init_pkru=03", false)]
    #[case("init_pkru=banana", false)]
    fn init_pkru_key0(#[case] append: &str, #[case] ok: bool) {
        assert_eq!(
            check_append(append).is_ok(),
            ok,
            "{append}: {:?}",
            check_append(append)
        );
    }

    #[test]
    fn accel_per_guest() {
        use crate::accel::AccelChoice;
        let text = format!(
            "{GOOD}\n[[guest]]\nkernel = \"6.12\"\nlabel = \"emulated\"\naccel = \"tcg\"\n"
        );
        let c = parse(&text).unwrap();
        let g = c.guests();
        assert_eq!(g[0].accel, None, "no accel: --accel decides");
        assert_eq!(g.last().unwrap().accel, Some(AccelChoice::Tcg));
        let with_default = text.replacen("[defaults]\n", "[defaults]\naccel = \"kvm\"\n", 1);
        assert_eq!(
            parse(&with_default).unwrap().guests()[0].accel,
            Some(AccelChoice::Kvm)
        );
        let bad = text.replace("accel = \"tcg\"", "accel = \"hvf\"");
        let err = format!("{:#}", parse(&bad).unwrap_err());
        assert!(err.contains("hvf"), "{err}");
    }

    #[test]
    fn init_pkru_message() {
        let err = check_append("init_pkru=0x55555555").unwrap_err();
        assert!(err.contains("denies key 0"), "{err}");
        assert!(err.contains("init_pkru=0x55555554"), "{err}");
    }

    #[rstest]
    #[case("0x10", Some(16))]
    #[case("010", Some(8))]
    #[case("10", Some(10))]
    #[case("0", Some(0))]
    #[case("0xffffffff", Some(u32::MAX))]
    #[case("0x100000000", None)]
    #[case("", None)]
    fn kernel_uint(#[case] s: &str, #[case] v: Option<u32>) {
        assert_eq!(parse_kernel_uint(s), v);
    }

    #[test]
    fn slugs() {
        assert_eq!(cpu_slug("qemu64,+xsave,+pku"), "qemu64_xsave_pku");
        assert_eq!(cpu_slug("EPYC-Milan"), "EPYC-Milan");
    }

    #[test]
    fn real_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/kernels.toml");
        let c = Config::load(&path).unwrap();
        assert!(c.guests().len() >= 5);
        for name in ["5.10", "6.1", "6.12", "7.2", "7.3-rc"] {
            assert!(
                matches!(c.kernel_source(name).unwrap(), KernelSource::Debian { .. }),
                "{name}"
            );
        }
    }
}
