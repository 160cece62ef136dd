//! `process_vm_readv`/`process_vm_writev` from the process itself and from a child.

use super::{AD, N, no_signal, protected};
use pkeys_harness::mem::UserBuf;
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Ctx, Outcome, check_eq, pkru};

/// `process_vm_readv` / `process_vm_writev` on the calling process itself. The target ("remote")
/// side is pinned with get_user_pages(FOLL_REMOTE), which never checks PKRU, even though the
/// target is the caller's own memory: reading from or writing into an AD region succeeds with
/// the right bytes. The local iovec is copied with an ordinary user access under the caller's
/// PKRU: an AD local buffer makes the call fail with EFAULT (nothing transferred). No signal
/// either way. process_vm_readv(2) says nothing about protection keys.
pub(super) fn pvm_self(ctx: &mut Ctx, write: bool, local_protected: bool) -> Outcome {
    let (r, key) = protected(ctx, AD, 0x77)?;
    let mut plain = vec![if write { 0x99u8 } else { 0 }; N];
    let pid = sys::getpid();
    let (pl, pr) = (UserBuf::from(plain.as_mut_slice()), r.buf(0, N));
    let (local, remote) = if local_protected {
        ([pr], [pl])
    } else {
        ([pl], [pr])
    };
    let ret = no_signal("process_vm_* on self", || {
        if write {
            sys::process_vm_writev(pid, &local.map(|b| b.raw()), &remote)
        } else {
            sys::process_vm_readv(pid, &local, &remote.map(|b| b.raw()))
        }
    })?;
    let call = if write {
        "process_vm_writev"
    } else {
        "process_vm_readv"
    };
    let side = if local_protected { "local" } else { "remote" };
    ctx.diag(format!(
        "key {key}: {call}(self, AD on the {side} side) = {ret:?}"
    ));
    pkru::set_rights(key, 0);
    let prot: Vec<u8> = (0..N).map(|i| r.read(i)).collect();
    if local_protected {
        check_eq!(ret, Err(Errno::EFAULT), "{call} with an AD local iovec");
        check_eq!(prot, vec![0x77u8; N], "AD region after the refused call");
        let want = if write { 0x99 } else { 0 };
        check_eq!(plain, vec![want; N], "plain buffer after the refused call");
    } else {
        check_eq!(ret, Ok(N), "{call} with an AD remote iovec");
        let want = if write { 0x99 } else { 0x77 };
        check_eq!(prot, vec![want; N], "AD region after the call");
        check_eq!(plain, vec![want; N], "plain buffer after the call");
    }
    Ok(())
}

/// A forked child (whose PKRU, copied from the parent, access-disables the key) reads the
/// parent's AD region with `process_vm_readv`, or writes into it with `process_vm_writev`: the
/// remote side ignores the caller's PKRU, so it succeeds with the right bytes. The parent checks
/// a write after the child exited. `PR_SET_PTRACER_ANY` lets the child in under Yama
/// ptrace_scope=1.
pub(super) fn pvm_child(ctx: &mut Ctx, write: bool) -> Outcome {
    let (r, key) = protected(ctx, AD, 0x88)?;
    let _ = sys::set_ptracer_any();
    let remote = [r.buf(0, N)];
    let call = if write {
        "process_vm_writev"
    } else {
        "process_vm_readv"
    };
    crate::util::in_child(ctx, "child", |_| {
        let parent = sys::getppid();
        let mut buf = vec![if write { 0xabu8 } else { 0 }; N];
        let ret = if write {
            sys::process_vm_writev(parent, &[(buf.as_ptr() as usize, N)], &remote)
        } else {
            sys::process_vm_readv(
                parent,
                &[buf.as_mut_slice().into()],
                &remote.map(|b| b.raw()),
            )
        };
        check_eq!(ret, Ok(N), "{call} of the parent's AD region");
        if !write {
            check_eq!(buf, vec![0x88u8; N], "bytes read from the parent");
        }
        Ok(())
    })?;
    pkru::set_rights(key, 0);
    let got: Vec<u8> = (0..N).map(|i| r.read(i)).collect();
    let want = if write { 0xab } else { 0x88 };
    check_eq!(
        got,
        vec![want; N],
        "parent's protected region after the child's call"
    );
    Ok(())
}
