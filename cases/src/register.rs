//! The PKRU register itself: the XSAVE init state, threads, and the value signal handlers see.
//!
//! References: pkeys(7), pkey_alloc(2) ("the rights are set in the calling thread only"),
//! clone(2), sigaction(2). Ports `test_pkey_init_state` of `protection_keys.c` (the 5.13 fix
//! "x86/pkru: Write hardware init value to PKRU when xstate is init"), and glibc `tst-pkey`'s
//! thread checks: `pkey_alloc` sets rights in the calling thread only; a thread started before the
//! allocation sees the new key with `init_pkru`'s rights; one started after inherits the
//! creator's; all keys but 0 are access-disabled inside a signal handler.

use crate::util::{expect_one_pkey_fault, init_pkru, mapped, sysfail};
use pkeys_harness::case;
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, check_eq, check_pkru, pkru, sys};
use std::sync::mpsc;

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "init_state_survives_context_switches",
            Needs::PKEYS,
            init_state,
        ),
        case!(
            "alloc_rights_are_per_thread",
            Needs::PKEYS.feature(Feature::Futex),
            per_thread,
        ),
        case!(
            "handler_starts_with_init_pkru",
            Needs::PKEYS,
            handler_init_pkru,
        ),
    ]
}

/// Allocate every key with no restriction (PKRU 0), force PKRU into its XSAVE init state (XSAVE,
/// clear XSTATE_BV[9], XRSTOR), then read it 100000 times across sched_yield and sleeps: it must
/// read 0 every time.
fn init_state(ctx: &mut Ctx) -> Outcome {
    let mut keys = Vec::new();
    while let Ok(k) = crate::util::alloc_checked(0)? {
        keys.push(k);
    }
    pkru::write(0);
    pkru::force_init_state();
    for i in 0..100_000u32 {
        if i % 1000 == 0 {
            std::thread::yield_now();
        }
        if i % 20_000 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let v = pkru::rdpkru();
        if v != 0 {
            return Err(Stop::Fail(format!(
                "PKRU in init state read {} at read {i}, expected 0",
                pkru::fmt(v)
            )));
        }
    }
    ctx.diag(format!(
        "{} keys allocated, PKRU stayed 0 over 100000 reads",
        keys.len()
    ));
    for k in keys {
        check_eq!(sys::pkey_free(k), Ok(()), "pkey_free({k})");
    }
    Ok(())
}

/// A thread started before `pkey_alloc(0, 0)` keeps `init_pkru`'s rights for the new key, and its
/// access to a page carrying the key faults with that key (when `init_pkru` denies it); a thread started after inherits the
/// creator's PKRU.
fn per_thread(ctx: &mut Ctx) -> Outcome {
    let r = std::sync::Arc::new(mapped(Region::rw(Kind::Anon))?);
    let (go_tx, go_rx) = mpsc::channel::<std::sync::Arc<Region>>();
    let (res_tx, res_rx) = mpsc::channel::<(u32, Vec<fault::Fault>, Option<u32>)>();
    let before_thread = crate::util::spawn_thread(move || {
        // No region: the case stopped before handing it over, and has its verdict.
        let Ok(shared) = go_rx.recv() else {
            return;
        };
        let p = pkru::rdpkru();
        pkru::sync_shadow();
        let cap = fault::capture(Fix::AllowKey, || {
            std::hint::black_box(shared.read(0));
        });
        // tst-pkey's next_thread: a thread the older thread starts after the allocation
        // inherits the older thread's PKRU, not the allocating thread's.
        let next = crate::util::spawn_thread(pkru::rdpkru).join().ok();
        let _ = res_tx.send((p, cap.faults, next));
    });
    let init = init_pkru(ctx);
    let key = crate::util::alloc_random_key(ctx, 0, 36)?;
    sysfail(
        "pkey_mprotect",
        r.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, key),
    )?;
    let mine = pkru::read();
    check_pkru!(
        mine,
        pkru::with_rights(init, key, 0),
        "creator's PKRU after pkey_alloc(0, 0)"
    );
    let after = crate::util::spawn_thread(pkru::rdpkru)
        .join()
        .map_err(|_| Stop::Fail("thread panicked".into()))?;
    check_pkru!(after, mine, "PKRU of a thread started after pkey_alloc");
    let _ = go_tx.send(std::sync::Arc::clone(&r));
    let (seen, faults, next) = res_rx
        .recv()
        .map_err(|_| Stop::Fail("thread started before pkey_alloc died".into()))?;
    let _ = before_thread.join();
    check_pkru!(seen, init, "PKRU of a thread started before pkey_alloc");
    check_eq!(
        next.map(pkru::fmt),
        Some(pkru::fmt(init)),
        "PKRU of a thread that the older thread started after pkey_alloc"
    );
    let cap = fault::Capture {
        faults,
        pkru_after: 0,
    };
    if pkru::rights_of(init, key) & pkeys_harness::sys::PKEY_DISABLE_ACCESS != 0 {
        expect_one_pkey_fault(ctx, &cap, key, r.addr(), init, init)?;
    } else {
        // A non-default init_pkru that leaves this key open: the older thread may read.
        check_eq!(
            cap.faults.len(),
            0,
            "faults in the older thread (init_pkru allows key {key})"
        );
    }
    Ok(())
}

/// With every key allocated and unrestricted (PKRU 0), a SIGUSR1 handler still starts with
/// `init_pkru` (all keys but 0 access-disabled by default), and PKRU is 0 again after it returns.
fn handler_init_pkru(ctx: &mut Ctx) -> Outcome {
    while crate::util::alloc_checked(0)?.is_ok() {}
    pkru::write(0);
    fault::install_recorder(libc::SIGUSR1, false, false);
    sys::raise(libc::SIGUSR1);
    let got = fault::recorded();
    check_eq!(got.len(), 1, "SIGUSR1 deliveries");
    ctx.diag_fault("signal", &got[0]);
    check_pkru!(
        got[0].pkru_in_handler,
        init_pkru(ctx),
        "PKRU inside the handler"
    );
    check_eq!(got[0].saved_pkru, Some(0), "PKRU saved in the frame");
    check_pkru!(pkru::read(), 0, "PKRU after the handler returned");
    Ok(())
}
