//! mseal and protection keys: on a sealed anonymous mapping, MADV_DONTNEED (a discard) is refused
//! only while the mapping is read-only for the caller — which includes its key being
//! write-disabled in the caller's PKRU.
//!
//! References: mseal(2), madvise(2); kernel `Documentation/userspace-api/mseal.rst` and
//! `mm/mseal.c` (`is_ro_anon()` consults `arch_vma_access_permitted()`). Since 6.10; kernels
//! without mseal SKIP with the reason.

use crate::util::{mapped, sysfail};
use pkeys_harness::case;
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{Errno, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, check_eq, pkru, skip};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![case!(
        "dontneed_refused_only_while_write_disabled",
        Needs::PKEYS
            .feature(Feature::Mseal)
            .feature(Feature::Madvise),
        dontneed,
    )]
}

pub(crate) fn dontneed(ctx: &mut Ctx) -> Outcome {
    let r = mapped(Region::rw(Kind::Anon))?;
    let key = crate::util::alloc_random_key(ctx, 0, 33)?;
    sysfail(
        "pkey_mprotect",
        r.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, key),
    )?;
    match r.mseal() {
        Ok(()) => {}
        Err(Errno::ENOSYS) => skip!("kernel has no mseal (ENOSYS; added in 6.10)"),
        Err(e) => return Err(pkeys_harness::Stop::Fail(format!("mseal: {e}"))),
    }
    r.write(0, 9);
    pkru::set_rights(key, WD);
    let denied = r.madvise(libc::MADV_DONTNEED);
    check_eq!(r.read(0), 9, "data after the refused MADV_DONTNEED");
    pkru::set_rights(key, 0);
    let allowed = r.madvise(libc::MADV_DONTNEED);
    ctx.diag(format!(
        "sealed, key {key}: DONTNEED with WD = {denied:?}, without = {allowed:?}"
    ));
    check_eq!(
        denied,
        Err(if ctx.wrong {
            Errno::EACCES
        } else {
            Errno::EPERM
        }),
        "MADV_DONTNEED on a sealed mapping whose key is write-disabled"
    );
    check_eq!(
        allowed,
        Ok(()),
        "MADV_DONTNEED on a sealed mapping whose key allows writes"
    );
    check_eq!(r.read(0), 0, "data after the discard");
    Ok(())
}
