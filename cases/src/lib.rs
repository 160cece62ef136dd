//! pkeys-cases: the conformance cases, one module per area.
//!
//! Each case is data (id, requirements, time limit) plus a function written against the
//! `pkeys-harness` API. Case ids are `area::name[::variant]`, where the area is the top-level
//! module: cases are declared with `case!("name", needs, run)` (or `case_id!` for computed
//! names), which take the area from `module_path!()`, as kselftest's `TEST()` takes its name from
//! the file. Each module documents the man page and the upstream test (kernel selftest, LTP,
//! glibc) each case ports.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod access;
pub mod alloc;
pub mod args;
pub mod compat;
pub mod exec_only;
pub mod explore;
pub mod init_pkru;
pub mod kernel_access;
pub mod keys;
pub mod lifecycle;
pub mod ltp_pkey01;
pub mod mseal;
pub mod ptrace;
pub mod race;
pub mod register;
pub mod remote;
pub mod selftest;
pub mod signals;
pub mod support;
mod util;
pub mod vma;

use pkeys_harness::Case;

/// Every conformance case, in run order.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(support::cases());
    v.extend(compat::cases());
    v.extend(alloc::cases());
    v.extend(keys::cases());
    v.extend(access::cases());
    v.extend(kernel_access::cases());
    v.extend(exec_only::cases());
    v.extend(signals::cases());
    v.extend(register::cases());
    v.extend(ptrace::cases());
    v.extend(ltp_pkey01::cases());
    v.extend(vma::cases());
    v.extend(remote::cases());
    v.extend(args::cases());
    v.extend(lifecycle::cases());
    v.extend(race::cases());
    v.extend(mseal::cases());
    v.extend(init_pkru::cases());
    v.extend(explore::cases());
    v
}

/// The fault-injection cases: each misbehaves on purpose and must be reported as FAIL, TIMEOUT or
/// ERROR (see `suite/tests/can_fail.rs`). Kept out of [`all`].
pub fn selftests() -> Vec<Case> {
    selftest::cases()
}
