//! Nested handlers, and the handler that leaves by a long jump into a raw thread.

use super::recorder::{EXIT_THREAD, on_record, reset};
use super::{init_layout, install};
use crate::pkru;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

static NEST_OUTER: AtomicI32 = AtomicI32::new(0);
static NEST_INNER: AtomicI32 = AtomicI32::new(0);
static NEST_PKRU: AtomicU32 = AtomicU32::new(0);
static NEST_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);

extern "C" fn on_nest(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    on_record(sig, info, ctx);
    if sig == NEST_OUTER.load(Ordering::SeqCst) {
        pkru::wrpkru_raw(NEST_PKRU.load(Ordering::SeqCst));
        crate::sys::raise(NEST_INNER.load(Ordering::SeqCst));
        NEST_AFTER.store(u64::from(pkru::rdpkru()), Ordering::SeqCst);
    }
}

/// Nested handlers: the `outer` handler records its delivery, writes `outer_pkru`, raises `inner`
/// (whose handler records its own delivery) and, once the inner handler returned, records the PKRU
/// it then sees (see [`nested_after_inner`]). Clears earlier records.
pub fn install_nested(outer: i32, inner: i32, outer_pkru: u32) {
    init_layout();
    reset();
    EXIT_THREAD.store(false, Ordering::SeqCst);
    NEST_OUTER.store(outer, Ordering::SeqCst);
    NEST_INNER.store(inner, Ordering::SeqCst);
    NEST_PKRU.store(outer_pkru, Ordering::SeqCst);
    NEST_AFTER.store(u64::MAX, Ordering::SeqCst);
    install(outer, on_nest, 0);
    install(inner, on_nest, 0);
}

/// PKRU in the outer handler after the inner handler returned ([`install_nested`]).
pub fn nested_after_inner() -> Option<u32> {
    let v = NEST_AFTER.load(Ordering::SeqCst);
    (v != u64::MAX).then_some(v as u32)
}

static LONGJMP_FLAG: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_longjmp(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    on_record(sig, info, ctx);
    let flag = LONGJMP_FLAG.load(Ordering::SeqCst);
    if flag != 0 {
        // SAFETY: `flag` holds the stack pointer and resume address a raw thread saved just
        // before raising this signal (rawthread::Action::RaiseUsr2ThenLongjmp). Jumping there
        // abandons this handler's frame, which owns nothing, as siglongjmp does; the code resumed
        // is register-only assembly that ends the thread.
        unsafe {
            std::arch::asm!(
                "mov rsp, [{f} + 8]",
                "jmp qword ptr [{f} + 16]",
                f = in(reg) flag,
                options(noreturn),
            );
        }
    }
}

/// Install a `sig` handler that records the delivery and then leaves the signal without
/// sigreturn — jumping back into the raw thread that raised it, like `siglongjmp` — using the
/// resume point that thread saved at `flag` ([`crate::rawthread::Action::RaiseUsr2ThenLongjmp`]).
/// The handler runs on the altstack when `onstack`. Clears earlier records. Safe callers use
/// [`crate::rawthread::RawThread::spawn_longjmp_target`], which passes its own flag words.
///
/// # Safety
/// `flag` must be the flag words of a raw thread spawned with
/// [`crate::rawthread::Action::RaiseUsr2ThenLongjmp`], mapped for as long as the handler is
/// installed: the handler loads a stack pointer and a code address from there and jumps.
pub unsafe fn install_longjmp(sig: i32, flag: usize, onstack: bool) {
    init_layout();
    reset();
    EXIT_THREAD.store(false, Ordering::SeqCst);
    LONGJMP_FLAG.store(flag, Ordering::SeqCst);
    install(sig, on_longjmp, if onstack { libc::SA_ONSTACK } else { 0 });
}
