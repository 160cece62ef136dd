//! `results.ktap`: every run as one KTAP version 1 stream, one subtest per run.

use std::fmt::Write;

use crate::ktap::write_stream;
use crate::model::Results;
use pkeys_common::protocol::{VERSION_LINE, result_line};

/// Renders the merged KTAP: a top-level plan over the runs; each run's cases as a nested
/// (4-space indented) KTAP stream followed by `ok N <run>` (or `not ok` when the run has a
/// FAIL, XPASS, TIMEOUT or ERROR). Each nested stream opens as KUnit's do, and as the
/// kernel's `kunit.py parse` requires: `KTAP version 1`, then `# Subtest: <run>`, both
/// indented, then the header and plan.
pub fn merged_ktap(results: &Results) -> String {
    let mut out = format!("{VERSION_LINE}\n");
    let _ = writeln!(out, "1..{}", results.runs.len());
    for (i, run) in results.runs.iter().enumerate() {
        let mut meta = run.meta.clone();
        meta.insert("run".to_owned(), run.name.clone());
        meta.insert("qemu_cpu".to_owned(), run.cpu.clone());
        if !run.kernel.version.is_empty() {
            meta.insert(
                "kernel_package_version".to_owned(),
                run.kernel.version.clone(),
            );
        }
        let mut inner = String::new();
        write_stream(&mut inner, &meta, &run.cases);
        let mut lines = inner.lines();
        if let Some(version) = lines.next() {
            let _ = writeln!(out, "    {version}");
        }
        let _ = writeln!(out, "    # Subtest: {}", run.name);
        for line in lines {
            let _ = writeln!(out, "    {line}");
        }
        let line = result_line(i + 1, &run.name, !run.has_problems(), None, None);
        let _ = writeln!(out, "{line}");
    }
    out
}
