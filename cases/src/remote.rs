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

use crate::util::{mapped, sysfail};
use pkeys_harness::fault::{self, ChildEnd, Fix};
use pkeys_harness::mem::{Kind, Region, UserBuf, temp_fd};
use pkeys_harness::ptrace as pt;
use pkeys_harness::sys::{self, Errno, PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, check, check_eq, cpu, pkru, skip};

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const N: usize = 64;

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    let p = Needs::PKEYS;
    let mut v = vec![
        Case::new("remote::write_from_ad::pipe", p, write_from_ad),
        Case::new("remote::pwrite_from_ad::file", p, |c| pwrite_from(c, AD)),
        Case::new("remote::pwrite_from_wd::file", p, |c| pwrite_from(c, WD)),
        Case::new("remote::writev_from_ad::pipe", p, |c| writev_from(c, false)),
        Case::new("remote::writev_partial_ad::pipe", p, |c| {
            writev_from(c, true)
        }),
        Case::new("remote::readv_partial_ad::pipe", p, readv_partial),
        Case::new("remote::readv_partial_ad::file", p, readv_partial_file),
    ];
    for (rights, rn) in [(AD, "ad"), (WD, "wd")] {
        v.push(Case::new(
            format!("remote::read_into_{rn}::pipe"),
            p,
            move |c| pipe_read_into(c, rights),
        ));
        v.push(Case::new(
            format!("remote::pread_into_{rn}::file"),
            p,
            move |c| pread_into(c, rights),
        ));
        v.push(Case::new(
            format!("remote::readv_into_{rn}::pipe"),
            p,
            move |c| readv_into(c, rights),
        ));
        v.push(Case::new(
            format!("remote::recv_into_{rn}::socketpair"),
            p.feature(Feature::UnixSockets),
            move |c| recv_into(c, rights),
        ));
    }
    let pvm = p.feature(Feature::ProcessVm);
    let core = p.feature(Feature::CoreDump);
    v.extend([
        Case::new("remote::process_vm_readv::self_remote_ad", pvm, |c| {
            pvm_self(c, false, false)
        }),
        Case::new("remote::process_vm_readv::self_local_ad", pvm, |c| {
            pvm_self(c, false, true)
        }),
        Case::new("remote::process_vm_writev::self_remote_ad", pvm, |c| {
            pvm_self(c, true, false)
        }),
        Case::new("remote::process_vm_writev::self_local_ad", pvm, |c| {
            pvm_self(c, true, true)
        }),
        Case::new(
            "remote::process_vm_readv::child_reads_parent",
            pvm.ptrace(),
            |c| pvm_child(c, false),
        ),
        Case::new(
            "remote::process_vm_writev::child_writes_parent",
            pvm.ptrace(),
            |c| pvm_child(c, true),
        ),
        Case::new("remote::ptrace_poke::rw", p.ptrace(), |c| poke(c, RW)),
        Case::new("remote::ptrace_poke::readonly", p.ptrace(), |c| {
            poke(c, libc::PROT_READ)
        }),
        Case::new("remote::core_dump_xstate_pkru::after_switch", core, |c| {
            core_dump_pkru(c, true)
        }),
        Case::new("remote::core_dump_xstate_pkru::immediate", core, |c| {
            core_dump_pkru(c, false)
        }),
    ]);
    v
}

/// A populated anonymous page carrying a fresh key with `rights`, filled with `fill`.
fn protected(ctx: &mut Ctx, rights: u32, fill: u8) -> Result<(Region, i32), Stop> {
    let r = mapped(Region::rw(Kind::Anon))?;
    for i in 0..N {
        r.write(i, fill);
    }
    let key = crate::util::alloc_random_key(ctx, 0, 21)?;
    sysfail("pkey_mprotect", r.pkey_mprotect(RW, key))?;
    pkru::set_rights(key, rights);
    Ok((r, key))
}

/// A pipe `(read, write)` holding `n` bytes 0x42.
fn pipe_with(n: usize) -> Result<(i32, i32), Stop> {
    let (r, w) = nix::unistd::pipe().map_err(|e| Stop::Fail(format!("pipe: {e}")))?;
    if n > 0 {
        nix::unistd::write(&w, &vec![0x42u8; n]).map_err(|e| Stop::Fail(format!("write: {e}")))?;
    }
    use std::os::fd::IntoRawFd;
    Ok((r.into_raw_fd(), w.into_raw_fd()))
}

