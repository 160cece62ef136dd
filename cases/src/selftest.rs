//! Fault-injection cases: each misbehaves on purpose. They exist to prove the harness reports FAIL,
//! TIMEOUT or ERROR when it should, and are run only with `pkeys-suite --selftest` (the project's
//! own tests check every verdict). None of them is a conformance check.

use crate::util::{expect_one_pkey_fault, init_pkru};
use pkeys_harness::case;
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::inject;
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::PKEY_DISABLE_ACCESS as AD;
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Pkey, Stop, pkru};
use std::time::Duration;

/// The fault-injection cases and, in the same order, the verdict each must get (on a PKU machine).
pub const EXPECTED: &[(&str, &str, &str)] = &[
    // (case id, verdict, a fragment its message must contain: the FAIL message, or the reason
    // after an ERROR/TIMEOUT directive). The fragment names the check that was meant to fail, so
    // an injection that fails for an unrelated reason (a system call error, say) is caught.
    (
        "selftest::missing_fault",
        "FAIL",
        "fault count: expected 1, got 0",
    ),
    ("selftest::wrong_si_pkey", "FAIL", "si_pkey: expected "),
    (
        "selftest::unexpected_sigbus",
        "FAIL",
        "killed by SIGBUS si_code=-6 si_addr=0x",
    ),
    (
        "selftest::prot_none_read",
        "FAIL",
        "killed by SIGSEGV si_code=2 si_addr=0x",
    ),
    ("selftest::hang", "TIMEOUT", "after 1s"),
    ("selftest::after_hang", "PASS", ""),
    ("selftest::abort", "FAIL", "killed by SIGABRT si_code=-6"),
    ("selftest::sigkill_self", "FAIL", "killed by SIGKILL"),
    (
        "selftest::exit_without_verdict",
        "ERROR",
        "case exited with status 3 without a verdict",
    ),
    (
        "selftest::exit0_without_verdict",
        "ERROR",
        "case exited without a verdict",
    ),
    ("selftest::panic", "FAIL", "panicked: deliberate panic"),
    (
        "selftest::leaves_child_running",
        "FAIL",
        "case left processes running after it ended",
    ),
    (
        "selftest::undeclared_feature",
        "FAIL",
        "panicked: case uses AF_UNIX sockets (CONFIG_NET, CONFIG_UNIX) without declaring Feature::UnixSockets in its Needs",
    ),
    (
        "selftest::pkru_clobbered",
        "FAIL",
        "PKRU changed behind the harness's back",
    ),
    (
        "selftest::deny_key0_touch_libc",
        "FAIL",
        "killed by SIGSEGV",
    ),
    ("selftest::leaks_keys_and_pkru", "PASS", ""),
    ("selftest::fresh_state_after_leak", "PASS", ""),
    (
        "selftest::wrong::protection_keys_read_ad",
        "FAIL",
        "si_pkey: expected ",
    ),
    (
        "selftest::wrong::sighandler_pkey0_disabled",
        "FAIL",
        "(si_signo, si_code, si_addr): expected (11, 2, 0), got (11, 1, 0)",
    ),
    (
        "selftest::wrong::ltp_pkey01",
        "FAIL",
        "child's forbidden access: expected ",
    ),
    (
        "selftest::wrong::glibc_double_free",
        "FAIL",
        "): expected Err(ENOENT), got Err(EINVAL)",
    ),
    (
        "selftest::wrong::args_errno",
        "FAIL",
        "pkey_alloc(flags 0x1, 0): expected Err(EPERM), got Err(EINVAL)",
    ),
    (
        "selftest::wrong::lifecycle_fork",
        "FAIL",
        "child's PKRU (the parent's): expected PKRU ",
    ),
    (
        "selftest::wrong::race_si_pkey",
        "FAIL",
        "(expected si_code 4, si_pkey ",
    ),
    (
        "selftest::wrong::mseal_dontneed",
        "FAIL",
        "MADV_DONTNEED on a sealed mapping whose key is write-disabled: expected Err(EACCES), got Err(EPERM)",
    ),
    (
        "selftest::wrong::init_pkru",
        "FAIL",
        "expected PKRU 0x55555555, got 0x55555554",
    ),
    (
        "selftest::wrong::vma_key_kept",
        "FAIL",
        "smaps ProtectionKey after mprotect(PROT_READ): expected Some(",
    ),
    (
        "selftest::wrong::remote_write_from_ad",
        "FAIL",
        "signals raised by write() from the AD buffer: expected 1, got 0",
    ),
    (
        "selftest::wrong::explore_model",
        "FAIL",
        "shrunk sequence: step 1 `",
    ),
];

