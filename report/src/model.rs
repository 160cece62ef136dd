//! The results data model, as stored in `results.json`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{FoundVersion, ReportError, Result, io_err};

/// The `format_version` this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// This crate's version, recorded as `tool_version`.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Prefix of the pseudo-cases that [`crate::classify`] adds for guest-level problems.
pub const GUEST_CASE_PREFIX: &str = "guest::";

/// A case's verdict, in kselftest's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The case ran and passed.
    Pass,
    /// The case ran and failed.
    Fail,
    /// The case did not run: a capability is missing (the reason says which).
    Skip,
    /// The case failed as the expectations say it does on this kernel.
    XFail,
    /// The case passed where the expectations say it fails: the expectation is stale.
    XPass,
    /// The case did not finish in time.
    Timeout,
    /// No verdict: the case or the guest broke (panic, crash, incomplete stream).
    Error,
}

impl Verdict {
    /// All verdicts, in display order.
    pub const ALL: [Verdict; 7] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Skip,
        Verdict::XFail,
        Verdict::XPass,
        Verdict::Timeout,
        Verdict::Error,
    ];

    /// The upper-case word (`PASS`, `XFAIL`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
            Verdict::XFail => "XFAIL",
            Verdict::XPass => "XPASS",
            Verdict::Timeout => "TIMEOUT",
            Verdict::Error => "ERROR",
        }
    }

    /// Whether this verdict makes the run fail (exit status non-zero):
    /// FAIL, XPASS, TIMEOUT and ERROR.
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Verdict::Fail | Verdict::XPass | Verdict::Timeout | Verdict::Error
        )
    }

    /// How bad a verdict is, for `compare`: PASS 0; XFAIL and SKIP 1 (the case did not
    /// pass, but nothing is wrong); FAIL, XPASS, TIMEOUT and ERROR 2.
    pub fn rank(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::XFail | Verdict::Skip => 1,
            Verdict::Fail | Verdict::XPass | Verdict::Timeout | Verdict::Error => 2,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Error returned when a string names no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verdict `{0}` (expected one of pass, fail, skip, xfail, xpass, timeout, error)")]
pub struct UnknownVerdict(pub String);

impl FromStr for Verdict {
    type Err = UnknownVerdict;

    /// Parses a verdict word, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownVerdict(s.to_owned()))
    }
}

/// The expectation that [`crate::classify`] applied to a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedExpectation {
    /// The verdict the case reported before classification.
    pub original: Verdict,
    /// The verdict the expectation predicts.
    pub expected: Verdict,
    /// Why this kernel behaves so.
    pub reason: String,
    /// The upstream commit (or series) that changed the behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The `case` glob of the matching expectation.
    pub pattern: String,
}

/// One case's result in one guest run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Case id, e.g. `signals::handler_with_pkey0_disabled`.
    pub id: String,
    /// The verdict (after classification, when it has been applied).
    pub verdict: Verdict,
    /// FAIL message, or the reason after a SKIP/XFAIL/XPASS/TIMEOUT/ERROR directive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The diagnostic lines printed for this case, without the leading `# `.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
    /// Set by [`crate::classify`] when an expectation changed or confirmed the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expectation: Option<AppliedExpectation>,
    /// How long the case ran in the guest, in microseconds (from its `duration=` line; absent
    /// for pseudo-cases and streams from suites that did not write one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
}

impl CaseResult {
    /// A result with no reason, diagnostics or expectation.
    pub fn new(id: impl Into<String>, verdict: Verdict) -> Self {
        CaseResult {
            id: id.into(),
            verdict,
            reason: None,
            diagnostics: Vec::new(),
            expectation: None,
            duration_us: None,
        }
    }

    /// The duration in seconds, when known.
    pub fn duration_s(&self) -> Option<f64> {
        self.duration_us.map(|us| us as f64 / 1e6)
    }

    /// Whether this is a pseudo-case added for a guest-level problem.
    pub fn is_guest_pseudo_case(&self) -> bool {
        self.id.starts_with(GUEST_CASE_PREFIX)
    }
}

