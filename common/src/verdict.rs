//! Verdicts, following kselftest: PASS, FAIL, SKIP, XFAIL, XPASS, TIMEOUT, ERROR.

use std::fmt;
use std::time::Duration;

/// The verdict of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The behaviour matched every assertion.
    Pass,
    /// An assertion failed, or the case died unexpectedly; the message says which.
    Fail(String),
    /// The case could not run here; the reason names the missing capability.
    Skip(String),
    /// Failed as expected (a known behaviour of this kernel); the reason says why.
    XFail(String),
    /// Passed where failure was expected: the expectation is stale.
    XPass(String),
    /// The case did not finish within its time limit and was killed.
    Timeout(Duration),
    /// The harness could not obtain a verdict (e.g. the case exited without one).
    Error(String),
}

impl Verdict {
    /// Upper-case name: `PASS`, `FAIL`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail(_) => "FAIL",
            Verdict::Skip(_) => "SKIP",
            Verdict::XFail(_) => "XFAIL",
            Verdict::XPass(_) => "XPASS",
            Verdict::Timeout(_) => "TIMEOUT",
            Verdict::Error(_) => "ERROR",
        }
    }

    /// Whether this verdict makes a run fail (FAIL, XPASS, TIMEOUT, ERROR).
    pub fn is_bad(&self) -> bool {
        matches!(
            self,
            Verdict::Fail(_) | Verdict::XPass(_) | Verdict::Timeout(_) | Verdict::Error(_)
        )
    }

    /// Whether the KTAP result line says `ok` (PASS, SKIP, XFAIL) rather than `not ok`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Skip(_) | Verdict::XFail(_))
    }

    /// The KTAP directive after `#` on the result line, if any (`SKIP`, `XFAIL`, ...; a FAIL's
    /// message goes on a diagnostic line instead).
    pub fn directive(&self) -> Option<&'static str> {
        match self {
            Verdict::Pass | Verdict::Fail(_) => None,
            other => Some(other.name()),
        }
    }

    /// The message or reason, if any.
    pub fn message(&self) -> Option<String> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail(m)
            | Verdict::Skip(m)
            | Verdict::XFail(m)
            | Verdict::XPass(m)
            | Verdict::Error(m) => Some(m.clone()),
            Verdict::Timeout(d) => Some(format!("after {}s", d.as_secs_f64())),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(m) => write!(f, "{}: {m}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// One case's verdict with the diagnostics it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// Case id, `area::name[::variant]`.
    pub id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Diagnostic lines, in the order the case printed them.
    pub diagnostics: Vec<String>,
    /// Wall time from fork to verdict.
    pub duration: Duration,
}
