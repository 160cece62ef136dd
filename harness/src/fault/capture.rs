//! The capture handler: records each SIGSEGV and rewrites the saved PKRU so the access completes.

use super::recorder::{record, recorded, reset};
use super::{Fault, init_layout, install, siginfo_fields};
use super::{HAS_PKRU, PKRU_OFFSET, XSTATE_BV_OFFSET, XSTATE_PKRU, die_from_handler, frame_pkru};
use crate::pkru;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// How the capture handler makes the faulting access succeed on re-execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// Clear the faulting key's AD and WD bits in the saved PKRU (SEGV_PKUERR only).
    AllowKey,
    /// Replace the saved PKRU with this value.
    SetPkru(u32),
}

/// What [`capture`] observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Every fault taken, in order.
    pub faults: Vec<Fault>,
    /// Hardware PKRU right after the closure returned (before the harness restored the shadow
    /// value): shows that an edited saved PKRU took effect at sigreturn.
    pub pkru_after: u32,
}

static ARMED: AtomicBool = AtomicBool::new(false);
/// How the armed handler fixes a fault: one of the `FIX_*` values (an atomic, as the handler reads
/// it; [`Fix`] is what callers pass).
static FIX_MODE: AtomicU32 = AtomicU32::new(FIX_NONE);
/// No capture has set a fix.
const FIX_NONE: u32 = 0;
/// [`Fix::AllowKey`]: clear the faulting key's rights in the saved PKRU.
const FIX_ALLOW_KEY: u32 = 1;
/// [`Fix::SetPkru`]: replace the saved PKRU with `FIX_VALUE`.
const FIX_SET_PKRU: u32 = 2;
static FIX_VALUE: AtomicU32 = AtomicU32::new(0);

pub(super) extern "C" fn on_segv(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let pkru_in = super::pkru_if_enabled();
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr, pkey) = unsafe { siginfo_fields(info) };
    // SAFETY: ctx is this handler's ucontext.
    let (fp, saved, bv) = unsafe { frame_pkru(ctx) };
    if !ARMED.load(Ordering::SeqCst) || !record(sig, code, addr, pkey, pkru_in, saved, bv) {
        die_from_handler(sig, code, addr, pkey);
        return;
    }
    let new = match (FIX_MODE.load(Ordering::Relaxed), saved) {
        (FIX_ALLOW_KEY, Some(s)) if code == crate::sys::SEGV_PKUERR && pkey < 16 => {
            Some(pkru::with_rights(s, pkey as i32, 0))
        }
        (FIX_SET_PKRU, Some(_)) => Some(FIX_VALUE.load(Ordering::Relaxed)),
        _ => None,
    };
    let off = PKRU_OFFSET.load(Ordering::Relaxed);
    match new {
        // SAFETY: same XSAVE area as in frame_pkru; setting XSTATE_BV bit 9 makes XRSTOR load the
        // value instead of the init state.
        Some(v) => unsafe {
            fp.add(off).cast::<u32>().write_unaligned(v);
            let bvp = fp.add(XSTATE_BV_OFFSET).cast::<u64>();
            bvp.write_unaligned(bvp.read_unaligned() | XSTATE_PKRU);
        },
        // A fault the saved PKRU cannot fix (not a pkey fault): report it and let it kill us.
        None => die_from_handler(sig, code, addr, pkey),
    }
}

/// Run `f`, capturing every SIGSEGV it raises and fixing each with `fix` so the access completes.
///
/// After `f` returns, the hardware PKRU is restored to the shadow value (what the harness last
/// wrote), so a fix applied by the handler does not leak into the rest of the case.
pub fn capture(fix: Fix, f: impl FnOnce()) -> Capture {
    init_layout();
    install(libc::SIGSEGV, on_segv, libc::SA_ONSTACK);
    reset();
    match fix {
        Fix::AllowKey => FIX_MODE.store(FIX_ALLOW_KEY, Ordering::SeqCst),
        Fix::SetPkru(v) => {
            FIX_VALUE.store(v, Ordering::SeqCst);
            FIX_MODE.store(FIX_SET_PKRU, Ordering::SeqCst);
        }
    }
    ARMED.store(true, Ordering::SeqCst);
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    f();
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    ARMED.store(false, Ordering::SeqCst);
    let pkru_after = super::pkru_if_enabled();
    if HAS_PKRU.load(Ordering::Relaxed) {
        let shadow = pkru::shadow();
        if let Some(s) = shadow {
            pkru::wrpkru_raw(s);
        }
    }
    let faults = recorded();
    Capture { faults, pkru_after }
}
