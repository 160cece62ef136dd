//! The one way to run code in a forked child (kselftest's fork-per-test primitive).
//!
//! [`in_child`] forks, runs a closure in the child with the crash reporters installed and returns
//! a [`ChildResult`]: the verdict the closure returned, the messages it sent, and how the child
//! ended (exit status, or the signal with `si_code`, `si_addr` and `si_pkey` from its crash
//! report). [`spawn`] is the same fork for a parent that must act while the child runs (a
//! tracer): it returns a [`Child`] to [`Child::finish`] later. The per-case fork of
//! [`crate::isolate`] uses the same core ([`spawn_raw`], [`Lines`], [`collect`]).
//!
//! The child talks to the parent over a pipe, one line per message:
//! `D text` (a message), `V PASS` / `V FAIL text` / `V SKIP text` (the verdict) and
//! `S signo si_code si_addr si_pkey` (a crash report, written by the signal handler).
//!
//! Contract of every fork here: the calling process must be single-threaded (only the calling
//! thread survives in the child; a lock another thread held stays locked forever). The fork
//! checks it (`/proc/self/task`) and refuses with [`ForkError::Threads`] otherwise.

use crate::case::{Outcome, Stop};
use crate::fault;
use crate::sys::{self, Errno};
use crate::verdict::Verdict;
use std::io::Write;
use std::time::{Duration, Instant};

/// Why a child could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkError {
    /// The caller has other threads (their number, the caller included).
    Threads(usize),
    /// A system call failed.
    Sys(&'static str, Errno),
}

impl std::fmt::Display for ForkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForkError::Threads(n) => write!(
                f,
                "fork: the caller has {n} threads (forking needs a single-threaded process)"
            ),
            ForkError::Sys(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for ForkError {}

/// Threads of this process (entries of `/proc/self/task`); `None` if it can't be read.
pub fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(|d| d.filter(|e| e.is_ok()).count())
}

/// Check that the caller is single-threaded. A thread that was just joined may linger in
/// `/proc/self/task` for a moment after `pthread_join` returned (the kernel releases it after
/// clearing its tid), so a count above one is re-read for up to a second before it counts.
pub fn check_single_threaded() -> Result<(), ForkError> {
    let mut n = 1;
    for _ in 0..1000 {
        n = match thread_count() {
            // Without /proc the count can't be checked: trust the caller.
            None => return Ok(()),
            Some(n) if n <= 1 => return Ok(()),
            Some(n) => n,
        };
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(ForkError::Threads(n))
}

/// Write all of `s` to `fd`, ignoring errors (the parent may be gone).
pub(crate) fn send(fd: i32, s: &str) {
    let mut b = s.as_bytes();
    while !b.is_empty() {
        // SAFETY: write(2) from a valid buffer.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// Name of signal `sig` (`SIGSEGV`), or `signal N`.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// A crash report: the signal that killed a child and its siginfo fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    /// The signal.
    pub signo: i32,
    /// `si_code`.
    pub code: i32,
    /// `si_addr`.
    pub addr: usize,
    /// `si_pkey` (meaningful only for `SEGV_PKUERR`).
    pub pkey: u32,
}

impl Crash {
    /// Parse the fields of an `S signo si_code si_addr si_pkey` line (after the `S `): the one
    /// parser of the line the crash handlers write.
    pub fn parse(s: &str) -> Option<Crash> {
        let f: Vec<&str> = s.split(' ').collect();
        if f.len() != 4 {
            return None;
        }
        Some(Crash {
            signo: f[0].parse().ok()?,
            code: f[1].parse().ok()?,
            addr: usize::from_str_radix(f[2].strip_prefix("0x")?, 16).ok()?,
            pkey: f[3].parse().ok()?,
        })
    }
}

impl std::fmt::Display for Crash {
    /// `SIGSEGV si_code=4 si_addr=0x... si_pkey=N` (`si_pkey` for `SEGV_PKUERR` only).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} si_code={} si_addr={:#x}",
            signal_name(self.signo),
            self.code,
            self.addr
        )?;
        if self.signo == libc::SIGSEGV && self.code == sys::SEGV_PKUERR {
            write!(f, " si_pkey={}", self.pkey)?;
        }
        Ok(())
    }
}

