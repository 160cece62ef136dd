//! `pkeys-report`: turn per-kernel pkeys suite results into a conformance report.
//!
//! The pieces, in the order a matrix run uses them:
//! - [`ktap::parse`] reads a guest's KTAP result stream; [`console::detect_panic`] and
//!   [`ktap::parse_console_tail`] read its console;
//! - [`model`] holds the results (`results.json`);
//! - [`expectations`] loads `ci/expectations.toml` and [`classify`] applies it;
//! - [`render::write_all`] writes every report format.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod classify;
pub mod compare;
pub mod console;
pub mod digest;
pub mod error;
pub mod expectations;
/// Glob matching for case ids, CPU models and command lines (shared with `pkeys-qemu`).
pub use pkeys_common::glob;
pub mod headline;
pub mod kernel_version;
pub mod ktap;
pub mod merge;
pub mod model;
pub mod render;

pub use classify::{classify, classify_all};
pub use compare::{Comparison, compare};
pub use error::{ReportError, Result};
pub use expectations::{Expectation, Expectations};
pub use headline::{Tally, problem_lines, run_verdict};
pub use merge::merge;
pub use model::{
    AppliedExpectation, CaseResult, GuestRun, HostCpuInfo, KernelInfo, Results, RunStatus, Timings,
    Verdict,
};
pub use render::write_all;
