//! Kernel-mediated and remote access to pkey-protected memory: system calls that copy into or out
//! of a protected buffer, `process_vm_readv`/`process_vm_writev` from the process itself and from
//! another process, ptrace POKEDATA, and the PKRU in a core dump.
//!
//! References: read(2), write(2), pread(2), pwrite(2), readv(2), writev(2), recv(2), pipe(7),
//! process_vm_readv(2), ptrace(2) (PTRACE_POKEDATA), core(5), pkeys(7) ("the kernel honours PKRU
//! for accesses it makes on behalf of the thread"), kernel
//! `Documentation/core-api/protection-keys.rst`. These go beyond every upstream suite: the kernel
//! selftest checks only `read` into an AD buffer, vmsplice and futex (without exact results) and
//! PEEKDATA; none checks the positional, vectored or socket calls, what is left in the pipe or
//! socket after the refused copy, process_vm_*, or the core dump.
//!
//! What the kernel does, as the cases assert it: a copy to or from user memory made by a system
//! call on behalf of the calling thread is a user access under the thread's PKRU (the CPU checks
//! PKRU for supervisor accesses to user pages), so a denied buffer makes the call fail with
//! EFAULT — no signal — and nothing is consumed or produced. Access through get_user_pages with
//! `FOLL_REMOTE` (process_vm_* on the *target* side, ptrace) is "foreign" for
//! `arch_vma_access_permitted()` and ignores PKRU entirely, even when the target is the caller.
//!
//! Modules: `copy` (system calls copying to or from a protected buffer), `process_vm`
//! (process_vm_readv/writev), `poke` (ptrace POKEDATA), `coredump` (the PKRU in a core dump, read
//! with `pkeys_common::elf`).

mod copy;
mod coredump;
mod poke;
mod process_vm;

pub(crate) use copy::write_from_ad;
use copy::{
    pipe_read_into, pread_into, pwrite_from, readv_into, readv_partial, readv_partial_file,
    recv_into, writev_from,
};
use coredump::core_dump_pkru;
use pkeys_harness::{case, case_id};
use poke::poke;
use process_vm::{pvm_child, pvm_self};

use crate::util::{mapped, sysfail};
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::sys::{PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Feature, Needs, Stop, check_eq, pkru};

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const N: usize = 64;

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    let p = Needs::PKEYS;
    let mut v = vec![
        case!("write_from_ad::pipe", p, write_from_ad),
        case!("pwrite_from_ad::file", p, |c| pwrite_from(c, AD)),
        case!("pwrite_from_wd::file", p, |c| pwrite_from(c, WD)),
        case!("writev_from_ad::pipe", p, |c| writev_from(c, false)),
        case!("writev_partial_ad::pipe", p, |c| { writev_from(c, true) }),
        case!("readv_partial_ad::pipe", p, readv_partial),
        case!("readv_partial_ad::file", p, readv_partial_file),
    ];
    for (rights, rn) in [(AD, "ad"), (WD, "wd")] {
        v.push(Case::new(case_id!("read_into_{rn}::pipe"), p, move |c| {
            pipe_read_into(c, rights)
        }));
        v.push(Case::new(case_id!("pread_into_{rn}::file"), p, move |c| {
            pread_into(c, rights)
        }));
        v.push(Case::new(case_id!("readv_into_{rn}::pipe"), p, move |c| {
            readv_into(c, rights)
        }));
        v.push(Case::new(
            case_id!("recv_into_{rn}::socketpair"),
            p.feature(Feature::UnixSockets),
            move |c| recv_into(c, rights),
        ));
    }
    let pvm = p.feature(Feature::ProcessVm);
    let core = p.feature(Feature::CoreDump);
    v.extend([
        case!("process_vm_readv::self_remote_ad", pvm, |c| {
            pvm_self(c, false, false)
        }),
        case!("process_vm_readv::self_local_ad", pvm, |c| {
            pvm_self(c, false, true)
        }),
        case!("process_vm_writev::self_remote_ad", pvm, |c| {
            pvm_self(c, true, false)
        }),
        case!("process_vm_writev::self_local_ad", pvm, |c| {
            pvm_self(c, true, true)
        }),
        case!("process_vm_readv::child_reads_parent", pvm.ptrace(), |c| {
            pvm_child(c, false)
        }),
        case!(
            "process_vm_writev::child_writes_parent",
            pvm.ptrace(),
            |c| pvm_child(c, true),
        ),
        case!("ptrace_poke::rw", p.ptrace(), |c| poke(c, RW)),
        case!("ptrace_poke::readonly", p.ptrace(), |c| {
            poke(c, libc::PROT_READ)
        }),
        case!("core_dump_xstate_pkru::after_switch", core, |c| {
            core_dump_pkru(c, true)
        }),
        case!("core_dump_xstate_pkru::immediate", core, |c| {
            core_dump_pkru(c, false)
        }),
    ]);
    v
}

/// A populated anonymous page carrying a fresh key with `rights`, filled with `fill`.
pub(super) fn protected(ctx: &mut Ctx, rights: u32, fill: u8) -> Result<(Region, i32), Stop> {
    let r = mapped(Region::rw(Kind::Anon))?;
    for i in 0..N {
        r.write(i, fill);
    }
    let key = crate::util::alloc_random_key(ctx, 0, 21)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(RW, key))?;
    pkru::set_rights(key, rights);
    Ok((r, key))
}

/// Run `f` under the capture handler and require that it raised no signal.
pub(super) fn no_signal<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, Stop> {
    let mut out = None;
    let cap = fault::capture(Fix::AllowKey, || out = Some(f()));
    check_eq!(cap.faults.len(), 0, "signals raised by {what}");
    out.ok_or_else(|| Stop::Fail(format!("{what} did not complete")))
}
