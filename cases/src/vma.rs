//! Key stickiness and the life of a VMA: which operations keep a region's protection key, which
//! drop it, and how keys split and merge VMAs.
//!
//! References: pkey_mprotect(2) and mprotect(2) ("pkey_mprotect(…, -1) is mprotect"), mremap(2),
//! mmap(2) (MAP_FIXED, MAP_POPULATE, MAP_LOCKED), munmap(2), fork(2), madvise(2) (MADV_DONTNEED,
//! MADV_MERGEABLE), mlock(2), pkey_free(2), proc(5) (`/proc/PID/smaps` `ProtectionKey:`), kernel
//! `Documentation/admin-guide/mm/ksm.rst`. These go beyond every upstream suite: the kernel
//! selftest has only a TODO for `pkey_mprotect(-1)` and checks no VMA operation, LTP and glibc
//! none. Every check is exact: the smaps key of every VMA in the range, the number of VMAs, and
//! one fault with `si_code`, `si_pkey`, `si_addr` and the frame's PKRU after each operation.

use crate::util::{expect_one_pkey_fault, init_pkru, mapped, smaps_entries, smaps_pkey, sysfail};
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{self, Errno, PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, check, check_eq, check_pkru, pkru};
use pkeys_harness::{case, case_id};
use std::time::Duration;

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    // Every case here reads smaps (the key of each VMA is the point).
    let p = Needs::PKEYS.feature(Feature::Smaps);
    let mut v = vec![
        case!("mprotect_keeps_key", p, mprotect_keeps_key),
        case!(
            "pkey_mprotect_minus1_keeps_key",
            p,
            pkey_mprotect_minus1_keeps_key,
        ),
        case!("mprotect_exec_replaces_key", p, mprotect_exec_replaces_key),
        case!("partial_split_and_merge", p, partial_split_and_merge),
        case!("adjacent_same_key_merge", p, adjacent_same_key_merge),
        case!("mremap_move", p, |c| mremap(c, 1)),
        case!("mremap_grow", p, |c| mremap(c, 3)),
        case!("munmap_then_mmap_fixed_key0", p, |c| {
            remap_fixed(c, true)
        }),
        case!("mmap_fixed_over_key0", p, |c| remap_fixed(c, false)),
        case!("fork_child_keeps_keys", p, fork_child_keeps_keys),
        case!("free_key_in_use", p, free_key_in_use),
    ];
    for kind in [Kind::Anon, Kind::Memfd, Kind::FileShared] {
        v.push(Case::new(
            case_id!("dontneed_refault_keeps_key::{}", kind.name()),
            crate::util::needs_with_kind(p, kind).feature(Feature::Madvise),
            move |c| dontneed_refault(c, kind),
        ));
    }
    for (how, name) in [
        (Lock::Mlock, "mlock"),
        (Lock::Mlock2OnFault, "mlock2_onfault"),
        (Lock::MapLocked, "map_locked"),
        (Lock::MapPopulate, "map_populate"),
    ] {
        v.push(Case::new(case_id!("kinds::{name}"), p, move |c| {
            locked_kind(c, how)
        }));
    }
    for (rights, rn) in [(AD, "ad"), (WD, "wd")] {
        v.push(Case::new(
            case_id!("mlock_under_denied_key::{rn}"),
            p,
            move |c| mlock_under_denied_key(c, rights),
        ));
    }
    v.push(
        case!(
            "kinds::ksm_merged",
            p.feature(Feature::Ksm).feature(Feature::Madvise),
            ksm_merged,
        )
        .with_timeout(Duration::from_secs(40)),
    );
    v
}