/// Run `f` under the capture handler and require that it raised no signal.
fn no_signal<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, Stop> {
    let mut out = None;
    let cap = fault::capture(Fix::AllowKey, || out = Some(f()));
    check_eq!(cap.faults.len(), 0, "signals raised by {what}");
    out.ok_or_else(|| Stop::Fail(format!("{what} did not complete")))
}

/// Read what is left in `fd` (up to 4 KiB) into a plain buffer.
fn drain(fd: i32) -> Result<Vec<u8>, Stop> {
    let n = sysfail("FIONREAD", sys::fionread(fd))? as usize;
    let mut buf = vec![0u8; n];
    if n > 0 {
        let got = sysfail(
            "read (plain buffer)",
            sys::read_into(fd, buf.as_mut_slice().into()),
        )?;
        buf.truncate(got);
    }
    Ok(buf)
}

/// `write(pipe, buf, 64)` from an access-disabled buffer: -1/EFAULT, no signal, nothing written
/// into the pipe. Fault injection: expects one signal.
pub(crate) fn write_from_ad(ctx: &mut Ctx) -> Outcome {
    let (r, key) = protected(ctx, AD, 0x11)?;
    let (rd, wr) = pipe_with(0)?;
    let mut ret = Ok(0);
    let cap = fault::capture(Fix::AllowKey, || ret = sys::write_from(wr, r.ptr(0), N));
    ctx.diag(format!("key {key}: write(pipe, AD buffer, {N}) = {ret:?}"));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(
        cap.faults.len(),
        ctx.skew() as usize,
        "signals raised by write() from the AD buffer"
    );
    check_eq!(ret, Err(Errno::EFAULT), "write() from the AD buffer");
    check_eq!(left?.len(), 0, "bytes in the pipe after the refused write");
    Ok(())
}

/// `read(pipe, buf, 64)` into a buffer whose key denies writing (AD or WD): -1/EFAULT, no signal,
/// the buffer unchanged, and the 64 bytes still in the pipe (a plain read gets them).
fn pipe_read_into(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0)?;
    let (rd, wr) = pipe_with(N)?;
    let ret = no_signal("read() into the protected buffer", || {
        sys::read_into(rd, r.buf(0, N))
    });
    ctx.diag(format!("key {key} rights {rights}: read = {ret:?}"));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(ret?, Err(Errno::EFAULT), "read() into the protected buffer");
    check_eq!(left?, vec![0x42u8; N], "data left in the pipe");
    pkru::set_rights(key, 0);
    check_eq!(r.read(0), 0, "first byte of the buffer");
    Ok(())
}

/// A temporary file holding `N` bytes 0x5a.
fn file_with_data() -> Result<i32, Stop> {
    let fd = temp_fd(0).map_err(crate::util::map_failed)?;
    let data = [0x5au8; N];
    let n = sysfail("pwrite", sys::pwrite_from(fd, data.as_ptr(), N, 0))?;
    check_eq!(n, N, "bytes written to the temporary file");
    Ok(fd)
}

/// `pread(file, buf, 64, 0)` into an AD or WD buffer: -1/EFAULT, no signal, buffer unchanged.
fn pread_into(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0)?;
    let fd = file_with_data()?;
    let ret = no_signal("pread() into the protected buffer", || {
        sys::pread_into(fd, r.buf(0, N), 0)
    });
    ctx.diag(format!("key {key} rights {rights}: pread = {ret:?}"));
    sys::close(fd);
    check_eq!(
        ret?,
        Err(Errno::EFAULT),
        "pread() into the protected buffer"
    );
    pkru::set_rights(key, 0);
    check_eq!(r.read(0), 0, "first byte of the buffer");
    Ok(())
}

