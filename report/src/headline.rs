//! The verdicts a person reads first: one line per run, the closing line of a matrix, and the
//! problem cases by name. Every line here is classified: an expected failure is never printed
//! as a plain FAIL, and it is never counted as passed either.

use crate::model::{GuestRun, Results, RunStatus, Verdict};

/// Case counts by verdict, over a run or a whole result set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// PASS.
    pub pass: usize,
    /// XFAIL: failures the expectations explain.
    pub xfail: usize,
    /// SKIP.
    pub skip: usize,
    /// FAIL.
    pub fail: usize,
    /// XPASS: a stale expectation.
    pub xpass: usize,
    /// TIMEOUT.
    pub timeout: usize,
    /// ERROR (including the guest pseudo-cases).
    pub error: usize,
}

impl Tally {
    /// Counts one run's cases.
    pub fn of_run(run: &GuestRun) -> Self {
        Self::of(&run.cases)
    }

    /// Counts every run's cases.
    pub fn of_results(results: &Results) -> Self {
        Self::of(results.runs.iter().flat_map(|r| &r.cases))
    }

    fn of<'a>(cases: impl IntoIterator<Item = &'a crate::model::CaseResult>) -> Self {
        let mut t = Tally::default();
        for c in cases {
            t.add(c.verdict);
        }
        t
    }

    fn add(&mut self, v: Verdict) {
        *match v {
            Verdict::Pass => &mut self.pass,
            Verdict::XFail => &mut self.xfail,
            Verdict::Skip => &mut self.skip,
            Verdict::Fail => &mut self.fail,
            Verdict::XPass => &mut self.xpass,
            Verdict::Timeout => &mut self.timeout,
            Verdict::Error => &mut self.error,
        } += 1;
    }

    /// FAIL, XPASS, TIMEOUT and ERROR together: what makes a run fail.
    pub fn problems(&self) -> usize {
        self.fail + self.xpass + self.timeout + self.error
    }

    /// `1 failed (1 FAIL, 1 TIMEOUT)`-style wording of the problems; empty when there are none.
    fn problems_phrase(&self) -> String {
        let n = self.problems();
        if n == 0 {
            return String::new();
        }
        let parts: Vec<String> = [
            (self.fail, "FAIL"),
            (self.xpass, "XPASS"),
            (self.timeout, "TIMEOUT"),
            (self.error, "ERROR"),
        ]
        .into_iter()
        .filter(|(k, _)| *k > 0)
        .map(|(k, w)| format!("{k} {w}"))
        .collect();
        if parts.len() == 1 && self.fail == n {
            format!("{n} failed")
        } else {
            format!("{n} failed ({})", parts.join(", "))
        }
    }

    /// `N passed, N expected failures, N failed, N skipped`: every case counted once, under the
    /// word a person would use for it.
    pub fn sentence(&self) -> String {
        let failed = match self.problems_phrase() {
            p if p.is_empty() => "0 failed".to_owned(),
            p => p,
        };
        format!(
            "{} passed, {} expected failure{}, {failed}, {} skipped",
            self.pass,
            self.xfail,
            if self.xfail == 1 { "" } else { "s" },
            self.skip
        )
    }
}

/// A run's verdict in a few words: `PASS`, `PASS — 4 expected failures`,
/// `FAIL — 1 failed, 4 expected failures`, `ERROR (kernel panic …)`. Classify the run first.
pub fn run_verdict(run: &GuestRun) -> String {
    let t = Tally::of_run(run);
    let expected = match t.xfail {
        0 => String::new(),
        1 => "1 expected failure".to_owned(),
        n => format!("{n} expected failures"),
    };
    let join = |head: &str, parts: &[&str]| {
        let parts: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        if parts.is_empty() {
            head.to_owned()
        } else {
            format!("{head} — {}", parts.join(", "))
        }
    };
    // A guest-level failure the expectations explain (its pseudo-case is XFAIL) is not an ERROR.
    let guest_error_expected = run
        .cases
        .iter()
        .any(|c| c.is_guest_pseudo_case() && c.verdict == Verdict::XFail);
    match &run.status {
        RunStatus::Error { message, .. } if !guest_error_expected => format!("ERROR ({message})"),
        RunStatus::Completed if !run.complete && !guest_error_expected => {
            "ERROR (incomplete result stream)".to_owned()
        }
        _ if t.problems() > 0 => join("FAIL", &[t.problems_phrase().as_str(), expected.as_str()]),
        _ => join("PASS", &[expected.as_str()]),
    }
}

/// One line per problem case of a classified run: `FAIL race::x: message`.
pub fn problem_lines(run: &GuestRun) -> Vec<String> {
    run.cases
        .iter()
        .filter(|c| c.verdict.is_problem())
        .map(|c| match &c.reason {
            Some(r) => format!("{} {}: {}", c.verdict, c.id, r.replace(['\n', '\r'], " ")),
            None => format!("{} {}", c.verdict, c.id),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CaseResult, KernelInfo};

    fn run(verdicts: &[Verdict]) -> GuestRun {
        let mut r = GuestRun::new("g", KernelInfo::default(), "max", "");
        r.complete = true;
        for (i, v) in verdicts.iter().enumerate() {
            let mut c = CaseResult::new(format!("a::{i}"), *v);
            c.reason = Some(format!("why\n{i}"));
            r.cases.push(c);
        }
        r
    }

    #[test]
    fn expected_failures_are_neither_fail_nor_pass() {
        use Verdict::*;
        let r = run(&[Pass, XFail, XFail, Skip]);
        assert_eq!(run_verdict(&r), "PASS — 2 expected failures");
        assert!(problem_lines(&r).is_empty());
        assert_eq!(
            Tally::of_run(&r).sentence(),
            "1 passed, 2 expected failures, 0 failed, 1 skipped"
        );
        assert_eq!(run_verdict(&run(&[Pass])), "PASS");
    }

    #[test]
    fn problems_are_named_and_counted() {
        use Verdict::*;
        let r = run(&[Pass, Fail, XFail, Timeout]);
        assert_eq!(
            run_verdict(&r),
            "FAIL — 2 failed (1 FAIL, 1 TIMEOUT), 1 expected failure"
        );
        assert_eq!(
            problem_lines(&r),
            ["FAIL a::1: why 1", "TIMEOUT a::3: why 3"]
        );
        let every = run(&[Pass, XFail, Skip, Fail, XPass, Timeout, Error]);
        assert_eq!(
            Tally::of_run(&every).sentence(),
            "1 passed, 1 expected failure, 4 failed (1 FAIL, 1 XPASS, 1 TIMEOUT, 1 ERROR), 1 skipped"
        );
        assert_eq!(run_verdict(&run(&[Fail])), "FAIL — 1 failed");
    }

    #[test]
    fn guest_errors_come_first() {
        let mut r = run(&[Verdict::Pass]);
        r.complete = false;
        assert_eq!(run_verdict(&r), "ERROR (incomplete result stream)");
        r.status = RunStatus::Error {
            message: "kernel panic".into(),
            console_tail: vec![],
        };
        assert_eq!(run_verdict(&r), "ERROR (kernel panic)");
        // The same guest error, classified as expected: not an ERROR line.
        let mut c = CaseResult::new("guest::error", Verdict::XFail);
        c.reason = Some("kernel panic".into());
        r.cases.push(c);
        assert_eq!(run_verdict(&r), "PASS — 1 expected failure");
    }
}
