//! `junit.xml` via quick-junit: one testsuite per run.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::expectation_note;
use crate::error::{ReportError, Result};
use crate::model::{AppliedExpectation, Results, Verdict};

/// An expected failure's message: what the kernel does, why, and the commit that changed it.
fn xfail_message(e: &AppliedExpectation, reported: &str) -> String {
    let fix = e
        .fix
        .as_deref()
        .map(|f| format!(" (fix: {f})"))
        .unwrap_or_default();
    format!(
        "expected {} on this kernel: {}{fix}; reported: {reported}",
        e.expected, e.reason
    )
}

/// Renders the JUnit XML report, following pytest's junitxml convention for the verdicts
/// JUnit has no word for: FAIL and XPASS are `<failure>` (an XPASS's message starts
/// `[XPASS(strict)]`, as pytest's strict xfail writes it), TIMEOUT and ERROR are `<error>`,
/// SKIP is `<skipped type="pytest.skip">` with its reason, and XFAIL is
/// `<skipped type="pytest.xfail">` whose message carries the expectation's reason and fixing
/// commit, so a dashboard shows a known kernel failure as not run rather than green. Each
/// `<testcase>` has the case's `time` when the guest reported its duration.
pub fn junit(results: &Results) -> Result<String> {
    let mut report = Report::new("pkeys-conformance");
    for run in &results.runs {
        let mut suite = TestSuite::new(run.name.as_str());
        let k = &run.kernel;
        suite.add_properties([
            Property::new("kernel.spec", k.spec.as_str()),
            Property::new("kernel.package", k.package.as_str()),
            Property::new("kernel.version", k.version.as_str()),
            Property::new("kernel.uname", k.uname.as_deref().unwrap_or("")),
            Property::new("cpu", run.cpu.as_str()),
            Property::new("accel", run.accel.as_str()),
            Property::new("append", run.append.as_str()),
            Property::new("attempts", run.attempts.to_string()),
        ]);
        if let Some(why) = &run.retried {
            suite.add_property(Property::new("retried", why.as_str()));
        }
        if let Some(s) = run.timings.suite_s.filter(|s| s.is_finite() && *s >= 0.0) {
            suite.set_time(Duration::from_secs_f64(s));
        }
        for case in &run.cases {
            let message = case
                .reason
                .clone()
                .unwrap_or_else(|| case.verdict.to_string());
            let note = case
                .expectation
                .as_ref()
                .map(|e| expectation_note(e, case.verdict));
            let mut text = case.diagnostics.join("\n");
            if let Some(note) = &note {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(note);
            }
            let status = match case.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Skip => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_type("pytest.skip");
                    s.set_message(message.as_str());
                    s
                }
                Verdict::XFail => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_type("pytest.xfail");
                    s.set_message(match &case.expectation {
                        Some(e) => {
                            xfail_message(e, case.reason.as_deref().unwrap_or(e.original.as_str()))
                        }
                        None => format!("expected failure: {message}"),
                    });
                    if !text.is_empty() {
                        s.set_description(text.as_str());
                    }
                    s
                }
                v => {
                    let kind = if matches!(v, Verdict::Fail | Verdict::XPass) {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    s.set_type(v.as_str());
                    s.set_message(if v == Verdict::XPass {
                        match (&case.reason, &note) {
                            (None, Some(note)) => format!("[XPASS(strict)] {note}"),
                            _ => format!("[XPASS(strict)] {message}"),
                        }
                    } else {
                        format!("{v}: {message}")
                    });
                    if !text.is_empty() {
                        s.set_description(text.as_str());
                    }
                    s
                }
            };
            let mut tc = TestCase::new(case.id.as_str(), status);
            tc.set_classname(run.name.as_str());
            if let Some(s) = case.duration_s() {
                tc.set_time(Duration::from_secs_f64(s));
            }
            if matches!(case.verdict, Verdict::Pass | Verdict::Skip) && !text.is_empty() {
                tc.set_system_out(text);
            }
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
    }
    report.to_string().map_err(ReportError::Junit)
}
