//! Fork-per-case isolation.
//!
//! The suite parent stays single-threaded and forks every case. The child puts itself in its own
//! process group, installs the crash reporters, runs the case and sends its diagnostics and verdict
//! over a pipe. The parent enforces the time limit (killing the child's whole process group), turns
//! an unexpected signal into FAIL with the signal, `si_code` and address, and reports a case that
//! exits without a verdict or leaves processes behind. Nothing a case does to its own process (PKRU
//! left restrictive, keys leaked, a wild write) can reach the next case.

use crate::case::{Case, Ctx, Stop};
use crate::probe::Caps;
use crate::verdict::{CaseReport, Verdict};
use crate::{fault, pkru, sys};
use std::io::Write;
use std::time::{Duration, Instant};

/// Run parameters passed to every case.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seed for random choices.
    pub seed: u64,
    /// Iteration number under `--iterations`.
    pub iteration: u32,
    /// Multiplier for every case's time limit (slow emulators).
    pub timeout_scale: f64,
    /// How long each explorer case runs (`--explore-time`; `None`: its fixed step budget).
    pub explore_time: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 0,
            iteration: 0,
            timeout_scale: 1.0,
            explore_time: None,
        }
    }
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

/// Make this process the reaper of orphaned descendants, so processes a case leaves behind are
/// re-parented here and can be reaped (and no zombie piles up under a guest's init).
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) has no memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

fn run_child(case: &Case, caps: &Caps, opts: &Options, fd: i32) -> ! {
    // SAFETY: setpgid on ourselves.
    unsafe { libc::setpgid(0, 0) };
    fault::set_report_fd(fd);
    fault::install_crash_handlers();
    crate::features::enter_case(case.needs.features);
    pkru::reset_shadow();
    if caps.cpu.ospke {
        pkru::sync_shadow();
    }
    let mut ctx = Ctx {
        fd,
        local: Vec::new(),
        seed: opts.seed,
        iteration: opts.iteration,
        explore_time: opts.explore_time,
        caps: caps.clone(),
        wrong: case.wrong,
        id: case.id.clone(),
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&mut ctx)));
    if caps.pkeys.is_ok() {
        report_leftovers(&mut ctx, caps.start_pkru);
    }
    let line = match result {
        Ok(Ok(())) => match pkru::take_mismatch() {
            None => "V PASS".to_string(),
            Some((e, f)) => format!(
                "V FAIL PKRU changed behind the harness's back: shadow {}, hardware {}",
                pkru::fmt(e),
                pkru::fmt(f)
            ),
        },
        Ok(Err(Stop::Fail(m))) => format!("V FAIL {m}"),
        Ok(Err(Stop::Skip(m))) => format!("V SKIP {m}"),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            format!("V FAIL panicked: {msg}")
        }
    };
    send(fd, &format!("{}\n", line.replace('\n', " | ")));
    sys::exit_now(0)
}

/// Report what the case left behind in its process: keys still allocated and a PKRU other than
/// the one it started with. Both die with the process (fork-per-case contains them); the line says
/// so, so a case that leaks is visible without failing it.
fn report_leftovers(ctx: &mut Ctx, start: Option<u32>) {
    let now = pkru::rdpkru();
    let mut free = 0;
    // Allocated access-disabled: on a PKRU that denies the free keys (the default) the kernel
    // then has no PKRU bit to change and skips WRPKRU, which qemu's TCG pays for with a TLB flush.
    while sys::pkey_alloc_raw(0, sys::PKEY_DISABLE_ACCESS).is_ok() {
        free += 1;
    }
    let held = 15 - free.min(15);
    let changed = start.is_some_and(|s| s != now);
    if held > 0 || changed {
        ctx.diag(format!(
            "left behind: {held} key(s) allocated, PKRU {} (contained: the case's process exits)",
            pkru::fmt(now)
        ));
    }
}

/// What the parent collected from the pipe.
#[derive(Default)]
struct Collected {
    diags: Vec<String>,
    verdict: Option<Verdict>,
    crash: Option<String>,
}

impl Collected {
    /// Consume every complete line of `buf`; with `flush`, also a last line without a newline.
    fn take_lines(&mut self, buf: &mut Vec<u8>, flush: bool) {
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            self.line(String::from_utf8_lossy(&line[..i]).as_ref());
        }
        if flush && !buf.is_empty() {
            let rest = std::mem::take(buf);
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
        } else if let Some(s) = l.strip_prefix("S ") {
            let f: Vec<&str> = s.split(' ').collect();
            if f.len() == 4 {
                let sig: i32 = f[0].parse().unwrap_or(0);
                let mut m = format!("{} si_code={} si_addr={}", signal_name(sig), f[1], f[2]);
                if sig == libc::SIGSEGV && f[1] == "4" {
                    m.push_str(&format!(" si_pkey={}", f[3]));
                }
                self.diags.push(format!("unexpected signal: {m}"));
                self.crash = Some(m);
            }
        }
    }
}

