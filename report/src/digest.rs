//! What a kernel developer reads first, computed once for every renderer: the overall verdict,
//! the cases whose verdict differs between runs, the expected failures grouped by case, the
//! skips grouped by reason, and the slowest cases.

use std::collections::BTreeMap;

use crate::headline::{Tally, problem_lines};
use crate::model::{CaseResult, Results, Verdict};

/// A case whose verdict is not the same in every run where it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The case id.
    pub id: String,
    /// Each verdict the case got, with the runs that gave it (verdict order: PASS first).
    pub by_verdict: Vec<(Verdict, Vec<String>)>,
}

/// One expected failure, with every run it was expected in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFailure {
    /// The case id.
    pub id: String,
    /// Why the kernel behaves so.
    pub reason: String,
    /// The fixing commit, if the expectation names one.
    pub fix: Option<String>,
    /// The verdict the guest reported (FAIL, TIMEOUT, ERROR).
    pub reported: Verdict,
    /// The runs.
    pub runs: Vec<String>,
}

/// A case's time in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Slow {
    /// The case id.
    pub id: String,
    /// The run where it was slowest.
    pub run: String,
    /// Its duration there, in seconds.
    pub secs: f64,
    /// The median over every run that reported a duration, in seconds.
    pub median_secs: f64,
}

/// The digest of a result set.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// Counts over every run.
    pub tally: Tally,
    /// Every problem case as `run: VERDICT id: reason`.
    pub problems: Vec<String>,
    /// Cases whose verdict differs between the runs where they ran (SKIP is not a verdict here:
    /// a case skipped on a CPU without PKU did not run; skips are grouped in [`Digest::skips`]).
    pub differences: Vec<Difference>,
    /// Expected failures grouped by case and reason.
    pub expected: Vec<ExpectedFailure>,
    /// Skip reasons, with how many (run, case) pairs each covers and the runs.
    pub skips: Vec<(String, usize, Vec<String>)>,
    /// The ten slowest cases (by their slowest run).
    pub slowest: Vec<Slow>,
}

/// How many slow cases the digest lists.
pub const SLOWEST: usize = 10;

