//! ptrace helpers: PEEKDATA/POKEDATA and the `NT_X86_XSTATE` regset. Tracees are forked with
//! [`crate::child::spawn`].

use crate::sys::Errno;

/// `NT_X86_XSTATE`: the XSAVE area regset.
pub const NT_X86_XSTATE: libc::c_int = 0x202;

fn check(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r == -1 { Err(Errno::last()) } else { Ok(r) }
}

/// `PTRACE_TRACEME` in the calling (child) process.
pub fn traceme() -> Result<(), Errno> {
    // SAFETY: PTRACE_TRACEME takes no pointers.
    check(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }).map(drop)
}

/// `PTRACE_ATTACH` to `pid`.
pub fn attach(pid: i32) -> Result<(), Errno> {
    // SAFETY: no pointers.
    check(unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) }).map(drop)
}

/// `PTRACE_DETACH` from `pid`.
pub fn detach(pid: i32) -> Result<(), Errno> {
    // SAFETY: no pointers.
    check(unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) }).map(drop)
}

/// `PTRACE_CONT` `pid` with no signal.
pub fn cont(pid: i32) -> Result<(), Errno> {
    // SAFETY: no pointers.
    check(unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, 0) }).map(drop)
}

/// `PTRACE_PEEKDATA`: the word at `addr` in the tracee.
pub fn peek(pid: i32, addr: usize) -> Result<u64, Errno> {
    Errno::clear();
    // SAFETY: the address is the tracee's, checked by the kernel.
    let v = unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, pid, addr, 0) };
    if v == -1 && Errno::last_raw() != 0 {
        Err(Errno::last())
    } else {
        Ok(v as u64)
    }
}

/// `PTRACE_POKEDATA`: store `value` at `addr` in the tracee.
pub fn poke(pid: i32, addr: usize, value: u64) -> Result<(), Errno> {
    // SAFETY: the address is the tracee's, checked by the kernel.
    check(unsafe { libc::ptrace(libc::PTRACE_POKEDATA, pid, addr, value) }).map(drop)
}

/// `PTRACE_GETREGSET NT_X86_XSTATE` into `buf`; returns the length the kernel filled.
pub fn get_xstate(pid: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the iovec describes `buf`, which the kernel fills up to its length.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            pid,
            NT_X86_XSTATE as usize,
            &mut iov,
        )
    })?;
    Ok(iov.iov_len)
}

/// `PTRACE_SETREGSET NT_X86_XSTATE` from `buf`.
pub fn set_xstate(pid: i32, buf: &mut [u8]) -> Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the iovec describes `buf`, which the kernel only reads.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            pid,
            NT_X86_XSTATE as usize,
            &mut iov,
        )
    })
    .map(drop)
}

/// `waitpid(pid, 0)`: the raw status.
pub fn wait(pid: i32) -> Result<i32, Errno> {
    let mut st = 0;
    // SAFETY: waitpid on our child with a valid status pointer.
    if unsafe { libc::waitpid(pid, &mut st, libc::__WALL) } != pid {
        return Err(Errno::last());
    }
    Ok(st)
}
