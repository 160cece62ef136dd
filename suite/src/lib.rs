//! The `pkeys-suite` front end: a libtest-mimic runner over the cases (so `cargo test` and
//! `cargo nextest run` run it), a KTAP mode for guests and CI, and the guest init.
//!
//! Extra options on top of libtest's: `--format ktap`, `--selftest` (the fault-injection cases
//! instead of the conformance cases), `--inject-panic` (guests only: crash the kernel after the
//! selected cases, to test the runner), `--seed N` (random key choice and key churn, printed in the
//! header so a run can be reproduced), `--iterations N` (repeat the whole list, like the C
//! selftest's rounds), `--timeout-scale F`, `--user UID` (as root: run as that unprivileged user),
//! `--explore-time DUR` (the `explore::*` cases run sequences for that long: soak mode).
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod options;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use options::Extra;
use pkeys_harness::isolate::{self, Options};
use pkeys_harness::probe::Caps;
use pkeys_harness::{Case, CaseReport, Verdict, cpu, ktap};
use std::process::ExitCode;
use std::sync::Arc;

/// Entry point shared by the binary and the `cargo test` target.
pub fn main_entry() -> ExitCode {
    pkeys_guest::init::run_if_pid1();
    pkeys_harness::sys::print_pkru_if_requested();
    let argv: Vec<String> = std::env::args().collect();
    if let Some(code) = pkeys_guest::bench::overhead_mode(&argv) {
        return code;
    }
    let (extra, rest) = match options::split(&argv) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("pkeys-suite: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(uid) = extra.user
        && let Err(e) = pkeys_harness::sys::drop_privileges(uid)
    {
        eprintln!("pkeys-suite: --user {uid}: {e}");
        return ExitCode::from(2);
    }
    let mut args = Arguments::from_iter(rest);
    let cases = if extra.selftest {
        pkeys_cases::selftests()
    } else {
        pkeys_cases::all()
    };
    isolate::become_subreaper();
    let mut caps = Caps::probe();
    // Given back when main_entry returns.
    let _hugepages = pkeys_harness::probe::HugetlbReservation::ensure(&mut caps, 8);
    let opts = Options {
        seed: extra.seed,
        iteration: 0,
        timeout_scale: extra.timeout_scale,
        explore_time: extra.explore_time,
    };
    // Soak mode: each explorer case runs for --explore-time, so its time limit follows.
    let cases = match extra.explore_time {
        Some(t) => cases
            .into_iter()
            .map(|c| match c.id.starts_with("explore::") {
                true => c.with_timeout(t + std::time::Duration::from_secs(120)),
                false => c,
            })
            .collect(),
        None => cases,
    };
    if extra.inject_panic && std::env::var_os("PKEYS_GUEST").is_none() {
        eprintln!(
            "pkeys-suite: --inject-panic crashes the kernel; it only runs inside a pkeys-qemu guest"
        );
        return ExitCode::from(2);
    }
    if extra.ktap && !args.list {
        return run_ktap(&args, &extra, cases, &caps, &opts);
    }
    // Cases fork; the parent must stay single-threaded.
    args.test_threads = Some(1);
    if !args.list {
        println!("pkeys-suite: {}", caps.summary());
    }
    let caps = Arc::new(caps);
    let trials = expand(cases, extra.iterations)
        .into_iter()
        .map(|(case, iteration)| {
            // Listing (what cargo-nextest does before running) marks the cases this machine
            // cannot run as ignored, so nextest reports them as skipped rather than passed; a
            // normal run reports each one as ignored with its reason at run time.
            let unrunnable = args.list && case.needs.missing(&caps).is_some();
            let caps = Arc::clone(&caps);
            let opts = Options { iteration, ..opts };
            Trial::ignorable_test(case.id.clone(), move || {
                to_libtest(isolate::run(&case, &caps, &opts))
            })
            .with_ignored_flag(unrunnable)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Repeat the case list `n` times (`--iterations`); with n > 1 each id gets `@<round>` (1-based;
/// not `#`, which starts a KTAP directive).
fn expand(cases: Vec<Case>, n: u32) -> Vec<(Case, u32)> {
    if n <= 1 {
        return cases.into_iter().map(|c| (c, 0)).collect();
    }
    (0..n)
        .flat_map(|i| {
            cases.iter().map(move |c| {
                let mut c = c.clone();
                c.id = format!("{}@{}", c.id, i + 1);
                (c, i)
            })
        })
        .collect()
}

fn to_libtest(r: CaseReport) -> Result<Completion, Failed> {
    match r.verdict {
        Verdict::Pass | Verdict::XFail(_) => Ok(Completion::Completed),
        Verdict::Skip(reason) => Ok(Completion::ignored_with(reason)),
        v => {
            let mut msg = v.to_string();
            for d in &r.diagnostics {
                msg.push_str("\n  ");
                msg.push_str(d);
            }
            Err(msg.into())
        }
    }
}

fn selected(args: &Arguments, id: &str) -> bool {
    // Under --iterations the ids are `ID@N`: --exact ID selects every round of ID.
    let base = id.split_once('@').map_or(id, |(b, _)| b);
    let matches = |f: &str| {
        if args.exact {
            id == f || base == f
        } else {
            id.contains(f)
        }
    };
    if args.skip.iter().any(|s| matches(s)) {
        return false;
    }
    args.filter.as_deref().is_none_or(matches)
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn run_ktap(
    args: &Arguments,
    extra: &Extra,
    cases: Vec<Case>,
    caps: &Caps,
    opts: &Options,
) -> ExitCode {
    let cases: Vec<(Case, u32)> = expand(cases, extra.iterations)
        .into_iter()
        .filter(|(c, _)| selected(args, &c.id))
        .collect();
    let header = format!(
        "version={} kernel={} cpu=\"{}\" {} seed={} iterations={}{}",
        env!("CARGO_PKG_VERSION"),
        kernel_release(),
        cpu::model_name(),
        caps.summary(),
        extra.seed,
        extra.iterations.max(1),
        if extra.selftest { " mode=selftest" } else { "" }
    );
    let stdout = std::io::stdout().lock();
    let run = || -> std::io::Result<bool> {
        let mut w = ktap::Writer::start(stdout, &header)?;
        w.plan(cases.len())?;
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        let mut bad = false;
        for (case, iteration) in &cases {
            let opts = Options {
                iteration: *iteration,
                ..*opts
            };
            let r = isolate::run(case, caps, &opts);
            *counts.entry(r.verdict.name()).or_default() += 1;
            bad |= r.verdict.is_bad();
            w.result(&r)?;
        }
        if extra.inject_panic {
            w.diag("pkeys-suite: injecting a kernel panic (sysrq c)")?;
            let _ = std::fs::write("/proc/sys/kernel/sysrq", "1");
            let _ = std::fs::write("/proc/sysrq-trigger", "c");
        }
        let summary: Vec<String> = counts
            .iter()
            .map(|(k, v)| format!("{}={v}", k.to_lowercase()))
            .collect();
        let _ = w.finish(&format!("{} total={}", summary.join(" "), cases.len()))?;
        Ok(bad)
    };
    match run() {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        // The reader went away (`pkeys-suite --format ktap | head`): end quietly, with the status
        // a shell reports for a filter that a closed pipe stopped (128 + SIGPIPE).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Err(e) => {
            eprintln!("pkeys-suite: writing KTAP: {e}");
            ExitCode::from(2)
        }
    }
}
