//! Benchmark hooks, used by `pkeys-qemu bench` only (see docs/bench.md).
//!
//! - [`overhead_mode`]: the hidden `pkeys-suite --bench-overhead N` mode, which measures the
//!   fork-per-case isolation natively: `N` runs of an empty case through
//!   [`pkeys_harness::isolate::run`], next to `N` bare `fork` + `_exit` + `waitpid` rounds, and
//!   prints one JSON line.
//! - [`run_guest_bench`]: called by the guest init after the suite when the initramfs holds
//!   `/pkeys/bench`; it runs the listed programs (the kernel's C selftests) one after the other,
//!   each timed with `CLOCK_MONOTONIC` from fork until *every* descendant is gone (the C
//!   `protection_keys` forks in its exhaustion test and lets its parent exit early), with its
//!   output on the result UART between `# pkeys-bench:` marker lines.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use pkeys_harness::isolate::{self, Options};
use pkeys_harness::probe::Caps;
use pkeys_harness::{Case, Needs, Verdict};

/// The hidden option.
const OVERHEAD_FLAG: &str = "--bench-overhead";
/// The list of programs the guest init runs after the suite.
const BENCH_FILE: &str = "/pkeys/bench";
/// The prefix of every marker line the bench hook writes.
pub const MARKER: &str = pkeys_common::protocol::BENCH_MARKER;

/// `pkeys-suite --bench-overhead N`: returns `Some(exit code)` when the flag is present.
pub fn overhead_mode(argv: &[String]) -> Option<ExitCode> {
    let pos = argv.iter().position(|a| a == OVERHEAD_FLAG)?;
    let n: u32 = match argv.get(pos + 1).map(|v| v.parse()) {
        None => 1000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("pkeys-suite: {OVERHEAD_FLAG} N: N must be a positive number");
            return Some(ExitCode::from(2));
        }
    };
    isolate::become_subreaper();
    let caps = Caps::probe();
    let case = Case::new("bench::empty", Needs::NONE, |_| Ok(()));
    let opts = Options::default();
    // Warm up (page cache, lazy binding of the allocator's arenas, ...).
    for _ in 0..n.div_ceil(20) {
        let _ = isolate::run(&case, &caps, &opts);
    }
    let start = Instant::now();
    for _ in 0..n {
        let r = isolate::run(&case, &caps, &opts);
        if r.verdict != Verdict::Pass {
            eprintln!(
                "pkeys-suite: the empty case gave {} instead of PASS",
                r.verdict
            );
            return Some(ExitCode::from(1));
        }
    }
    let cases_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..n {
        fork_exit_wait();
    }
    let fork_s = start.elapsed().as_secs_f64();
    println!(
        "{{\"cases\":{n},\"case_total_s\":{cases_s:.6},\"case_mean_us\":{:.3},\"fork_total_s\":{fork_s:.6},\"fork_mean_us\":{:.3}}}",
        cases_s * 1e6 / f64::from(n),
        fork_s * 1e6 / f64::from(n)
    );
    Some(ExitCode::SUCCESS)
}