/// What a child sent over its pipe, parsed line by line.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    /// Messages (`D`), and one line per crash report.
    pub diags: Vec<String>,
    /// The verdict (`V`), if one came.
    pub verdict: Option<Verdict>,
    /// The last crash report (`S`).
    pub crash: Option<Crash>,
    buf: Vec<u8>,
}

impl Lines {
    /// Consume every complete line of the buffer; with `flush`, also a last line without a
    /// newline.
    fn take(&mut self, flush: bool) {
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            self.line(String::from_utf8_lossy(&line[..i]).as_ref());
        }
        if flush && !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.line(String::from_utf8_lossy(&rest).as_ref());
        }
    }

    fn line(&mut self, l: &str) {
        if let Some(d) = l.strip_prefix("D ") {
            self.diags.push(d.to_string());
        } else if let Some(v) = l.strip_prefix("V ") {
            let (w, rest) = v.split_once(' ').unwrap_or((v, ""));
            self.verdict = Some(match w {
                "PASS" => Verdict::Pass,
                "SKIP" => Verdict::Skip(rest.to_string()),
                _ => Verdict::Fail(rest.to_string()),
            });
        } else if let Some(c) = l.strip_prefix("S ").and_then(Crash::parse) {
            self.diags.push(format!("unexpected signal: {c}"));
            self.crash = Some(c);
        }
    }
}

/// The verdict line for what a closure returned (or the panic it raised).
pub(crate) fn verdict_line(result: std::thread::Result<Outcome>) -> String {
    let line = match result {
        Ok(Ok(())) => "V PASS".to_string(),
        Ok(Err(Stop::Fail(m))) => format!("V FAIL {m}"),
        Ok(Err(Stop::Skip(m))) => format!("V SKIP {m}"),
        Err(p) => format!("V FAIL panicked: {}", panic_message(&p)),
    };
    format!("{}\n", line.replace('\n', " | "))
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into())
}

/// Fork with a message pipe (close-on-exec). The child runs `child` with the pipe's write end
/// and never returns (it ends in `_exit`); the parent gets the pid and the read end.
///
/// The caller must be single-threaded: this checks it first ([`check_single_threaded`]).
pub(crate) fn spawn_raw(
    child: impl FnOnce(i32) -> std::convert::Infallible,
) -> Result<(i32, i32), ForkError> {
    check_single_threaded()?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 with a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ForkError::Sys("pipe2", Errno::last()));
    }
    let (rd, wr) = (fds[0], fds[1]);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the caller is single-threaded (checked above), so the child may run arbitrary code
    // after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = Errno::last();
        sys::close(rd);
        sys::close(wr);
        return Err(ForkError::Sys("fork", e));
    }
    if pid == 0 {
        sys::close(rd);
        child(wr);
    }
    sys::close(wr);
    Ok((pid, rd))
}

/// What one poll + read of a pipe found.
#[derive(PartialEq, Eq)]
enum Ready {
    /// Bytes were appended to the buffer.
    Data,
    /// The write end is closed everywhere.
    Eof,
    /// Nothing within the wait.
    Idle,
}

/// Wait up to `wait_ms` for `fd` to be readable and append one read's worth to `buf`.
fn read_ready(fd: i32, wait_ms: i32, buf: &mut Vec<u8>) -> Ready {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, wait_ms) } <= 0 {
        return Ready::Idle;
    }
    let mut chunk = [0u8; 4096];
    // SAFETY: read into a valid stack buffer.
    let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
    if n <= 0 {
        return Ready::Eof;
    }
    buf.extend_from_slice(&chunk[..n as usize]);
    Ready::Data
}

/// `waitpid(pid, flags | __WALL)`: the raw status if `pid` changed state.
pub(crate) fn wait_status(pid: i32, flags: i32) -> Option<i32> {
    let mut st = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut st, flags | libc::__WALL) };
    (r == pid).then_some(st)
}

