//! Classification of raw results against the expectations.
//!
//! Rules, per case, with the first matching expectation (if any):
//!
//! | reported | expected | result |
//! |---|---|---|
//! | any | none matches | unchanged |
//! | FAIL / TIMEOUT / ERROR | the same verdict | XFAIL (reason and fix kept) |
//! | PASS | FAIL / TIMEOUT / ERROR | XPASS: the expectation is stale |
//! | anything else | anything | unchanged, annotated with the expectation |
//!
//! Per run: a run whose status is [`RunStatus::Error`] gets an ERROR pseudo-case
//! `guest::error` (message as reason; the interrupted case's diagnostics and the console
//! tail as diagnostics); a completed run whose
//! stream is incomplete gets `guest::incomplete_stream`. Pseudo-cases go through the same
//! expectations (e.g. `case = "guest::*"`, `verdict = "error"`).
//!
//! Classification is idempotent: it first undoes any earlier classification (restores
//! each case's original verdict and drops the pseudo-cases), so a `results.json` can be
//! re-classified with another expectations file.

use crate::expectations::Expectations;
use crate::model::{AppliedExpectation, CaseResult, GuestRun, Results, RunStatus, Verdict};

/// Id of the pseudo-case for a guest that failed.
pub const GUEST_ERROR_CASE: &str = "guest::error";
/// Id of the pseudo-case for a result stream that ended early.
pub const INCOMPLETE_STREAM_CASE: &str = "guest::incomplete_stream";

/// Classifies every run.
pub fn classify_all(results: &mut Results, expectations: &Expectations) {
    for run in &mut results.runs {
        classify(run, expectations);
    }
}

/// Classifies one run in place (see the module documentation for the rules).
pub fn classify(run: &mut GuestRun, expectations: &Expectations) {
    unclassify(run);
    if let Some(case) = guest_pseudo_case(run) {
        run.cases.push(case);
    }
    let matched: Vec<_> = run
        .cases
        .iter()
        .map(|c| expectations.lookup(run, &c.id).cloned())
        .collect();
    for (case, expectation) in run.cases.iter_mut().zip(matched) {
        let Some(e) = expectation else { continue };
        let original = case.verdict;
        case.verdict = classified(original, e.verdict);
        case.expectation = Some(AppliedExpectation {
            original,
            expected: e.verdict,
            reason: e.reason.clone(),
            fix: e.fix.clone(),
            pattern: e.case.clone(),
        });
    }
}

/// The verdict a case reported as `original` gets under an expectation of `expected` (the table
/// in the module documentation).
pub fn classified(original: Verdict, expected: Verdict) -> Verdict {
    let failure = matches!(expected, Verdict::Fail | Verdict::Timeout | Verdict::Error);
    if failure && original == expected {
        Verdict::XFail
    } else if failure && original == Verdict::Pass {
        Verdict::XPass
    } else {
        original
    }
}

/// Restores the verdicts as the guest reported them and removes pseudo-cases.
pub fn unclassify(run: &mut GuestRun) {
    run.cases.retain(|c| !c.is_guest_pseudo_case());
    for case in &mut run.cases {
        if let Some(e) = case.expectation.take() {
            case.verdict = e.original;
        }
    }
}

fn guest_pseudo_case(run: &GuestRun) -> Option<CaseResult> {
    let reported = run.cases.len();
    let progress = match run.plan {
        Some(n) => format!("{reported} of {n} results"),
        None => format!("{reported} results, no plan line"),
    };
    let mut case = match &run.status {
        RunStatus::Error {
            message,
            console_tail,
        } => {
            let mut case = CaseResult::new(GUEST_ERROR_CASE, Verdict::Error);
            case.reason = Some(if run.complete {
                message.clone()
            } else {
                format!("{message} (stream incomplete: {progress})")
            });
            case.diagnostics = run.trailing_diagnostics.clone();
            case.diagnostics.extend(console_tail.iter().cloned());
            case
        }
        RunStatus::Completed if !run.complete => {
            let mut case = CaseResult::new(INCOMPLETE_STREAM_CASE, Verdict::Error);
            case.reason = Some(format!(
                "result stream incomplete: {progress}, done marker missing or plan not met"
            ));
            case.diagnostics = run.trailing_diagnostics.clone();
            case
        }
        RunStatus::Completed => return None,
    };
    if let Some(code) = &run.init_exit {
        case.diagnostics.push(format!("suite exit={code}"));
    }
    Some(case)
}