/// The floor under any fork-per-case design: fork, `_exit(0)` in the child, `waitpid`.
fn fork_exit_wait() {
    // SAFETY: the child only calls _exit (async-signal-safe); the parent waits for it.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(0);
        }
        if pid > 0 {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One program to run: `<name> <timeout seconds> <path> [args...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Program {
    name: String,
    timeout_s: u32,
    argv: Vec<String>,
}

fn parse_programs(text: &str) -> Result<Vec<Program>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            let timeout_s = words
                .next()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| format!("{BENCH_FILE}: `{line}`: expected NAME SECS PATH [ARGS]"))?;
            let argv: Vec<String> = words.map(str::to_owned).collect();
            if argv.is_empty() {
                return Err(format!("{BENCH_FILE}: `{line}`: no program"));
            }
            Ok(Program {
                name,
                timeout_s,
                argv,
            })
        })
        .collect()
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Reaps every child of this process (PID 1: every orphan too) until none is left.
/// Returns the number reaped, the main child's status and how many others failed.
fn reap_all(main: libc::pid_t) -> (u32, Option<libc::c_int>, u32, bool) {
    let mut reaped = 0;
    let mut main_status = None;
    let mut others_failed = 0;
    let mut timed_out = false;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to an int.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            reaped += 1;
            if pid == main {
                main_status = Some(status);
            } else if status != 0 {
                others_failed += 1;
            }
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {
                // The alarm: the time limit passed; kill everything but PID 1.
                timed_out = true;
                // SAFETY: kill(-1) signals every process this one may signal, PID 1 excluded.
                unsafe { libc::kill(-1, libc::SIGKILL) };
            }
            _ => return (reaped, main_status, others_failed, timed_out),
        }
    }
}

fn status_text(status: Option<libc::c_int>) -> String {
    match status {
        None => "none".to_owned(),
        Some(s) if libc::WIFEXITED(s) => format!("exit={}", libc::WEXITSTATUS(s)),
        Some(s) if libc::WIFSIGNALED(s) => format!("signal={}", libc::WTERMSIG(s)),
        Some(s) => format!("status={s}"),
    }
}

/// Runs the programs of `/pkeys/bench` when that file exists (PID 1 only, after the suite,
/// with every other process gone). Writes to `tty`:
///
/// ```text
/// # pkeys-bench: suite wall_ns=<ns>
/// # pkeys-bench: begin <name>
/// <the program's stdout and stderr>
/// # pkeys-bench: end <name> wall_ns=<ns> exit=<code>|signal=<n> reaped=<n> others_failed=<n> timed_out=<0|1>
/// ```
pub fn run_guest_bench(tty: libc::c_int, suite_ns: u64) {
    let Ok(text) = std::fs::read_to_string(BENCH_FILE) else {
        return;
    };
    // Orphans of the suite were just killed: collect them before timing anything.
    reap_all(0);
    let mut out = tty_writer(tty);
    let _ = writeln!(out, "\n{MARKER}suite wall_ns={suite_ns}");
    let programs = match parse_programs(&text) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "{MARKER}error {e}");
            return;
        }
    };
    // SAFETY: a handler that does nothing, installed without SA_RESTART so that the blocking
    // waitpid returns EINTR when the alarm fires.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
    }
    for p in programs {
        let _ = writeln!(out, "{MARKER}begin {}", p.name);
        let _ = out.flush();
        let start = now_ns();
        let pid = match start_program(&p, tty) {
            Ok(pid) => pid,
            Err(e) => {
                let _ = writeln!(out, "{MARKER}error cannot start {}: {e}", p.name);
                continue;
            }
        };
        // SAFETY: alarm has no memory-safety preconditions.
        unsafe { libc::alarm(p.timeout_s) };
        let (reaped, status, others_failed, timed_out) = reap_all(pid);
        let wall_ns = now_ns() - start;
        // SAFETY: as above.
        unsafe { libc::alarm(0) };
        let _ = writeln!(
            out,
            "\n{MARKER}end {} wall_ns={wall_ns} {} reaped={reaped} others_failed={others_failed} timed_out={}",
            p.name,
            status_text(status),
            u8::from(timed_out)
        );
        let _ = out.flush();
    }
}

/// Starts one program in its own process group with stdout and stderr on the result tty and
/// `PATH=/bench:/` as its whole environment; returns its pid (reaped by [`reap_all`]).
fn start_program(p: &Program, tty: libc::c_int) -> std::io::Result<libc::pid_t> {
    use std::os::unix::process::CommandExt;
    let tty_file = || crate::init::reopen(tty);
    let (program, args) = p
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("no program"))?;
    let child = std::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/bench:/")
        .stdout(tty_file()?)
        .stderr(tty_file()?)
        .process_group(0)
        .spawn()?;
    // Not waited for through `Child`: reap_all collects it with every orphan.
    Ok(child.id() as libc::pid_t)
}

/// A `Write` over the raw tty fd (not closed on drop).
fn tty_writer(fd: libc::c_int) -> impl Write {
    struct Fd(libc::c_int);
    impl Write for Fd {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // SAFETY: write from a valid buffer to an fd this process owns.
            let n = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    std::io::LineWriter::new(Fd(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs() {
        let p = parse_programs("# c\nprotection_keys 300 /bench/protection_keys\n\npkey_sighandler_tests 60 /bench/p -v\n").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "protection_keys");
        assert_eq!(p[0].timeout_s, 300);
        assert_eq!(p[1].argv, ["/bench/p", "-v"]);
        assert!(parse_programs("x y /p").is_err());
        assert!(parse_programs("x 5").is_err());
    }

    #[test]
    fn not_requested() {
        assert!(overhead_mode(&["pkeys-suite".into(), "--list".into()]).is_none());
    }
}
