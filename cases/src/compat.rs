//! `pkey_mprotect(addr, len, prot, -1)` must behave exactly as `mprotect(addr, len, prot)`.
//!
//! References: pkey_mprotect(2) ("pkey -1 ... same as mprotect"). Ports glibc `misc/tst-pkey.c`'s
//! check that `pkey_mprotect` with key -1 is `mprotect`; runs on every machine, with or without PKU.

use crate::util::{maps_perms, smaps_pkey};
use pkeys_harness::case;
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, check_eq};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "pkey_minus_one_is_mprotect::prot",
            Needs::NONE.feature(Feature::Smaps),
            same_protections,
        ),
        case!(
            "pkey_minus_one_is_mprotect::errors",
            Needs::NONE,
            same_errors,
        ),
    ]
}

fn perms(prot: i32) -> String {
    let r = if prot & libc::PROT_READ != 0 {
        'r'
    } else {
        '-'
    };
    let w = if prot & libc::PROT_WRITE != 0 {
        'w'
    } else {
        '-'
    };
    let x = if prot & libc::PROT_EXEC != 0 {
        'x'
    } else {
        '-'
    };
    format!("{r}{w}{x}p")
}

/// For every protection, `pkey_mprotect(-1)` and `mprotect` succeed and leave the same
/// permissions in /proc/self/maps, and the key stays what it was (0).
fn same_protections(ctx: &mut Ctx) -> Outcome {
    let a = Region::rw(Kind::Anon).map_err(crate::util::map_failed)?;
    let b = Region::rw(Kind::Anon).map_err(crate::util::map_failed)?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    for prot in [
        libc::PROT_NONE,
        libc::PROT_READ,
        rw,
        libc::PROT_READ | libc::PROT_EXEC,
        rw | libc::PROT_EXEC,
        rw,
    ] {
        check_eq!(
            a.pkey_mprotect(prot, -1),
            Ok(()),
            "pkey_mprotect(prot {prot:#x}, -1)"
        );
        check_eq!(b.mprotect(prot), Ok(()), "mprotect(prot {prot:#x})");
        let (pa, pb) = (maps_perms(a.addr())?, maps_perms(b.addr())?);
        check_eq!(
            pa,
            perms(prot),
            "permissions after pkey_mprotect(-1, {prot:#x})"
        );
        check_eq!(pb, perms(prot), "permissions after mprotect({prot:#x})");
        let (ka, kb) = (smaps_pkey(a.addr())?, smaps_pkey(b.addr())?);
        check_eq!(
            ka,
            kb,
            "smaps ProtectionKey after pkey_mprotect(-1) vs mprotect (prot {prot:#x})"
        );
        if let Some(k) = ka {
            check_eq!(k, 0, "smaps ProtectionKey after pkey_mprotect(-1)");
        }
    }
    ctx.diag("6 protections: pkey_mprotect(-1) and mprotect agree");
    Ok(())
}

/// Invalid arguments fail with the same errno through both calls: unaligned address (EINVAL),
/// unknown prot bits (EINVAL), an unmapped range (ENOMEM), zero length (success, nothing done).
fn same_errors(ctx: &mut Ctx) -> Outcome {
    let r = Region::map(
        Kind::Anon,
        3 * sys::page_size(),
        libc::PROT_READ | libc::PROT_WRITE,
    )
    .map_err(crate::util::map_failed)?;
    let page = sys::page_size();
    // A hole: unmap the middle page (of the region we own).
    check_eq!(
        r.pkey_mprotect_range(0, 0, libc::PROT_READ, -1),
        Ok(()),
        "pkey_mprotect(len 0, -1)"
    );
    check_eq!(
        r.mprotect_range(0, 0, libc::PROT_READ),
        Ok(()),
        "mprotect(len 0)"
    );
    // Where each call goes: an offset into the region, or the top of the address space.
    let cases: [(&str, Option<usize>, usize, i32, Errno); 3] = [
        (
            "unaligned address",
            Some(1),
            page,
            libc::PROT_READ,
            Errno::EINVAL,
        ),
        (
            "unknown prot bit 0x10",
            Some(0),
            page,
            libc::PROT_READ | 0x10,
            Errno::EINVAL,
        ),
        (
            "range past the end of the address space",
            None,
            page,
            libc::PROT_READ,
            Errno::ENOMEM,
        ),
    ];
    for (what, off, len, prot, errno) in cases {
        let keyed = match off {
            Some(off) => r.pkey_mprotect_range(off, len, prot, -1),
            None => sys::pkey_mprotect_top(len, prot, -1),
        };
        check_eq!(keyed, Err(errno), "pkey_mprotect(-1) with {what}");
        let plain = match off {
            Some(off) => r.mprotect_range(off, len, prot),
            None => sys::mprotect_top(len, prot),
        };
        check_eq!(plain, Err(errno), "mprotect with {what}");
    }
    ctx.diag("len 0, unaligned, bad prot, unmapped: same results");
    Ok(())
}
