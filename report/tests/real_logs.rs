//! Parsing result streams and console logs captured from real guests (tests/fixtures/real):
//! a full 5.10 run with its four known signal-delivery failures, a 7.2 stream cut in the middle of
//! a line, and a 6.12 guest whose kernel panicked (sysrq c) after the suite had started.

use pkeys_report::console::detect_panic;
use pkeys_report::ktap::parse_bytes;
use pkeys_report::{Expectations, GuestRun, KernelInfo, Verdict, classify};

fn real(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/real/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn expectations() -> Expectations {
    Expectations::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ci/expectations.toml"
    ))
    .unwrap()
}

#[test]
fn full_5_10_run_is_complete_and_its_failures_are_the_known_ones() {
    let p = parse_bytes(&real("full-5.10-max.ktap"));
    assert!(p.started && p.done && p.complete);
    assert_eq!(p.plan, Some(205));
    assert_eq!(p.cases.len(), 205);
    assert_eq!(p.meta["kernel"], "5.10.0-46-cloud-amd64");
    let failed: Vec<&str> = p
        .cases
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "signals::handler_with_pkey0_disabled",
            "signals::handler_cannot_access_stack",
            "signals::handler_stack_on_other_pkey",
            "signals::sigreturn_restores_altstack_first"
        ]
    );
    let f = p
        .cases
        .iter()
        .find(|c| c.id == "signals::handler_with_pkey0_disabled")
        .unwrap();
    assert_eq!(f.reason.as_deref(), Some("killed by SIGSEGV"));
    assert!(detect_panic(&String::from_utf8_lossy(&real("full-5.10-max.console.log"))).is_none());

    let kernel = KernelInfo {
        spec: "debian:5.10".into(),
        package: "linux-image-5.10.0-46-cloud-amd64".into(),
        version: "5.10.262-1".into(),
        uname: None,
    };
    let mut run = GuestRun::new("5.10-max", kernel, "max", "");
    run.apply_stream(p);
    classify(&mut run, &expectations());
    let xfail = run
        .cases
        .iter()
        .filter(|c| c.verdict == Verdict::XFail)
        .count();
    assert_eq!(xfail, 4);
    assert!(
        !run.has_problems(),
        "every failure on 5.10 is an expected one"
    );

    // The same failures on a kernel that should have the fixes are regressions.
    let p = parse_bytes(&real("full-5.10-max.ktap"));
    let kernel = KernelInfo {
        spec: "x".into(),
        package: "x".into(),
        version: "6.12.118-1".into(),
        uname: None,
    };
    let mut run = GuestRun::new("pretend-6.12", kernel, "max", "");
    run.apply_stream(p);
    classify(&mut run, &expectations());
    assert_eq!(
        run.cases
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .count(),
        4
    );
    assert!(run.has_problems());
}

#[test]
fn truncated_7_2_stream_keeps_what_was_decided() {
    let p = parse_bytes(&real("truncated-7.2-max.ktap"));
    assert!(p.started && !p.done && !p.complete);
    assert_eq!(p.plan, Some(205));
    assert_eq!(p.cases.len(), 98);
    assert!(p.cases.iter().all(|c| c.verdict != Verdict::Fail));
}

#[test]
fn panic_after_start_is_detected_and_the_streamed_result_kept() {
    let p = parse_bytes(&real("panic-after-start-6.12.ktap"));
    assert!(p.started && !p.done && !p.complete);
    assert_eq!(p.cases.len(), 1);
    assert_eq!(
        (p.cases[0].id.as_str(), p.cases[0].verdict),
        ("selftest::after_hang", Verdict::Pass)
    );
    let console = String::from_utf8_lossy(&real("panic-after-start-6.12.console.log")).into_owned();
    let why = detect_panic(&console).expect("panic detected in the real console log");
    assert!(
        why.contains("Kernel panic - not syncing: sysrq triggered crash"),
        "{why}"
    );
}
