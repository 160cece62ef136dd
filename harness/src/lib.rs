//! pkeys-harness: everything unsafe and architecture-specific that the pkeys conformance cases need.
//!
//! - [`sys`]: the raw `pkey_alloc`, `pkey_free`, `pkey_mprotect` system calls, returning the errno;
//! - [`pkey`]: [`Pkey`] (an allocated key, freed on drop) and [`Rights`] (`PKEY_DISABLE_*`);
//! - [`pkru`]: RDPKRU/WRPKRU with a shadow copy checked on every read;
//! - [`cpu`]: CPUID probing (PKU, OSPKE, the XSAVE offset of PKRU);
//! - [`probe`]: what this machine can run, and the SKIP reason when it cannot;
//! - [`features`]: optional kernel features (sockets, SysV shm, ...) and their config options;
//! - [`fault`]: the SIGSEGV capture (`si_code`, `si_addr`, `si_pkey`, handler and saved PKRU);
//! - [`maps`]: the one `/proc/PID/maps` and `smaps` parser;
//! - [`mem`]: mappings of every kind (anonymous, THP, hugetlb, file, memfd, SysV shm) with safe access;
//! - [`child`]: the one way to run code in a forked child (verdict, messages, how it ended);
//! - [`case`], [`verdict`], [`isolate`]: the case model, verdicts and fork-per-case isolation;
//! - [`ktap`], [`verdict`]: the KTAP writer and verdicts, from `pkeys-common`.
#![warn(missing_docs)]
#![cfg(target_arch = "x86_64")]

pub mod arena;
pub mod case;
pub mod child;
pub mod cpu;
pub mod fault;
pub mod features;
pub mod inject;
pub mod isolate;
pub mod maps;
pub mod mem;
pub mod pkey;
pub mod pkru;
pub mod probe;
pub mod ptrace;
pub mod rawthread;
pub mod sys;

/// The KTAP writer and the stream's literals (shared with the host side).
pub use pkeys_common::protocol as ktap;
/// Verdicts (shared with the host side).
pub use pkeys_common::verdict;

pub use case::{Case, Ctx, Needs, Outcome, Stop};
pub use features::Feature;
pub use pkey::{Pkey, Rights};
pub use verdict::{CaseReport, Verdict};
