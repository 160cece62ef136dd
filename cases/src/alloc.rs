//! Key allocation: rights written to PKRU, exhaustion count.
//!
//! References: pkey_alloc(2), pkey_free(2). Ports `test_pkey_alloc_exhaust` and the allocation
//! checks of `tools/testing/selftests/mm/protection_keys.c`, and glibc `tst-pkey`'s "pkey_alloc
//! sets the rights in the calling thread".

use crate::util::sysfail;
use pkeys_harness::case;
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{self, Errno, PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, check, check_eq, check_pkru, pkru};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!("round_trip", Needs::PKEYS, round_trip),
        case!("exhaust", Needs::PKEYS, |c| exhaust(c, false)),
        case!(
            "exhaust::with_exec_only_key",
            Needs::PKEYS.feature(Feature::Smaps),
            |c| exhaust(c, true),
        ),
    ]
}

/// For each rights value (0, AD, WD, AD|WD), `pkey_alloc(0, rights)` returns a key in 1..=15 and
/// sets exactly that key's two PKRU bits to `rights`, leaving every other bit alone; `pkey_free`
/// succeeds and does not touch PKRU.
fn round_trip(ctx: &mut Ctx) -> Outcome {
    let start = pkru::read();
    ctx.diag(format!("PKRU at start {}", pkru::fmt(start)));
    check_pkru!(
        start,
        crate::util::init_pkru(ctx),
        "PKRU of a fresh case process"
    );
    for rights in [0, AD, WD, AD | WD] {
        let before = pkru::read();
        let key = sysfail("pkey_alloc", pkru::alloc(0, rights))?.into_raw();
        check!(
            (1..16).contains(&key),
            "pkey_alloc(0, {rights}) returned {key}, outside 1..=15"
        );
        let after = pkru::rdpkru();
        check_pkru!(
            after,
            pkru::with_rights(before, key, rights),
            "PKRU after pkey_alloc(0, {rights}) = key {key}"
        );
        ctx.diag(format!(
            "pkey_alloc(0, {rights}) = {key}, PKRU {} -> {}",
            pkru::fmt(before),
            pkru::fmt(after)
        ));
        check_eq!(sys::pkey_free(key), Ok(()), "pkey_free({key})");
        check_pkru!(pkru::read(), after, "PKRU after pkey_free({key})");
    }
    Ok(())
}

/// Allocate until ENOSPC. The kernel promises 15 keys (16 minus key 0), or 14 once a plain
/// `mprotect(PROT_EXEC)` has taken the execute-only key. Every key is distinct and in 1..=15; after
/// freeing them all, as many can be allocated again.
fn exhaust(ctx: &mut Ctx, exec_only: bool) -> Outcome {
    let _code = if exec_only {
        let r = Region::rw(Kind::Anon).map_err(crate::util::map_failed)?;
        sysfail("mprotect(PROT_EXEC)", r.mprotect(libc::PROT_EXEC))?;
        let k = crate::util::smaps_pkey(r.addr())?;
        ctx.diag(format!("execute-only mapping carries key {k:?}"));
        check!(
            matches!(k, Some(1..=15)),
            "mprotect(PROT_EXEC) did not assign an execute-only key: smaps says {k:?}"
        );
        Some(r)
    } else {
        None
    };
    let expected = if exec_only { 14 } else { 15 };
    for round in 0..2 {
        let mut keys = Vec::new();
        let err = loop {
            // Rotating rights, so that pkey_alloc is seen (by alloc_checked) writing all four
            // values, into the high keys (PKRU bits 18-31) as well as the low ones.
            match crate::util::alloc_checked((keys.len() as u32 + round) % 4)? {
                Ok(k) => {
                    check!(
                        (1..16).contains(&k),
                        "pkey_alloc returned {k}, outside 1..=15"
                    );
                    check!(!keys.contains(&k), "pkey_alloc returned key {k} twice");
                    keys.push(k);
                    check!(keys.len() <= 16, "pkey_alloc never failed");
                }
                Err(e) => break e,
            }
        };
        ctx.diag(format!(
            "round {round}: allocated {} keys {:?}, then {err}",
            keys.len(),
            keys
        ));
        check_eq!(err, Errno::ENOSPC, "errno once every key is taken");
        check_eq!(keys.len(), expected, "number of allocatable keys");
        for k in keys {
            check_eq!(sys::pkey_free(k), Ok(()), "pkey_free({k})");
        }
    }
    Ok(())
}
