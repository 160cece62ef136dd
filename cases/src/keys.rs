//! Key-number arguments: key 0, unallocated keys, out-of-range keys, allocation never giving 0,
//! double free, reuse of a freed number, allocation state across fork.
//!
//! References: pkey_alloc(2), pkey_free(2), pkey_mprotect(2). Ports `test_mprotect_with_pkey_0`,
//! `test_pkey_syscalls_on_non_allocated_pkey`, `test_pkey_syscalls_bad_args`,
//! `test_pkey_alloc_free_attach_pkey0` and the fork half of `test_pkey_alloc_exhaust` of
//! `protection_keys.c`, and glibc `tst-pkey`'s double free and key reuse. Kernel history:
//! 58ab9a088dda (4.9, out-of-range keys EINVAL), 2fa9d1cfaf0e (4.17, key 0 usable without
//! allocation), a31e184e4f69 (5.0, fork copies the allocation map).

use crate::util::{expect_one_pkey_fault, init_pkru, mapped, smaps_pkey, sysfail};
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{self, Errno, PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, check, check_eq, pkru};
use pkeys_harness::{case, case_id};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for kind in [
        Kind::Anon,
        Kind::Thp,
        Kind::Hugetlb,
        Kind::FileShared,
        Kind::Shm,
    ] {
        let needs = crate::util::needs_for(kind).feature(Feature::Smaps);
        v.push(Case::new(
            case_id!("mprotect_with_pkey_0::{}", kind.name()),
            needs,
            move |c| pkey0(c, kind),
        ));
    }
    v.push(case!(
        "non_allocated",
        Needs::PKEYS.feature(Feature::Smaps),
        non_allocated,
    ));
    v.push(case!("out_of_range", Needs::PKEYS, out_of_range));
    v.push(case!("alloc_never_returns_0", Needs::PKEYS, never_zero));
    v.push(case!("double_free", Needs::PKEYS, double_free));
    v.push(case!(
        "freed_key_reused",
        Needs::PKEYS.feature(Feature::Smaps),
        freed_key_reused,
    ));
    v.push(case!(
        "freed_key_reused::running_threads",
        Needs::PKEYS.feature(Feature::Futex),
        freed_key_reused_running_threads,
    ));
    v.push(case!(
        "exhaustion_survives_fork",
        Needs::PKEYS,
        exhaustion_survives_fork,
    ));
    v
}

/// `pkey_mprotect(…, 0)` works without allocating key 0, and the region can go back to an
/// allocated key; smaps follows each step.
fn pkey0(ctx: &mut Ctx, kind: Kind) -> Outcome {
    let r = mapped(Region::rw(kind))?;
    let key = crate::util::alloc_random_key(ctx, 0, 31)?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    sysfail("pkey_mprotect(key)", r.pkey_mprotect(rw, key))?;
    check_eq!(smaps_pkey(r.addr())?, Some(key), "smaps ProtectionKey");
    check_eq!(r.pkey_mprotect(rw, 0), Ok(()), "pkey_mprotect(…, 0)");
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(0),
        "smaps ProtectionKey after key 0"
    );
    check_eq!(
        r.pkey_mprotect(rw, key),
        Ok(()),
        "pkey_mprotect back to key {key}"
    );
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(key),
        "smaps ProtectionKey after going back"
    );
    Ok(())
}

/// With one key allocated, every other key 1..=15 is refused by `pkey_free` (twice) and
/// `pkey_mprotect` with EINVAL.
fn non_allocated(_ctx: &mut Ctx) -> Outcome {
    let r = mapped(Region::rw(Kind::Anon))?;
    let mine = sysfail("pkey_alloc", pkru::alloc(0, 0))?.into_raw();
    for k in (1..sys::NR_PKEYS).filter(|&k| k != mine) {
        check_eq!(
            sys::pkey_free(k),
            Err(Errno::EINVAL),
            "pkey_free({k}) of an unallocated key"
        );
        check_eq!(
            sys::pkey_free(k),
            Err(Errno::EINVAL),
            "second pkey_free({k})"
        );
        check_eq!(
            r.pkey_mprotect(libc::PROT_READ, k),
            Err(Errno::EINVAL),
            "pkey_mprotect with unallocated key {k}"
        );
    }
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(0),
        "smaps ProtectionKey after the refused calls"
    );
    Ok(())
}

/// Keys outside 0..=15 (and -1 for free) are refused with EINVAL by every call.
fn out_of_range(_ctx: &mut Ctx) -> Outcome {
    let r = mapped(Region::rw(Kind::Anon))?;
    for k in [16, 17, sys::NR_PKEYS + 99, i32::MAX, i32::MIN, -2] {
        check_eq!(
            r.pkey_mprotect(libc::PROT_READ, k),
            Err(Errno::EINVAL),
            "pkey_mprotect with key {k}"
        );
        check_eq!(sys::pkey_free(k), Err(Errno::EINVAL), "pkey_free({k})");
    }
    check_eq!(sys::pkey_free(-1), Err(Errno::EINVAL), "pkey_free(-1)");
    Ok(())
}

/// Allocating every key never returns 0; key 0 then attaches with every protection.
fn never_zero(_ctx: &mut Ctx) -> Outcome {
    let r = mapped(Region::rw(Kind::Anon))?;
    let mut keys = Vec::new();
    while let Ok(k) = crate::util::alloc_checked(0)? {
        check!(k != 0, "pkey_alloc returned key 0");
        keys.push(k);
        check!(keys.len() <= 16, "pkey_alloc never failed");
    }
    for k in keys {
        check_eq!(sys::pkey_free(k), Ok(()), "pkey_free({k})");
    }
    for prot in [
        libc::PROT_READ,
        libc::PROT_WRITE,
        libc::PROT_EXEC,
        libc::PROT_READ | libc::PROT_WRITE,
        7,
    ] {
        check_eq!(
            r.pkey_mprotect(prot, 0),
            Ok(()),
            "pkey_mprotect(prot {prot:#x}, 0)"
        );
    }
    Ok(())
}

