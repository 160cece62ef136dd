//! Report renderers: Markdown, self-contained HTML, JUnit XML, merged KTAP and JSON.

mod html;
mod junit;
mod markdown;
mod merged_ktap;

use std::path::{Path, PathBuf};

pub use html::html;
pub use junit::junit;
pub use markdown::markdown;
pub use merged_ktap::merged_ktap;

use crate::error::{Result, io_err};
use crate::model::{AppliedExpectation, GuestRun, Results, RunStatus, Verdict};
use pkeys_common::fsutil::write_atomic;

/// File names [`write_all`] writes into its directory.
pub mod files {
    /// The results, re-renderable with `pkeys-report render`.
    pub const RESULTS_JSON: &str = "results.json";
    /// Markdown report.
    pub const REPORT_MD: &str = "report.md";
    /// Self-contained HTML report.
    pub const REPORT_HTML: &str = "report.html";
    /// JUnit XML, one testsuite per run.
    pub const JUNIT_XML: &str = "junit.xml";
    /// All runs as one KTAP stream, one subtest per run.
    pub const MERGED_KTAP: &str = "results.ktap";
}

/// Writes `results.json`, `report.md`, `report.html`, `junit.xml` and `results.ktap` into
/// `dir` (created if missing), each atomically. Classify first ([`crate::classify_all`]):
/// renderers show verdicts as they are. Returns the paths written.
pub fn write_all(results: &Results, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let json = dir.join(files::RESULTS_JSON);
    results.save(&json)?;
    let mut written = vec![json];
    for (name, content) in [
        (files::REPORT_MD, markdown(results)),
        (files::REPORT_HTML, html(results)),
        (files::JUNIT_XML, junit(results)?),
        (files::MERGED_KTAP, merged_ktap(results)),
    ] {
        let path = dir.join(name);
        write_atomic(&path, content.as_bytes()).map_err(io_err(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// One line about the expectation applied to a case.
pub(crate) fn expectation_note(e: &AppliedExpectation, verdict: Verdict) -> String {
    let what = match verdict {
        Verdict::XPass => format!(
            "expected {} but it passed: the expectation `{}` is stale",
            e.expected, e.pattern
        ),
        Verdict::XFail => format!("expected {} on this kernel", e.expected),
        _ => format!("expectation `{}` says {}", e.pattern, e.expected),
    };
    match &e.fix {
        Some(fix) => format!("{what}: {} (fix: {fix})", e.reason),
        None => format!("{what}: {}", e.reason),
    }
}

/// Seconds with one decimal, or `-`.
pub(crate) fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}"))
}

/// A short status for a run: `ok`, `problems`, or the error message.
pub(crate) fn run_status(run: &GuestRun) -> String {
    match &run.status {
        RunStatus::Error { message, .. } => format!("ERROR: {message}"),
        RunStatus::Completed if !run.complete => "incomplete stream".to_owned(),
        RunStatus::Completed if run.has_problems() => "problems".to_owned(),
        RunStatus::Completed => "ok".to_owned(),
    }
}

/// The kernel version to show for a run: package version, else uname, else spec.
pub(crate) fn kernel_label(run: &GuestRun) -> String {
    let k = &run.kernel;
    let mut label = if k.version.is_empty() {
        k.spec.clone()
    } else {
        k.version.clone()
    };
    if let Some(uname) = &k.uname
        && !label.contains(uname.as_str())
    {
        label = format!("{label} ({uname})");
    }
    label
}

/// "N PASS, M FAIL, ..." for the non-zero counts of a run.
pub(crate) fn counts_line(run: &GuestRun) -> String {
    let counts = run.counts();
    let parts: Vec<String> = Verdict::ALL
        .iter()
        .filter_map(|v| counts.get(v).map(|n| format!("{n} {v}")))
        .collect();
    if parts.is_empty() {
        "no results".to_owned()
    } else {
        parts.join(", ")
    }
}

/// One line for a run: its status and verdict counts, e.g. `ok: 40 PASS, 3 XFAIL`.
pub fn summary_line(run: &GuestRun) -> String {
    format!("{}: {}", run_status(run), counts_line(run))
}
