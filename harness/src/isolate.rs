//! Fork-per-case isolation.
//!
//! The suite parent stays single-threaded and forks every case. The child puts itself in its own
//! process group, installs the crash reporters, runs the case and sends its diagnostics and verdict
//! over a pipe. The parent enforces the time limit (killing the child's whole process group), turns
//! an unexpected signal into FAIL with the signal, `si_code` and address, and reports a case that
//! exits without a verdict or leaves processes behind. Nothing a case does to its own process (PKRU
//! left restrictive, keys leaked, a wild write) can reach the next case.
//!
//! The fork, the pipe protocol, the crash-line parser and the wait loop are those of
//! [`crate::child`]; this module adds the per-case duties: the process group, the time limit,
//! killing the group, the subreaper and the leftover check.

use crate::case::{Case, Ctx, Stop};
use crate::child::{self, Ended, Lines, Waited, signal_name, wait_status};
use crate::probe::Caps;
use crate::verdict::{CaseReport, Verdict};
use crate::{fault, pkru, sys};
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

/// Make this process the reaper of orphaned descendants, so processes a case leaves behind are
/// re-parented here and can be reaped (and no zombie piles up under a guest's init).
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) has no memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
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
    let result = result.map(|outcome| {
        outcome.and_then(|()| match pkru::take_mismatch() {
            None => Ok(()),
            Some((e, f)) => Err(Stop::Fail(format!(
                "PKRU changed behind the harness's back: shadow {}, hardware {}",
                pkru::fmt(e),
                pkru::fmt(f)
            ))),
        })
    });
    child::send(fd, &child::verdict_line(result));
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
    let (pid, rd) = match child::spawn_raw(|wr| run_child(case, caps, opts, wr)) {
        Ok(c) => c,
        Err(e) => return report(Verdict::Error(e.to_string()), Vec::new()),
    };
    // SAFETY: setpgid on our child (also done by the child: whoever runs first wins, the result
    // is the same).
    unsafe { libc::setpgid(pid, pid) };
    let mut got = Lines::default();
    let waited = child::collect(pid, rd, Some(start + timeout), &mut got);
    sys::close(rd);
    if waited == Waited::TimedOut {
        // SAFETY: kill the case's whole process group, then reap the child.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        wait_status(pid, 0);
        kill_group(pid);
        return report(Verdict::Timeout(timeout), got.diags);
    }
    let leftovers = kill_group(pid);
    let st = match waited {
        Waited::Status(st) => st,
        _ => -1,
    };
    let mut diags = got.diags;
    let verdict = match Ended::from_status(st) {
        Ended::Killed { signo: sig, .. } => Verdict::Fail(match got.crash {
            Some(c) => format!("killed by {c}"),
            None if sig == libc::SIGKILL => format!("killed by {}", signal_name(sig)),
            // A catchable signal with no report: no handler ran (e.g. the kernel could not
            // deliver it and forced the default action) or the case's own handler let it kill.
            None => format!("killed by {} (no handler reported it)", signal_name(sig)),
        }),
        Ended::Exited(code) if code != 0 => {
            Verdict::Error(format!("case exited with status {code} without a verdict"))
        }
        _ => match got.verdict {
            Some(v) => v,
            None => Verdict::Error("case exited without a verdict".into()),
        },
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