/// The kernel a guest ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// The matrix entry's kernel spec, e.g. `debian:sid/7.2` or a bzImage path.
    pub spec: String,
    /// The package it came from (empty when not a package).
    #[serde(default)]
    pub package: String,
    /// The exact package version or kernel release, e.g. `6.12.43-1`.
    #[serde(default)]
    pub version: String,
    /// `uname -r` as the guest reported it (the `kernel=` header key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uname: Option<String>,
}

/// How a guest run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunStatus {
    /// The guest ran and powered off (the stream may still be incomplete: see
    /// [`GuestRun::complete`]).
    #[default]
    Completed,
    /// The guest failed: panic, hang, qemu killed, boot failure.
    Error {
        /// One line saying what happened.
        message: String,
        /// The last console lines.
        #[serde(default)]
        console_tail: Vec<String>,
    },
}

/// Durations of a guest run, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// From qemu start to the first line of the result stream.
    #[serde(default)]
    pub boot_to_first_line_s: Option<f64>,
    /// From the first to the last line of the result stream.
    #[serde(default)]
    pub suite_s: Option<f64>,
    /// From qemu start to qemu exit (all attempts).
    #[serde(default)]
    pub total_s: Option<f64>,
}

/// One guest: one kernel × CPU model × command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestRun {
    /// Unique run name, e.g. `6.12-max` (used for file names and columns).
    pub name: String,
    /// The kernel.
    pub kernel: KernelInfo,
    /// The qemu `-cpu` model.
    pub cpu: String,
    /// The accelerator: `tcg` or `kvm` (runs recorded before it was kept are TCG runs).
    #[serde(default = "tcg")]
    pub accel: String,
    /// The host's CPU the guest ran on (under KVM: the CPU the guest sees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cpu: Option<HostCpuInfo>,
    /// Extra kernel command line.
    #[serde(default)]
    pub append: String,
    /// Boots attempted (2 when the first failed before the suite started).
    #[serde(default = "one")]
    pub attempts: u32,
    /// Why the first boot was retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<String>,
    /// How the guest ended.
    #[serde(default)]
    pub status: RunStatus,
    /// Whether the result stream was complete (plan count met and done marker seen).
    #[serde(default)]
    pub complete: bool,
    /// The plan `1..N`, if the stream had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<usize>,
    /// The suite's exit code as the init reported it (`# pkeys-init: suite exit=...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_exit: Option<String>,
    /// The case results.
    #[serde(default)]
    pub cases: Vec<CaseResult>,
    /// Diagnostics after the last result: printed by the case that was running when the
    /// stream ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trailing_diagnostics: Vec<String>,
    /// The `# pkeys-suite key=value ...` header.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Durations.
    #[serde(default)]
    pub timings: Timings,
}

fn one() -> u32 {
    1
}

fn tcg() -> String {
    "tcg".to_owned()
}

/// The host CPU a run used (from `/proc/cpuinfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCpuInfo {
    /// `model name`.
    pub model: String,
    /// The host CPU has PKU.
    pub pku: bool,
    /// The host kernel enabled it (OSPKE).
    pub ospke: bool,
}

impl GuestRun {
    /// A run with no results yet (status Completed, stream incomplete, one attempt).
    pub fn new(
        name: impl Into<String>,
        kernel: KernelInfo,
        cpu: impl Into<String>,
        append: impl Into<String>,
    ) -> Self {
        GuestRun {
            name: name.into(),
            kernel,
            cpu: cpu.into(),
            accel: tcg(),
            host_cpu: None,
            append: append.into(),
            attempts: 1,
            retried: None,
            status: RunStatus::Completed,
            complete: false,
            plan: None,
            init_exit: None,
            cases: Vec::new(),
            trailing_diagnostics: Vec::new(),
            meta: BTreeMap::new(),
            timings: Timings::default(),
        }
    }

