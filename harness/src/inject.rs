//! Deliberate misbehaviour for the fault-injection cases (`pkeys-suite --selftest`), which prove
//! that the harness reports FAIL, TIMEOUT and ERROR when it should. Never used by real cases.

use crate::{pkru, sys};

/// Send `sig` to the calling thread.
pub fn raise(sig: i32) {
    // SAFETY: tgkill on ourselves.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), sys::gettid(), sig) };
}

/// `abort()`.
pub fn abort() -> ! {
    std::process::abort()
}

/// `_exit(code)` without a verdict.
pub fn exit_without_verdict(code: i32) -> ! {
    sys::exit_now(code)
}

/// Spin forever (until the harness kills the process group).
pub fn hang() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Fork a child that sleeps for a minute and return without waiting for it.
pub fn leave_child_running() {
    // The child holds the write end of a pipe nobody reads; the parent closes the read end.
    if let Ok((_, rd)) = crate::child::spawn_raw(|_| {
        // SAFETY: sleep and _exit are async-signal-safe.
        unsafe {
            libc::sleep(60);
            libc::_exit(0)
        }
    }) {
        sys::close(rd);
    }
}

/// Deny access to key 0 (the stack, libc's data, TLS) and then call into libc.
pub fn deny_key0_and_call_libc() {
    let v = pkru::rdpkru() | pkru::ad_bit(0);
    pkru::wrpkru_raw(v);
    // The stack is key-0 memory: this faults at once.
    std::hint::black_box(std::process::id());
}
