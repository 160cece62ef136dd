//! Signal delivery with restrictive PKRU: handlers with key 0 denied, stacks on other keys,
//! PKRU across handlers and sigreturn.
//!
//! References: sigaction(2), sigaltstack(2), sigreturn(2), pkeys(7); kernel
//! `Documentation/core-api/protection-keys.rst`. Ports the 5 tests of
//! `tools/testing/selftests/mm/pkey_sighandler_tests.c` (since 6.12). The threads that run with
//! key 0 denied are raw `clone`s running register-only code (`pkeys_harness::rawthread`).
//! Kernel history: 70044df250d0 (handler delivered when the stack's key is denied, 6.12),
//! d10b554919d4 (sigreturn restores the altstack before PKRU, 6.12), ae6012d72fa6 / 6a1853bdf178
//! (PKRU restored after any signal, 6.13, stable 6.12.5). Older kernels kill the process with
//! SIGSEGV instead: the harness reports that as FAIL "killed by SIGSEGV", which the expectations
//! turn into XFAIL for those kernels.

use crate::util::{init_pkru, sysfail};
use pkeys_harness::case;
use pkeys_harness::fault::{self, Fault};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::rawthread::{Action, RESUMED_MARK, RawThread};
use pkeys_harness::{Case, Ctx, Needs, Outcome, Stop, check_eq, check_pkru, pkru, sys};
use std::time::Duration;

const STACK: usize = 64 << 10;
/// `si_code` of a fault on an unmapped address.
const SEGV_MAPERR: i32 = 1;
const WAIT: Duration = Duration::from_secs(5);
/// Every key access-disabled, key 0 included (`pkey_reg_restrictive_default()` upstream).
const DENY_ALL: u32 = 0x5555_5555;

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "handler_with_pkey0_disabled",
            Needs::PKEYS,
            handler_with_pkey0_disabled,
        ),
        case!(
            "handler_cannot_access_stack",
            Needs::PKEYS,
            handler_cannot_access_stack,
        ),
        case!(
            "handler_stack_on_other_pkey",
            Needs::PKEYS,
            handler_stack_on_other_pkey,
        ),
        case!("pkru_preserved_after_sigusr1", Needs::PKEYS, |c| {
            pkru_preserved_after_sigusr1(c, None)
        }),
        case!("pkru_preserved_after_sigusr1::zero", Needs::PKEYS, |c| {
            pkru_preserved_after_sigusr1(c, Some(0))
        }),
        case!(
            "sigreturn_restores_altstack_first",
            Needs::PKEYS,
            sigreturn_restores_altstack_first,
        ),
    ]
}

fn stack() -> Result<Region, Stop> {
    Region::map(Kind::Anon, STACK, libc::PROT_READ | libc::PROT_WRITE)
        .map_err(crate::util::map_failed)
}

/// A thread stack carrying a freshly allocated key, a key-0 altstack, and the key.
fn keyed_stack_and_altstack(ctx: &mut Ctx) -> Result<(Region, Region, i32), Stop> {
    let st = stack()?;
    let alt = stack()?;
    let key = crate::util::alloc_random_key(ctx, 0, 35)?;
    sysfail(
        "pkey_mprotect(stack)",
        st.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, key),
    )?;
    Ok((st, alt, key))
}

/// Start a raw thread, wait for one recorded signal and for the thread to end.
fn run_thread(
    ctx: &mut Ctx,
    st: Region,
    thread_pkru: u32,
    alt: Option<Region>,
    action: Action,
) -> Result<(Fault, RawThread), Stop> {
    let t = sysfail("clone", RawThread::spawn(st, thread_pkru, alt, action))?;
    ctx.diag(format!(
        "raw thread {} runs with PKRU {}; the kernel must open key 0 to write the signal frame \
         and read it back at sigreturn (70044df250d0, d10b554919d4), else it kills the process \
         with SIGSEGV",
        t.tid(),
        pkru::fmt(thread_pkru)
    ));
    let got = fault::wait_recorded(1, WAIT);
    let ended = t.wait_exit(WAIT);
    for f in &got {
        ctx.diag_fault("signal", f);
    }
    check_eq!(got.len(), 1, "signals delivered to the handler");
    check_eq!(ended, true, "raw thread ended");
    Ok((got[0], t))
}

/// A thread denies every key, key 0 (its own stack) included, and writes to address 0: the
/// SIGSEGV handler must still run (on that stack, with `init_pkru`) and see SEGV_MAPERR at 0;
/// the frame holds the thread's PKRU. Port of `test_sigsegv_handler_with_pkey0_disabled`.
pub(crate) fn handler_with_pkey0_disabled(ctx: &mut Ctx) -> Outcome {
    let st = stack()?;
    fault::install_recorder(libc::SIGSEGV, true, false);
    let (f, _t) = run_thread(ctx, st, DENY_ALL, None, Action::WriteNull)?;
    check_eq!(
        (f.signo, f.code, f.addr),
        (libc::SIGSEGV, SEGV_MAPERR + ctx.skew(), 0),
        "(si_signo, si_code, si_addr)"
    );
    check_pkru!(f.pkru_in_handler, init_pkru(ctx), "PKRU inside the handler");
    check_eq!(f.saved_pkru, Some(DENY_ALL), "PKRU saved in the frame");
    Ok(())
}