/// Ported cases run with a deliberately wrong expected value (one per upstream file).
fn wrong_expectations() -> Vec<Case> {
    use crate::access::{Op, Populate, access};
    vec![
        case!("wrong::protection_keys_read_ad", Needs::PKEYS, |c| access(
            c,
            Op::Read,
            AD,
            Populate::No,
            Kind::Anon
        )),
        case!(
            "wrong::sighandler_pkey0_disabled",
            Needs::PKEYS,
            crate::signals::handler_with_pkey0_disabled,
        ),
        case!("wrong::ltp_pkey01", Needs::PKEYS, |c| {
            crate::ltp_pkey01::pkey01(c, AD, libc::PROT_READ, Kind::Anon)
        }),
        case!(
            "wrong::vma_key_kept",
            Needs::PKEYS.feature(Feature::Smaps),
            crate::vma::mprotect_keeps_key,
        ),
        case!(
            "wrong::remote_write_from_ad",
            Needs::PKEYS,
            crate::remote::write_from_ad,
        ),
        case!("wrong::args_errno", Needs::PKEYS, crate::args::alloc_flags),
        case!(
            "wrong::explore_model",
            Needs::PKEYS,
            crate::explore::keys_family,
        )
        .with_timeout(Duration::from_secs(120)),
        case!(
            "wrong::lifecycle_fork",
            Needs::PKEYS,
            crate::lifecycle::fork_copies,
        ),
        case!(
            "wrong::race_si_pkey",
            Needs::PKEYS.feature(Feature::Futex),
            crate::race::rekey_while_touching,
        ),
        case!(
            "wrong::mseal_dontneed",
            Needs::PKEYS
                .feature(Feature::Mseal)
                .feature(Feature::Madvise),
            crate::mseal::dontneed,
        ),
        case!(
            "wrong::init_pkru",
            Needs::PKEYS,
            crate::init_pkru::fresh_process_and_handler,
        ),
        case!(
            "wrong::glibc_double_free",
            Needs::PKEYS,
            crate::keys::double_free,
        ),
    ]
    .into_iter()
    .map(Case::with_wrong_expectation)
    .collect()
}

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    let mut v = base();
    v.extend(wrong_expectations());
    v
}

fn base() -> Vec<Case> {
    vec![
        case!("leaks_keys_and_pkru", Needs::PKEYS, |_| {
            for _ in 0..5 {
                // Leaked on purpose: the next case must not see them.
                pkru::alloc(0, 0)
                    .map(Pkey::into_raw)
                    .map_err(|e| Stop::Fail(e.to_string()))?;
            }
            pkru::write(0x5555_5554 & !pkru::ad_bit(3) | pkru::wd_bit(2));
            Ok(())
        }),
        case!("fresh_state_after_leak", Needs::PKEYS, |c| {
            pkeys_harness::check_pkru!(pkru::read(), init_pkru(c), "PKRU of the next case");
            let mut n = 0;
            while pkru::alloc(0, 0).map(Pkey::into_raw).is_ok() {
                n += 1;
            }
            pkeys_harness::check_eq!(n, 15, "keys allocatable in the next case");
            Ok(())
        }),
        case!("missing_fault", Needs::NONE, missing_fault),
        case!("wrong_si_pkey", Needs::PKEYS, wrong_si_pkey),
        case!("unexpected_sigbus", Needs::NONE, |_| {
            inject::raise(libc::SIGBUS);
            Ok(())
        }),
        case!("prot_none_read", Needs::NONE, |_| {
            let r = Region::rw(Kind::Anon).map_err(crate::util::map_failed)?;
            r.mprotect(libc::PROT_NONE)
                .map_err(|e| Stop::Fail(e.to_string()))?;
            std::hint::black_box(r.read(16));
            Ok(())
        }),
        case!("hang", Needs::NONE, |_| inject::hang()).with_timeout(Duration::from_secs(1)),
        case!("after_hang", Needs::NONE, |_| Ok(())),
        case!("abort", Needs::NONE, |_| inject::abort()),
        case!("sigkill_self", Needs::NONE, |_| {
            inject::raise(libc::SIGKILL);
            Ok(())
        }),
        case!("exit_without_verdict", Needs::NONE, |_| {
            inject::exit_without_verdict(3)
        }),
        case!("exit0_without_verdict", Needs::NONE, |_| {
            inject::exit_without_verdict(0)
        }),
        case!("panic", Needs::NONE, |_| { panic!("deliberate panic") }),
        case!("leaves_child_running", Needs::NONE, |_| {
            inject::leave_child_running();
            Ok(())
        }),
        // Uses AF_UNIX sockets without declaring them: the harness must fail it, naming the
        // feature, on every kernel (the declaration is what turns a kernel without sockets into
        // a SKIP). Needs::NONE, so it runs on any machine.
        case!("undeclared_feature", Needs::NONE, |_| {
            let _ = pkeys_harness::sys::socketpair_stream();
            Ok(())
        }),
        case!("pkru_clobbered", Needs::PKEYS, |_| {
            let v = pkru::read();
            pkru::wrpkru_raw(v ^ pkru::ad_bit(5));
            std::hint::black_box(pkru::read());
            Ok(())
        }),
        case!("deny_key0_touch_libc", Needs::PKEYS, |_| {
            inject::deny_key0_and_call_libc();
            Ok(())
        }),
    ]
}

/// Expects a fault from a read of a page nobody protected.
fn missing_fault(ctx: &mut Ctx) -> Outcome {
    let r = Region::rw(Kind::Anon).map_err(crate::util::map_failed)?;
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(0));
    });
    let pkru_now = if ctx.caps.cpu.ospke { pkru::read() } else { 0 };
    expect_one_pkey_fault(ctx, &cap, 1, r.at(0), pkru_now, init_pkru(ctx)).map(drop)
}

/// A real access-disabled read, checked against the wrong key.
fn wrong_si_pkey(ctx: &mut Ctx) -> Outcome {
    let (r, key) = crate::util::keyed_region(ctx, Kind::Anon, AD)?;
    let before = pkru::read();
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(8));
    });
    expect_one_pkey_fault(ctx, &cap, key + 1, r.at(8), before, init_pkru(ctx)).map(drop)
}