/// Print the entries of `[start, end)` and return their keys in address order.
fn entry_keys(ctx: &mut Ctx, what: &str, start: usize, end: usize) -> Result<Vec<i32>, Stop> {
    let e = smaps_entries(start, end)?;
    let shown: Vec<String> = e
        .iter()
        .map(|(a, b, k)| format!("{a:#x}-{b:#x} key {k:?}"))
        .collect();
    ctx.diag(format!("{what}: {}", shown.join(", ")));
    e.iter()
        .map(|&(a, _, k)| k.ok_or_else(|| Stop::Fail(format!("no ProtectionKey for {a:#x}"))))
        .collect()
}

/// Deny `key` (AD), read byte `off` of `r`, and expect exactly one pkey fault with `want_key` at
/// that address. The key is allowed again afterwards.
fn ad_read_faults(ctx: &mut Ctx, r: &Region, off: usize, key: i32, want_key: i32) -> Outcome {
    pkru::set_rights(key, AD);
    let before = pkru::read();
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(off));
    });
    pkru::set_rights(key, 0);
    expect_one_pkey_fault(ctx, &cap, want_key, r.at(off), before, init_pkru(ctx))?;
    Ok(())
}

/// Deny every key but 0 (AD) and read byte `off` of `r`: no fault expected.
fn read_without_fault(r: &Region, off: usize, what: &str) -> Outcome {
    let cap = fault::capture(Fix::AllowKey, || {
        std::hint::black_box(r.read(off));
    });
    check!(
        cap.faults.is_empty(),
        "{what}: read faulted: {:?}",
        cap.faults
    );
    Ok(())
}

/// A populated anonymous region of `pages` pages, and a fresh key (all rights) on all of it.
fn keyed(ctx: &mut Ctx, pages: usize) -> Result<(Region, i32), Stop> {
    let r = mapped(Region::map(Kind::Anon, pages * sys::page_size(), RW))?;
    r.populate();
    let key = crate::util::alloc_random_key(ctx, 0, 7)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(RW, key))?;
    Ok((r, key))
}

/// A plain `mprotect` keeps the region's key (mprotect(2): the key is a VMA attribute that only
/// pkey_mprotect changes): RW → R → RW leaves smaps `ProtectionKey` at the key, and an AD read
/// afterwards faults with it. Fault injection: expects the key + 1 in smaps.
pub(crate) fn mprotect_keeps_key(ctx: &mut Ctx) -> Outcome {
    let (r, key) = keyed(ctx, 1)?;
    let want = key + ctx.skew();
    sysfail("mprotect(PROT_READ)", r.mprotect(libc::PROT_READ))?;
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(want),
        "smaps ProtectionKey after mprotect(PROT_READ)"
    );
    sysfail("mprotect(PROT_READ|PROT_WRITE)", r.mprotect(RW))?;
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(want),
        "smaps ProtectionKey after mprotect back to RW"
    );
    ad_read_faults(ctx, &r, 5, key, want)
}

/// `pkey_mprotect(…, -1)` behaves as `mprotect` and keeps the key (pkey_mprotect(2); the upstream
/// selftest leaves this as a TODO): R then RW with key -1, smaps and an AD fault show the key.
fn pkey_mprotect_minus1_keeps_key(ctx: &mut Ctx) -> Outcome {
    let (r, key) = keyed(ctx, 1)?;
    sysfail(
        "pkey_mprotect(PROT_READ, -1)",
        r.pkey_mprotect(libc::PROT_READ, -1),
    )?;
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(key),
        "smaps ProtectionKey after pkey_mprotect(PROT_READ, -1)"
    );
    sysfail("pkey_mprotect(RW, -1)", r.pkey_mprotect(RW, -1))?;
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(key),
        "smaps ProtectionKey after pkey_mprotect(RW, -1)"
    );
    ad_read_faults(ctx, &r, 9, key, key)
}

