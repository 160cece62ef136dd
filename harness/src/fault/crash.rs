//! The crash reporters of a forked child: report `S signo si_code si_addr si_pkey` to the
//! child's pipe and let the signal kill the process.

use super::capture::on_segv;
use super::{init_layout, install, siginfo_fields};
use std::sync::atomic::{AtomicI32, Ordering};

static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

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

extern "C" fn on_crash(sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr, pkey) = unsafe { siginfo_fields(info) };
    die_from_handler(sig, code, addr, pkey);
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