    /// Takes cases, trailing diagnostics, header, plan, completeness and init exit from a
    /// parsed stream;
    /// fills `kernel.uname` from the header's `kernel=` key when unset.
    pub fn apply_stream(&mut self, stream: crate::ktap::ParsedStream) {
        if self.kernel.uname.is_none() {
            self.kernel.uname = stream.meta.get("kernel").cloned();
        }
        self.complete = stream.complete;
        self.plan = stream.plan;
        self.init_exit = stream.init_exit;
        self.meta = stream.meta;
        self.cases = stream.cases;
        self.trailing_diagnostics = stream.trailing_diagnostics;
    }

    /// The CPU model as the guest saw it (header `cpu=`), else the qemu model.
    pub fn cpu_description(&self) -> &str {
        self.meta
            .get("cpu")
            .map_or(self.cpu.as_str(), String::as_str)
    }

    /// Counts of each verdict in this run.
    pub fn counts(&self) -> BTreeMap<Verdict, usize> {
        let mut counts = BTreeMap::new();
        for case in &self.cases {
            *counts.entry(case.verdict).or_insert(0) += 1;
        }
        counts
    }

    /// The result for a case id, if the run has one.
    pub fn case(&self, id: &str) -> Option<&CaseResult> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// Whether the run has a FAIL, XPASS, TIMEOUT or ERROR (after classification).
    pub fn has_problems(&self) -> bool {
        self.cases.iter().any(|c| c.verdict.is_problem())
    }
}

/// Everything one matrix run produced: the content of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Schema version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The version of the tool that wrote the file.
    pub tool_version: String,
    /// The guest runs.
    #[serde(default)]
    pub runs: Vec<GuestRun>,
    /// Optional benchmark data, rendered as a table in the HTML report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench: Option<serde_json::Value>,
}

impl Default for Results {
    fn default() -> Self {
        Results::new(Vec::new())
    }
}

impl Results {
    /// Results of the current format and tool version.
    pub fn new(runs: Vec<GuestRun>) -> Self {
        Results {
            format_version: FORMAT_VERSION,
            tool_version: TOOL_VERSION.to_owned(),
            runs,
            bench: None,
        }
    }

    /// Reads a results file; a file of another `format_version` is an error
    /// naming the file and both versions.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_json(&text, path)
    }

    /// Parses results JSON; `path` only names the source in errors.
    pub fn from_json(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json_err = |error| ReportError::Json {
            path: path.to_owned(),
            error,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json_err)?;
        let found = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(FORMAT_VERSION)) {
            return Err(ReportError::FormatVersion {
                path: path.to_owned(),
                found: found.map_or(FoundVersion::Missing, FoundVersion::Version),
                expected: FORMAT_VERSION,
            });
        }
        serde_json::from_value(value).map_err(json_err)
    }

    /// Writes the results as pretty JSON, atomically (temporary file + rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = serde_json::to_string_pretty(self).map_err(|error| ReportError::Json {
            path: path.to_owned(),
            error,
        })?;
        pkeys_common::fsutil::write_atomic(path, format!("{json}\n").as_bytes())
            .map_err(crate::error::io_err(path))
    }

    /// Whether any run has a FAIL, XPASS, TIMEOUT or ERROR (after classification).
    pub fn has_problems(&self) -> bool {
        self.runs.iter().any(GuestRun::has_problems)
    }

    /// The process exit status the rule gives: 1 when [`Results::has_problems`], else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.has_problems())
    }

    /// All case ids over all runs, in first-seen order (suite order), pseudo-cases last.
    pub fn case_ids(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut ids = Vec::new();
        let mut guest = Vec::new();
        for case in self.runs.iter().flat_map(|r| &r.cases) {
            if seen.insert(case.id.as_str()) {
                if case.is_guest_pseudo_case() {
                    guest.push(case.id.clone());
                } else {
                    ids.push(case.id.clone());
                }
            }
        }
        ids.extend(guest);
        ids
    }
}