/// The one exception to stickiness: a plain `mprotect(PROT_EXEC)` of a region carrying an
/// allocated key replaces that key with the execute-only key (x86 `arch_override_mprotect_pkey`
/// looks only at the requested prot when the key argument is -1), and leaving PROT_EXEC-only
/// then drops to key 0, not back to the original key. pkeys(7) and mprotect(2) do not say so.
fn mprotect_exec_replaces_key(ctx: &mut Ctx) -> Outcome {
    let (r, key) = keyed(ctx, 1)?;
    sysfail("mprotect(PROT_EXEC)", r.mprotect(libc::PROT_EXEC))?;
    let exec_key = smaps_pkey(r.addr())?;
    pkru::read();
    ctx.diag(format!(
        "allocated key {key}; after mprotect(PROT_EXEC) smaps says {exec_key:?}"
    ));
    check!(
        matches!(exec_key, Some(e) if e != key && e != 0),
        "smaps ProtectionKey after mprotect(PROT_EXEC): expected the execute-only key (not {key}, not 0), got {exec_key:?}"
    );
    sysfail("mprotect(PROT_READ|PROT_WRITE)", r.mprotect(RW))?;
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(0),
        "smaps ProtectionKey after mprotect(RW) of the execute-only region"
    );
    pkru::set_rights(key, AD);
    let r2 = read_without_fault(&r, 0, "page back on key 0 with the old key denied");
    pkru::set_rights(key, 0);
    r2
}

/// `pkey_mprotect` of the middle page of three splits the VMA in three (keys 0, k, 0); re-keying
/// the middle page to 0 merges them back into one. Faults follow the keys page by page.
fn partial_split_and_merge(ctx: &mut Ctx) -> Outcome {
    let pg = sys::page_size();
    let r = mapped(Region::map(Kind::Anon, 3 * pg, RW))?;
    r.populate();
    let (start, end) = (r.addr(), r.addr() + 3 * pg);
    check_eq!(
        entry_keys(ctx, "before", start, end)?,
        vec![0],
        "VMA keys of the fresh 3-page region"
    );
    let key = crate::util::alloc_random_key(ctx, 0, 8)?;
    sysfail(
        "pkey_mprotect(middle page)",
        r.pkey_mprotect_range(pg, pg, RW, key),
    )?;
    check_eq!(
        entry_keys(ctx, "after keying the middle page", start, end)?,
        vec![0, key, 0],
        "VMA keys after pkey_mprotect of the middle page"
    );
    pkru::set_rights(key, AD);
    read_without_fault(&r, 0, "first page (key 0)")?;
    read_without_fault(&r, 2 * pg + 3, "last page (key 0)")?;
    pkru::set_rights(key, 0);
    ad_read_faults(ctx, &r, pg + 11, key, key)?;
    sysfail(
        "pkey_mprotect(middle page, 0)",
        r.pkey_mprotect_range(pg, pg, RW, 0),
    )?;
    check_eq!(
        entry_keys(ctx, "after re-keying the middle page to 0", start, end)?,
        vec![0],
        "VMA keys after re-keying the middle page to 0 (merged)"
    );
    pkru::set_rights(key, AD);
    let res = read_without_fault(&r, pg + 11, "middle page back on key 0");
    pkru::set_rights(key, 0);
    res
}

