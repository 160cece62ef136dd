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
enum Op {
    Read,
    Write,
}

/// The cases of this module: {read, write} × {AD, WD} × {page mapped before or not} × kinds.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (op, opn) in [(Op::Read, "read"), (Op::Write, "write")] {
        for (rights, rn) in [(AD, "ad"), (WD, "wd")] {
            for (mapped_first, suffix) in [(false, ""), (true, "_mapped")] {
                for kind in Kind::ALL {
                    let needs = if kind.is_hugetlb() {
                        Needs::PKEYS.hugetlb()
                    } else {
                        Needs::PKEYS
                    };
                    let id = format!("access::{opn}_{rn}{suffix}::{}", kind.name());
                    v.push(Case::new(id, needs, move |c| {
                        access(c, op, rights, mapped_first, kind)
                    }));
                }
            }
        }
    }
    v
}

fn access(ctx: &mut Ctx, op: Op, rights: u32, mapped_first: bool, kind: Kind) -> Outcome {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let r = mapped(Region::map(kind, kind.default_len(), rw))?;
    if mapped_first {
        r.populate();
    }
    let key = sysfail("pkey_alloc", pkru::alloc(0, 0))?;
    sysfail("pkey_mprotect", r.pkey_mprotect(rw, key))?;
    if let Some(k) = crate::util::smaps_pkey(r.addr())? {
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
        expect_one_pkey_fault(ctx, &cap, key, r.at(off), before, init_pkru(ctx))?;
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