/// `pwrite(file, buf, 64, 64)` (appending past the end) from an AD buffer: -1/EFAULT, no signal,
/// the file keeps its size. From a WD buffer (reading is allowed) it writes the 64 bytes.
fn pwrite_from(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0x33)?;
    let fd = file_with_data()?;
    let ret = no_signal("pwrite() from the protected buffer", || {
        sys::pwrite_from(fd, r.ptr(0), N, N as i64)
    });
    ctx.diag(format!("key {key} rights {rights}: pwrite = {ret:?}"));
    let size = sys::fstat_size(fd);
    let mut back = [0u8; N];
    let read_back = sys::pread_into(fd, back.as_mut_slice().into(), N as i64);
    sys::close(fd);
    let ret = ret?;
    if rights == AD {
        check_eq!(ret, Err(Errno::EFAULT), "pwrite() from the AD buffer");
        check_eq!(size, Ok(N as i64), "file size after the refused pwrite");
    } else {
        check_eq!(ret, Ok(N), "pwrite() from the WD buffer");
        check_eq!(size, Ok(2 * N as i64), "file size after the pwrite");
        check_eq!(read_back, Ok(N), "pread of the written bytes");
        check_eq!(back, [0x33u8; N], "bytes written from the WD buffer");
    }
    Ok(())
}

/// `readv(pipe, [protected 64])`: -1/EFAULT, no signal, the data left in the pipe.
fn readv_into(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0)?;
    let (rd, wr) = pipe_with(N)?;
    let ret = no_signal("readv() into the protected buffer", || {
        sys::readv_into(rd, &[r.buf(0, N)])
    });
    ctx.diag(format!("key {key} rights {rights}: readv = {ret:?}"));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(
        ret?,
        Err(Errno::EFAULT),
        "readv() into the protected buffer"
    );
    check_eq!(left?, vec![0x42u8; N], "data left in the pipe");
    Ok(())
}

/// `readv(pipe, [plain 32, AD 32])` with 64 bytes in one pipe buffer: -1/EFAULT, no signal — not
/// a short read of 32 (readv(2) would allow one). The pipe copies a buffer's bytes to the iovecs
/// and consumes the buffer only if all of them arrived; the copy stops at the protected iovec, so
/// nothing is consumed and the call fails, yet the plain iovec has already received its 32 bytes.
/// All 64 bytes stay in the pipe. Measured on 7.2 and consistent with `pipe_read()`.
fn readv_partial(ctx: &mut Ctx) -> Outcome {
    let (r, key) = protected(ctx, AD, 0)?;
    let (rd, wr) = pipe_with(N)?;
    let mut plain = vec![0u8; N / 2];
    let pa = UserBuf::from(plain.as_mut_slice());
    let ret = no_signal("readv() with a protected second iovec", || {
        sys::readv_into(rd, &[pa, r.buf(0, N / 2)])
    });
    ctx.diag(format!("key {key}: readv([plain 32, AD 32]) = {ret:?}"));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(
        ret?,
        Err(Errno::EFAULT),
        "readv() with a protected second iovec"
    );
    check_eq!(
        plain,
        vec![0x42u8; N / 2],
        "plain iovec contents after the failed readv"
    );
    check_eq!(left?, vec![0x42u8; N], "data left in the pipe");
    Ok(())
}

/// `readv(file, [plain 32, AD 32])` on a regular file holding 64 bytes: a short read of 32 (the
/// page-cache copy counts what arrived before the protected iovec and advances the file position
/// by it), no signal; the next plain read returns the other 32 bytes. Contrast with the pipe.
fn readv_partial_file(ctx: &mut Ctx) -> Outcome {
    let (r, key) = protected(ctx, AD, 0)?;
    let fd = file_with_data()?;
    let mut plain = vec![0u8; N / 2];
    let pa = UserBuf::from(plain.as_mut_slice());
    let ret = no_signal("readv() with a protected second iovec", || {
        sys::readv_into(fd, &[pa, r.buf(0, N / 2)])
    });
    ctx.diag(format!(
        "key {key}: readv(file, [plain 32, AD 32]) = {ret:?}"
    ));
    let mut rest = vec![0u8; N];
    let next = sys::read_into(fd, rest.as_mut_slice().into());
    sys::close(fd);
    check_eq!(ret?, Ok(N / 2), "readv() with a protected second iovec");
    check_eq!(plain, vec![0x5au8; N / 2], "plain iovec contents");
    check_eq!(next, Ok(N / 2), "next read() from the file position");
    check_eq!(rest[..N / 2], [0x5au8; N / 2], "bytes of the next read()");
    Ok(())
}