/// Two neighbouring pages on different keys are two VMAs; giving the second page the first one's
/// key merges them into one VMA with that key, and a fault in the second page reports it.
fn adjacent_same_key_merge(ctx: &mut Ctx) -> Outcome {
    let pg = sys::page_size();
    let r = mapped(Region::map(Kind::Anon, 2 * pg, RW))?;
    r.populate();
    let (start, end) = (r.addr(), r.addr() + 2 * pg);
    let k1 = crate::util::alloc_random_key(ctx, 0, 37)?;
    let k2 = crate::util::alloc_random_key(ctx, 0, 38)?;
    sysfail(
        "pkey_mprotect(page 0)",
        r.pkey_mprotect_range(0, pg, RW, k1),
    )?;
    sysfail(
        "pkey_mprotect(page 1)",
        r.pkey_mprotect_range(pg, pg, RW, k2),
    )?;
    check_eq!(
        entry_keys(ctx, "pages on keys k1, k2", start, end)?,
        vec![k1, k2],
        "VMA keys of two neighbouring pages on different keys"
    );
    sysfail(
        "pkey_mprotect(page 1, k1)",
        r.pkey_mprotect_range(pg, pg, RW, k1),
    )?;
    let keys = entry_keys(ctx, "both pages on k1", start, end)?;
    check_eq!(
        keys,
        vec![k1],
        "VMA keys after giving the second page the first one's key (merged)"
    );
    let e = smaps_entries(start, end)?;
    check!(
        e[0].0 <= start && e[0].1 >= end,
        "merged VMA {:#x}-{:#x} does not cover {start:#x}-{end:#x}",
        e[0].0,
        e[0].1
    );
    ad_read_faults(ctx, &r, pg + 1, k1, k1)?;
    pkru::set_rights(k2, AD);
    let res = read_without_fault(&r, pg + 1, "second page with its old key denied");
    pkru::set_rights(k2, 0);
    res
}

/// `mremap` to a new address (same size, or grown to `pages` pages) carries the key: smaps at
/// the new address shows it (the grown tail too), nothing is left at the old address, the data
/// moved, and an AD read at the new address (and in the grown tail) faults with the key.
fn mremap(ctx: &mut Ctx, pages: usize) -> Outcome {
    let (r, key) = keyed(ctx, 1)?;
    r.write(0, 0x77);
    let old = r.addr();
    let moved = r
        .mremap_to(pages * sys::page_size())
        .map_err(|(_, e)| Stop::Fail(format!("mremap: {e}")))?;
    ctx.diag(format!(
        "key {key}: moved {old:#x} -> {:#x}, {} bytes",
        moved.addr(),
        moved.len()
    ));
    check!(moved.addr() != old, "mremap did not move the mapping");
    check_eq!(
        smaps_pkey(moved.addr())?,
        Some(key),
        "smaps ProtectionKey at the new address"
    );
    check_eq!(
        smaps_entries(old, old + 1)?.len(),
        0,
        "smaps entries left at the old address"
    );
    check_eq!(moved.read(0), 0x77, "byte carried by mremap");
    ad_read_faults(ctx, &moved, 3, key, key)?;
    if pages > 1 {
        let tail = moved.len() - 5;
        check_eq!(
            smaps_pkey(moved.addr() + tail)?,
            Some(key),
            "smaps ProtectionKey in the grown tail"
        );
        ad_read_faults(ctx, &moved, tail, key, key)?;
    }
    Ok(())
}

/// After `munmap` + `mmap(MAP_FIXED)` at the same address (`unmap_first`), or `mmap(MAP_FIXED)`
/// straight over the keyed mapping, the new mapping has key 0 and reads without a fault while
/// the old key is access-disabled.
fn remap_fixed(ctx: &mut Ctx, unmap_first: bool) -> Outcome {
    let (r, key) = keyed(ctx, 1)?;
    let addr = r.addr();
    let r = if unmap_first {
        r.unmap_then_map_fixed().map_err(crate::util::map_failed)?
    } else {
        let mut r = r;
        sysfail("mmap(MAP_FIXED) over the region", r.map_fixed_over())?;
        r
    };
    check_eq!(r.addr(), addr, "address of the MAP_FIXED mapping");
    check_eq!(
        smaps_pkey(addr)?,
        Some(0),
        "smaps ProtectionKey of the new mapping at the old address"
    );
    pkru::set_rights(key, AD);
    let res = read_without_fault(&r, 0, "new mapping with the old key denied");
    pkru::set_rights(key, 0);
    res?;
    check_eq!(r.read(0), 0, "first byte of the fresh mapping");
    Ok(())
}

