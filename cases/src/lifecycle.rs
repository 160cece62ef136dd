//! The PKRU register across threads, fork, exec and nested signals; editing the saved PKRU.
//!
//! References: clone(2), fork(2), execve(2), sigaction(2), sigreturn(2), pkeys(7) ("a thread's
//! rights are inherited by threads and children it creates; exec resets them"). Beyond every
//! upstream suite.

use crate::util::{expect_one_pkey_fault, init_pkru, sysfail};
use pkeys_harness::case;
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::rawthread::{LONGJMP_MARK, RawThread};
use pkeys_harness::sys::{self, PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, check_eq, check_pkru, pkru};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "thread_inherits_pkru",
            Needs::PKEYS.feature(Feature::Futex),
            thread_inherits,
        ),
        case!("fork_copies_pkru", Needs::PKEYS, fork_copies),
        case!("exec_resets_to_init_pkru", Needs::PKEYS, exec_resets),
        case!("nested_signals_start_at_init_pkru", Needs::PKEYS, nested),
        case!(
            "siglongjmp_leaves_handler_pkru",
            Needs::PKEYS,
            siglongjmp_leaves_handler_pkru,
        ),
        case!(
            "saved_pkru_edit_applies_at_sigreturn",
            Needs::PKEYS,
            edit_saved,
        ),
    ]
}

/// A distinctive PKRU built from freshly allocated keys: key1 AD, key2 WD, key3 open.
fn distinctive(ctx: &mut Ctx) -> Result<u32, Stop> {
    let a = crate::util::alloc_random_key(ctx, AD, 41)?;
    let b = crate::util::alloc_random_key(ctx, WD, 42)?;
    let c = crate::util::alloc_random_key(ctx, 0, 43)?;
    let _ = (a, b, c);
    let v = pkru::read() & !pkru::ad_bit(9) | pkru::wd_bit(9);
    pkru::write(v);
    Ok(v)
}

/// A thread created after the parent set PKRU starts with the parent's exact value.
fn thread_inherits(ctx: &mut Ctx) -> Outcome {
    let v = distinctive(ctx)?;
    let seen = crate::util::spawn_thread(pkru::rdpkru)
        .join()
        .map_err(|_| Stop::Fail("thread panicked".into()))?;
    check_pkru!(seen, v, "PKRU of the new thread");
    Ok(())
}

/// A forked child starts with the parent's exact PKRU (and the child's changes do not reach the
/// parent).
pub(crate) fn fork_copies(ctx: &mut Ctx) -> Outcome {
    let v = distinctive(ctx)?;
    // Fault injection expects the parent's PKRU with key 10's WD bit flipped.
    let want = if ctx.wrong { v ^ pkru::wd_bit(10) } else { v };
    crate::util::in_child(ctx, "child", |_| {
        let seen = pkru::rdpkru();
        pkru::wrpkru_raw(v ^ pkru::wd_bit(10));
        check_pkru!(seen, want, "child's PKRU (the parent's)");
        Ok(())
    })?;
    check_pkru!(
        pkru::read(),
        v,
        "parent's PKRU after the child changed its own"
    );
    Ok(())
}

/// After `execve`, the new program starts with `init_pkru`, whatever the caller had.
fn exec_resets(ctx: &mut Ctx) -> Outcome {
    let v = distinctive(ctx)?;
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| Stop::Fail(format!("/proc/self/exe: {e}")))?;
    let out = std::process::Command::new(&exe)
        .env(sys::PRINT_PKRU_ENV, "1")
        .output()
        .map_err(|e| Stop::Fail(format!("exec {}: {e}", exe.display())))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ctx.diag(format!(
        "caller PKRU {}, exec'd program printed {text:?}",
        pkru::fmt(v)
    ));
    check_eq!(
        text,
        format!("pkru={}", pkru::fmt(init_pkru(ctx))),
        "PKRU of the exec'd program"
    );
    Ok(())
}