/// `writev(pipe, [AD 64])`, or with `partial` `writev(pipe, [plain 32, AD 32])`: -1/EFAULT, no
/// signal, nothing in the pipe. A pipe write copies a whole chunk into a fresh pipe buffer and
/// discards it when the copy comes up short, so even the plain first iovec is not written (the
/// mirror image of `readv_partial_ad::pipe`).
fn writev_from(ctx: &mut Ctx, partial: bool) -> Outcome {
    let (r, key) = protected(ctx, AD, 0x44)?;
    let (rd, wr) = pipe_with(0)?;
    let plain = [0x55u8; N / 2];
    let parts: Vec<(usize, usize)> = if partial {
        vec![(plain.as_ptr() as usize, N / 2), (r.addr(), N / 2)]
    } else {
        vec![(r.addr(), N)]
    };
    let ret = no_signal("writev() from the AD buffer", || {
        sys::writev_from(wr, &parts)
    });
    ctx.diag(format!(
        "key {key}: writev({} iovecs) = {ret:?}",
        parts.len()
    ));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(ret?, Err(Errno::EFAULT), "writev() from the AD buffer");
    check_eq!(left?.len(), 0, "bytes in the pipe after the refused writev");
    Ok(())
}

/// `recv(socket, buf, 64, 0)` on an AF_UNIX stream socket into an AD or WD buffer: -1/EFAULT, no
/// signal, the data stays queued (a plain recv gets all of it).
fn recv_into(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0)?;
    let (a, b) = sysfail("socketpair", sys::socketpair_stream())?;
    let data = [0x66u8; N];
    let sent = sys::write_from(b, data.as_ptr(), N);
    let ret = no_signal("recv() into the protected buffer", || {
        sys::recv_into(a, r.buf(0, N), 0)
    });
    ctx.diag(format!("key {key} rights {rights}: recv = {ret:?}"));
    let left = drain(a);
    sys::close(a);
    sys::close(b);
    check_eq!(sent, Ok(N), "bytes sent");
    check_eq!(ret?, Err(Errno::EFAULT), "recv() into the protected buffer");
    check_eq!(left?, vec![0x66u8; N], "data still queued on the socket");
    Ok(())
}

