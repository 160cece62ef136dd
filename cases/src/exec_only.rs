//! Execute-only memory: x86 pkeys gate data access, not instruction fetch.
//!
//! References: mprotect(2) (PROT_EXEC), pkeys(7) ("execute-only memory"). Ports
//! `test_executing_on_unreadable_memory` and `test_implicit_mprotect_exec_only_memory` of
//! `protection_keys.c`. Kernel history: 0a0b152083cf (4.17, leaving PROT_EXEC-only drops the
//! execute-only key).

use crate::util::{expect_one_pkey_fault, init_pkru, smaps_pkey, sysfail};
use pkeys_harness::case;
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{PKEY_DISABLE_ACCESS as AD, page_size};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, check, check_eq, pkru};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!("execute_ad_region::anon", Needs::PKEYS, |c| {
            execute_ad(c, Kind::Anon)
        }),
        case!(
            "execute_ad_region::memfd_refault",
            Needs::PKEYS
                .feature(Feature::Memfd)
                .feature(Feature::Madvise),
            |c| execute_ad(c, Kind::Memfd),
        ),
        case!(
            "implicit_mprotect_exec",
            Needs::PKEYS.feature(Feature::Smaps),
            |c| implicit_exec_only(c, Kind::Anon),
        ),
        case!(
            "implicit_mprotect_exec::memfd_refault",
            Needs::PKEYS
                .feature(Feature::Smaps)
                .feature(Feature::Memfd)
                .feature(Feature::Madvise),
            |c| implicit_exec_only(c, Kind::Memfd),
        ),
    ]
}

fn code_region(kind: Kind) -> Result<Region, Stop> {
    let r = Region::map(kind, page_size(), libc::PROT_READ | libc::PROT_WRITE)
        .map_err(crate::util::map_failed)?;
    r.write_ret_stub();
    Ok(r)
}

/// A code page with PROT_EXEC on an access-disabled key still executes (no fault); a data read of
/// it faults once with the key. For the memfd variant the page is dropped (MADV_DONTNEED) first,
/// so the call is an instruction-fetch fault that the kernel must resolve without a pkey check.
fn execute_ad(ctx: &mut Ctx, kind: Kind) -> Outcome {
    let r = code_region(kind)?;
    let key = crate::util::alloc_random_key(ctx, 0, 32)?;
    sysfail(
        "pkey_mprotect(PROT_EXEC)",
        r.pkey_mprotect(libc::PROT_EXEC, key),
    )?;
    pkru::set_rights(key, AD);
    if kind == Kind::Memfd {
        sysfail("madvise(MADV_DONTNEED)", r.madvise(libc::MADV_DONTNEED))?;
    }
    let cap = fault::capture(Fix::AllowKey, || r.call());
    check_eq!(
        cap.faults.len(),
        0,
        "faults when executing a PROT_EXEC page whose key is access-disabled"
    );
    let before = pkru::read();
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(0));
    });
    expect_one_pkey_fault(ctx, &cap, key, r.at(0), before, init_pkru(ctx))?;
    // Upstream's last step (1492-1493): back to PROT_EXEC|PROT_READ with the same key. The call
    // succeeds; the key is still access-disabled, so a data read still faults with it and the
    // code still runs.
    sysfail(
        "pkey_mprotect(PROT_EXEC|PROT_READ)",
        r.pkey_mprotect(libc::PROT_EXEC | libc::PROT_READ, key),
    )?;
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(0));
    });
    expect_one_pkey_fault(ctx, &cap, key, r.at(0), before, init_pkru(ctx))?;
    let cap = fault::capture(Fix::AllowKey, || r.call());
    check_eq!(
        cap.faults.len(),
        0,
        "faults when executing the PROT_EXEC|PROT_READ page whose key is access-disabled"
    );
    Ok(())
}

/// A plain `mprotect(PROT_EXEC)` gives the region the execute-only key (smaps shows it, and this
/// thread's PKRU access-disables it); the code executes, a read faults with that key. Going to
/// PROT_NONE and then PROT_READ|PROT_EXEC drops the key: the page reads without a fault. The
/// memfd variant drops the page (MADV_DONTNEED) before executing it, as upstream does (1524), so
/// the instruction fetch itself faults the page in through the execute-only VMA.
fn implicit_exec_only(ctx: &mut Ctx, kind: Kind) -> Outcome {
    let r = code_region(kind)?;
    sysfail("mprotect(PROT_EXEC)", r.mprotect(libc::PROT_EXEC))?;
    if kind == Kind::Memfd {
        sysfail("madvise(MADV_DONTNEED)", r.madvise(libc::MADV_DONTNEED))?;
    }
    let now = pkru::read();
    let key = match smaps_pkey(r.addr())? {
        Some(k) if (1..16).contains(&k) => k,
        k => {
            return Err(Stop::Fail(format!(
                "smaps ProtectionKey after mprotect(PROT_EXEC): {k:?}, expected 1..=15"
            )));
        }
    };
    ctx.diag(format!("execute-only key {key}, PKRU {}", pkru::fmt(now)));
    check_eq!(
        pkru::rights_of(now, key),
        AD,
        "rights of the execute-only key in PKRU"
    );
    let cap = fault::capture(Fix::AllowKey, || r.call());
    check_eq!(
        cap.faults.len(),
        0,
        "faults when executing execute-only memory"
    );
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(0));
    });
    expect_one_pkey_fault(ctx, &cap, key, r.at(0), now, init_pkru(ctx))?;
    sysfail("mprotect(PROT_NONE)", r.mprotect(libc::PROT_NONE))?;
    sysfail(
        "mprotect(PROT_READ|PROT_EXEC)",
        r.mprotect(libc::PROT_READ | libc::PROT_EXEC),
    )?;
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(0),
        "smaps ProtectionKey after PROT_NONE then PROT_READ|PROT_EXEC"
    );
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(0));
    });
    check!(
        cap.faults.is_empty(),
        "read of the former execute-only page faulted: {:?}",
        cap.faults
    );
    check_eq!(r.read(0), 0xc3, "code byte read back");
    Ok(())
}
