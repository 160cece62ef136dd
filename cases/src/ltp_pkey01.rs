//! LTP `pkey01`: a forbidden access in a forked child dies with SIGSEGV; re-tagging the region to
//! key 0 restores access.
//!
//! References: pkey_mprotect(2), pkey_alloc(2). Ports `testcases/kernel/syscalls/pkeys/pkey01.c`
//! of the Linux Test Project: {PKEY_DISABLE_ACCESS, PKEY_DISABLE_WRITE} × prot {R, W, X, RW, RWX}
//! × {anon private, anon shared, hugetlb private, hugetlb shared, file private, file shared}.
//! LTP accepts any SIGSEGV; here the child's fault must be SEGV_PKUERR with the key and address,
//! and the access after re-tagging must complete.

use crate::util::{forkfail, mapped, sysfail};
use pkeys_harness::case_id;
use pkeys_harness::child::{self, Crash};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD, SEGV_PKUERR};
use pkeys_harness::{Case, Ctx, Outcome, check_eq};

const PROTS: [(i32, &str); 5] = [
    (libc::PROT_READ, "r"),
    (libc::PROT_WRITE, "w"),
    (libc::PROT_EXEC, "x"),
    (libc::PROT_READ | libc::PROT_WRITE, "rw"),
    (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC, "rwx"),
];

const KINDS: [Kind; 6] = [
    Kind::Anon,
    Kind::AnonShared,
    Kind::Hugetlb,
    Kind::HugetlbShared,
    Kind::FilePrivate,
    Kind::FileShared,
];

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (rights, rn) in [(AD, "disable_access"), (WD, "disable_write")] {
        for (prot, pn) in PROTS {
            for kind in KINDS {
                let needs = crate::util::needs_for(kind);
                let id = case_id!("{rn}::{pn}::{}", kind.name());
                v.push(Case::new(id, needs, move |c| pkey01(c, rights, prot, kind)));
            }
        }
    }
    v
}

pub(crate) fn pkey01(ctx: &mut Ctx, rights: u32, prot: i32, kind: Kind) -> Outcome {
    let r = mapped(Region::map(kind, kind.default_len(), prot))?;
    let key = crate::util::alloc_random_key(ctx, rights, 3)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(prot, key))?;
    let addr = r.addr();
    let forbidden = || {
        if rights == AD {
            std::hint::black_box(r.read(0));
        } else {
            r.write(0, b'a');
        }
    };
    let end = forkfail(child::in_child(|_| {
        forbidden();
        Ok(())
    }))?;
    ctx.diag(format!(
        "key {key}: forbidden access: child {}, crash report {:?}",
        end.ended, end.crash
    ));
    check_eq!(
        end.killed_by(),
        Some((
            libc::SIGSEGV,
            Some(Crash {
                signo: libc::SIGSEGV,
                code: SEGV_PKUERR,
                addr,
                pkey: (key + ctx.skew()) as u32
            })
        )),
        "child's forbidden access"
    );
    sysfail("pkey_mprotect(…, 0)", r.pkey_mprotect(prot, 0))?;
    // As pkey01 does after re-tagging, by protection (whatever the key's rights were): a
    // writable buffer is written ('a') and, when readable too, read back; a read-only one is
    // read; pkey01 leaves PROT_EXEC alone, here it is read (x86 cannot make it execute-only
    // without a key).
    crate::util::in_child(ctx, "child's access after re-tagging to key 0", |_| {
        if prot & libc::PROT_WRITE != 0 {
            r.write(0, b'a');
            if prot & libc::PROT_READ != 0 {
                check_eq!(r.read(0), b'a', "the byte written, read back");
            }
        } else {
            std::hint::black_box(r.read(0));
        }
        Ok(())
    })?;
    drop(r);
    check_eq!(
        pkeys_harness::sys::pkey_free(key),
        Ok(()),
        "pkey_free({key})"
    );
    Ok(())
}