/// A thread denies every key and pushes to its stack (key 0): SEGV_PKUERR with si_pkey 0 at the
/// pushed address, delivered to a handler that runs with `init_pkru`. Port of
/// `test_sigsegv_handler_cannot_access_stack` (upstream checks si_code only).
fn handler_cannot_access_stack(ctx: &mut Ctx) -> Outcome {
    let st = stack()?;
    fault::install_recorder(libc::SIGSEGV, true, false);
    let (f, t) = run_thread(ctx, st, DENY_ALL, None, Action::TouchStack)?;
    let st = t.stack();
    check_eq!(
        (f.signo, f.code, f.pkey),
        (libc::SIGSEGV, sys::SEGV_PKUERR, 0),
        "(si_signo, si_code, si_pkey)"
    );
    let want = st.addr() + st.len() - 8;
    check_eq!(
        format!("{:#x}", f.addr),
        format!("{want:#x}"),
        "si_addr (the pushed stack slot)"
    );
    check_pkru!(f.pkru_in_handler, init_pkru(ctx), "PKRU inside the handler");
    check_eq!(f.saved_pkru, Some(DENY_ALL), "PKRU saved in the frame");
    Ok(())
}

/// The thread's stack carries an allocated key, its altstack key 0; the thread allows only the
/// stack's key and writes to address 0: the handler runs on the altstack and sees SEGV_MAPERR at
/// 0. Port of `test_sigsegv_handler_with_different_pkey_for_stack`.
fn handler_stack_on_other_pkey(ctx: &mut Ctx) -> Outcome {
    let (st, alt, key) = keyed_stack_and_altstack(ctx)?;
    fault::install_recorder(libc::SIGSEGV, true, true);
    let tp = pkru::with_rights(DENY_ALL, key, 0);
    ctx.diag(format!("stack key {key}, thread PKRU {}", pkru::fmt(tp)));
    let (f, _t) = run_thread(ctx, st, tp, Some(alt), Action::WriteNull)?;
    check_eq!(
        (f.signo, f.code, f.addr),
        (libc::SIGSEGV, SEGV_MAPERR, 0),
        "(si_signo, si_code, si_addr)"
    );
    check_pkru!(f.pkru_in_handler, init_pkru(ctx), "PKRU inside the handler");
    check_eq!(f.saved_pkru, Some(tp), "PKRU saved in the frame");
    Ok(())
}

/// PKRU allowing keys 0, 3 and 7 only is bit-identical after a SIGUSR1 handler returns; the
/// handler ran with `init_pkru` and the frame saved the value. Port of
/// `test_pkru_preserved_after_sigusr1` (the 6.13 fix). The `zero` variant uses PKRU 0, the value
/// for which AMD CPUs clear XINUSE[PKRU] — the case the 6.13 fix is about.
fn pkru_preserved_after_sigusr1(ctx: &mut Ctx, value: Option<u32>) -> Outcome {
    let v = value.unwrap_or_else(|| {
        let v = pkru::with_rights(DENY_ALL, 0, 0);
        pkru::with_rights(pkru::with_rights(v, 3, 0), 7, 0)
    });
    fault::install_recorder(libc::SIGUSR1, false, false);
    pkru::write(v);
    sys::raise(libc::SIGUSR1);
    let after = pkru::rdpkru();
    let got = fault::recorded();
    pkru::write(init_pkru(ctx));
    for f in &got {
        ctx.diag_fault("signal", f);
    }
    check_pkru!(after, v, "PKRU after the SIGUSR1 handler returned");
    check_eq!(got.len(), 1, "SIGUSR1 deliveries");
    check_eq!(got[0].signo, libc::SIGUSR1, "si_signo");
    check_pkru!(
        got[0].pkru_in_handler,
        init_pkru(ctx),
        "PKRU inside the handler"
    );
    check_eq!(got[0].saved_pkru, Some(v), "PKRU saved in the frame");
    Ok(())
}

/// A thread on a stack with its own key, key 0 denied, raises SIGUSR2 handled on a key-0
/// altstack; sigreturn must read the frame from the altstack before restoring the thread's PKRU,
/// and the thread must resume: it stores a mark in its own stack memory, which the case checks
/// (upstream passes whenever the process survives). Port of `test_pkru_sigreturn` (the 6.12 fix).
fn sigreturn_restores_altstack_first(ctx: &mut Ctx) -> Outcome {
    let (st, alt, key) = keyed_stack_and_altstack(ctx)?;
    fault::install_recorder(libc::SIGUSR2, false, true);
    let tp = pkru::with_rights(DENY_ALL, key, 0);
    let (f, t) = run_thread(ctx, st, tp, Some(alt), Action::RaiseUsr2ThenMark)?;
    let st = t.stack();
    check_eq!(f.signo, libc::SIGUSR2, "si_signo");
    check_pkru!(f.pkru_in_handler, init_pkru(ctx), "PKRU inside the handler");
    check_eq!(f.saved_pkru, Some(tp), "PKRU saved in the frame");
    check_eq!(
        st.read_u32(0),
        RESUMED_MARK,
        "mark stored by the thread after sigreturn"
    );
    Ok(())
}
