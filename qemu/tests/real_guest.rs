//! Real qemu guests: a normal boot of the cached `debian:6.12` kernel, and the guest-level fault
//! injections (a command line that panics the kernel early, a truncated initramfs, a hang
//! before the suite starts, a hang after it started, qemu killed).
//!
//! These run only where qemu is installed and a `debian:6.12` kernel is in the cache
//! (`pkeys-qemu fetch 6.12`); elsewhere each is reported as ignored, with the reason. The static
//! suite is built as the runner would build it (or taken from `$PKEYS_TEST_SUITE`). A
//! `harness = false` target, so that skips are visible and guests boot one at a time.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use pkeys_qemu::guest::{self, Env, GuestSpec};
use pkeys_qemu::kernel::{ResolvedKernel, Resolver};
use pkeys_report::{GuestRun, RunStatus, Verdict};

struct Prereqs {
    qemu: PathBuf,
    kernel: ResolvedKernel,
    base: Vec<u8>,
}

fn prereqs() -> Result<&'static Prereqs, String> {
    static P: OnceLock<Result<Prereqs, String>> = OnceLock::new();
    P.get_or_init(|| {
        let qemu = pkeys_qemu::qemu::find_qemu().map_err(|e| format!("{e:#}"))?;
        let cache = pkeys_qemu::paths::cache_root();
        let kernel = Resolver::new(&cache, false).quiet().cached_kernel("6.12").ok_or_else(|| {
            format!(
                "no cached debian:6.12 kernel in {} (run `cargo run -p pkeys-qemu -- fetch 6.12`)",
                cache.display()
            )
        })?;
        let suite = match std::env::var_os("PKEYS_TEST_SUITE") {
            Some(p) => PathBuf::from(p),
            None => pkeys_qemu::suite::build(&pkeys_qemu::paths::workspace_root())
                .map_err(|e| format!("cannot build the static suite: {e:#}"))?,
        };
        pkeys_qemu::suite::check_static(&suite).map_err(|e| format!("{e:#}"))?;
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let base =
            pkeys_qemu::initramfs::base_image(&suite, tmp.path()).map_err(|e| format!("{e:#}"))?;
        Ok(Prereqs { qemu, kernel, base })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The boot limit of every test guest but the one that tests the boot limit: generous, because a
/// busy machine boots slowly (over 9 s at load 5 on 2 cores) and no test here is about speed.
const BOOT_LIMIT: u64 = 300;

fn spec(
    p: &Prereqs,
    name: &str,
    append: &str,
    args: &[&str],
    timeout: u64,
    boot_timeout: u64,
) -> GuestSpec {
    GuestSpec {
        accel: pkeys_qemu::accel::Accel::Tcg,
        name: name.to_owned(),
        kernel: p.kernel.clone(),
        cpu: "max".into(),
        append: append.into(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        memory: "512M".into(),
        smp: 1,
        timeout: Duration::from_secs(timeout),
        boot_timeout: Duration::from_secs(boot_timeout),
    }
}

fn boot(spec: &GuestSpec, base: &[u8], qemu: &Path, out: &Path) -> (GuestRun, Duration) {
    let env = Env {
        qemu,
        base_image: base,
        out,
    };
    let t = Instant::now();
    let run = guest::run(spec, &env, &|_, _| {}).expect("guest::run");
    let took = t.elapsed();
    // Quiet while the test passes: many of these guests fail on purpose, and their raw FAIL or
    // ERROR lines would read as failures. A failing test shows them (see `guest_trial`).
    booted().push(format!(
        "{} (detected after {:.1} s)",
        guest::summary_line(&run),
        took.as_secs_f64()
    ));
    (run, took)
}

/// Summary lines of the guests the current test booted (tests run one at a time; a test may
/// boot from another thread).
fn booted() -> std::sync::MutexGuard<'static, Vec<String>> {
    static BOOTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    BOOTED.lock().unwrap_or_else(|e| e.into_inner())
}

fn message(run: &GuestRun) -> String {
    match &run.status {
        RunStatus::Error { message, .. } => message.clone(),
        RunStatus::Completed => String::new(),
    }
}

/// Print how many cases passed and how many were skipped.
fn print_counts(label: &str, run: &GuestRun) {
    let passed = run
        .cases
        .iter()
        .filter(|c| c.verdict == Verdict::Pass)
        .count();
    println!(
        "    {label}: {passed} passed, {} skipped",
        run.cases.len() - passed
    );
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}

/// The minimal-kernel test: ignored with the reason when no minimal kernel is cached.
fn minimal_trial() -> Trial {
    let name = "real_guest::minimal_config_kernel";
    if minimal_kernel().is_none() {
        return Trial::ignorable_test(name, || {
            Ok(Completion::ignored_with(
                "no minimal kernel cached in .cache/kbuild (bash ci/minimal-kernel.sh)",
            ))
        });
    }
    guest_trial(name, minimal_config_kernel)
}

/// The real-clients test: ignored with the reasons when neither kunit.py nor junitparser is here
/// (with one of them, the other's half says it was not checked).
fn clients_trial() -> Trial {
    let name = "real_guest::outputs_read_by_real_clients";
    if let (Err(a), Err(b)) = (kunit_py(), junitparser_python()) {
        return Trial::ignorable_test(name, move || {
            Ok(Completion::ignored_with(format!("{a}; {b}")))
        });
    }
    guest_trial(name, outputs_read_by_real_clients)
}

/// Wraps a guest test: ignored (with the reason) when the prerequisites are missing; on failure
/// the message ends with the summary line of every guest the test booted.
fn guest_trial(name: &str, f: fn(&Prereqs, &Path) -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || match prereqs() {
        Err(reason) => Ok(Completion::ignored_with(reason)),
        Ok(p) => {
            let out = tempfile::tempdir().map_err(|e| e.to_string())?;
            booted().clear();
            let result = f(p, out.path());
            let booted = std::mem::take(&mut *booted());
            result.map(|()| Completion::Completed).map_err(|e| {
                let msg = e.message().unwrap_or("failed").to_owned();
                format!("{msg}\nguests booted:\n  {}", booted.join("\n  ")).into()
            })
        }
    })
}

fn boots_6_12(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let (run, _) = boot(
        &spec(p, "6.12-max", "", &[], 120, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    check(
        message(&run).is_empty(),
        format!("guest error: {}", message(&run)),
    )?;
    check(run.complete, "stream complete")?;
    check(
        run.attempts == 1 || run.retried.is_some(),
        "attempts recorded",
    )?;
    check(run.init_exit.is_some(), "init end marker")?;
    let uname = run.kernel.uname.clone().unwrap_or_default();
    check(uname.starts_with("6.12."), format!("uname {uname}"))?;
    check(
        run.meta.get("pku").map(String::as_str) == Some("1"),
        "PKU in the guest",
    )?;
    check(
        run.cases
            .iter()
            .flat_map(|c| &c.diagnostics)
            .any(|d| d.contains("si_pkey=1")),
        "a real pkey fault observed",
    )?;
    Ok(())
}

fn init_pkru_denying_key0_panics_before_start(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    // The runner refuses this command line; here it is forced through to show why.
    let (run, _) = boot(
        &spec(p, "deny-key0", "init_pkru=0x55555555", &[], 60, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    check(run.attempts == 2, "retried once: the suite never started")?;
    check(message(&run).starts_with("kernel crashed: "), message(&run))?;
    check(run.cases.is_empty(), "no results")
}

fn truncated_initramfs(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let half = &p.base[..p.base.len() / 2];
    let (run, _) = boot(
        &spec(p, "truncated", "", &[], 60, BOOT_LIMIT),
        half,
        &p.qemu,
        out,
    );
    check(run.attempts == 2, "retried once")?;
    check(message(&run).starts_with("kernel crashed: "), message(&run))?;
    let RunStatus::Error { console_tail, .. } = &run.status else {
        unreachable!()
    };
    check(!console_tail.is_empty(), "console tail kept")
}

fn hang_before_start(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let (run, _) = boot(&spec(p, "slow-boot", "", &[], 60, 1), &p.base, &p.qemu, out);
    check(run.attempts == 2, "retried once")?;
    check(
        message(&run).contains("hung before the suite started"),
        message(&run),
    )
}

const HANG_ARGS: &[&str] = &[
    "--selftest",
    "--exact",
    "selftest::hang",
    "--timeout-scale",
    "100",
];

fn hang_after_start(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let (run, _) = boot(
        &spec(p, "hang", "", HANG_ARGS, 9, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    check(run.attempts == 1, "never retried after the suite started")?;
    check(
        message(&run).contains("guest hung: the suite started"),
        message(&run),
    )?;
    check(
        !run.meta.is_empty(),
        "the header streamed before the hang is kept",
    )?;
    // The 9 s limit counts from the suite's first line: a slow boot does not eat into it.
    check(
        message(&run).contains("within 9 s"),
        format!(
            "the suite's limit was the one that expired: {}",
            message(&run)
        ),
    )
}

/// Our children named qemu-system-x86.
fn qemu_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, rest) = stat.split_once(") ")?;
            let ppid = rest.split_whitespace().nth(1)?;
            (comm.ends_with("qemu-system-x86") && ppid == me).then_some(pid)
        })
        .collect()
}

fn qemu_killed(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let spec = spec(p, "killed", "", HANG_ARGS, 60, BOOT_LIMIT);
    let ktap = out.join("killed.ktap");
    let (run, _) = std::thread::scope(|s| {
        let h = s.spawn(|| boot(&spec, &p.base, &p.qemu, out));
        let t = Instant::now();
        while !std::fs::read_to_string(&ktap).is_ok_and(|k| k.contains("1..")) {
            assert!(
                t.elapsed() < Duration::from_secs(BOOT_LIMIT),
                "the suite did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in qemu_children() {
            println!("    killing qemu {pid}");
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        h.join().unwrap()
    });
    check(run.attempts == 1, "not retried")?;
    check(
        message(&run).starts_with("qemu exited (signal: 9"),
        message(&run),
    )?;
    check(qemu_children().is_empty(), "no qemu left")
}

/// The fault-injection cases in a real PKU guest: every one gets exactly its expected verdict,
/// including those that need protection keys (SKIP on a host without PKU).
fn selftests_in_guest(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let (run, _) = boot(
        &spec(p, "selftest", "", &["--selftest"], 120, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    check(
        message(&run).is_empty(),
        format!("guest error: {}", message(&run)),
    )?;
    check(run.complete, "stream complete")?;
    for (id, want, fragment) in pkeys_cases::selftest::EXPECTED {
        let case = run.cases.iter().find(|c| c.id == *id);
        let got = case.map(|c| c.verdict.to_string());
        check(
            got.as_deref() == Some(*want),
            format!("{id}: expected {want}, got {got:?}"),
        )?;
        // The message must come from the check the injection targets.
        let reason = case.and_then(|c| c.reason.clone()).unwrap_or_default();
        check(
            reason.contains(fragment),
            format!("{id}: message {reason:?} lacks {fragment:?}"),
        )?;
    }
    check(
        run.cases.len() == pkeys_cases::selftest::EXPECTED.len(),
        "one result per injection",
    )?;
    let leak = run
        .cases
        .iter()
        .find(|c| c.id == "selftest::leaks_keys_and_pkru");
    let said = leak.is_some_and(|c| {
        c.diagnostics
            .iter()
            .any(|d| d.contains("left behind: 5 key(s) allocated, PKRU 0x55555534"))
    });
    check(said, format!("leftover state reported: {leak:?}"))
}

/// The suite as an unprivileged user (`--user 65534`, dropped before probing): nothing fails, and
/// every case that needs root is SKIP saying so.
fn unprivileged_user(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let (run, _) = boot(
        &spec(p, "unprivileged", "", &["--user", "65534"], 120, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    check(
        message(&run).is_empty(),
        format!("guest error: {}", message(&run)),
    )?;
    check(run.complete, "stream complete")?;
    check(
        run.meta.get("root").map(String::as_str) == Some("0"),
        format!("the header says root=0: {:?}", run.meta.get("root")),
    )?;
    let bad: Vec<String> = run
        .cases
        .iter()
        .filter(|c| !matches!(c.verdict, Verdict::Pass | Verdict::Skip))
        .map(|c| format!("{} {} {:?}", c.id, c.verdict, c.reason))
        .collect();
    // The core-dump case's known failure cannot show: it needs root to set core_pattern.
    check(bad.is_empty(), format!("not PASS/SKIP: {bad:?}"))?;
    for id in [
        "init_pkru::debugfs_accepts_and_refuses",
        "remote::core_dump_xstate_pkru::immediate",
        "vma::kinds::ksm_merged",
    ] {
        let c = run.cases.iter().find(|c| c.id == id);
        let reason = c.and_then(|c| c.reason.clone()).unwrap_or_default();
        check(
            c.is_some_and(|c| c.verdict == Verdict::Skip) && reason.contains("root"),
            format!("{id}: SKIP naming root expected, got {c:?}"),
        )?;
    }
    print_counts("unprivileged", &run);
    Ok(())
}

/// Key choice is uniform over all free keys, as upstream's `alloc_random_pkey()`: over 120
/// iterations of one access case (a fixed seed, so the run is the same every time) every key
/// 1-15 is chosen, the high keys 9-15 included (their PKRU bits are 18-31, their PTE bit 3).
fn every_key_is_used(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let args = [
        "--exact",
        "access::read_ad::anon",
        "--iterations",
        "120",
        "--seed",
        "1",
    ];
    let (run, _) = boot(
        &spec(p, "keys", "", &args, 300, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    check(
        message(&run).is_empty(),
        format!("guest error: {}", message(&run)),
    )?;
    check(
        run.cases.len() == 120 && run.cases.iter().all(|c| c.verdict == Verdict::Pass),
        format!("120 passes expected: {}", run.cases.len()),
    )?;
    let mut used = std::collections::BTreeMap::<u32, usize>::new();
    for d in run.cases.iter().flat_map(|c| &c.diagnostics) {
        if let Some(rest) = d.split(": key ").nth(1)
            && let Some(k) = rest.split(' ').next().and_then(|k| k.parse().ok())
            && rest.contains("chosen among")
        {
            *used.entry(k).or_default() += 1;
        }
    }
    println!("    keys chosen: {used:?}");
    check(
        used.keys().copied().eq(1..=15),
        format!("every key 1-15 chosen at least once: {used:?}"),
    )
}

/// `--accel`: `auto` probes KVM with a real guest and falls back to TCG with the reason where it
/// does not work (this development machine: /dev/kvm exists but qemu aborts with `failed to set
/// MSR 0x10a`), and `--accel kvm` is refused there with that reason. Where KVM works, `auto`
/// takes it and a guest on `-cpu host` runs the suite's probe case.
fn kvm_probe_and_fallback(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    use pkeys_qemu::accel::{self, AccelChoice};
    let env = Env {
        qemu: &p.qemu,
        base_image: &p.base,
        out,
    };
    let probe = accel::probe_kvm(&p.kernel, &env);
    println!("    KVM probe: {probe:?}");
    let host_pkeys = accel::host_has_pkeys();
    let auto = accel::decide(AccelChoice::Auto, host_pkeys, || probe.clone())
        .map_err(|e| e.to_string())?;
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_pkeys-qemu"))
        .args(["run", "--accel", "kvm", "--kernel"])
        .arg(&p.kernel.path)
        .arg("--out")
        .arg(out.join("cli"))
        .args(["--", "--exact", "support::probe"])
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&cli.stderr);
    match &probe {
        Err(why) => {
            check(!auto.kvm, "auto must not use a KVM that failed its probe")?;
            check(
                auto.why_not.as_deref() == Some(&format!("KVM unusable: {why}; using TCG")),
                format!("fallback line: {:?}", auto.why_not),
            )?;
            check(
                cli.status.code() == Some(2) && stderr.contains("--accel kvm: KVM unusable: "),
                format!(
                    "--accel kvm refused with the reason: {:?} {stderr}",
                    cli.status
                ),
            )?;
            check(
                !out.join("cli").join("results.json").exists(),
                "nothing ran after the refusal",
            )
        }
        Ok(()) => {
            check(
                auto.kvm == host_pkeys,
                "auto uses a KVM that works, on a host CPU with PKU",
            )?;
            check(
                cli.status.code() == Some(0) && stderr.contains("under kvm"),
                format!("a guest under KVM: {:?} {stderr}", cli.status),
            )
        }
    }
}

/// The cached minimal-configuration kernel (`ci/minimal-kernel.sh`), if it was built.
fn minimal_kernel() -> Option<PathBuf> {
    pkeys_qemu::paths::newest_cached(&pkeys_qemu::paths::cache_root().join("kbuild"), |n, _| {
        n.starts_with("minimal-") && n.ends_with(".bzImage")
    })
}

/// A kernel built from tinyconfig with protection keys and none of the optional features the
/// cases use: only PASS and SKIP, and every SKIP names the config option (or the CPU, for the
/// no-PKU checks). Nothing a kernel was built without may be reported as a defect.
fn minimal_config_kernel(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let Some(image) = minimal_kernel() else {
        return Err("no minimal kernel cached in .cache/kbuild (bash ci/minimal-kernel.sh)".into());
    };
    let mut s = spec(p, "minimal", "", &[], 120, BOOT_LIMIT);
    s.kernel = Resolver::new(&pkeys_qemu::paths::cache_root(), false)
        .resolve(&image.display().to_string(), None)
        .map_err(|e| format!("{e:#}"))?;
    let (run, _) = boot(&s, &p.base, &p.qemu, out);
    check(
        message(&run).is_empty(),
        format!("guest error: {}", message(&run)),
    )?;
    check(run.complete, "stream complete")?;
    let bad: Vec<String> = run
        .cases
        .iter()
        .filter(|c| match c.verdict {
            Verdict::Pass => false,
            Verdict::Skip => {
                let r = c.reason.as_deref().unwrap_or_default();
                !(r.starts_with("kernel has no ") && r.contains("CONFIG_")
                    || r.starts_with("CPU has PKU"))
            }
            _ => true,
        })
        .map(|c| format!("{} {} {:?}", c.id, c.verdict, c.reason))
        .collect();
    check(
        bad.is_empty(),
        format!("neither PASS nor SKIP naming an option: {bad:?}"),
    )?;
    let absent = run.meta.get("absent").cloned().unwrap_or_default();
    for f in [
        "unix_sockets",
        "sysv_shm",
        "memfd",
        "futex",
        "smaps",
        "debugfs",
    ] {
        check(
            absent.split(',').any(|a| a == f),
            format!("the probe line lists {f} as absent: absent={absent}"),
        )?;
    }
    print_counts("minimal kernel", &run);
    Ok(())
}

/// A kernel panic after the suite started: ERROR with the console's last lines, never retried,
/// and the result streamed before the panic is kept.
fn panic_after_start(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let args = [
        "--selftest",
        "--exact",
        "selftest::after_hang",
        "--inject-panic",
    ];
    let (run, _) = boot(
        &spec(p, "panic", "", &args, 60, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    check(run.attempts == 1, "never retried after the suite started")?;
    check(message(&run).starts_with("kernel crashed: "), message(&run))?;
    let RunStatus::Error { console_tail, .. } = &run.status else {
        unreachable!()
    };
    // The panic line names the cause; the kept console tail (its last lines) holds the trace,
    // whose length varies, so it is only required to be there.
    check(
        message(&run).contains("sysrq triggered crash"),
        message(&run),
    )?;
    check(!console_tail.is_empty(), "console tail kept")?;
    let kept = run
        .cases
        .iter()
        .any(|c| c.id == "selftest::after_hang" && c.verdict == pkeys_report::Verdict::Pass);
    check(kept, format!("streamed result kept: {:?}", run.cases))
}

/// The kernel's own KTAP parser, from a cached `linux-source` tree.
fn kunit_py() -> Result<PathBuf, String> {
    let src = pkeys_qemu::paths::cache_root().join("src");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&src)
        .map_err(|e| format!("no linux-source tree in {}: {e}", src.display()))?
        .flatten()
        .map(|e| e.path().join("tools/testing/kunit/kunit.py"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "no tools/testing/kunit/kunit.py under {} (bash ci/minimal-kernel.sh fetches linux-source)",
            src.display()
        )
    })
}

/// `kunit.py parse --json` over a KTAP file: `(group, PASS, FAIL, SKIP)` for every group that
/// holds test cases (the top level for a guest stream, one per run for `results.ktap`).
fn kunit_counts(kunit: &Path, ktap: &Path) -> Result<Vec<(String, usize, usize, usize)>, Failed> {
    let json = ktap.with_extension("kunit.json");
    let out = std::process::Command::new("python3")
        .arg(kunit)
        .arg("parse")
        .arg(format!("--json={}", json.display()))
        .arg(ktap)
        .output()
        .map_err(|e| format!("python3 {}: {e}", kunit.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        !stderr.contains("Traceback") && json.is_file(),
        format!("kunit.py parse {} failed: {stderr}", ktap.display()),
    )?;
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    fn walk(v: &serde_json::Value, out: &mut Vec<(String, usize, usize, usize)>) {
        let cases = v["test_cases"].as_array().cloned().unwrap_or_default();
        if !cases.is_empty() {
            let n = |s: &str| cases.iter().filter(|c| c["status"] == s).count();
            let name = v["name"].as_str().unwrap_or("").to_owned();
            out.push((
                name,
                n("PASS"),
                cases.len() - n("PASS") - n("SKIP"),
                n("SKIP"),
            ));
        }
        for g in v["sub_groups"].as_array().into_iter().flatten() {
            walk(g, out);
        }
    }
    let mut groups = Vec::new();
    walk(&v, &mut groups);
    Ok(groups)
}

/// What a KTAP reader that knows only ok, not ok and SKIP should count for a run: `ok` without
/// SKIP is PASS or XFAIL, `not ok` is FAIL, XPASS, TIMEOUT or ERROR.
fn ktap_reader_counts(run: &GuestRun) -> (usize, usize, usize) {
    let t = pkeys_report::Tally::of_run(run);
    (t.pass + t.xfail, t.problems(), t.skip)
}

/// A Python with `junitparser` (`.cache/venv`, which `.ci/run` installs from PyPI).
fn junitparser_python() -> Result<PathBuf, String> {
    let py = pkeys_qemu::paths::cache_root().join("venv/bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import junitparser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(py)
    } else {
        Err(format!(
            "no Python with junitparser at {} (python3 -m venv .cache/venv && .cache/venv/bin/pip install junitparser)",
            py.display()
        ))
    }
}

const JUNIT_COUNTS_PY: &str = r#"
import json, sys
from junitparser import JUnitXml, Skipped, Failure, Error
out = {}
for suite in JUnitXml.fromfile(sys.argv[1]):
    c = {"tests": 0, "passed": 0, "failure": 0, "error": 0, "skip": 0, "xfail": 0, "timed": 0}
    for case in suite:
        c["tests"] += 1
        if case.time is not None:
            c["timed"] += 1
        kinds = case.result
        if not kinds:
            c["passed"] += 1
        for r in kinds:
            if isinstance(r, Skipped):
                c["xfail" if r.type == "pytest.xfail" else "skip"] += 1
            elif isinstance(r, Failure):
                c["failure"] += 1
            elif isinstance(r, Error):
                c["error"] += 1
    out[suite.name] = c
print(json.dumps(out))
"#;

/// `results.ktap` and every guest `.ktap` of real runs read by the kernel's `kunit.py parse`,
/// and `junit.xml` by `junitparser`, with counts equal to the project's. Two guests: a normal
/// 6.12 run and the fault injections (every verdict), classified with `ci/expectations.toml`
/// plus two entries that make one injected FAIL an XFAIL and one PASS an XPASS.
fn outputs_read_by_real_clients(p: &Prereqs, out: &Path) -> Result<(), Failed> {
    let kunit = kunit_py();
    let junit_py = junitparser_python();
    let (normal, _) = boot(
        &spec(p, "6.12-max", "", &[], 120, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    let (injected, _) = boot(
        &spec(p, "selftest", "", &["--selftest"], 120, BOOT_LIMIT),
        &p.base,
        &p.qemu,
        out,
    );
    check(
        normal.complete && injected.complete,
        "both streams complete",
    )?;
    let extra = "[[expect]]\ncase = \"selftest::abort\"\nverdict = \"fail\"\nreason = \"injected\"\nfix = \"0123456789ab\"\n\
                 [[expect]]\ncase = \"selftest::after_hang\"\nverdict = \"fail\"\nreason = \"stale on purpose\"\n";
    let base = std::fs::read_to_string(pkeys_qemu::paths::default_expectations())
        .map_err(|e| e.to_string())?;
    let expectations =
        pkeys_report::Expectations::parse(&format!("{extra}{base}"), Path::new("test.toml"))
            .map_err(|e| e.to_string())?;
    let mut results = pkeys_report::Results::new(vec![normal.clone(), injected.clone()]);
    pkeys_report::classify_all(&mut results, &expectations);
    let t = pkeys_report::Tally::of_run(&results.runs[1]);
    check(
        t.xfail >= 1 && t.xpass == 1 && t.fail > 0 && t.timeout > 0 && t.error > 0,
        format!("the injected run has every verdict: {t:?}"),
    )?;
    let report = out.join("report");
    pkeys_report::write_all(&results, &report).map_err(|e| e.to_string())?;
    match &kunit {
        Err(why) => println!("    kunit.py not checked: {why}"),
        Ok(kunit) => {
            for raw in [&normal, &injected] {
                let groups = kunit_counts(kunit, &out.join(format!("{}.ktap", raw.name)))?;
                let (pass, fail, skip) = ktap_reader_counts(raw);
                check(
                    groups.len() == 1
                        && (groups[0].1, groups[0].2, groups[0].3) == (pass, fail, skip),
                    format!(
                        "{}.ktap: kunit.py {groups:?}, project pass+xfail/problems/skip {pass}/{fail}/{skip}",
                        raw.name
                    ),
                )?;
            }
            let groups = kunit_counts(kunit, &report.join("results.ktap"))?;
            let want: Vec<_> = results
                .runs
                .iter()
                .map(|r| {
                    let (a, b, c) = ktap_reader_counts(r);
                    (r.name.clone(), a, b, c)
                })
                .collect();
            check(
                groups == want,
                format!("results.ktap: kunit.py {groups:?}, project {want:?}"),
            )?;
            println!("    kunit.py parse results.ktap: {groups:?}");
        }
    }
    match &junit_py {
        Err(why) => println!("    junitparser not checked: {why}"),
        Ok(py) => {
            let o = std::process::Command::new(py)
                .args(["-c", JUNIT_COUNTS_PY])
                .arg(report.join("junit.xml"))
                .output()
                .map_err(|e| e.to_string())?;
            check(
                o.status.success(),
                format!("junitparser: {}", String::from_utf8_lossy(&o.stderr)),
            )?;
            let v: serde_json::Value =
                serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
            for run in &results.runs {
                let t = pkeys_report::Tally::of_run(run);
                let timed = run.cases.iter().filter(|c| c.duration_us.is_some()).count();
                let got = &v[run.name.as_str()];
                let want = serde_json::json!({
                    "tests": run.cases.len(), "passed": t.pass, "failure": t.fail + t.xpass,
                    "error": t.timeout + t.error, "skip": t.skip, "xfail": t.xfail, "timed": timed,
                });
                check(
                    *got == want,
                    format!(
                        "junit.xml {}: junitparser {got}, results.json {want}",
                        run.name
                    ),
                )?;
            }
            println!(
                "    junitparser junit.xml: {}",
                String::from_utf8_lossy(&o.stdout).trim()
            );
        }
    }
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        guest_trial("real_guest::boots_6_12", boots_6_12),
        guest_trial(
            "real_guest::init_pkru_denying_key0_panics_before_start",
            init_pkru_denying_key0_panics_before_start,
        ),
        guest_trial("real_guest::truncated_initramfs", truncated_initramfs),
        guest_trial("real_guest::hang_before_start", hang_before_start),
        guest_trial("real_guest::hang_after_start", hang_after_start),
        guest_trial("real_guest::qemu_killed", qemu_killed),
        guest_trial("real_guest::selftests_in_guest", selftests_in_guest),
        guest_trial("real_guest::panic_after_start", panic_after_start),
        guest_trial("real_guest::unprivileged_user", unprivileged_user),
        guest_trial("real_guest::every_key_is_used", every_key_is_used),
        guest_trial("real_guest::kvm_probe_and_fallback", kvm_probe_and_fallback),
        clients_trial(),
        minimal_trial(),
    ];
    libtest_mimic::run(&args, trials).exit();
}