/// What [`collect`] waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The child changed state: its raw wait status.
    Status(i32),
    /// `waitpid` failed.
    NoStatus,
    /// The deadline passed first.
    TimedOut,
}

/// Read the child's lines from `rd` into `lines` until the child `pid` changes state (exits, is
/// killed, or, when traced, stops) or `deadline` passes. The pipe is read while waiting, so a
/// child that writes much never blocks on a full pipe.
pub(crate) fn collect(pid: i32, rd: i32, deadline: Option<Instant>, lines: &mut Lines) -> Waited {
    let status = |st: Option<i32>| st.map_or(Waited::NoStatus, Waited::Status);
    loop {
        let wait_ms = match deadline {
            None => 50,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Waited::TimedOut;
                }
                (d - now).as_millis().min(50) as i32
            }
        };
        match read_ready(rd, wait_ms, &mut lines.buf) {
            Ready::Eof => {
                // The child closed the pipe: it is ending; wait for it.
                lines.take(true);
                return status(wait_status(pid, 0));
            }
            Ready::Data => lines.take(false),
            Ready::Idle => {}
        }
        if let Some(st) = wait_status(pid, libc::WNOHANG) {
            // Drain what the child wrote before exiting (descendants may hold the pipe open).
            while read_ready(rd, 0, &mut lines.buf) == Ready::Data {}
            lines.take(true);
            return Waited::Status(st);
        }
    }
}

/// What the closure in the child can use: messages to the parent.
#[derive(Debug)]
pub struct ChildCtx {
    fd: i32,
}

impl ChildCtx {
    /// Send a message line to the parent (at once, so a crash keeps it).
    pub fn msg(&mut self, m: impl AsRef<str>) {
        send(self.fd, &format!("D {}\n", m.as_ref().replace('\n', " | ")));
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Exited with this status.
    Exited(i32),
    /// Killed by a signal.
    Killed {
        /// The signal.
        signo: i32,
        /// The kernel dumped core.
        core: bool,
    },
    /// Stopped by this signal (a traced child that stopped instead of ending).
    Stopped(i32),
}

impl Ended {
    /// Decode a raw `waitpid` status.
    pub(crate) fn from_status(st: i32) -> Ended {
        if libc::WIFEXITED(st) {
            Ended::Exited(libc::WEXITSTATUS(st))
        } else if libc::WIFSIGNALED(st) {
            Ended::Killed {
                signo: libc::WTERMSIG(st),
                core: libc::WCOREDUMP(st),
            }
        } else {
            Ended::Stopped(libc::WSTOPSIG(st))
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(c) => write!(f, "exited with status {c}"),
            Ended::Killed { signo, core } => write!(
                f,
                "killed by {}{}",
                signal_name(*signo),
                if *core { " (core dumped)" } else { "" }
            ),
            Ended::Stopped(s) => write!(f, "stopped by {}", signal_name(*s)),
        }
    }
}

/// What a child of [`in_child`] or [`spawn`] sent and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildResult {
    /// The pid the child had.
    pub pid: i32,
    /// The verdict the closure returned (`None`: it never returned, e.g. it crashed).
    pub verdict: Option<Verdict>,
    /// The messages it sent, and a line per crash report.
    pub messages: Vec<String>,
    /// How it ended.
    pub ended: Ended,
    /// The crash report of the signal that killed it, when its handler sent one.
    pub crash: Option<Crash>,
}

impl ChildResult {
    /// The crash that killed the child: its report, or for a signal no handler reported (e.g.
    /// SIGKILL) the signal alone (`si_code` and the rest `None`).
    pub fn killed_by(&self) -> Option<(i32, Option<Crash>)> {
        match self.ended {
            Ended::Killed { signo, .. } => Some((signo, self.crash.filter(|c| c.signo == signo))),
            _ => None,
        }
    }

