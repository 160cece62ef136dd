//! Exact errno for every invalid argument of the three system calls.
//!
//! References: pkey_alloc(2), pkey_free(2), pkey_mprotect(2), mprotect(2). Beyond every upstream
//! suite (the kernel selftest checks only that an out-of-range key fails). Kernel facts used:
//! `pkey_alloc` rejects non-zero flags and rights outside `PKEY_ACCESS_MASK` (3 on x86) with
//! EINVAL; `mm_pkey_is_allocated()` treats the execute-only key as not allocated, so neither
//! `pkey_free` nor `pkey_mprotect` accepts it; `pkey_free(0)` succeeds since 4.17 (2fa9d1cfaf0e).

use crate::util::{forkfail, mapped, smaps_pkey, sysfail};
use pkeys_harness::case;
use pkeys_harness::child;
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, check, check_eq, pkru};

/// `PROT_SEM` (x86 accepts and ignores it).
const PROT_SEM: i32 = 0x8;

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    let smaps = Needs::PKEYS.feature(Feature::Smaps);
    vec![
        case!("alloc_flags", Needs::PKEYS, alloc_flags),
        case!("alloc_rights", Needs::PKEYS, alloc_rights),
        case!("mprotect_range", smaps, mprotect_range),
        case!("mprotect_prot", smaps, mprotect_prot),
        case!("exec_only_key_is_not_allocated", smaps, exec_only_key),
        case!("free_key_0", Needs::PKEYS, free_key_0),
    ]
}

/// `pkey_alloc` with any flag bit set fails with EINVAL and allocates nothing.
pub(crate) fn alloc_flags(ctx: &mut Ctx) -> Outcome {
    let want = if ctx.wrong {
        Errno::EPERM
    } else {
        Errno::EINVAL
    };
    for flags in [1u32, 2, 0x10, 0x8000_0000, u32::MAX] {
        check_eq!(
            sys::pkey_alloc_raw(flags, 0),
            Err(want),
            "pkey_alloc(flags {flags:#x}, 0)"
        );
    }
    let k = sysfail("pkey_alloc(0, 0)", pkru::alloc(0, 0))?.into_raw();
    check_eq!(
        k,
        1,
        "first key after the refused calls (nothing was allocated)"
    );
    Ok(())
}

/// Rights other than 0..=3 fail with EINVAL (x86 has no PKEY_DISABLE_EXECUTE); 0..=3 succeed and
/// set exactly those bits.
fn alloc_rights(_ctx: &mut Ctx) -> Outcome {
    for rights in [4u32, 5, 7, 8, 0x10, 0x100, 0x8000_0000, u32::MAX] {
        check_eq!(
            sys::pkey_alloc_raw(0, rights),
            Err(Errno::EINVAL),
            "pkey_alloc(0, rights {rights:#x})"
        );
    }
    for rights in 0..4u32 {
        let before = pkru::read();
        let k = sysfail("pkey_alloc", pkru::alloc(0, rights))?.into_raw();
        check_eq!(
            pkru::rights_of(pkru::rdpkru(), k),
            rights,
            "rights of key {k} in PKRU"
        );
        check_eq!(
            pkru::rdpkru() & !(3 << (2 * k)),
            before & !(3 << (2 * k)),
            "other keys' bits after pkey_alloc"
        );
        check_eq!(sys::pkey_free(k), Ok(()), "pkey_free({k})");
    }
    Ok(())
}

/// `pkey_mprotect` with a valid key: unaligned start EINVAL; length 0 succeeds and changes
/// nothing; a range with a hole or past the end ENOMEM (the part before the hole may already be
/// changed: mprotect(2)); an unaligned length is rounded up.
fn mprotect_range(ctx: &mut Ctx) -> Outcome {
    let page = sys::page_size();
    let r = mapped(Region::map(
        Kind::Anon,
        3 * page,
        libc::PROT_READ | libc::PROT_WRITE,
    ))?;
    let k = sysfail("pkey_alloc", pkru::alloc(0, 0))?.into_raw();
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    check_eq!(
        r.pkey_mprotect_range(1, page, rw, k),
        Err(Errno::EINVAL),
        "unaligned start"
    );
    check_eq!(r.pkey_mprotect_range(0, 0, rw, k), Ok(()), "length 0");
    check_eq!(smaps_pkey(r.addr())?, Some(0), "key after length 0");
    check_eq!(
        r.pkey_mprotect_range(0, 1, rw, k),
        Ok(()),
        "length 1 (rounded up to a page)"
    );
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(k),
        "key of the first page after length 1"
    );
    check_eq!(
        smaps_pkey(r.addr() + page)?,
        Some(0),
        "key of the second page after length 1"
    );
    check_eq!(
        sys::pkey_mprotect_top(2 * page, rw, k),
        Err(Errno::ENOMEM),
        "range wrapping past the end of the address space"
    );
    // A hole: unmap the middle page of our own region.
    sysfail("munmap(middle)", r.munmap_range(page, page))?;
    check_eq!(
        r.pkey_mprotect_range(0, 3 * page, rw, k),
        Err(Errno::ENOMEM),
        "range with a hole"
    );
    check_eq!(
        r.pkey_mprotect_range(page, page, rw, k),
        Err(Errno::ENOMEM),
        "unmapped range"
    );
    ctx.diag("unaligned EINVAL, len 0 ok, hole/unmapped/wrap ENOMEM");
    Ok(())
}

