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

use crate::{cpu, pkru};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
static ARMED: AtomicBool = AtomicBool::new(false);
static FIX_MODE: AtomicU32 = AtomicU32::new(0);
static FIX_VALUE: AtomicU32 = AtomicU32::new(0);
static PKRU_OFFSET: AtomicUsize = AtomicUsize::new(0);
pub(crate) static HAS_PKRU: AtomicBool = AtomicBool::new(false);
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// Offset of XSTATE_BV in the XSAVE area.
pub const XSTATE_BV_OFFSET: usize = 512;
/// XSTATE_BV bit of the PKRU component.
pub const XSTATE_PKRU: u64 = 1 << 9;

pub(crate) fn init_layout() {
    let c = cpu::probe();
    PKRU_OFFSET.store(c.xsave_pkru_offset as usize, Ordering::Relaxed);
    HAS_PKRU.store(c.ospke && c.xsave_pkru_offset != 0, Ordering::Relaxed);
}

/// Send crash reports (one line per unexpected signal) to `fd`: the verdict pipe of a forked case.
pub fn set_report_fd(fd: i32) {
    REPORT_FD.store(fd, Ordering::SeqCst);
}

/// Small no-allocation line buffer for use inside signal handlers.
struct LineBuf {
    buf: [u8; 160],
    len: usize,
}

impl LineBuf {
    fn new() -> Self {
        LineBuf {
            buf: [0; 160],
            len: 0,
        }
    }
    fn push(&mut self, s: &[u8]) {
        for &b in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }
    fn dec(&mut self, v: i64) {
        if v < 0 {
            self.push(b"-");
        }
        self.num(v.unsigned_abs(), 10);
    }
    fn hex(&mut self, v: u64) {
        self.push(b"0x");
        self.num(v, 16);
    }
    fn num(&mut self, mut v: u64, base: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v % base) as usize];
            v /= base;
            if v == 0 {
                break;
            }
        }
        self.push(&tmp[i..]);
    }
}