/// `process_vm_readv` / `process_vm_writev` on the calling process itself. The target ("remote")
/// side is pinned with get_user_pages(FOLL_REMOTE), which never checks PKRU, even though the
/// target is the caller's own memory: reading from or writing into an AD region succeeds with
/// the right bytes. The local iovec is copied with an ordinary user access under the caller's
/// PKRU: an AD local buffer makes the call fail with EFAULT (nothing transferred). No signal
/// either way. process_vm_readv(2) says nothing about protection keys.
fn pvm_self(ctx: &mut Ctx, write: bool, local_protected: bool) -> Outcome {
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

/// Exit codes of the child in `pvm_child`.
const PVM_CALL: i32 = 1;
const PVM_BYTES: i32 = 2;

/// A forked child (whose PKRU, copied from the parent, access-disables the key) reads the
/// parent's AD region with `process_vm_readv`, or writes into it with `process_vm_writev`: the
/// remote side ignores the caller's PKRU, so it succeeds with the right bytes. The parent checks
/// a write after the child exited. `PR_SET_PTRACER_ANY` lets the child in under Yama
/// ptrace_scope=1.
fn pvm_child(ctx: &mut Ctx, write: bool) -> Outcome {
    let (r, key) = protected(ctx, AD, 0x88)?;
    let _ = sys::set_ptracer_any();
    let remote = [r.buf(0, N)];
    let end = fault::in_child(|| {
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
        let code = if ret != Ok(N) {
            PVM_CALL
        } else if !write && buf != vec![0x88u8; N] {
            PVM_BYTES
        } else {
            0
        };
        sys::exit_now(code);
    });
    check_eq!(
        end,
        ChildEnd::Exited(0),
        "child status ({PVM_CALL}: the call did not transfer {N} bytes, {PVM_BYTES}: wrong bytes read)"
    );
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

/// Exit codes of the tracee in `poke`.
const POKE_TRACEME: i32 = 10;
const POKE_RIGHTS: i32 = 11;
const POKE_VALUE: i32 = 12;
const POKED: u64 = 0x0123_4567_89ab_cdef;

/// A stopped tracee whose page carries a key that both it and the tracer access-disable (and that
/// is read-only in the `readonly` variant): PTRACE_POKEDATA (get_user_pages with FOLL_REMOTE and
/// FOLL_FORCE) stores the word anyway. The tracee, resumed, finds its PKRU unchanged, allows the
/// key and reads the poked word itself; its exit status says what it saw.
fn poke(ctx: &mut Ctx, prot: i32) -> Outcome {
    let (r, key) = protected(ctx, AD, 0)?;
    if prot != RW {
        sysfail("pkey_mprotect(prot)", r.pkey_mprotect(prot, key))?;
    }
    let pkru_child = pkru::read();
    let child = sysfail(
        "fork",
        pt::fork_child(|| {
            fault::set_report_fd(-1);
            if pt::traceme().is_err() {
                return POKE_TRACEME;
            }
            sys::raise(libc::SIGSTOP);
            if pkru::rdpkru() != pkru_child {
                return POKE_RIGHTS;
            }
            pkru::set_rights(key, 0);
            let v = (0..8).fold(0u64, |v, i| v | (u64::from(r.read(8 + i)) << (8 * i)));
            if v != POKED {
                return POKE_VALUE;
            }
            0
        }),
    )?;
    let res = (|| -> Outcome {
        let st = sysfail("waitpid", pt::wait(child))?;
        check!(
            libc::WIFSTOPPED(st) && libc::WSTOPSIG(st) == libc::SIGSTOP,
            "tracee not stopped by SIGSTOP: status {st:#x}"
        );
        check_eq!(
            pkru::rights_of(pkru::read(), key),
            AD,
            "tracer's rights on the key"
        );
        check_eq!(
            pt::poke(child, r.addr() + 8, POKED),
            Ok(()),
            "PTRACE_POKEDATA into the protected page"
        );
        sysfail("PTRACE_CONT", pt::cont(child))?;
        let st = sysfail("waitpid", pt::wait(child))?;
        check!(libc::WIFEXITED(st), "tracee did not exit: status {st:#x}");
        check_eq!(
            libc::WEXITSTATUS(st),
            0,
            "tracee exit status ({POKE_TRACEME}: PTRACE_TRACEME failed, {POKE_RIGHTS}: PKRU changed, \
             {POKE_VALUE}: the poked word was not there)"
        );
        Ok(())
    })();
    if res.is_err() {
        pt::kill_and_reap(child);
    }
    res
}

/// The PKRU the core-dumping child sets: key 0 allowed (libc and the stack live there), every
/// other key a different pattern.
const CORE_PKRU: u32 = 0xa5a5_a5a0;
const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";
/// Children dumped per case: with a sleep (each dump is then right on a correct kernel), and
/// without one (the stale copy shows unless a context switch happens to intervene, which load on
/// the host makes more likely: measured 0–5 right of 5 on 6.12, so 20 rounds).
const CORE_ROUNDS_AFTER_SWITCH: usize = 5;
const CORE_ROUNDS_IMMEDIATE: usize = 20;

/// The core dump of a process killed by SIGABRT carries its PKRU: the `NT_X86_XSTATE` note of the
/// ELF core (core(5); the regset ptrace's PTRACE_GETREGSET returns) holds the XSAVE area in the
/// standard format, with XSTATE_BV bit 9 set and PKRU at the CPUID offset equal to the value the
/// child wrote before it raised SIGABRT. Each child (5, or 20 without the sleep) writes the
/// value and, with `sleep`, sleeps until the kernel counts a voluntary context switch (which
/// stores the live PKRU in the kernel's per-task copy; 2 ms sleeps, checked with getrusage)
/// before raising SIGABRT; without it, raises at once — the note must still carry the live
/// value. 5.10 does; 6.1 and 7.2 write the PKRU the task had at its last context switch (here:
/// the value inherited at fork) instead — since the 5.14 FPU rework keeps PKRU out of the XSAVE
/// buffer, the regset copies the per-task `thread.pkru`, which is only refreshed when the task is
/// switched out. Needs root to point `core_pattern` at `/tmp` (restored afterwards); the child
/// sets RLIMIT_CORE unlimited and `coredump_filter` 0 (notes only).
fn core_dump_pkru(ctx: &mut Ctx, sleep: bool) -> Outcome {
    if !sys::is_root() {
        skip!("core_pattern can't be set (not root)");
    }
    let old = std::fs::read_to_string(CORE_PATTERN)
        .map_err(|e| Stop::Skip(format!("core_pattern can't be read: {e}")))?;
    if let Err(e) = std::fs::write(CORE_PATTERN, "/tmp/core.%p") {
        skip!("core_pattern can't be set: {e}");
    }
    // A parent PKRU different from init_pkru (key 15's rights cleared), so that a core carrying
    // the value inherited at fork can be told apart from one carrying init_pkru.
    let saved = pkru::read();
    let at_fork = pkru::with_rights(saved, 15, 0);
    pkru::write(at_fork);
    let mut seen = Vec::new();
    let mut res = Ok(());
    let rounds = if sleep {
        CORE_ROUNDS_AFTER_SWITCH
    } else {
        CORE_ROUNDS_IMMEDIATE
    };
    for _ in 0..rounds {
        match core_round(ctx, sleep) {
            Ok(v) => seen.push(v),
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    let _ = std::fs::write(CORE_PATTERN, old.trim_end());
    pkru::write(saved);
    res?;
    let shown: Vec<String> = seen.iter().map(|&v| pkru::fmt(v)).collect();
    ctx.diag(format!(
        "PKRU in the cores of {} children: {} (the children's PKRU at fork: {})",
        seen.len(),
        shown.join(" "),
        pkru::fmt(at_fork)
    ));
    let right = seen.iter().filter(|&&v| v == CORE_PKRU).count();
    check_eq!(
        right,
        rounds,
        "cores whose NT_X86_XSTATE PKRU is the {} the child set",
        pkru::fmt(CORE_PKRU)
    );
    Ok(())
}

/// One child: set PKRU, maybe sleep, raise SIGABRT; the PKRU found in its core.
fn core_round(ctx: &mut Ctx, sleep: bool) -> Result<u32, Stop> {
    let child = sysfail(
        "fork",
        pt::fork_child(|| {
            fault::set_report_fd(-1);
            sys::default_signal(libc::SIGABRT);
            if sys::core_limit_unlimited().is_err() {
                return 20;
            }
            let _ = std::fs::write("/proc/self/coredump_filter", "0");
            if !sleep {
                // Start a fresh time slice, so that no context switch falls between the PKRU
                // write and the dump (one would refresh the kernel's per-task copy).
                std::thread::yield_now();
            }
            pkru::wrpkru_raw(CORE_PKRU);
            if sleep {
                // The context switch is what stores the live PKRU in the kernel's per-task copy.
                // A sleep whose timer expires before the task blocks does not switch (a vCPU
                // stalled by a busy host loses a 1 ms sleep that way: a FAIL seen under load), so
                // sleep until the kernel counts a voluntary switch.
                use nix::sys::resource::{UsageWho, getrusage};
                let switches = || {
                    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| u.voluntary_context_switches())
                };
                let before = switches();
                for _ in 0..50 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    if switches() > before {
                        break;
                    }
                }
            }
            sys::raise(libc::SIGABRT);
            21
        }),
    )?;
    let st = sysfail("waitpid", pt::wait(child))?;
    let path = format!("/tmp/core.{child}");
    let core = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    check!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGABRT,
        "child not killed by SIGABRT: status {st:#x}"
    );
    if !libc::WCOREDUMP(st) {
        skip!("the kernel wrote no core for the child (status {st:#x})");
    }
    let core = match core {
        Ok(c) => c,
        Err(e) => skip!("no core appeared at {path}: {e}"),
    };
    let notes = elf_notes(&core).map_err(|m| Stop::Fail(format!("core: {m}")))?;
    let xs: Vec<&[u8]> = notes
        .iter()
        .filter(|(name, ty, _)| *ty == pt::NT_X86_XSTATE as u32 && name == b"LINUX")
        .map(|(_, _, d)| *d)
        .collect();
    check_eq!(xs.len(), 1, "NT_X86_XSTATE notes in the core");
    let x = xs[0];
    let off = cpu::probe().xsave_pkru_offset as usize;
    check!(
        off != 0 && x.len() >= off + 4 && x.len() >= 520,
        "NT_X86_XSTATE note of {} bytes has no PKRU (offset {off})",
        x.len()
    );
    let bv = u64::from_le_bytes(x[512..520].try_into().unwrap());
    let got = u32::from_le_bytes(x[off..off + 4].try_into().unwrap());
    ctx.diag(format!(
        "core {path}: {} bytes, note {} bytes, XSTATE_BV {bv:#x}, PKRU at {off:#x} = {}",
        core.len(),
        x.len(),
        pkru::fmt(got)
    ));
    check!(
        bv & fault::XSTATE_PKRU != 0,
        "XSTATE_BV bit 9 clear in the core's xstate: {bv:#x}"
    );
    Ok(got)
}

/// One ELF note: name (without the NUL), type, descriptor.
type Note<'a> = (Vec<u8>, u32, &'a [u8]);