/// SIGUSR1's handler writes PKRU Y and raises SIGUSR2: each handler starts at `init_pkru`; each
/// frame saved the interrupted value (X for the outer, Y for the inner); the outer handler sees Y
/// again after the inner returns, and the main flow X after the outer returns.
fn nested(ctx: &mut Ctx) -> Outcome {
    let x = distinctive(ctx)?;
    let y = x ^ pkru::ad_bit(12) ^ pkru::wd_bit(13);
    fault::install_nested(libc::SIGUSR1, libc::SIGUSR2, y);
    sys::raise(libc::SIGUSR1);
    let after = pkru::rdpkru();
    let got = fault::recorded();
    for f in &got {
        ctx.diag_fault("signal", f);
    }
    check_eq!(got.len(), 2, "handler invocations");
    let init = init_pkru(ctx);
    check_eq!(
        (got[0].signo, got[1].signo),
        (libc::SIGUSR1, libc::SIGUSR2),
        "delivery order"
    );
    check_pkru!(
        got[0].pkru_in_handler,
        init,
        "PKRU entering the outer handler"
    );
    check_pkru!(
        got[1].pkru_in_handler,
        init,
        "PKRU entering the inner handler"
    );
    check_eq!(got[0].saved_pkru, Some(x), "PKRU saved in the outer frame");
    check_eq!(got[1].saved_pkru, Some(y), "PKRU saved in the inner frame");
    check_eq!(
        fault::nested_after_inner(),
        Some(y),
        "outer handler's PKRU after the inner returned"
    );
    check_pkru!(after, x, "PKRU after both handlers returned");
    Ok(())
}

/// A fault handler that replaces the saved PKRU with Z (the key allowed, plus unrelated bits)
/// makes Z the thread's PKRU after sigreturn, exactly.
fn edit_saved(ctx: &mut Ctx) -> Outcome {
    let (r, key) = crate::util::keyed_region(ctx, Kind::Anon, AD)?;
    let before = pkru::read();
    let z = pkru::with_rights(before, key, 0) ^ pkru::wd_bit(14);
    let cap = fault::capture(Fix::SetPkru(z), || {
        std::hint::black_box(r.read(0));
    });
    expect_one_pkey_fault(ctx, &cap, key, r.at(0), before, init_pkru(ctx))?;
    check_pkru!(
        cap.pkru_after,
        z,
        "PKRU after sigreturn with the edited frame"
    );
    Ok(())
}

/// Leaving a handler without sigreturn — by a jump back into the interrupted code, as
/// `siglongjmp` does — keeps the handler's PKRU (`init_pkru`): only sigreturn restores the
/// interrupted value from the frame. Programs that `siglongjmp` out of a SEGV handler must
/// restore PKRU themselves; this records that the kernel does not do it for them (pkeys(7) is
/// silent). The thread is a raw one whose resume point is register-only code.
fn siglongjmp_leaves_handler_pkru(ctx: &mut Ctx) -> Outcome {
    let x = distinctive(ctx)?;
    let st = Region::map(Kind::Anon, 64 << 10, libc::PROT_READ | libc::PROT_WRITE)
        .map_err(crate::util::map_failed)?;
    let t = sysfail(
        "clone",
        RawThread::spawn_longjmp_target(libc::SIGUSR2, st, x),
    )?;
    let ended = t.wait_exit(std::time::Duration::from_secs(5));
    let got = fault::recorded();
    for f in &got {
        ctx.diag_fault("signal", f);
    }
    check_eq!(ended, true, "raw thread ended");
    check_eq!(got.len(), 1, "SIGUSR2 deliveries");
    check_eq!(got[0].saved_pkru, Some(x), "PKRU saved in the frame");
    let init = init_pkru(ctx);
    check_pkru!(got[0].pkru_in_handler, init, "PKRU inside the handler");
    check_eq!(
        t.stack().read_u32(0),
        LONGJMP_MARK,
        "the thread resumed through the jump"
    );
    let after = t.stack().read_u32(4);
    ctx.diag(format!(
        "PKRU before the signal {}, after jumping out of the handler {}",
        pkru::fmt(x),
        pkru::fmt(after)
    ));
    check_pkru!(
        after,
        init,
        "PKRU after leaving the handler without sigreturn"
    );
    Ok(())
}
