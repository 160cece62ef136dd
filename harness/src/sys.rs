//! Raw pkey system calls and a few process helpers, each returning the kernel's errno on failure.
//!
//! The calls go through `syscall(2)` directly so that no libc wrapper (which may be absent or may
//! filter arguments) stands between a case and the kernel.

pub use crate::mem::UserBuf;
pub use nix::errno::Errno;

/// `pkey_mprotect` system call number on x86-64.
pub const SYS_PKEY_MPROTECT: libc::c_long = 329;
/// `pkey_alloc` system call number on x86-64.
pub const SYS_PKEY_ALLOC: libc::c_long = 330;
/// `pkey_free` system call number on x86-64.
pub const SYS_PKEY_FREE: libc::c_long = 331;
/// `PKEY_DISABLE_ACCESS`: the key's AD bit.
pub const PKEY_DISABLE_ACCESS: u32 = 1;
/// `PKEY_DISABLE_WRITE`: the key's WD bit.
pub const PKEY_DISABLE_WRITE: u32 = 2;
/// `PKEY_UNRESTRICTED` (uapi since 6.15).
pub const PKEY_UNRESTRICTED: u32 = 0;
/// Number of protection keys on x86.
pub const NR_PKEYS: i32 = 16;
/// `SEGV_PKUERR`: `si_code` of a protection-key fault.
pub const SEGV_PKUERR: i32 = 4;

fn ret(r: libc::c_long) -> Result<i32, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as i32)
    }
}

/// `pkey_alloc(flags, access_rights)`: the new key, and the calling thread's PKRU gets `access_rights`
/// for it. Prefer [`crate::pkru::alloc`], which keeps the shadow PKRU in step.
///
/// # References
/// pkey_alloc(2).
pub fn pkey_alloc_raw(flags: u32, rights: u32) -> Result<i32, Errno> {
    // SAFETY: pkey_alloc takes two integers and touches no user memory.
    ret(unsafe {
        libc::syscall(
            SYS_PKEY_ALLOC,
            flags as libc::c_ulong,
            rights as libc::c_ulong,
        )
    })
}

/// `pkey_free(pkey)`.
///
/// # References
/// pkey_free(2).
pub fn pkey_free(pkey: i32) -> Result<(), Errno> {
    // SAFETY: pkey_free takes one integer and touches no user memory.
    ret(unsafe { libc::syscall(SYS_PKEY_FREE, pkey as libc::c_long) }).map(drop)
}

/// `pkey_mprotect(addr, len, prot, pkey)` on an arbitrary address. Safe callers use
/// [`crate::mem::Region::pkey_mprotect`] and its range variants, or [`pkey_mprotect_top`].
///
/// # Safety
/// Every mapping in `[addr, addr + len)` (rounded up to pages) must belong to the caller, and no
/// Rust reference may point into it: taking the rights away from memory that Rust code reads
/// (a stack, the heap, a static) makes a later access fault or, with `PROT_EXEC` and no read,
/// makes data unreadable under the compiler's nose. Unaligned, unmapped or wrapping ranges are
/// refused by the kernel and change nothing.
///
/// # References
/// pkey_mprotect(2), mprotect(2).
pub unsafe fn pkey_mprotect(addr: usize, len: usize, prot: i32, pkey: i32) -> Result<(), Errno> {
    // SAFETY: the caller upholds the contract above; the call passes integers only.
    ret(unsafe {
        libc::syscall(
            SYS_PKEY_MPROTECT,
            addr as libc::c_ulong,
            len as libc::c_ulong,
            prot as libc::c_ulong,
            pkey as libc::c_long,
        )
    })
    .map(drop)
}

/// `mprotect(addr, len, prot)` as a raw system call.
///
/// # Safety
/// As for [`pkey_mprotect`].
pub unsafe fn mprotect(addr: usize, len: usize, prot: i32) -> Result<(), Errno> {
    // SAFETY: the caller upholds pkey_mprotect's contract.
    ret(unsafe { libc::syscall(libc::SYS_mprotect, addr, len, prot as libc::c_ulong) }).map(drop)
}

/// The last page of the address space (`usize::MAX` rounded down to a page): never user memory
/// (x86-64 user space ends at 2^47, or 2^56 with 5-level paging), so a range starting there is
/// one the kernel must refuse (ENOMEM: past the end, or wrapping).
pub fn top_page() -> usize {
    usize::MAX & !(page_size() - 1)
}

