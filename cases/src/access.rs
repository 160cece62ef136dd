//! User-mode reads and writes of regions whose key denies them, across mapping kinds.
//!
//! References: pkeys(7), pkey_mprotect(2), kernel `Documentation/core-api/protection-keys.rst`.
//! Ports `test_read_of_write_disabled_region`, `test_read_of_access_disabled_region`,
//! `test_read_of_access_disabled_region_with_page_already_mapped`,
//! `test_write_of_write_disabled_region`, `test_write_of_write_disabled_region_with_page_already_mapped`,
//! `test_write_of_access_disabled_region` and
//! `test_write_of_access_disabled_region_with_page_already_mapped` of
//! `tools/testing/selftests/mm/protection_keys.c`, run across every mapping kind, with every fault
//! field asserted exactly: one fault, `SEGV_PKUERR`, `si_pkey`, `si_addr`, the PKRU saved in the
//! frame, PKRU inside the handler (`init_pkru`), and the saved-PKRU edit taking effect at sigreturn.

use crate::util::{expect_one_pkey_fault, init_pkru, mapped, sysfail};
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD, SEGV_PKUERR};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Pkey, Stop, check_eq, check_pkru, pkru};
use pkeys_harness::{case, case_id};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    /// A load.
    Read,
    /// A store.
    Write,
}

/// When the region's pages are faulted in, relative to keying it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Populate {
    /// Never before the denied access: the access itself faults the page in.
    No,
    /// Before `pkey_mprotect`: the pages are present when the key is set (`_mapped`).
    BeforeKey,
    /// After `pkey_mprotect`, while the key still allows the access: the pages are faulted in
    /// through the keyed VMA and only then denied (`_mapped_keyed`; upstream's order, 1038,
    /// 1051, 1077, and for THP 742 after 733).
    AfterKey,
}

/// The cases of this module: {read, write} × {AD, WD} × {when pages are present} × kinds.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (op, opn) in [(Op::Read, "read"), (Op::Write, "write")] {
        for (rights, rn) in [(AD, "ad"), (WD, "wd")] {
            for (populate, suffix) in [
                (Populate::No, ""),
                (Populate::BeforeKey, "_mapped"),
                (Populate::AfterKey, "_mapped_keyed"),
            ] {
                for kind in Kind::ALL {
                    let needs = crate::util::needs_for(kind);
                    let id = case_id!("{opn}_{rn}{suffix}::{}", kind.name());
                    v.push(Case::new(id, needs, move |c| {
                        access(c, op, rights, populate, kind)
                    }));
                }
            }
        }
    }
    v.push(per_key_matrix_case());
    v.push(case!(
        "rounds_in_one_process",
        Needs::PKEYS
            .hugetlb()
            .feature(Feature::Thp)
            .feature(Feature::Madvise),
        rounds_in_one_process,
    ));
    v
}

/// The keys `pkey_alloc` can hand out now (allocated, then freed again: nothing changes).
fn free_keys() -> Result<Vec<i32>, Stop> {
    let saved = pkru::read();
    let mut free = Vec::new();
    while let Ok(k) = pkru::alloc(0, 0) {
        free.push(k);
    }
    let numbers = free.iter().map(Pkey::as_raw).collect();
    crate::util::free_all(free)?;
    pkru::write(saved);
    Ok(numbers)
}

/// Upstream's round mode: `protection_keys.c` runs its tests 22 times in one process with a
/// rotating mapping kind, so state accumulates between tests (the execute-only key made in an
/// early round stays allocated, PKRU keeps what earlier tests left). Fork-per-case never sees
/// that; this case does, contained: the 22 rounds run in this case's own forked process, so what
/// accumulates dies with it, and a failure names its round. Round 0 first makes an execute-only
/// mapping (its key stays allocated for all rounds and its code must keep executing); each round
/// then runs one access variant (rotating read/write, AD/WD, page populated never, before or
/// after keying) on anonymous, THP or hugetlb memory, and frees exactly the keys it allocated.
fn rounds_in_one_process(ctx: &mut Ctx) -> Outcome {
    const ROUNDS: u32 = 22;
    let kinds = [Kind::Anon, Kind::Thp, Kind::Hugetlb];
    let variants = [
        (Op::Read, WD, Populate::No),
        (Op::Read, AD, Populate::No),
        (Op::Read, AD, Populate::AfterKey),
        (Op::Write, WD, Populate::No),
        (Op::Write, WD, Populate::AfterKey),
        (Op::Write, AD, Populate::No),
        (Op::Write, AD, Populate::AfterKey),
        (Op::Read, AD, Populate::BeforeKey),
        (Op::Write, WD, Populate::BeforeKey),
        (Op::Write, AD, Populate::BeforeKey),
        (Op::Read, WD, Populate::AfterKey),
    ];
    let code = Region::map(
        Kind::Anon,
        pkeys_harness::sys::page_size(),
        libc::PROT_READ | libc::PROT_WRITE,
    )
    .map_err(crate::util::map_failed)?;
    code.write_ret_stub();
    sysfail("mprotect(PROT_EXEC)", code.mprotect(libc::PROT_EXEC))?;
    let base_iteration = ctx.iteration;
    for round in 0..ROUNDS {
        let kind = kinds[round as usize % kinds.len()];
        let (op, rights, populate) = variants[round as usize % variants.len()];
        let before = free_keys()?;
        ctx.diag(format!(
            "round {round}: {op:?} with rights {rights} ({populate:?}) on {kind}, {} keys free",
            before.len()
        ));
        // A different random key each round (the choice is seeded by the iteration).
        ctx.iteration = base_iteration * ROUNDS + round;
        let res = access(ctx, op, rights, populate, kind);
        ctx.iteration = base_iteration;
        res.map_err(|e| match e {
            Stop::Fail(m) => Stop::Fail(format!("round {round} ({op:?} {rights} {kind}): {m}")),
            s => s,
        })?;
        let cap = fault::capture(Fix::AllowKey, || code.call());
        check_eq!(
            cap.faults.len(),
            0,
            "round {round}: faults executing the execute-only page made in round 0"
        );
        let after = free_keys()?;
        for k in before.iter().filter(|k| !after.contains(k)) {
            sysfail("pkey_free", pkeys_harness::sys::pkey_free(*k))?;
        }
    }
    check_eq!(
        free_keys()?.len(),
        14,
        "keys free after the rounds (15 minus the execute-only key)"
    );
    Ok(())
}

