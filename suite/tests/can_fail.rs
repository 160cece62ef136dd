//! The harness reports FAIL, TIMEOUT and ERROR when it should: runs `pkeys-suite --selftest`
//! (the fault-injection cases) natively and checks every verdict and message.
//!
//! Cases that need protection keys are SKIP with "CPU lacks PKU" on a host without PKU; in a guest
//! they are checked by `qemu/tests/guest.rs`.

use std::collections::HashMap;
use std::process::Command;

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
        let verdict = match (ok, word) {
            (true, "") => "PASS",
            (false, "") => "FAIL",
            (_, w) => w,
        };
        v.insert(id.to_string(), (verdict.to_string(), reason.to_string()));
    }
    v
}

#[test]
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
    let pkeys = !text.contains("pkeys=no");
    let needs_pkeys: Vec<String> = pkeys_cases::selftests()
        .into_iter()
        .filter(|c| c.needs.pkeys)
        .map(|c| c.id)
        .collect();
    assert_eq!(
        got.len(),
        pkeys_cases::selftest::EXPECTED.len(),
        "every fault injection has an expected verdict"
    );
    for (id, want) in pkeys_cases::selftest::EXPECTED {
        let (verdict, reason) = got
            .get(*id)
            .unwrap_or_else(|| panic!("{id} missing from:\n{text}"));
        if !pkeys && needs_pkeys.iter().any(|n| n == *id) {
            assert_eq!(
                (verdict.as_str(), reason.as_str()),
                ("SKIP", "CPU lacks PKU"),
                "{id}"
            );
        } else {
            assert_eq!(verdict, want, "{id}:\n{text}");
        }
    }
    assert!(
        text.contains("# selftest::missing_fault: FAIL: fault count: expected 1, got 0"),
        "{text}"
    );
    assert!(text.contains("FAIL: killed by SIGBUS si_code=-6"), "{text}");
    assert!(
        text.contains("FAIL: killed by SIGSEGV si_code=2 si_addr=0x"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let hang = lines
        .iter()
        .position(|l| l.starts_with("not ok ") && l.ends_with(" selftest::hang # TIMEOUT after 1s"))
        .unwrap_or_else(|| panic!("no TIMEOUT line for selftest::hang:\n{text}"));
    assert!(
        lines[hang + 1].starts_with("ok ") && lines[hang + 1].ends_with(" selftest::after_hang"),
        "the case after a hang must still run and pass:\n{text}"
    );
    assert!(
        text.contains("# ERROR case exited with status 3 without a verdict"),
        "{text}"
    );
    assert!(text.contains("FAIL: panicked: deliberate panic"), "{text}");
    assert!(
        text.contains("FAIL: case left processes running after it ended"),
        "{text}"
    );
}

#[test]
fn leftover_processes_are_killed() {
    let out = Command::new(env!("CARGO_BIN_EXE_pkeys-suite"))
        .args([
            "--selftest",
            "--format",
            "ktap",
            "--exact",
            "selftest::leaves_child_running",
        ])
        .output()
        .expect("run pkeys-suite");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not ok 1 selftest::leaves_child_running"),
        "{text}"
    );
    // The child slept 60 s in the case's process group; no `sleep`-ing descendant may remain.
    let me = std::process::id();
    let children =
        std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
    for pid in children.split_whitespace() {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !cmd.contains("pkeys-suite"),
            "a pkeys-suite process outlived the run: {pid} {cmd}"
        );
    }
}

#[test]
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
