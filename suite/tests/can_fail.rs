//! The harness reports FAIL, TIMEOUT and ERROR when it should: runs `pkeys-suite --selftest`
//! (the fault-injection cases) natively and checks every verdict and message.
//!
//! Cases that need protection keys are SKIP with "CPU lacks PKU" on a host without PKU; in a guest
//! they are checked by `qemu/tests/guest.rs`.
//!
//! The tests run one at a time (`serial`): the leftover check makes this process a child
//! subreaper and counts the suite processes re-parented to it, which must not include another
//! test's suite still running.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::process::Command;

/// `id -> (verdict, message)`: the message is the FAIL line's text (`# ID: FAIL: MESSAGE`) or the
/// reason after a SKIP/ERROR/TIMEOUT directive.
fn ktap_verdicts(out: &str) -> HashMap<String, (String, String)> {
    let mut v = HashMap::new();
    for line in out.lines() {
        let (ok, rest) = if let Some(r) = line.strip_prefix("ok ") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("not ok ") {
            (false, r)
        } else {
            continue;
        };
        let rest = rest.split_once(' ').map_or("", |x| x.1);
        let (id, directive) = rest.split_once(" # ").unwrap_or((rest, ""));
        let (word, reason) = directive.split_once(' ').unwrap_or((directive, ""));
        let (verdict, message) = match (ok, word) {
            (true, "") => ("PASS", String::new()),
            (false, "") => {
                let prefix = format!("# {id}: FAIL: ");
                let msg = out
                    .lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .unwrap_or_default();
                ("FAIL", msg.to_string())
            }
            (_, w) => (w, reason.to_string()),
        };
        v.insert(id.to_string(), (verdict.to_string(), message));
    }
    v
}

#[test]
#[serial_test::serial]
fn fault_injection_cases_get_the_right_verdicts() {
    let out = Command::new(env!("CARGO_BIN_EXE_pkeys-suite"))
        .args(["--selftest", "--format", "ktap"])
        .output()
        .expect("run pkeys-suite");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run with failures must exit 1:\n{text}"
    );
    assert!(
        text.contains("# pkeys-suite: done "),
        "end marker missing:\n{text}"
    );
    let got = ktap_verdicts(&text);
    let caps = pkeys_harness::probe::Caps::probe();
    let selftests = pkeys_cases::selftests();
    assert_eq!(
        got.len(),
        pkeys_cases::selftest::EXPECTED.len(),
        "every fault injection has an expected verdict"
    );
    let mut checked = 0;
    for (id, want, fragment) in pkeys_cases::selftest::EXPECTED {
        let (verdict, message) = got
            .get(*id)
            .unwrap_or_else(|| panic!("{id} missing from:\n{text}"));
        let case = selftests.iter().find(|c| c.id == *id).expect("case exists");
        if let Some(reason) = case.needs.missing(&caps) {
            // This machine cannot run it (no PKU here): SKIP with the probe's reason.
            assert_eq!((verdict.as_str(), message), ("SKIP", &reason), "{id}");
            continue;
        }
        // The verdict alone is not enough: the message must come from the check the injection
        // targets, not from some unrelated failure on the way.
        assert_eq!(verdict, want, "{id}:\n{text}");
        assert!(
            message.contains(fragment),
            "{id}: message {message:?} lacks {fragment:?}"
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} injections ran here");
    let lines: Vec<&str> = text.lines().collect();
    let hang = lines
        .iter()
        .position(|l| l.starts_with("not ok ") && l.ends_with(" selftest::hang # TIMEOUT after 1s"))
        .unwrap_or_else(|| panic!("no TIMEOUT line for selftest::hang:\n{text}"));
    // The next result line (a duration line comes first).
    let next = lines[hang + 1..]
        .iter()
        .find(|l| l.starts_with("ok ") || l.starts_with("not ok "))
        .unwrap_or(&"");
    assert!(
        next.starts_with("ok ") && next.ends_with(" selftest::after_hang"),
        "the case after a hang must still run and pass:\n{text}"
    );
}

/// Live (not zombie) processes whose parent is `pid`, with their command lines.
fn live_children_of(pid: u32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next());
        if ppid == Some(&pid.to_string()) && state != Some("Z") {
            let cmd = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
            out.push((p, cmd.replace('\0', " ")));
        }
    }
    out
}

/// A case that leaves a child running (60 s of sleep in the case's process group) is FAIL, and
/// the child is gone when the suite ends. This test process becomes a child subreaper first, so
/// anything the suite leaves behind is re-parented here (not to init, where it would be
/// invisible) and shows up below.
#[test]
#[serial_test::serial]
fn leftover_processes_are_killed() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    // Output to a file, not a pipe: a leftover holding a pipe open would make us wait for it to
    // end by itself, and then there would be nothing left to see.
    let log = tempfile::tempfile().expect("temp file");
    let status = Command::new(env!("CARGO_BIN_EXE_pkeys-suite"))
        .args([
            "--selftest",
            "--format",
            "ktap",
            "--exact",
            "selftest::leaves_child_running",
        ])
        .stdout(log.try_clone().expect("dup"))
        .status()
        .expect("run pkeys-suite");
    let mut text = String::new();
    let mut f = &log;
    f.seek(std::io::SeekFrom::Start(0)).expect("rewind");
    f.read_to_string(&mut text)
        .expect("read the suite's output");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("not ok 1 selftest::leaves_child_running"),
        "{text}"
    );
    let me = std::process::id();
    let suites = || -> Vec<(i32, String)> {
        live_children_of(me)
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("pkeys-suite"))
            .collect()
    };
    // A leftover the suite SIGKILLed may take a moment to die on a busy machine: give it up to
    // 30 s (a grace period, not a speed check). One the suite did not kill sleeps for 60 s and is
    // still here after that.
    let t = std::time::Instant::now();
    let mut left = suites();
    while !left.is_empty() && t.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = suites();
    }
    for (pid, _) in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGKILL);
    }
    // Reap only the leftovers killed above: other tests in this process wait for their own.
    for (pid, _) in &left {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(*pid), None);
    }
    assert!(
        left.is_empty(),
        "pkeys-suite processes outlived the run: {left:?}"
    );
}

#[test]
#[serial_test::serial]
fn a_filtered_run_lists_and_runs_only_the_match() {
    let out = Command::new(env!("CARGO_BIN_EXE_pkeys-suite"))
        .args([
            "--format",
            "ktap",
            "--exact",
            "compat::pkey_minus_one_is_mprotect::prot",
        ])
        .output()
        .expect("run pkeys-suite");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1..1\n"), "{text}");
    assert!(
        text.contains("ok 1 compat::pkey_minus_one_is_mprotect::prot\n"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0));
}

/// What `cargo nextest` sees when it lists: cases this machine cannot run are listed as ignored
/// (so nextest reports them as skipped, never as passed); the others are not.
#[test]
#[serial_test::serial]
fn listing_marks_unrunnable_cases_ignored() {
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pkeys-suite"))
            .args(["--list", "--format", "terse"])
            .args(extra)
            .output()
            .expect("run pkeys-suite");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ignored = run(&["--ignored"]);
    let caps = pkeys_harness::probe::Caps::probe();
    for case in pkeys_cases::all() {
        let line = format!("{}: test", case.id);
        let listed = ignored.lines().any(|l| l == line);
        assert_eq!(listed, case.needs.missing(&caps).is_some(), "{}", case.id);
    }
}