pub(crate) fn access(
    ctx: &mut Ctx,
    op: Op,
    rights: u32,
    populate: Populate,
    kind: Kind,
) -> Outcome {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let r = mapped(Region::map(kind, kind.default_len(), rw))?;
    if populate == Populate::BeforeKey {
        r.populate();
    }
    let key = crate::util::alloc_random_key(ctx, 0, 1)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(rw, key))?;
    if populate == Populate::AfterKey {
        // The key allows everything still: touch every page the way the access will (a read
        // faults it in for reading, a write for writing), with no fault expected.
        let page = pkeys_harness::sys::page_size();
        let cap = fault::capture(Fix::AllowKey, || {
            for off in (0..r.len()).step_by(page) {
                match op {
                    Op::Read => {
                        std::hint::black_box(r.read(off));
                    }
                    Op::Write => r.write(off, 0),
                }
            }
        });
        check_eq!(
            cap.faults.len(),
            0,
            "faults while populating through the keyed VMA with key {key} allowed"
        );
    }
    if let Some(k) = crate::util::smaps_pkey_side_check(ctx, r.addr())? {
        check_eq!(k, key, "smaps ProtectionKey after pkey_mprotect");
    }
    // Touch a byte in the last page, away from the start, so si_addr is not trivially the base.
    let off = r.len() - 7;
    pkru::set_rights(key, rights);
    let before = pkru::read();
    ctx.diag(format!(
        "{kind}: key {key}, rights {rights}, PKRU {}",
        pkru::fmt(before)
    ));
    let expect_fault = rights == AD || op == Op::Write;
    let cap = fault::capture(Fix::AllowKey, || match op {
        Op::Read => {
            std::hint::black_box(r.read(off));
        }
        Op::Write => r.write(off, 0x5a),
    });
    if expect_fault {
        let want_key = key + ctx.skew();
        expect_one_pkey_fault(ctx, &cap, want_key, r.at(off), before, init_pkru(ctx))?;
        check_pkru!(
            cap.pkru_after,
            pkru::with_rights(before, key, 0),
            "PKRU after sigreturn (edited in the frame)"
        );
    } else {
        check_eq!(
            cap.faults.len(),
            0,
            "faults for a read of a write-disabled region"
        );
    }
    pkru::set_rights(key, 0);
    let want = if op == Op::Write { 0x5a } else { 0 };
    check_eq!(r.read(off), want, "byte value after the access completed");
    Ok(())
}

/// glibc `tst-pkey`'s enforcement matrix: with every key allocated and one region per key, PKRU
/// allowing only key `i` (read-only, then read-write) makes every read and write of every region
/// fault exactly when the matrix says so, with the region's key in `si_pkey`.
pub fn per_key_matrix_case() -> Case {
    case!("per_key_matrix", Needs::PKEYS, per_key_matrix)
}

fn per_key_matrix(ctx: &mut Ctx) -> Outcome {
    let mut keys = Vec::new();
    while let Ok(k) = crate::util::alloc_checked(0)? {
        keys.push(k);
    }
    let mut regions = Vec::new();
    for &k in &keys {
        let r = mapped(Region::rw(Kind::Anon))?;
        sysfail(
            "pkey_mprotect",
            r.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, k),
        )?;
        regions.push((k, r));
    }
    let all_denied = keys.iter().fold(0u32, |p, &k| pkru::with_rights(p, k, AD));
    let mut checked = 0;
    for &i in &keys {
        for (rights, mode) in [(WD, "read-only"), (0, "read-write")] {
            let p = pkru::with_rights(all_denied, i, rights);
            pkru::write(p);
            for (k, r) in &regions {
                for write in [false, true] {
                    let cap = fault::capture(Fix::AllowKey, || {
                        if write {
                            r.write(1, 1)
                        } else {
                            std::hint::black_box(r.read(1));
                        }
                    });
                    let want = usize::from(*k != i || (write && rights == WD));
                    let what = if write { "write" } else { "read" };
                    check_eq!(
                        cap.faults.len(),
                        want,
                        "faults on {what} of key {k}'s region with only key {i} allowed {mode}"
                    );
                    if want == 1 {
                        // tst-pkey compares si_code and si_addr too.
                        let f = cap.faults[0];
                        check_eq!(
                            (f.code, f.pkey, f.addr),
                            (SEGV_PKUERR, *k as u32, r.at(1)),
                            "(si_code, si_pkey, si_addr) on {what} of key {k}'s region"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    pkru::write(crate::util::init_pkru(ctx));
    ctx.diag(format!("{} keys, {checked} accesses checked", keys.len()));
    Ok(())
}