/// The second `pkey_free` of a key fails with EINVAL.
pub(crate) fn double_free(ctx: &mut Ctx) -> Outcome {
    let k = sysfail("pkey_alloc", pkru::alloc(0, 0))?.into_raw();
    check_eq!(sys::pkey_free(k), Ok(()), "first pkey_free({k})");
    let want = if ctx.wrong {
        Errno::ENOENT
    } else {
        Errno::EINVAL
    };
    check_eq!(sys::pkey_free(k), Err(want), "second pkey_free({k})");
    Ok(())
}

/// A freed key number is handed out again by the next `pkey_alloc`, and the pages still tagged
/// with it are governed by the new allocation's rights (pkey_free(2) calls using them undefined;
/// this records what the kernel does).
fn freed_key_reused(ctx: &mut Ctx) -> Outcome {
    let r = mapped(Region::rw(Kind::Anon))?;
    let k = sysfail("pkey_alloc", pkru::alloc(0, 0))?.into_raw();
    sysfail(
        "pkey_mprotect",
        r.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, k),
    )?;
    check_eq!(
        sys::pkey_free(k),
        Ok(()),
        "pkey_free({k}) while pages carry it"
    );
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(k),
        "smaps ProtectionKey after pkey_free"
    );
    let again = sysfail("pkey_alloc", pkru::alloc(0, AD))?.into_raw();
    check_eq!(again, k, "key number handed out after the free");
    let before = pkru::read();
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(0));
    });
    expect_one_pkey_fault(ctx, &cap, k, r.at(0), before, init_pkru(ctx))?;
    Ok(())
}

/// tst-pkey's reuse block: a thread started while this thread had full access to key `k` keeps
/// that access after `pkey_free(k)` and a new `pkey_alloc(0, PKEY_DISABLE_WRITE)` that hands `k`
/// out again, and so does a thread it starts afterwards; the allocating thread gets the new
/// rights (its page stays readable, a write faults with `k`). glibc's test calls this "somewhat
/// dubious" and records it; so does this case.
fn freed_key_reused_running_threads(ctx: &mut Ctx) -> Outcome {
    use std::sync::mpsc;
    let r = mapped(Region::rw(Kind::Anon))?;
    let k = crate::util::alloc_random_key(ctx, 0, 44)?;
    sysfail(
        "pkey_mprotect",
        r.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, k),
    )?;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let older = crate::util::spawn_thread(move || {
        let _ = go_rx.recv();
        let mine = pkru::rdpkru();
        let next = crate::util::spawn_thread(pkru::rdpkru).join().ok();
        (mine, next)
    });
    check_eq!(sys::pkey_free(k), Ok(()), "pkey_free({k})");
    // pkey_alloc hands out the lowest free key: take keys until k comes back.
    let mut others = Vec::new();
    let again = loop {
        match crate::util::alloc_checked(WD)? {
            Ok(n) if n == k => break n,
            Ok(n) => others.push(n),
            Err(e) => {
                return Err(Stop::Fail(format!(
                    "key {k} not handed out again before {e} (got {others:?})"
                )));
            }
        }
    };
    ctx.diag(format!(
        "key {again} handed out again after {} other key(s)",
        others.len()
    ));
    let before = pkru::read();
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(0));
    });
    check_eq!(
        cap.faults.len(),
        0,
        "faults on a read of key {k}'s page (WD)"
    );
    let cap = fault::capture(Fix::AllowKey, || r.write(0, 1));
    expect_one_pkey_fault(ctx, &cap, k, r.at(0), before, init_pkru(ctx))?;
    let _ = go_tx.send(());
    let (older_pkru, next) = older
        .join()
        .map_err(|_| Stop::Fail("older thread panicked".into()))?;
    check_eq!(
        pkru::rights_of(older_pkru, k),
        0,
        "key {k}'s rights in the thread started before the free ({})",
        pkru::fmt(older_pkru)
    );
    check_eq!(
        next.map(|p| pkru::rights_of(p, k)),
        Some(0),
        "key {k}'s rights in a thread the older thread started afterwards"
    );
    for n in others {
        check_eq!(sys::pkey_free(n), Ok(()), "pkey_free({n})");
    }
    Ok(())
}

/// With every key allocated, a forked child also gets ENOSPC (the allocation map is copied); a key
/// the child frees is the one its next allocation returns. The parent waits for the child's
/// verdict (upstream lets the parent exit 0 early).
fn exhaustion_survives_fork(ctx: &mut Ctx) -> Outcome {
    let mut keys = Vec::new();
    while let Ok(k) = crate::util::alloc_checked(0)? {
        keys.push(k);
        check!(keys.len() <= 16, "pkey_alloc never failed");
    }
    ctx.diag(format!("parent allocated {} keys", keys.len()));
    let last = *keys
        .last()
        .ok_or_else(|| Stop::Fail("no key allocated".into()))?;
    crate::util::in_child(ctx, "child", |_| {
        check_eq!(
            sys::pkey_alloc_raw(0, 0),
            Err(Errno::ENOSPC),
            "pkey_alloc with every key taken"
        );
        check_eq!(sys::pkey_free(last), Ok(()), "pkey_free({last})");
        check_eq!(
            sys::pkey_alloc_raw(0, 0),
            Ok(last),
            "pkey_alloc after the free"
        );
        Ok(())
    })
}