    /// The child's verdict as the case's outcome, `what` naming the child: PASS when the closure
    /// returned `Ok` and the child exited 0; its FAIL or SKIP message after `what: `; FAIL when
    /// it crashed, exited otherwise or stopped.
    pub fn outcome(&self, what: &str) -> Outcome {
        match (&self.ended, &self.verdict) {
            (Ended::Exited(0), Some(Verdict::Pass)) => Ok(()),
            (Ended::Exited(0), Some(Verdict::Skip(m))) => Err(Stop::Skip(format!("{what}: {m}"))),
            (Ended::Exited(0), Some(Verdict::Fail(m))) => Err(Stop::Fail(format!("{what}: {m}"))),
            (Ended::Killed { .. }, _) => Err(Stop::Fail(match self.killed_by() {
                Some((_, Some(c))) => format!("{what}: killed by {c}"),
                _ => format!("{what}: {}", self.ended),
            })),
            (e, _) => Err(Stop::Fail(format!("{what}: {e} without a verdict"))),
        }
    }
}

/// A running child of [`spawn`]; [`Child::finish`] waits for its result. Dropped unfinished, it
/// is killed and reaped.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    rd: i32,
    lines: Lines,
    done: bool,
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Read the child's messages until it ends (or, when traced, stops: [`Ended::Stopped`];
    /// `finish` may then be called again after resuming it). A child that ended is reaped.
    pub fn finish(&mut self) -> ChildResult {
        let ended = match collect(self.pid, self.rd, None, &mut self.lines) {
            Waited::Status(st) => Ended::from_status(st),
            _ => Ended::Exited(-1),
        };
        if !matches!(ended, Ended::Stopped(_)) {
            self.close();
        }
        ChildResult {
            pid: self.pid,
            verdict: self.lines.verdict.clone(),
            messages: self.lines.diags.clone(),
            ended,
            crash: self.lines.crash,
        }
    }

    /// Kill the child (SIGKILL) and return what it had sent before (its messages, and its
    /// verdict if it got that far) with how it ended; `None` when [`Child::finish`] already saw
    /// it end (its result was returned then).
    pub fn kill_and_collect(mut self) -> Option<ChildResult> {
        if self.done {
            return None;
        }
        self.sigkill();
        Some(self.finish())
    }

    /// Kill the child (SIGKILL) and reap it.
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        if !self.done {
            self.sigkill();
            wait_status(self.pid, 0);
            self.close();
        }
    }

    /// SIGKILL to the child, which is not reaped yet (so the pid is still ours; a zombie is
    /// harmless).
    fn sigkill(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    fn close(&mut self) {
        if !self.done {
            sys::close(self.rd);
            self.done = true;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Fork a child that runs `f` with the crash reporters installed and sends its verdict; return
/// at once with the running [`Child`] (for a parent that traces or talks to it). The child exits
/// 0 after sending the verdict. The caller must be single-threaded (checked).
pub fn spawn(f: impl FnOnce(&mut ChildCtx) -> Outcome) -> Result<Child, ForkError> {
    spawn_with(Handlers::CrashReporters, f)
}

/// The signal handlers a child runs its closure with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handlers {
    /// The crash reporters, freshly installed ([`fault::install_crash_handlers`]): a fault kills
    /// the child and its report comes back in [`ChildResult::crash`].
    CrashReporters,
    /// The handlers the caller had installed, kept as they are (a child that goes on probing
    /// faults with the caller's own handler); crash reports still go to the child's pipe.
    Inherited,
}

/// [`spawn`] with a choice of signal handlers.
pub fn spawn_with(
    handlers: Handlers,
    f: impl FnOnce(&mut ChildCtx) -> Outcome,
) -> Result<Child, ForkError> {
    let (pid, rd) = spawn_raw(|wr| {
        fault::set_report_fd(wr);
        if handlers == Handlers::CrashReporters {
            fault::install_crash_handlers();
        }
        let mut c = ChildCtx { fd: wr };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut c)));
        send(wr, &verdict_line(r));
        sys::exit_now(0)
    })?;
    Ok(Child {
        pid,
        rd,
        lines: Lines::default(),
        done: false,
    })
}

