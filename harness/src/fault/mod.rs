//! SIGSEGV capture and crash reporting.
//!
//! [`capture`] installs a `sigaction(SA_SIGINFO)` handler, runs a closure that touches memory, and
//! returns every fault it took: `si_signo`, `si_code`, `si_addr`, `si_pkey`, PKRU as seen inside
//! the handler, and the PKRU (plus XSTATE_BV) saved in the signal frame. To let the access complete,
//! the handler rewrites the saved PKRU ([`Fix`]) so that the faulting instruction re-executes
//! successfully after sigreturn — the technique of the kernel's `protection_keys.c`.
//!
//! Nothing in the handlers allocates or locks: records live in static atomics, and the crash report
//! written to the verdict pipe is formatted into a stack buffer.
//!
//! - `capture`: the capture handler and [`capture`];
//! - `crash`: the crash reporters of a forked child ([`install_crash_handlers`]);
//! - `recorder`: the record slots and the recording handler ([`install_recorder`]);
//! - `nested`: nested handlers and the handler that leaves by a long jump.

mod capture;
mod crash;
mod nested;
mod recorder;

pub use capture::{Capture, Fix, capture};
pub(crate) use crash::die_from_handler;
pub use crash::{install_crash_handlers, set_report_fd};
pub use nested::{install_longjmp, install_nested, nested_after_inner};
pub use recorder::{install_recorder, recorded, wait_recorded};

use crate::sys::Errno;
use crate::{cpu, pkru};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// One signal taken inside [`capture`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// `si_signo`.
    pub signo: i32,
    /// `si_code` (`SEGV_PKUERR` = 4 for a protection-key fault).
    pub code: i32,
    /// `si_addr`.
    pub addr: usize,
    /// `si_pkey` (meaningful only for `SEGV_PKUERR`).
    pub pkey: u32,
    /// PKRU read by RDPKRU inside the handler.
    pub pkru_in_handler: u32,
    /// PKRU saved in the signal frame's XSAVE area, if the frame had one.
    pub saved_pkru: Option<u32>,
    /// XSTATE_BV of the frame's XSAVE header (bit 9 = PKRU present).
    pub xstate_bv: u64,
}

pub(crate) static PKRU_OFFSET: AtomicUsize = AtomicUsize::new(0);
pub(crate) static HAS_PKRU: AtomicBool = AtomicBool::new(false);

/// Offset of XSTATE_BV in the XSAVE area.
pub const XSTATE_BV_OFFSET: usize = 512;
/// XSTATE_BV bit of the PKRU component.
pub const XSTATE_PKRU: u64 = 1 << 9;

pub(crate) fn init_layout() {
    let c = cpu::probe();
    PKRU_OFFSET.store(c.xsave_pkru_offset as usize, Ordering::Relaxed);
    HAS_PKRU.store(c.ospke && c.xsave_pkru_offset != 0, Ordering::Relaxed);
}

/// RDPKRU, or 0 where the kernel did not enable PKU (RDPKRU would raise #UD there). Handlers
/// read it first thing, before anything can change PKRU.
#[inline(always)]
pub(crate) fn pkru_if_enabled() -> u32 {
    if HAS_PKRU.load(Ordering::Relaxed) {
        pkru::rdpkru()
    } else {
        0
    }
}

/// Read `si_code`, `si_addr`, `si_pkey` from a siginfo.
///
/// # Safety
/// `info` must point to a valid siginfo delivered with SA_SIGINFO.
pub(crate) unsafe fn siginfo_fields(info: *const libc::siginfo_t) -> (i32, usize, u32) {
    // SAFETY: the caller guarantees `info` is valid; si_pkey is a u32 at byte 0x20 for SIGSEGV
    // (x86-64 layout: signo, errno, code, pad, addr, addr_lsb + pad, pkey).
    unsafe {
        let code = (*info).si_code;
        let addr = (*info).si_addr() as usize;
        let pkey = info.cast::<u8>().add(0x20).cast::<u32>().read_unaligned();
        (code, addr, pkey)
    }
}

/// Read the frame's saved PKRU and XSTATE_BV.
///
/// # Safety
/// `ctx` must be the ucontext of an SA_SIGINFO handler.
pub(crate) unsafe fn frame_pkru(ctx: *mut libc::c_void) -> (*mut u8, Option<u32>, u64) {
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: ctx is the ucontext the kernel built for this handler.
    let fp = unsafe { (*uc).uc_mcontext.fpregs }.cast::<u8>();
    let off = PKRU_OFFSET.load(Ordering::Relaxed);
    if fp.is_null() || off == 0 || !HAS_PKRU.load(Ordering::Relaxed) {
        return (fp, None, 0);
    }
    // SAFETY: fpregs points to the XSAVE area in the signal frame, which is at least off + 4
    // bytes long when the PKRU component is enabled (CPUID 0xD).
    unsafe {
        (
            fp,
            Some(fp.add(off).cast::<u32>().read_unaligned()),
            fp.add(XSTATE_BV_OFFSET).cast::<u64>().read_unaligned(),
        )
    }
}

type Handler = extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void);

/// Install `handler` for `sig` with SA_SIGINFO (plus `extra` flags).
pub fn try_install(sig: i32, handler: Handler, extra: i32) -> Result<(), Errno> {
    // SAFETY: sigaction with a zeroed struct, an empty mask and a valid extern "C" handler.
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO | extra;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if r == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Install `handler` for `sig` with SA_SIGINFO (plus `extra` flags). A refused `sigaction` (an
/// invalid signal number: a bug in the caller) panics, which fails the case with the message.
pub fn install(sig: i32, handler: Handler, extra: i32) {
    if let Err(e) = try_install(sig, handler, extra) {
        panic!("sigaction({sig}): {e}");
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "signo={} si_code={} si_addr={:#x} si_pkey={} pkru_in_handler={}",
            self.signo,
            self.code,
            self.addr,
            self.pkey,
            pkru::fmt(self.pkru_in_handler)
        )?;
        match self.saved_pkru {
            Some(s) => write!(
                f,
                " saved_pkru={} xstate_bv={:#x}",
                pkru::fmt(s),
                self.xstate_bv
            ),
            None => write!(f, " saved_pkru=none"),
        }
    }
}