/// Write `S signo code addr pkey` to the report fd (async-signal-safe).
fn report_crash(signo: i32, code: i32, addr: usize, pkey: u32) {
    let fd = REPORT_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let mut l = LineBuf::new();
    l.push(b"S ");
    l.dec(signo as i64);
    l.push(b" ");
    l.dec(code as i64);
    l.push(b" ");
    l.hex(addr as u64);
    l.push(b" ");
    l.dec(pkey as i64);
    l.push(b"\n");
    // SAFETY: write(2) on a pipe fd with a valid stack buffer; async-signal-safe.
    unsafe { libc::write(fd, l.buf.as_ptr().cast(), l.len) };
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

/// Report the signal, restore the default action and make sure it is delivered again on return.
pub(crate) fn die_from_handler(sig: i32, code: i32, addr: usize, pkey: u32) {
    report_crash(sig, code, addr, pkey);
    // SAFETY: signal() with SIG_DFL and tgkill on ourselves are async-signal-safe. The signal is
    // blocked while the handler runs, so it is delivered (with the default action) on return; a
    // fault re-executes and kills us the same way.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid),
            sig,
        );
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

/// Store one signal in the next slot; false when the slots are full.
fn record(
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

extern "C" fn on_segv(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let pkru_in = if HAS_PKRU.load(Ordering::Relaxed) {
        pkru::rdpkru()
    } else {
        0
    };
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr, pkey) = unsafe { siginfo_fields(info) };
    // SAFETY: ctx is this handler's ucontext.
    let (fp, saved, bv) = unsafe { frame_pkru(ctx) };
    if !ARMED.load(Ordering::SeqCst) || !record(sig, code, addr, pkey, pkru_in, saved, bv) {
        die_from_handler(sig, code, addr, pkey);
        return;
    }
    let new = match (FIX_MODE.load(Ordering::Relaxed), saved) {
        (1, Some(s)) if code == crate::sys::SEGV_PKUERR && pkey < 16 => {
            Some(pkru::with_rights(s, pkey as i32, 0))
        }
        (2, Some(_)) => Some(FIX_VALUE.load(Ordering::Relaxed)),
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

static EXIT_THREAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_record(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let pkru_in = if HAS_PKRU.load(Ordering::Relaxed) {
        pkru::rdpkru()
    } else {
        0
    };
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

extern "C" fn on_crash(sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr, pkey) = unsafe { siginfo_fields(info) };
    die_from_handler(sig, code, addr, pkey);
}

type Handler = extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void);

/// Install `handler` for `sig` with SA_SIGINFO (plus `extra` flags).
pub fn install(sig: i32, handler: Handler, extra: i32) {
    // SAFETY: sigaction with a zeroed struct, an empty mask and a valid extern "C" handler.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO | extra;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Install the crash reporters of a forked case: SIGSEGV (the capture handler, which reports
/// faults it is not armed for), SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT. Each writes
/// `S signo si_code si_addr si_pkey` to the report fd and lets the signal kill the process.
pub fn install_crash_handlers() {
    init_layout();
    install(libc::SIGSEGV, on_segv, libc::SA_ONSTACK);
    for sig in [
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGABRT,
    ] {
        install(sig, on_crash, libc::SA_ONSTACK);
    }
}

/// Run `f`, capturing every SIGSEGV it raises and fixing each with `fix` so the access completes.
///
/// After `f` returns, the hardware PKRU is restored to the shadow value (what the harness last
/// wrote), so a fix applied by the handler does not leak into the rest of the case.
pub fn capture(fix: Fix, f: impl FnOnce()) -> Capture {
    init_layout();
    install(libc::SIGSEGV, on_segv, libc::SA_ONSTACK);
    COUNT.store(0, Ordering::SeqCst);
    match fix {
        Fix::AllowKey => FIX_MODE.store(1, Ordering::SeqCst),
        Fix::SetPkru(v) => {
            FIX_VALUE.store(v, Ordering::SeqCst);
            FIX_MODE.store(2, Ordering::SeqCst);
        }
    }
    ARMED.store(true, Ordering::SeqCst);
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    f();
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    ARMED.store(false, Ordering::SeqCst);
    let pkru_after = if HAS_PKRU.load(Ordering::Relaxed) {
        pkru::rdpkru()
    } else {
        0
    };
    if HAS_PKRU.load(Ordering::Relaxed) {
        let shadow = pkru::shadow();
        if let Some(s) = shadow {
            pkru::wrpkru_raw(s);
        }
    }
    let faults = recorded();
    Capture { faults, pkru_after }
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

/// How a forked child of [`in_child`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEnd {
    /// Exited with this status.
    Exited(i32),
    /// Killed by a signal; the fields come from the child's crash report when it sent one.
    Killed {
        /// The signal.
        signo: i32,
        /// `si_code` (None if the child could not report, e.g. SIGKILL).
        code: Option<i32>,
        /// `si_addr`.
        addr: Option<usize>,
        /// `si_pkey`.
        pkey: Option<u32>,
    },
}

/// Run `f` in a forked child with the crash reporters installed (as LTP's `pkey01` does): an
/// access that faults kills the child, and the parent gets the signal with `si_code`, `si_addr`
/// and `si_pkey`. The child exits 0 when `f` returns.
pub fn in_child(f: impl FnOnce()) -> ChildEnd {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 with a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return ChildEnd::Exited(-1);
    }
    // SAFETY: the case process is single-threaded when it calls this.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: closing the read end in the child.
        unsafe { libc::close(fds[0]) };
        set_report_fd(fds[1]);
        install_crash_handlers();
        f();
        crate::sys::exit_now(0);
    }
    // SAFETY: closing the write end in the parent.
    unsafe { libc::close(fds[1]) };
    let mut text = Vec::new();
    loop {
        let mut buf = [0u8; 256];
        // SAFETY: read into a valid buffer.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        text.extend_from_slice(&buf[..n as usize]);
    }
    let mut st = 0;
    // SAFETY: close our fd and reap our child.
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, &mut st, 0);
    }
    if libc::WIFEXITED(st) {
        return ChildEnd::Exited(libc::WEXITSTATUS(st));
    }
    let text = String::from_utf8_lossy(&text);
    let f: Vec<&str> = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("S "))
        .map_or(Vec::new(), |l| l.split(' ').collect());
    let get = |i: usize| f.get(i).copied();
    ChildEnd::Killed {
        signo: libc::WTERMSIG(st),
        code: get(1).and_then(|v| v.parse().ok()),
        addr: get(2).and_then(|v| usize::from_str_radix(v.trim_start_matches("0x"), 16).ok()),
        pkey: get(3).and_then(|v| v.parse().ok()),
    }
}

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
    COUNT.store(0, Ordering::SeqCst);
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
/// The handler runs on the altstack when `onstack`. Clears earlier records.
pub fn install_longjmp(sig: i32, flag: usize, onstack: bool) {
    init_layout();
    COUNT.store(0, Ordering::SeqCst);
    EXIT_THREAD.store(false, Ordering::SeqCst);
    LONGJMP_FLAG.store(flag, Ordering::SeqCst);
    install(sig, on_longjmp, if onstack { libc::SA_ONSTACK } else { 0 });
}