impl Digest {
    /// Computes the digest.
    pub fn of(results: &Results) -> Self {
        let mut differences = Vec::new();
        let mut times: Vec<(String, Vec<(f64, String)>)> = Vec::new();
        for id in results.case_ids() {
            let mut by: BTreeMap<Verdict, Vec<String>> = BTreeMap::new();
            let mut t = Vec::new();
            for run in &results.runs {
                if let Some(c) = run.case(&id) {
                    if c.verdict != Verdict::Skip {
                        by.entry(c.verdict).or_default().push(run.name.clone());
                    }
                    if let Some(s) = c.duration_s() {
                        t.push((s, run.name.clone()));
                    }
                }
            }
            if by.len() > 1 {
                differences.push(Difference {
                    id: id.clone(),
                    by_verdict: by.into_iter().collect(),
                });
            }
            if !t.is_empty() {
                times.push((id, t));
            }
        }
        let mut slowest: Vec<Slow> = times
            .into_iter()
            .map(|(id, mut t)| {
                t.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mid = t.len() / 2;
                let median_secs = if t.len() % 2 == 0 {
                    (t[mid - 1].0 + t[mid].0) / 2.0
                } else {
                    t[mid].0
                };
                let (secs, run) = t.pop().unwrap_or_default();
                Slow {
                    id,
                    run,
                    secs,
                    median_secs,
                }
            })
            .collect();
        slowest.sort_by(|a, b| b.secs.total_cmp(&a.secs).then(a.id.cmp(&b.id)));
        slowest.truncate(SLOWEST);

        let mut expected: Vec<ExpectedFailure> = Vec::new();
        let mut skips: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for run in &results.runs {
            for c in &run.cases {
                match c.verdict {
                    Verdict::XFail => {
                        let (reason, fix, reported) = xfail_parts(c);
                        match expected
                            .iter_mut()
                            .find(|e| e.id == c.id && e.reason == reason)
                        {
                            Some(e) => e.runs.push(run.name.clone()),
                            None => expected.push(ExpectedFailure {
                                id: c.id.clone(),
                                reason,
                                fix,
                                reported,
                                runs: vec![run.name.clone()],
                            }),
                        }
                    }
                    Verdict::Skip => {
                        let e = skips
                            .entry(c.reason.clone().unwrap_or_else(|| "(no reason)".into()))
                            .or_default();
                        e.0 += 1;
                        if !e.1.contains(&run.name) {
                            e.1.push(run.name.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut skips: Vec<_> = skips
            .into_iter()
            .map(|(r, (n, runs))| (r, n, runs))
            .collect();
        skips.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let problems = results
            .runs
            .iter()
            .flat_map(|r| {
                problem_lines(r)
                    .into_iter()
                    .map(move |l| format!("{}: {l}", r.name))
            })
            .collect();
        Digest {
            tally: Tally::of_results(results),
            problems,
            differences,
            expected,
            skips,
            slowest,
        }
    }

    /// `PASS` or `FAIL`, the word for the whole result set.
    pub fn verdict(&self) -> &'static str {
        if self.tally.problems() == 0 {
            "PASS"
        } else {
            "FAIL"
        }
    }
}

fn xfail_parts(c: &CaseResult) -> (String, Option<String>, Verdict) {
    match &c.expectation {
        Some(e) => (e.reason.clone(), e.fix.clone(), e.original),
        None => (c.reason.clone().unwrap_or_default(), None, Verdict::XFail),
    }
}

/// `a, b, c` or, past `max` names, `a, b, … (N runs)`.
pub fn run_list(runs: &[String], max: usize) -> String {
    if runs.len() <= max {
        runs.join(", ")
    } else {
        format!("{}, … ({} runs)", runs[..max].join(", "), runs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GuestRun, KernelInfo};

    fn run(name: &str, cases: &[(&str, Verdict, u64)]) -> GuestRun {
        let mut r = GuestRun::new(name, KernelInfo::default(), "max", "");
        r.complete = true;
        for (id, v, us) in cases {
            let mut c = CaseResult::new(*id, *v);
            c.duration_us = Some(*us);
            if *v == Verdict::Skip {
                c.reason = Some("CPU lacks PKU".into());
            }
            r.cases.push(c);
        }
        r
    }

    #[test]
    fn differences_ignore_skips_and_group_runs() {
        use Verdict::*;
        let r = Results::new(vec![
            run(
                "a",
                &[("x", Pass, 10), ("y", Pass, 3_000_000), ("z", Pass, 1)],
            ),
            run(
                "b",
                &[("x", Fail, 20), ("y", Pass, 1_000_000), ("z", Skip, 0)],
            ),
            run(
                "c",
                &[("x", Pass, 30), ("y", Pass, 2_000_000), ("z", Skip, 0)],
            ),
        ]);
        let d = Digest::of(&r);
        assert_eq!(
            d.differences,
            [Difference {
                id: "x".into(),
                by_verdict: vec![
                    (Pass, vec!["a".into(), "c".into()]),
                    (Fail, vec!["b".into()])
                ],
            }]
        );
        assert_eq!(d.verdict(), "FAIL");
        assert_eq!(
            d.skips,
            [("CPU lacks PKU".to_owned(), 2, vec!["b".into(), "c".into()])]
        );
        assert_eq!(d.slowest[0].id, "y");
        assert_eq!(d.slowest[0].run, "a");
        assert_eq!((d.slowest[0].secs, d.slowest[0].median_secs), (3.0, 2.0));
        assert_eq!(
            run_list(&["a".into(), "b".into(), "c".into()], 2),
            "a, b, … (3 runs)"
        );
    }
}