/// Protection bits outside READ|WRITE|EXEC|SEM (and GROWSDOWN with GROWSUP together) fail with
/// EINVAL with a valid key, as with key -1.
fn mprotect_prot(_ctx: &mut Ctx) -> Outcome {
    let r = mapped(Region::rw(Kind::Anon))?;
    let k = sysfail("pkey_alloc", pkru::alloc(0, 0))?.into_raw();
    for prot in [
        0x10,
        0x20,
        0x40,
        0x100,
        libc::PROT_GROWSDOWN | libc::PROT_GROWSUP,
    ] {
        check_eq!(
            r.pkey_mprotect(prot | libc::PROT_READ, k),
            Err(Errno::EINVAL),
            "pkey_mprotect(prot {prot:#x}|READ, key {k})"
        );
        check_eq!(
            r.pkey_mprotect(prot | libc::PROT_READ, -1),
            Err(Errno::EINVAL),
            "pkey_mprotect(prot {prot:#x}|READ, -1)"
        );
    }
    check_eq!(
        r.pkey_mprotect(libc::PROT_READ | PROT_SEM, k),
        Ok(()),
        "PROT_SEM is accepted"
    );
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(k),
        "key after PROT_READ|PROT_SEM"
    );
    Ok(())
}

/// The execute-only key taken by `mprotect(PROT_EXEC)` is not "allocated" for the user interfaces:
/// `pkey_free` and `pkey_mprotect` refuse it with EINVAL, and `pkey_alloc` never returns it.
fn exec_only_key(ctx: &mut Ctx) -> Outcome {
    let code = mapped(Region::rw(Kind::Anon))?;
    code.write_ret_stub();
    sysfail("mprotect(PROT_EXEC)", code.mprotect(libc::PROT_EXEC))?;
    pkru::read();
    let x = match smaps_pkey(code.addr())? {
        Some(k) if (1..16).contains(&k) => k,
        k => return Err(Stop::Fail(format!("no execute-only key: smaps says {k:?}"))),
    };
    let r = mapped(Region::rw(Kind::Anon))?;
    check_eq!(
        r.pkey_mprotect(libc::PROT_READ, x),
        Err(Errno::EINVAL),
        "pkey_mprotect with the execute-only key {x}"
    );
    check_eq!(
        sys::pkey_free(x),
        Err(Errno::EINVAL),
        "pkey_free of the execute-only key {x}"
    );
    let mut got = Vec::new();
    while let Ok(k) = crate::util::alloc_checked(0)? {
        check!(k != x, "pkey_alloc returned the execute-only key {x}");
        got.push(k);
    }
    check_eq!(
        got.len(),
        14,
        "keys allocatable next to the execute-only key"
    );
    check_eq!(
        smaps_pkey(code.addr())?,
        Some(x),
        "execute-only mapping keeps its key"
    );
    ctx.diag(format!("execute-only key {x}"));
    Ok(())
}

/// `pkey_free(0)` succeeds (since 4.17). Key 0 is then no longer allocated: `pkey_mprotect(…, 0)`
/// fails with EINVAL and the next `pkey_alloc` hands out 0 (pkey_free(2) leaves this undefined;
/// this records the kernel's behaviour). Run in a child so the case's own state is untouched.
fn free_key_0(ctx: &mut Ctx) -> Outcome {
    let r = mapped(Region::rw(Kind::Anon))?;
    let end = forkfail(child::in_child(|_| {
        check_eq!(sys::pkey_free(0), Ok(()), "pkey_free(0)");
        check_eq!(
            r.pkey_mprotect(libc::PROT_READ, 0),
            Err(Errno::EINVAL),
            "pkey_mprotect(…, 0) after the free"
        );
        check_eq!(
            sys::pkey_alloc_raw(0, 0),
            Ok(0),
            "pkey_alloc after freeing 0"
        );
        check_eq!(
            r.pkey_mprotect(libc::PROT_READ, 0),
            Ok(()),
            "pkey_mprotect(…, 0) after re-allocating 0"
        );
        Ok(())
    }))?;
    ctx.diag(format!("child {}", end.ended));
    crate::util::forward(ctx, "child", &end);
    end.outcome("child")
}