/// `pkey_mprotect(top_page(), len, prot, pkey)`: a range past the end of the address space,
/// which the kernel refuses without changing anything.
pub fn pkey_mprotect_top(len: usize, prot: i32, pkey: i32) -> Result<(), Errno> {
    // SAFETY: the range starts above user space: no mapping there belongs to anyone, so nothing
    // can change (see `top_page`).
    unsafe { pkey_mprotect(top_page(), len, prot, pkey) }
}

/// `mprotect(top_page(), len, prot)` (see [`pkey_mprotect_top`]).
pub fn mprotect_top(len: usize, prot: i32) -> Result<(), Errno> {
    // SAFETY: as in `pkey_mprotect_top`.
    unsafe { mprotect(top_page(), len, prot) }
}

/// The current thread id.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Base page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// `_exit(code)` without running destructors or atexit handlers (for forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

pub use pkeys_common::user::is_root;

/// Send `sig` to the calling thread (`tgkill(getpid(), gettid(), sig)`).
pub fn raise(sig: i32) {
    // SAFETY: tgkill on ourselves.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), gettid(), sig) };
}

fn ret_len(r: isize) -> Result<usize, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}

/// `read(fd, buf, len)` into memory the caller owns (the kernel checks the rights on it).
pub fn read_into(fd: i32, buf: UserBuf<'_>) -> Result<usize, Errno> {
    // SAFETY: `buf` is memory the caller owns (see UserBuf); the kernel validates it.
    ret_len(unsafe { libc::read(fd, buf.addr() as *mut libc::c_void, buf.len()) })
}

/// `write(fd, buf, len)` from raw memory. Safe with any address: the kernel only reads the
/// source (and validates it: a bad one is EFAULT).
pub fn write_from(fd: i32, buf: *const u8, len: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel only reads the source buffer, and validates it.
    ret_len(unsafe { libc::write(fd, buf.cast(), len) })
}

/// `close(fd)`, ignoring errors.
pub fn close(fd: i32) {
    // SAFETY: closing an fd the caller owns.
    unsafe { libc::close(fd) };
}

/// `vmsplice(fd, {buf, len}, 1, SPLICE_F_GIFT)` into a pipe: the kernel only reads the source
/// (and validates it), so any address is safe.
pub fn vmsplice_gift(fd: i32, buf: *mut u8, len: usize) -> Result<usize, Errno> {
    let iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    };
    // SAFETY: one iovec describing caller memory; the kernel validates it.
    ret_len(unsafe { libc::vmsplice(fd, &iov, 1, libc::SPLICE_F_GIFT) })
}

/// `futex(word, FUTEX_WAIT, expected, NULL)`. The kernel only reads the word (and validates the
/// address), so any address is safe.
pub fn futex_wait(word: usize, expected: u32) -> Result<i32, Errno> {
    crate::features::touch(crate::features::Feature::Futex);
    // SAFETY: the kernel reads the word (checking access) and may sleep; no timeout pointer.
    ret(unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT,
            expected,
            0usize,
            0usize,
            0u32,
        )
    })
}

/// `madvise(addr, len, advice)`. Safe callers use [`crate::mem::Region::madvise`].
///
/// # Safety
/// Every mapping in the range must belong to the caller, and no Rust reference may point into
/// it: advice such as `MADV_DONTNEED` or `MADV_REMOVE` drops the contents.
pub unsafe fn madvise(addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
    crate::features::touch(crate::features::Feature::Madvise);
    if advice == libc::MADV_MERGEABLE || advice == libc::MADV_UNMERGEABLE {
        crate::features::touch(crate::features::Feature::Ksm);
    }
    // SAFETY: the caller upholds the contract above.
    ret(unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) } as libc::c_long).map(drop)
}

/// `mseal` system call number (6.10+).
pub const SYS_MSEAL: libc::c_long = 462;

/// `mseal(addr, len, 0)`. Safe callers use [`crate::mem::Region::mseal`].
///
/// # Safety
/// Every mapping in the range must belong to the caller: a sealed mapping can no longer be
/// unmapped or changed, so its owner can no longer free or reuse it (the owner leaks it).
pub unsafe fn mseal(addr: usize, len: usize) -> Result<(), Errno> {
    crate::features::touch(crate::features::Feature::Mseal);
    // SAFETY: the caller upholds the contract above.
    ret(unsafe { libc::syscall(SYS_MSEAL, addr, len, 0usize) }).map(drop)
}

/// Environment variable that makes the suite binary print its PKRU at start and exit (used by
/// the exec cases: a freshly exec'd process must start with `init_pkru`).
pub const PRINT_PKRU_ENV: &str = "PKEYS_PRINT_PKRU";

