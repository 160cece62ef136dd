//! Comparing two results files (before and after a patch).

use std::fmt;

use crate::model::{Results, Verdict};

/// One case whose verdict differs between the two results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The run name.
    pub run: String,
    /// The case id.
    pub case: String,
    /// The verdict before (`None`: the case was absent).
    pub before: Option<Verdict>,
    /// The verdict after (`None`: the case is gone).
    pub after: Option<Verdict>,
    /// What the kernel reported before and after, when expectations changed the verdicts
    /// (an XFAIL is the kernel's FAIL; an XPASS its PASS).
    pub kernel: Option<(Option<Verdict>, Option<Verdict>)>,
}

/// How bad a verdict is for a comparison: as [`Verdict::rank`], except that an XPASS is the
/// kernel passing a case known to fail on its version, which is what a fix looks like (the
/// expectation is stale for the patched kernel): it ranks as PASS.
fn compare_rank(v: Verdict) -> u8 {
    if v == Verdict::XPass { 0 } else { v.rank() }
}

/// What the kernel reported, before expectations were applied.
fn kernel_verdict(c: &crate::model::CaseResult) -> Verdict {
    c.expectation.as_ref().map_or(c.verdict, |e| e.original)
}

impl Change {
    /// Whether the verdict got better (e.g. FAIL -> PASS, XFAIL -> XPASS: a fix).
    pub fn is_better(&self) -> bool {
        matches!((self.before, self.after), (Some(b), Some(a)) if compare_rank(a) < compare_rank(b))
    }

    /// Whether this change is a regression: the verdict's rank rose (an XPASS ranks as a
    /// PASS here), or a case that had a verdict is gone.
    pub fn is_worse(&self) -> bool {
        match (self.before, self.after) {
            (Some(b), Some(a)) => compare_rank(a) > compare_rank(b),
            (Some(_), None) => true,
            (None, Some(a)) => compare_rank(a) == 2,
            (None, None) => false,
        }
    }
}

/// The differences between two results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Changed cases of runs present in both, by run (in `after`'s order), then case.
    pub changes: Vec<Change>,
    /// Run names only in `before` (count as worse: results were lost).
    pub runs_only_before: Vec<String>,
    /// Run names only in `after`.
    pub runs_only_after: Vec<String>,
}

impl Comparison {
    /// Whether anything got worse.
    pub fn is_worse(&self) -> bool {
        !self.runs_only_before.is_empty() || self.changes.iter().any(Change::is_worse)
    }
}

/// Compares the verdicts of runs with the same name. When each side holds exactly one run, the
/// two are compared whatever their names (a kernel against its baseline: each run is named
/// after its own kernel).
pub fn compare(before: &Results, after: &Results) -> Comparison {
    let mut cmp = Comparison::default();
    let single = before.runs.len() == 1 && after.runs.len() == 1;
    let partner = |a: &crate::model::GuestRun| {
        if single {
            before.runs.first()
        } else {
            before.runs.iter().find(|b| b.name == a.name)
        }
    };
    for b in &before.runs {
        if !single && !after.runs.iter().any(|a| a.name == b.name) {
            cmp.runs_only_before.push(b.name.clone());
        }
    }
    for a in &after.runs {
        let Some(b) = partner(a) else {
            cmp.runs_only_after.push(a.name.clone());
            continue;
        };
        let mut ids: Vec<&str> = a.cases.iter().map(|c| c.id.as_str()).collect();
        for c in &b.cases {
            if !ids.contains(&c.id.as_str()) {
                ids.push(&c.id);
            }
        }
        for id in ids {
            let before = b.case(id).map(|c| c.verdict);
            let after = a.case(id).map(|c| c.verdict);
            if before != after {
                let raw = (
                    b.case(id).map(kernel_verdict),
                    a.case(id).map(kernel_verdict),
                );
                cmp.changes.push(Change {
                    run: a.name.clone(),
                    case: id.to_owned(),
                    before,
                    after,
                    kernel: (raw != (before, after)).then_some(raw),
                });
            }
        }
    }
    cmp
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |v: Option<Verdict>| v.map_or("(absent)", Verdict::as_str);
        let mut current: Option<&str> = None;
        for c in &self.changes {
            if current != Some(c.run.as_str()) {
                writeln!(f, "{}:", c.run)?;
                current = Some(&c.run);
            }
            let kernel = match c.kernel {
                Some((b, a)) => format!(" (the kernel: {} -> {})", word(b), word(a)),
                None => String::new(),
            };
            writeln!(
                f,
                "  {}: {} -> {}{kernel}{}",
                c.case,
                word(c.before),
                word(c.after),
                if c.is_worse() {
                    "  (worse)"
                } else if c.is_better() {
                    "  (better)"
                } else {
                    ""
                }
            )?;
        }
        for r in &self.runs_only_before {
            writeln!(f, "{r}: run missing after  (worse)")?;
        }
        for r in &self.runs_only_after {
            writeln!(f, "{r}: new run")?;
        }
        if self.changes.is_empty()
            && self.runs_only_before.is_empty()
            && self.runs_only_after.is_empty()
        {
            writeln!(f, "no verdict changed")?;
        }
        Ok(())
    }
}