/// Run `f` in a forked child (as LTP's `pkey01` and kselftest do) and return its verdict, its
/// messages and how it ended: an access that faults kills the child, and the result carries the
/// signal with `si_code`, `si_addr` and `si_pkey`. The caller must be single-threaded (checked).
pub fn in_child(f: impl FnOnce(&mut ChildCtx) -> Outcome) -> Result<ChildResult, ForkError> {
    in_child_with(Handlers::CrashReporters, f)
}

/// [`in_child`] with a choice of signal handlers.
pub fn in_child_with(
    handlers: Handlers,
    f: impl FnOnce(&mut ChildCtx) -> Outcome,
) -> Result<ChildResult, ForkError> {
    let mut c = spawn_with(handlers, f)?;
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test harness runs this on a thread of its own, and a second one is parked here: the
    /// fork refuses a multi-threaded caller.
    #[test]
    fn fork_refuses_a_multi_threaded_caller() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        match check_single_threaded() {
            Err(ForkError::Threads(n)) => assert!(n >= 2, "{n}"),
            other => panic!("expected the thread check to refuse, got {other:?}"),
        }
        assert!(matches!(in_child(|_| Ok(())), Err(ForkError::Threads(_))));
        drop(tx);
        let _ = t.join();
    }

    #[test]
    fn crash_line_parses_and_prints() {
        let c = Crash::parse("11 4 0x7f0012340000 5").unwrap();
        assert_eq!(
            c,
            Crash {
                signo: 11,
                code: 4,
                addr: 0x7f00_1234_0000,
                pkey: 5
            }
        );
        assert_eq!(
            c.to_string(),
            "SIGSEGV si_code=4 si_addr=0x7f0012340000 si_pkey=5"
        );
        let bus = Crash::parse("7 2 0x10 0").unwrap();
        assert_eq!(bus.to_string(), "SIGBUS si_code=2 si_addr=0x10");
        assert_eq!(Crash::parse("11 4 0x10"), None);
        assert_eq!(Crash::parse("11 x 0x10 0"), None);
    }

    #[test]
    fn lines_collects_messages_verdict_and_crash() {
        let mut l = Lines::default();
        l.buf
            .extend_from_slice(b"D one\nV FAIL bad | thing\nS 11 1 0x20 0\nD tail");
        l.take(false);
        assert_eq!(
            l.diags,
            ["one", "unexpected signal: SIGSEGV si_code=1 si_addr=0x20"]
        );
        assert_eq!(l.verdict, Some(Verdict::Fail("bad | thing".into())));
        l.take(true);
        assert_eq!(l.diags.last().map(String::as_str), Some("tail"));
    }

    #[test]
    fn outcome_follows_verdict_and_end() {
        let r = |verdict, ended, crash| ChildResult {
            pid: 1,
            verdict,
            messages: Vec::new(),
            ended,
            crash,
        };
        assert_eq!(
            r(Some(Verdict::Pass), Ended::Exited(0), None).outcome("c"),
            Ok(())
        );
        assert_eq!(
            r(Some(Verdict::Fail("x".into())), Ended::Exited(0), None).outcome("c"),
            Err(Stop::Fail("c: x".into()))
        );
        assert_eq!(
            r(Some(Verdict::Pass), Ended::Exited(3), None).outcome("c"),
            Err(Stop::Fail(
                "c: exited with status 3 without a verdict".into()
            ))
        );
        let crash = Crash {
            signo: libc::SIGSEGV,
            code: 4,
            addr: 0x1000,
            pkey: 3,
        };
        let killed = Ended::Killed {
            signo: libc::SIGSEGV,
            core: false,
        };
        assert_eq!(
            r(None, killed, Some(crash)).outcome("c"),
            Err(Stop::Fail(
                "c: killed by SIGSEGV si_code=4 si_addr=0x1000 si_pkey=3".into()
            ))
        );
        assert_eq!(
            r(None, killed, None).outcome("c"),
            Err(Stop::Fail("c: killed by SIGSEGV".into()))
        );
    }
}