/// Environment variable that makes the suite binary print its PKRU and the key its first
/// `pkey_alloc(0, 0)` returns (`pkru=0x... first_key=N`, N the errno negated on failure) and
/// exit: the explorer's `execve` step.
pub const PRINT_EXEC_STATE_ENV: &str = "PKEYS_PRINT_EXEC_STATE";

/// If [`PRINT_PKRU_ENV`] is set, print `pkru=0x...` and exit 0; if [`PRINT_EXEC_STATE_ENV`] is,
/// print the PKRU and the first key allocated. Called first thing by the suite.
pub fn print_pkru_if_requested() {
    if std::env::var_os(PRINT_EXEC_STATE_ENV).is_some() {
        let pkru = crate::pkru::rdpkru();
        let key = pkey_alloc_raw(0, 0).unwrap_or_else(|e| -(e as i32));
        println!("pkru={pkru:#010x} first_key={key}");
        std::process::exit(0);
    }
    if std::env::var_os(PRINT_PKRU_ENV).is_some() {
        let c = crate::cpu::probe();
        if c.ospke {
            println!("pkru={:#010x}", crate::pkru::rdpkru());
        } else {
            println!("pkru=none");
        }
        std::process::exit(0);
    }
}

/// `munmap(addr, len)`. Safe callers use [`crate::mem::Region::munmap_range`].
///
/// # Safety
/// The range must be (part of) a mapping the caller owns, and nothing may access it afterwards
/// through any path that assumes it is still mapped.
pub unsafe fn munmap(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller upholds the contract above.
    ret(unsafe { libc::munmap(addr as *mut libc::c_void, len) } as libc::c_long).map(drop)
}

/// `mlock(addr, len)`. Safe callers use [`crate::mem::Region::mlock_range`].
///
/// # Safety
/// The range should be the caller's own memory: locking faults pages in (reading them through
/// the kernel) and pins them; it changes no contents.
pub unsafe fn mlock(addr: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller upholds the contract above.
    ret(unsafe { libc::mlock(addr as *const libc::c_void, len) } as libc::c_long).map(drop)
}

/// `mlock2(addr, len, flags)` as a raw system call (`MLOCK_ONFAULT` = 1).
///
/// # Safety
/// As for [`mlock`].
pub unsafe fn mlock2(addr: usize, len: usize, flags: u32) -> Result<(), Errno> {
    // SAFETY: the caller upholds mlock's contract; the flags are integers.
    ret(unsafe { libc::syscall(libc::SYS_mlock2, addr, len, flags as libc::c_ulong) }).map(drop)
}

/// `pread(fd, buf, len, off)` into memory the caller owns (the kernel checks the rights on it).
pub fn pread_into(fd: i32, buf: UserBuf<'_>, off: i64) -> Result<usize, Errno> {
    // SAFETY: `buf` is memory the caller owns (see UserBuf); the kernel validates it.
    ret_len(unsafe { libc::pread(fd, buf.addr() as *mut libc::c_void, buf.len(), off) })
}

/// `pwrite(fd, buf, len, off)` from raw memory (only read, as in [`write_from`]).
pub fn pwrite_from(fd: i32, buf: *const u8, len: usize, off: i64) -> Result<usize, Errno> {
    // SAFETY: the kernel validates the source buffer.
    ret_len(unsafe { libc::pwrite(fd, buf.cast(), len, off) })
}

fn raw_parts(parts: &[UserBuf<'_>]) -> Vec<(usize, usize)> {
    parts.iter().map(UserBuf::raw).collect()
}

fn iovecs(parts: &[(usize, usize)]) -> Vec<libc::iovec> {
    parts
        .iter()
        .map(|&(base, len)| libc::iovec {
            iov_base: base as *mut libc::c_void,
            iov_len: len,
        })
        .collect()
}

/// `readv(fd, iov)` into buffers the caller owns.
pub fn readv_into(fd: i32, parts: &[UserBuf<'_>]) -> Result<usize, Errno> {
    let iov = iovecs(&raw_parts(parts));
    // SAFETY: the iovecs describe caller memory; the kernel validates each one.
    ret_len(unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as i32) })
}

/// `writev(fd, iov)` where each part is `(address, length)`: only read, as in [`write_from`].
pub fn writev_from(fd: i32, parts: &[(usize, usize)]) -> Result<usize, Errno> {
    let iov = iovecs(parts);
    // SAFETY: the iovecs describe caller memory, which the kernel only reads (and validates).
    ret_len(unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as i32) })
}