/// What one poll + read of the verdict pipe found.
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

fn wait_status(pid: i32, flags: i32) -> Option<i32> {
    let mut st = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut st, flags) };
    (r == pid).then_some(st)
}

/// Reap every zombie child (orphans re-parented to us as subreaper).
fn reap_orphans() {
    let mut st = 0;
    // SAFETY: waitpid(-1, WNOHANG) with a valid status pointer.
    while unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {}
}

/// Kill what is left of process group `pgid`; true if anything was left.
fn kill_group(pgid: i32) -> bool {
    reap_orphans();
    // SAFETY: kill(2) on a process group we created.
    let left = unsafe { libc::kill(-pgid, 0) } == 0;
    if left {
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(5));
        reap_orphans();
    }
    left
}

/// Run one case in a forked child and return its report.
pub fn run(case: &Case, caps: &Caps, opts: &Options) -> CaseReport {
    let start = Instant::now();
    let report = |verdict, diagnostics| CaseReport {
        id: case.id.clone(),
        verdict,
        diagnostics,
        duration: start.elapsed(),
    };
    if let Some(reason) = case.needs.missing(caps) {
        return report(Verdict::Skip(reason), Vec::new());
    }
    let timeout = case.timeout.mul_f64(opts.timeout_scale.max(0.01));
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 with a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return report(
            Verdict::Error(format!("pipe2: {}", sys::Errno::last())),
            Vec::new(),
        );
    }
    let (rd, wr) = (fds[0], fds[1]);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the parent is single-threaded (the suite runs cases on its main thread), so the child
    // may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return report(
            Verdict::Error(format!("fork: {}", sys::Errno::last())),
            Vec::new(),
        );
    }
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(rd) };
        run_child(case, caps, opts, wr);
    }
    // SAFETY: closing the parent's write end; setpgid on our child (also done by the child: whoever
    // runs first wins, the result is the same).
    unsafe {
        libc::close(wr);
        libc::setpgid(pid, pid);
    }
    let deadline = start + timeout;
    let mut got = Collected::default();
    let mut buf = Vec::<u8>::new();
    let mut status = None;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        let wait_ms = (deadline - now).as_millis().min(50) as i32;
        match read_ready(rd, wait_ms, &mut buf) {
            Ready::Eof => {
                got.take_lines(&mut buf, true);
                status = wait_status(pid, 0);
                break;
            }
            Ready::Data => got.take_lines(&mut buf, false),
            Ready::Idle => {}
        }
        if let Some(st) = wait_status(pid, libc::WNOHANG) {
            status = Some(st);
            // Drain what the child wrote before exiting (descendants may hold the pipe open).
            while read_ready(rd, 0, &mut buf) == Ready::Data {}
            got.take_lines(&mut buf, true);
            break;
        }
    }
    // SAFETY: closing our read end.
    unsafe { libc::close(rd) };
    if timed_out {
        // SAFETY: kill the case's whole process group, then reap the child.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        wait_status(pid, 0);
        kill_group(pid);
        return report(Verdict::Timeout(timeout), got.diags);
    }
    let leftovers = kill_group(pid);
    let st = status.unwrap_or(-1);
    let mut diags = got.diags;
    let verdict = if libc::WIFSIGNALED(st) {
        let sig = libc::WTERMSIG(st);
        Verdict::Fail(match got.crash {
            Some(c) => format!("killed by {c}"),
            None if sig == libc::SIGKILL => format!("killed by {}", signal_name(sig)),
            // A catchable signal with no report: no handler ran (e.g. the kernel could not
            // deliver it and forced the default action) or the case's own handler let it kill.
            None => format!("killed by {} (no handler reported it)", signal_name(sig)),
        })
    } else if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) != 0 {
        Verdict::Error(format!(
            "case exited with status {} without a verdict",
            libc::WEXITSTATUS(st)
        ))
    } else {
        match got.verdict {
            Some(v) => v,
            None => Verdict::Error("case exited without a verdict".into()),
        }
    };
    let verdict = if leftovers {
        diags.push("case left processes running in its process group; killed them".into());
        match verdict {
            Verdict::Pass => Verdict::Fail("case left processes running after it ended".into()),
            v => v,
        }
    } else {
        verdict
    };
    report(verdict, diags)
}