/// The notes `(name, type, descriptor)` of every PT_NOTE segment of an ELF64 little-endian core.
fn elf_notes(b: &[u8]) -> Result<Vec<Note<'_>>, String> {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes(s.try_into().unwrap()))
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap()) as usize)
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return Err("not an ELF64 little-endian file".into());
    }
    let bad = || "truncated".to_string();
    let phoff = u64_at(0x20).ok_or_else(bad)?;
    let phentsize = u16_at(0x36).ok_or_else(bad)? as usize;
    let phnum = u16_at(0x38).ok_or_else(bad)? as usize;
    let mut out = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph).ok_or_else(bad)? != libc::PT_NOTE {
            continue;
        }
        let off = u64_at(ph + 8).ok_or_else(bad)?;
        let size = u64_at(ph + 0x20).ok_or_else(bad)?;
        let mut p = off;
        while p + 12 <= off + size {
            let namesz = u32_at(p).ok_or_else(bad)? as usize;
            let descsz = u32_at(p + 4).ok_or_else(bad)? as usize;
            let ty = u32_at(p + 8).ok_or_else(bad)?;
            let name_at = p + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let name = b.get(name_at..name_at + namesz).ok_or_else(bad)?;
            let name = name.strip_suffix(b"\0").unwrap_or(name).to_vec();
            let desc = b.get(desc_at..desc_at + descsz).ok_or_else(bad)?;
            out.push((name, ty, desc));
            p = desc_at + descsz.next_multiple_of(4);
        }
    }
    Ok(out)
}

/// The ELF note parser on a hand-built core.
#[cfg(test)]
mod tests {
    use super::elf_notes;

    #[test]
    fn parses_one_note() {
        let mut b = vec![0u8; 64 + 56];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&libc::PT_NOTE.to_le_bytes());
        let note_off = b.len();
        let mut note = Vec::new();
        note.extend_from_slice(&6u32.to_le_bytes());
        note.extend_from_slice(&5u32.to_le_bytes());
        note.extend_from_slice(&0x202u32.to_le_bytes());
        note.extend_from_slice(b"LINUX\0\0\0");
        note.extend_from_slice(&[1, 2, 3, 4, 5, 0, 0, 0]);
        b[64 + 8..64 + 16].copy_from_slice(&(note_off as u64).to_le_bytes());
        b[64 + 0x20..64 + 0x28].copy_from_slice(&(note.len() as u64).to_le_bytes());
        b.extend_from_slice(&note);
        let n = elf_notes(&b).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].0, b"LINUX".to_vec());
        assert_eq!(n[0].1, 0x202);
        assert_eq!(n[0].2, &[1, 2, 3, 4, 5]);
    }
}
