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
use pkeys_harness::sys::{PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Needs, Outcome, check_eq, check_pkru, pkru};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A load.
    Read,
    /// A store.
    Write,
}

/// The cases of this module: {read, write} × {AD, WD} × {page mapped before or not} × kinds.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (op, opn) in [(Op::Read, "read"), (Op::Write, "write")] {
        for (rights, rn) in [(AD, "ad"), (WD, "wd")] {
            for (mapped_first, suffix) in [(false, ""), (true, "_mapped")] {
                for kind in Kind::ALL {
                    let needs = crate::util::needs_for(kind);
                    let id = format!("access::{opn}_{rn}{suffix}::{}", kind.name());
                    v.push(Case::new(id, needs, move |c| {
                        access(c, op, rights, mapped_first, kind)
                    }));
                }
            }
        }
    }
    v.push(per_key_matrix_case());
    v
}

pub(crate) fn access(
    ctx: &mut Ctx,
    op: Op,
    rights: u32,
    mapped_first: bool,
    kind: Kind,
) -> Outcome {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let r = mapped(Region::map(kind, kind.default_len(), rw))?;
    if mapped_first {
        r.populate();
    }
    let key = crate::util::alloc_random_key(ctx, 0, 1)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(rw, key))?;
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
    Case::new("access::per_key_matrix", Needs::PKEYS, per_key_matrix)
}

fn per_key_matrix(ctx: &mut Ctx) -> Outcome {
    let mut keys = Vec::new();
    while let Ok(k) = pkru::alloc(0, 0) {
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
                        check_eq!(
                            cap.faults[0].pkey,
                            *k as u32,
                            "si_pkey on {what} of key {k}'s region"
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