/// fork(2) copies the mappings with their keys and the key allocation: the child's smaps shows
/// the key, its PKRU equals the parent's, an AD read faults with the key, it can
/// `pkey_mprotect` another region with the key and `pkey_free` it (once; the second free is
/// EINVAL). The parent's allocation is untouched: its own `pkey_free` succeeds afterwards.
fn fork_child_keeps_keys(ctx: &mut Ctx) -> Outcome {
    let (r, key) = keyed(ctx, 1)?;
    let other = mapped(Region::rw(Kind::Anon))?;
    pkru::set_rights(key, AD);
    let parent_pkru = pkru::read();
    let addr = r.at(1);
    crate::util::in_child(ctx, "child", |_| {
        check_eq!(
            smaps_pkey(r.addr()),
            Ok(Some(key)),
            "smaps key of the region"
        );
        check_pkru!(pkru::read(), parent_pkru, "child's PKRU (the parent's)");
        let cap = fault::capture(Fix::AllowKey, || {
            std::hint::black_box(r.read(1));
        });
        let seen: Vec<_> = cap
            .faults
            .iter()
            .map(|f| (f.code, f.pkey, f.addr))
            .collect();
        check_eq!(
            seen,
            vec![(sys::SEGV_PKUERR, key as u32, addr)],
            "faults of an AD read (si_code, si_pkey, si_addr)"
        );
        sysfail("pkey_mprotect with the key", other.pkey_mprotect(RW, key))?;
        check_eq!(
            smaps_pkey(other.addr()),
            Ok(Some(key)),
            "smaps key of the re-keyed region"
        );
        sysfail("pkey_free", sys::pkey_free(key))?;
        check_eq!(sys::pkey_free(key), Err(Errno::EINVAL), "second pkey_free");
        Ok(())
    })?;
    check_eq!(
        smaps_pkey(other.addr())?,
        Some(0),
        "parent's copy of the region the child re-keyed"
    );
    check_eq!(
        sys::pkey_free(key),
        Ok(()),
        "parent's pkey_free after the child freed its copy"
    );
    Ok(())
}

/// MADV_DONTNEED drops the pages but not the VMA: smaps keeps the key and the refault of an AD
/// read is a pkey fault with the key (checked before the page is brought back). Anonymous memory
/// comes back zero-filled, shared memory with its contents.
fn dontneed_refault(ctx: &mut Ctx, kind: Kind) -> Outcome {
    let r = mapped(Region::rw(kind))?;
    let key = crate::util::alloc_random_key(ctx, 0, 9)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(RW, key))?;
    r.write(17, 0x3c);
    sysfail("madvise(MADV_DONTNEED)", r.madvise(libc::MADV_DONTNEED))?;
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(key),
        "smaps ProtectionKey after MADV_DONTNEED"
    );
    pkru::set_rights(key, AD);
    let before = pkru::read();
    let mut v = 0;
    let cap = fault::capture(Fix::AllowKey, || v = r.read(17));
    pkru::set_rights(key, 0);
    expect_one_pkey_fault(ctx, &cap, key, r.at(17), before, init_pkru(ctx))?;
    let want = if kind == Kind::Anon { 0 } else { 0x3c };
    check_eq!(v, want, "byte read by the refault");
    Ok(())
}

#[derive(Clone, Copy)]
enum Lock {
    Mlock,
    Mlock2OnFault,
    MapLocked,
    MapPopulate,
}

