//! pkeys-common: what both sides of the project share, written once.
//!
//! The suite runs inside a guest (or natively) and speaks KTAP; `pkeys-qemu` and `pkeys-report`
//! run on the host and read it. Both sides use this crate, so the protocol has one definition:
//!
//! - [`protocol`]: the KTAP literals and marker lines, the [`protocol::Writer`] the suite emits
//!   with, and [`verdict`]s;
//! - [`suite_args`]: suite arguments the host must understand too (`--explore-time`);
//! - [`glob`], [`fsutil`], [`user`], [`elf`]: small utilities each used by several crates.
//!
//! No `unsafe` here: everything is plain data and std/nix calls.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod elf;
pub mod fsutil;
pub mod glob;
pub mod protocol;
pub mod suite_args;
pub mod user;
pub mod verdict;

pub use verdict::{CaseReport, Verdict};