/// `recv(fd, buf, len, flags)` into memory the caller owns.
pub fn recv_into(fd: i32, buf: UserBuf<'_>, flags: i32) -> Result<usize, Errno> {
    // SAFETY: `buf` is memory the caller owns (see UserBuf); the kernel validates it.
    ret_len(unsafe { libc::recv(fd, buf.addr() as *mut libc::c_void, buf.len(), flags) })
}

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`.
pub fn socketpair_stream() -> Result<(i32, i32), Errno> {
    crate::features::touch(crate::features::Feature::UnixSockets);
    let mut fds = [0i32; 2];
    // SAFETY: socketpair with a valid two-element array (nix's socket API is not enabled here).
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    ret(r as libc::c_long).map(|_| (fds[0], fds[1]))
}

/// `ioctl(fd, FIONREAD)`: bytes waiting to be read on a pipe or socket.
pub fn fionread(fd: i32) -> Result<i32, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD stores one int into `n`.
    ret(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } as libc::c_long).map(|_| n)
}

/// Size of the file open on `fd` (`fstat`).
pub fn fstat_size(fd: i32) -> Result<i64, Errno> {
    // SAFETY: fstat fills a zeroed stat struct owned here.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        ret(libc::fstat(fd, &mut st) as libc::c_long).map(|_| st.st_size)
    }
}

/// `process_vm_readv(pid, local, remote, 0)`. The local parts (written) are buffers the caller
/// owns; the remote ones `(address, length)` in `pid`, only read.
pub fn process_vm_readv(
    pid: i32,
    local: &[UserBuf<'_>],
    remote: &[(usize, usize)],
) -> Result<usize, Errno> {
    crate::features::touch(crate::features::Feature::ProcessVm);
    let (l, r) = (iovecs(&raw_parts(local)), iovecs(remote));
    // SAFETY: the local iovecs are memory the caller owns; the remote side is only read; the
    // kernel validates both.
    ret_len(unsafe {
        libc::process_vm_readv(pid, l.as_ptr(), l.len() as _, r.as_ptr(), r.len() as _, 0)
    })
}

/// `process_vm_writev(pid, local, remote, 0)`: the local parts `(address, length)` are only
/// read; the remote ones, written, are buffers the caller owns, at the same addresses in `pid`
/// (this process, or a fork of it, or its parent before the fork, which share the layout).
pub fn process_vm_writev(
    pid: i32,
    local: &[(usize, usize)],
    remote: &[UserBuf<'_>],
) -> Result<usize, Errno> {
    crate::features::touch(crate::features::Feature::ProcessVm);
    let (l, r) = (iovecs(local), iovecs(&raw_parts(remote)));
    // SAFETY: the local side is only read; the remote side, written, is memory the caller owns
    // here, so a write into this very process stays inside it, and a write into another
    // process is no memory of this one.
    ret_len(unsafe {
        libc::process_vm_writev(pid, l.as_ptr(), l.len() as _, r.as_ptr(), r.len() as _, 0)
    })
}

/// `getpid()`.
pub fn getpid() -> i32 {
    nix::unistd::getpid().as_raw()
}

/// `getppid()`.
pub fn getppid() -> i32 {
    nix::unistd::getppid().as_raw()
}

/// `prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY)`: let any process (under Yama's ptrace_scope=1, a
/// child too) attach or use `process_vm_*` on this one. EINVAL without Yama.
pub fn set_ptracer_any() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments.
    ret(
        unsafe { libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0) }
            as libc::c_long,
    )
    .map(drop)
}

/// Restore the default action of `sig` (for forked children that must die of it, e.g. to dump core).
pub fn default_signal(sig: i32) {
    // SAFETY: signal() with SIG_DFL has no memory-safety preconditions.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// `setrlimit(RLIMIT_CORE, unlimited)`.
pub fn core_limit_unlimited() -> Result<(), Errno> {
    use nix::sys::resource::{Resource, setrlimit};
    crate::features::touch(crate::features::Feature::CoreDump);
    setrlimit(
        Resource::RLIMIT_CORE,
        libc::RLIM_INFINITY,
        libc::RLIM_INFINITY,
    )
}

/// Probe for [`crate::features`]: `socket(AF_UNIX, SOCK_STREAM)`, closed at once.
pub fn probe_unix_socket() -> Result<(), Errno> {
    // SAFETY: socket() takes integers; the descriptor is closed right after.
    let fd = ret(
        unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }
            as libc::c_long,
    )?;
    close(fd);
    Ok(())
}

/// Probe for [`crate::features`]: a one-page private SysV segment, removed at once.
pub fn probe_shmget() -> Result<(), Errno> {
    // SAFETY: shmget takes integers; the segment is removed right after.
    let id = ret(
        unsafe { libc::shmget(libc::IPC_PRIVATE, page_size(), libc::IPC_CREAT | 0o600) }
            as libc::c_long,
    )?;
    // SAFETY: IPC_RMID on the segment made above; no buffer is passed.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    Ok(())
}

/// Probe for [`crate::features`]: `memfd_create`, closed at once.
pub fn probe_memfd() -> Result<(), Errno> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    // Closed when the descriptor drops.
    memfd_create(c"pkeys-probe", MFdFlags::MFD_CLOEXEC).map(drop)
}

/// Probe for [`crate::features`]: `process_vm_readv` of no iovec from this process.
pub fn probe_process_vm() -> Result<(), Errno> {
    // SAFETY: zero iovecs: the kernel reads no memory.
    ret_len(unsafe {
        libc::process_vm_readv(getpid(), std::ptr::null(), 0, std::ptr::null(), 0, 0)
    })
    .map(drop)
}

/// Probe for [`crate::features`]: `userfaultfd(O_CLOEXEC)`, closed if it opened.
pub fn probe_userfaultfd() -> Result<(), Errno> {
    // SAFETY: userfaultfd takes one integer flag.
    let fd = ret(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) })?;
    close(fd);
    Ok(())
}

/// Probe for [`crate::features`]: `mseal(0, 0, 0)`, a no-op on a kernel that has it.
pub fn probe_mseal() -> Result<(), Errno> {
    // SAFETY: an empty range seals nothing.
    ret(unsafe { libc::syscall(SYS_MSEAL, 0usize, 0usize, 0usize) }).map(drop)
}

/// Probe for [`crate::features`]: `futex(FUTEX_WAKE)` on a local word (wakes no one).
pub fn probe_futex() -> Result<(), Errno> {
    let word = 0u32;
    // SAFETY: FUTEX_WAKE only looks up waiters of a valid local word.
    ret(unsafe {
        libc::syscall(
            libc::SYS_futex,
            &word as *const u32,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    })
    .map(drop)
}

/// Probe for [`crate::features`]: `madvise(MADV_NORMAL)` of zero bytes at a page-aligned address.
pub fn probe_madvise() -> Result<(), Errno> {
    // SAFETY: a zero-length range changes nothing.
    ret(
        unsafe { libc::madvise(page_size() as *mut libc::c_void, 0, libc::MADV_NORMAL) }
            as libc::c_long,
    )
    .map(drop)
}

/// Where debugfs is mounted by convention.
pub const DEBUGFS: &str = "/sys/kernel/debug";

/// debugfs mounted for one case in a mount namespace of its own (see [`mount_debugfs_private`]);
/// unmounted on drop, and gone with the case's process in any event.
#[derive(Debug)]
pub struct PrivateDebugfs(());

impl Drop for PrivateDebugfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount(DEBUGFS);
    }
}

/// Whether debugfs is mounted at [`DEBUGFS`] in this process's mount namespace.
pub fn debugfs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(DEBUGFS))
        })
        .unwrap_or(false)
}

/// Mount debugfs at [`DEBUGFS`] for the calling process only: `unshare(CLONE_NEWNS)`, every mount
/// made private (so nothing propagates back to the host's namespace), then the mount. Needs root;
/// meant for a case's forked child, so the mount disappears with it whatever happens.
///
/// # References
/// unshare(2), mount(2), mount_namespaces(7).
pub fn mount_debugfs_private() -> Result<PrivateDebugfs, String> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    mount(
        Some("debugfs"),
        DEBUGFS,
        Some("debugfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("mount debugfs on {DEBUGFS}: {e}"))?;
    Ok(PrivateDebugfs(()))
}

/// Become `uid` (with gid `uid` and no supplementary groups) for good: what a run by an
/// unprivileged user sees. Only root can do it; the process keeps no capability afterwards.
///
/// # References
/// setgroups(2), setresgid(2), setresuid(2).
pub fn drop_privileges(uid: u32) -> Result<(), Errno> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(uid));
    setgroups(&[])?;
    setresgid(g, g, g)?;
    setresuid(u, u, u)?;
    // Changing credentials cleared the dumpable flag, which would forbid ptrace and
    // process_vm_* between this process and its children; a process a user starts is dumpable.
    nix::sys::prctl::set_dumpable(true)?;
    Ok(())
}