/// Locked and pre-populated pages follow the key like any other: the region is locked or
/// populated first (key 0), then keyed; smaps shows the key and an AD read faults with it.
/// `mlock2(MLOCK_ONFAULT)` leaves the page absent, so its fault is on a not-present page.
fn locked_kind(ctx: &mut Ctx, how: Lock) -> Outcome {
    let pg = sys::page_size();
    let r = match how {
        Lock::MapLocked => mapped(Region::map_anon_with(pg, RW, libc::MAP_LOCKED))?,
        Lock::MapPopulate => mapped(Region::map_anon_with(pg, RW, libc::MAP_POPULATE))?,
        _ => mapped(Region::map(Kind::Anon, pg, RW))?,
    };
    match how {
        Lock::Mlock => sysfail("mlock", r.mlock_range(0, pg))?,
        Lock::Mlock2OnFault => sysfail("mlock2(MLOCK_ONFAULT)", r.mlock2_range(0, pg, 1))?,
        _ => {}
    }
    let key = crate::util::alloc_random_key(ctx, 0, 10)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(RW, key))?;
    check_eq!(smaps_pkey(r.addr())?, Some(key), "smaps ProtectionKey");
    ad_read_faults(ctx, &r, 100, key, key)?;
    r.write(100, 1);
    check_eq!(r.read(100), 1, "byte written with the key allowed");
    Ok(())
}

/// `mlock` populates the range with get_user_pages from the calling thread, and GUP checks the
/// caller's PKRU for a local (non-remote) access: with the key access-disabled (or, for a
/// private writable mapping, which mlock populates for writing, write-disabled), population fails
/// with EFAULT, which mlock(2) reports as ENOMEM. The lock itself is applied (smaps `Locked:` is
/// not checked here). With the key allowed the same mlock succeeds. mlock(2) does not mention
/// protection keys.
fn mlock_under_denied_key(ctx: &mut Ctx, rights: u32) -> Outcome {
    let pg = sys::page_size();
    let r = mapped(Region::map(Kind::Anon, pg, RW))?;
    let key = crate::util::alloc_random_key(ctx, 0, 11)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(RW, key))?;
    pkru::set_rights(key, rights);
    let mut ret = Ok(());
    let cap = fault::capture(Fix::AllowKey, || ret = r.mlock_range(0, pg));
    pkru::set_rights(key, 0);
    ctx.diag(format!("key {key} rights {rights}: mlock = {ret:?}"));
    check_eq!(cap.faults.len(), 0, "signals raised by mlock");
    check_eq!(
        ret,
        Err(Errno::ENOMEM),
        "mlock of a range whose key denies the population"
    );
    check_eq!(r.mlock_range(0, pg), Ok(()), "mlock with the key allowed");
    Ok(())
}

/// `pkey_free` of a key that pages still carry succeeds (pkey_free(2): the caller must make sure
/// no memory uses it; the kernel does not check). The pages keep the number (smaps), PKRU keeps
/// its rights bits, so an AD read still faults with the freed number; `pkey_mprotect` with the
/// freed number is EINVAL, while a plain `mprotect` of the pages keeps it.
fn free_key_in_use(ctx: &mut Ctx) -> Outcome {
    let (r, key) = keyed(ctx, 1)?;
    check_eq!(
        sys::pkey_free(key),
        Ok(()),
        "pkey_free({key}) while pages carry it"
    );
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(key),
        "smaps ProtectionKey after pkey_free"
    );
    ad_read_faults(ctx, &r, 2, key, key)?;
    check_eq!(
        r.pkey_mprotect(RW, key),
        Err(Errno::EINVAL),
        "pkey_mprotect with the freed key"
    );
    sysfail("mprotect(PROT_READ)", r.mprotect(libc::PROT_READ))?;
    check_eq!(
        smaps_pkey(r.addr())?,
        Some(key),
        "smaps ProtectionKey after mprotect of the pages carrying the freed key"
    );
    Ok(())
}

const KSM: &str = "/sys/kernel/mm/ksm";

