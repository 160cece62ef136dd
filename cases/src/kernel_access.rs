//! The kernel accessing a pkey-protected buffer on the process's behalf.
//!
//! References: read(2), vmsplice(2), futex(2), pkeys(7) (which says kernel accesses honour PKRU),
//! kernel `Documentation/core-api/protection-keys.rst` (which says such an access raises SIGSEGV:
//! it does not — the system call fails with EFAULT and no signal is sent; the suite tests the
//! kernel's behaviour). Ports `test_kernel_write_of_access_disabled_region`,
//! `test_kernel_write_of_write_disabled_region`, `test_kernel_gup_of_access_disabled_region` and
//! `test_kernel_gup_write_to_write_disabled_region` of `protection_keys.c`; upstream accepts any
//! non-zero return (or asserts nothing for futex).

use crate::util::{mapped, sysfail};
use pkeys_harness::case_id;
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{self, Errno, PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Feature, Outcome, Stop, check_eq, pkru};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for kind in [
        Kind::Anon,
        Kind::Thp,
        Kind::Hugetlb,
        Kind::FileShared,
        Kind::Memfd,
        Kind::Shm,
    ] {
        let needs = crate::util::needs_for(kind);
        let k = kind.name();
        v.push(Case::new(case_id!("read_into_ad::{k}"), needs, move |c| {
            read_into(c, kind, AD, 1)
        }));
        v.push(Case::new(case_id!("read_into_wd::{k}"), needs, move |c| {
            read_into(c, kind, WD, 100)
        }));
        v.push(Case::new(
            case_id!("vmsplice_from_ad::{k}"),
            needs,
            move |c| vmsplice_from(c, kind),
        ));
        v.push(Case::new(
            case_id!("futex_wait_on_wd::{k}"),
            needs.feature(Feature::Futex),
            move |c| futex_on_wd(c, kind),
        ));
    }
    v
}

/// A region carrying a fresh key with `rights`, every page present.
pub(crate) fn protected(ctx: &mut Ctx, kind: Kind, rights: u32) -> Result<(Region, i32), Stop> {
    let r = mapped(Region::rw(kind))?;
    let key = crate::util::alloc_random_key(ctx, 0, 2)?;
    sysfail(
        "pkey_mprotect",
        r.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, key),
    )?;
    pkru::set_rights(key, rights);
    Ok((r, key))
}

/// A pipe holding `n` bytes of data.
fn pipe_with(n: usize) -> Result<(i32, i32), Stop> {
    let (r, w) = nix::unistd::pipe().map_err(|e| Stop::Fail(format!("pipe: {e}")))?;
    nix::unistd::write(&w, &vec![0x42u8; n]).map_err(|e| Stop::Fail(format!("write: {e}")))?;
    use std::os::fd::IntoRawFd;
    Ok((r.into_raw_fd(), w.into_raw_fd()))
}

/// `read(pipe, buf, n)` into a buffer whose key denies the write: -1/EFAULT, no signal, the
/// buffer unchanged.
fn read_into(ctx: &mut Ctx, kind: Kind, rights: u32, n: usize) -> Outcome {
    let (r, key) = protected(ctx, kind, rights)?;
    let (rd, wr) = pipe_with(n)?;
    let mut ret = Ok(0);
    let cap = fault::capture(Fix::AllowKey, || ret = sys::read_into(rd, r.buf(0, n)));
    ctx.diag(format!(
        "key {key} rights {rights}: read(pipe, buf, {n}) = {ret:?}"
    ));
    sys::close(rd);
    sys::close(wr);
    check_eq!(
        cap.faults.len(),
        0,
        "signals raised by a kernel write into the protected buffer"
    );
    check_eq!(ret, Err(Errno::EFAULT), "read() into the protected buffer");
    pkru::set_rights(key, 0);
    check_eq!(
        r.read(0),
        0,
        "first byte of the buffer after the refused read"
    );
    Ok(())
}

/// `vmsplice(pipe, {buf, page}, SPLICE_F_GIFT)` from an access-disabled buffer: -1/EFAULT, no
/// signal.
fn vmsplice_from(ctx: &mut Ctx, kind: Kind) -> Outcome {
    let (r, key) = protected(ctx, kind, AD)?;
    let (rd, wr) = nix::unistd::pipe().map_err(|e| Stop::Fail(format!("pipe: {e}")))?;
    use std::os::fd::AsRawFd;
    let mut ret = Ok(0);
    let cap = fault::capture(Fix::AllowKey, || {
        ret = sys::vmsplice_gift(wr.as_raw_fd(), r.ptr(0), sys::page_size())
    });
    ctx.diag(format!("key {key}: vmsplice = {ret:?}"));
    drop((rd, wr));
    check_eq!(
        cap.faults.len(),
        0,
        "signals raised by vmsplice of the protected buffer"
    );
    check_eq!(
        ret,
        Err(Errno::EFAULT),
        "vmsplice() of an access-disabled buffer"
    );
    Ok(())
}

/// `FUTEX_WAIT` on a write-disabled word with a value that does not match; no signal and no hang
/// either way. The futex key lookup first pins the page for writing (refused by WD) and then falls
/// back to read-only, which is enough for shared (file, shmem) pages: the value is read and the
/// call fails with EAGAIN. For a private anonymous page (4 KiB, THP, private hugetlb) the kernel
/// refuses a read-only pin ("a RO anonymous page will never change") and fails with EFAULT —
/// measured on 6.12 and consistent with `get_futex_key()`.
fn futex_on_wd(ctx: &mut Ctx, kind: Kind) -> Outcome {
    let (r, key) = protected(ctx, kind, 0)?;
    r.write(0, 7);
    pkru::set_rights(key, WD);
    let mut ret = Ok(0);
    let cap = fault::capture(Fix::AllowKey, || ret = sys::futex_wait(r.addr(), 6));
    ctx.diag(format!(
        "key {key}: futex(FUTEX_WAIT, 6) on a word holding 7 = {ret:?}"
    ));
    check_eq!(
        cap.faults.len(),
        0,
        "signals raised by futex on the write-disabled word"
    );
    let want = if matches!(kind, Kind::Anon | Kind::Thp | Kind::Hugetlb) {
        Errno::EFAULT
    } else {
        Errno::EAGAIN
    };
    check_eq!(
        ret,
        Err(want),
        "futex(FUTEX_WAIT) with a non-matching value on a {kind} page"
    );
    Ok(())
}
