//! The record slots shared by the handlers, and the recording handler.

use super::{Fault, frame_pkru, init_layout, install, siginfo_fields};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

const MAX_FAULTS: usize = 8;

struct Slot {
    signo: AtomicI32,
    code: AtomicI32,
    addr: AtomicUsize,
    pkey: AtomicU32,
    pkru_in: AtomicU32,
    saved: AtomicU64,
    xstate_bv: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    signo: AtomicI32::new(0),
    code: AtomicI32::new(0),
    addr: AtomicUsize::new(0),
    pkey: AtomicU32::new(0),
    pkru_in: AtomicU32::new(0),
    saved: AtomicU64::new(u64::MAX),
    xstate_bv: AtomicU64::new(0),
};

static SLOTS: [Slot; MAX_FAULTS] = [EMPTY; MAX_FAULTS];
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Forget earlier records.
pub(super) fn reset() {
    COUNT.store(0, Ordering::SeqCst);
}

/// Store one signal in the next slot; false when the slots are full.
pub(super) fn record(
    sig: i32,
    code: i32,
    addr: usize,
    pkey: u32,
    pkru_in: u32,
    saved: Option<u32>,
    bv: u64,
) -> bool {
    let n = COUNT.load(Ordering::SeqCst);
    if n >= MAX_FAULTS {
        return false;
    }
    let slot = &SLOTS[n];
    slot.signo.store(sig, Ordering::Relaxed);
    slot.code.store(code, Ordering::Relaxed);
    slot.addr.store(addr, Ordering::Relaxed);
    slot.pkey.store(pkey, Ordering::Relaxed);
    slot.pkru_in.store(pkru_in, Ordering::Relaxed);
    slot.saved
        .store(saved.map_or(u64::MAX, u64::from), Ordering::Relaxed);
    slot.xstate_bv.store(bv, Ordering::Relaxed);
    COUNT.store(n + 1, Ordering::SeqCst);
    true
}

pub(super) static EXIT_THREAD: AtomicBool = AtomicBool::new(false);

pub(super) extern "C" fn on_record(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let pkru_in = super::pkru_if_enabled();
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr, pkey) = unsafe { siginfo_fields(info) };
    // SAFETY: ctx is this handler's ucontext.
    let (_, saved, bv) = unsafe { frame_pkru(ctx) };
    record(sig, code, addr, pkey, pkru_in, saved, bv);
    if EXIT_THREAD.load(Ordering::SeqCst) {
        crate::rawthread::exit_thread();
    }
}

/// Install a handler for `sig` that records each delivery (see [`recorded`]) and then, if
/// `exit_thread`, ends the receiving thread with a raw `exit` (as `pkey_sighandler_tests.c`'s
/// handlers do); otherwise it returns. `onstack` adds SA_ONSTACK. Clears earlier records.
pub fn install_recorder(sig: i32, exit_thread: bool, onstack: bool) {
    init_layout();
    COUNT.store(0, Ordering::SeqCst);
    EXIT_THREAD.store(exit_thread, Ordering::SeqCst);
    install(sig, on_record, if onstack { libc::SA_ONSTACK } else { 0 });
}

/// The signals recorded since [`install_recorder`] or [`capture`] started.
pub fn recorded() -> Vec<Fault> {
    let n = COUNT.load(Ordering::SeqCst);
    SLOTS[..n]
        .iter()
        .map(|s| {
            let saved = s.saved.load(Ordering::Relaxed);
            Fault {
                signo: s.signo.load(Ordering::Relaxed),
                code: s.code.load(Ordering::Relaxed),
                addr: s.addr.load(Ordering::Relaxed),
                pkey: s.pkey.load(Ordering::Relaxed),
                pkru_in_handler: s.pkru_in.load(Ordering::Relaxed),
                saved_pkru: (saved != u64::MAX).then_some(saved as u32),
                xstate_bv: s.xstate_bv.load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// Wait up to `timeout` for at least `n` recorded signals.
pub fn wait_recorded(n: usize, timeout: std::time::Duration) -> Vec<Fault> {
    let end = std::time::Instant::now() + timeout;
    while COUNT.load(Ordering::SeqCst) < n && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    recorded()
}