fn ksm_read(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("{KSM}/{name}"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn ksm_write(name: &str, v: &str) -> Result<(), String> {
    std::fs::write(format!("{KSM}/{name}"), v).map_err(|e| format!("write {KSM}/{name}: {e}"))
}

/// KSM merges two identical pages of which one carries a key and the other key 0: one physical
/// page then sits behind two PTEs with different keys. The keys stay per mapping: smaps shows
/// both, the key-0 page reads without a fault, the keyed page faults with its key (and reads the
/// shared contents once allowed), and a write breaks the sharing without a fault.
fn ksm_merged(ctx: &mut Ctx) -> Outcome {
    let Some(run) = ksm_read("run") else {
        pkeys_harness::skip!("KSM not available ({KSM}/run absent)");
    };
    let mut restore: Vec<(&str, String)> = Vec::new();
    if run != "1" {
        if !sys::is_root() {
            pkeys_harness::skip!("KSM is not running (run={run}) and enabling it needs root");
        }
        for name in ["sleep_millisecs", "pages_to_scan"] {
            if let Some(v) = ksm_read(name) {
                restore.push((name, v));
            }
        }
        restore.push(("run", run.clone()));
        let set = ksm_write("sleep_millisecs", "10")
            .and_then(|_| ksm_write("pages_to_scan", "1000"))
            .and_then(|_| ksm_write("run", "1"));
        if let Err(e) = set {
            for (n, v) in &restore {
                let _ = ksm_write(n, v);
            }
            pkeys_harness::skip!("KSM could not be enabled: {e}");
        }
    }
    let res = ksm_body(ctx);
    for (n, v) in &restore {
        let _ = ksm_write(n, v);
    }
    res
}

fn ksm_body(ctx: &mut Ctx) -> Outcome {
    let pg = sys::page_size();
    let r = mapped(Region::map(Kind::Anon, 2 * pg, RW))?;
    for off in 0..2 * pg {
        r.write(off, (off % pg % 251) as u8 + 1);
    }
    let key = crate::util::alloc_random_key(ctx, 0, 12)?;
    sysfail(
        "pkey_mprotect(page 0)",
        r.pkey_mprotect_range(0, pg, RW, key),
    )?;
    match r.madvise_range(0, 2 * pg, libc::MADV_MERGEABLE) {
        Ok(()) => {}
        Err(Errno::EINVAL) => pkeys_harness::skip!("madvise(MADV_MERGEABLE): EINVAL (no KSM)"),
        Err(e) => return Err(Stop::Fail(format!("madvise(MADV_MERGEABLE): {e}"))),
    }
    let own = std::path::Path::new("/proc/self/ksm_merging_pages").exists();
    let merged = || -> u64 {
        let s = if own {
            std::fs::read_to_string("/proc/self/ksm_merging_pages").unwrap_or_default()
        } else {
            ksm_read("pages_sharing").unwrap_or_default()
        };
        s.trim().parse().unwrap_or(0)
    };
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while merged() == 0 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = merged();
    let source = if own {
        "/proc/self/ksm_merging_pages"
    } else {
        "pages_sharing"
    };
    ctx.diag(format!("key {key}: {source} = {n}"));
    if n == 0 {
        pkeys_harness::skip!("KSM did not merge the pages within 20 s ({source} = 0)");
    }
    check_eq!(smaps_pkey(r.addr())?, Some(key), "smaps key of page 0");
    check_eq!(smaps_pkey(r.addr() + pg)?, Some(0), "smaps key of page 1");
    pkru::set_rights(key, AD);
    read_without_fault(&r, pg + 10, "merged key-0 page")?;
    pkru::set_rights(key, 0);
    check_eq!(r.read(pg + 10), 11, "byte of the merged key-0 page");
    pkru::set_rights(key, AD);
    let before = pkru::read();
    let mut v = 0;
    let cap = fault::capture(Fix::AllowKey, || v = r.read(10));
    pkru::set_rights(key, 0);
    expect_one_pkey_fault(ctx, &cap, key, r.at(10), before, init_pkru(ctx))?;
    check_eq!(v, 11, "byte of the merged keyed page");
    let cap = fault::capture(Fix::AllowKey, || r.write(pg + 10, 0xee));
    check_eq!(cap.faults.len(), 0, "faults writing the merged key-0 page");
    check_eq!(r.read(10), 11, "keyed page after the other was unshared");
    Ok(())
}
