//! KTAP streams and console logs as guests produce them (fixtures under tests/fixtures).

use pkeys_report::console::detect_panic;
use pkeys_report::ktap::{parse_bytes, parse_console_tail};
use pkeys_report::{Expectations, GuestRun, KernelInfo, RunStatus, Verdict, classify};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn complete_stream_with_crlf() {
    let p = parse_bytes(&fixture("complete-6.12-max.ktap"));
    assert!(p.started && p.done && p.complete);
    assert_eq!(p.plan, Some(8));
    assert_eq!(p.cases.len(), 8);
    assert_eq!(p.init_exit.as_deref(), Some("1"));
    assert_eq!(p.meta["kernel"], "6.12.43+deb13-cloud-amd64");
    assert_eq!(p.meta["cpu"], "Intel(R) Xeon(R) Processor @ QEMU TCG");
    assert_eq!(p.meta["pkru"], "0x55555554");
    let exhaust = &p.cases[2];
    assert_eq!(
        (exhaust.id.as_str(), exhaust.verdict),
        ("alloc::exhaust", Verdict::Fail)
    );
    assert_eq!(
        exhaust.reason.as_deref(),
        Some("pkey_alloc count: expected 15, got 14")
    );
    assert_eq!(exhaust.diagnostics.len(), 2);
    assert!(
        p.cases[1].diagnostics[1].ends_with("faults=1"),
        "no \\r left: {:?}",
        p.cases[1]
    );
    assert_eq!(p.cases[3].verdict, Verdict::Skip);
    assert_eq!(
        p.cases[3].reason.as_deref(),
        Some("no huge pages could be reserved (nr_hugepages=0)")
    );
    assert_eq!(p.cases[7].verdict, Verdict::Timeout);
    assert_eq!(p.cases[7].reason.as_deref(), Some("after 10s"));
    assert!(p.trailing_diagnostics.is_empty());
}

#[test]
fn truncated_stream_keeps_decided_results_and_drops_the_cut_line() {
    let p = parse_bytes(&fixture("truncated-5.10-max.ktap"));
    assert!(p.started);
    assert!(!p.done && !p.complete);
    assert_eq!(p.plan, Some(6));
    let ids: Vec<_> = p.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "alloc::first_key_is_1",
            "access::read_ad::anon",
            "signals::handler_with_pkey0_disabled"
        ]
    );
    assert_eq!(
        p.cases[2].reason.as_deref(),
        Some("child killed by SIGSEGV (si_code=4 si_pkey=0) before the handler ran")
    );
    // The diagnostics of the case that was running stay available.
    assert_eq!(
        p.trailing_diagnostics,
        ["signals::handler_cannot_access_stack: stack key 1 denied, raising SIGUSR1"]
    );
}

#[test]
fn noise_nuls_and_invalid_utf8_are_tolerated() {
    let p = parse_bytes(&fixture("noisy-7.2.ktap"));
    assert!(p.started && p.complete, "{p:?}");
    assert_eq!(p.meta["cpu"], "AMD EPYC-Milan Processor");
    let v: Vec<_> = p.cases.iter().map(|c| c.verdict).collect();
    assert_eq!(v, [Verdict::Pass, Verdict::Skip, Verdict::Error]);
    assert_eq!(p.cases[0].diagnostics, ["a::b: note"]);
    assert_eq!(
        p.cases[2].reason.as_deref(),
        Some("case exited without a verdict (status 3)")
    );
}

#[test]
fn empty_and_garbage_input() {
    let p = parse_bytes(b"");
    assert!(!p.started && !p.complete && p.cases.is_empty());
    let p = parse_bytes(b"\0\0\0\xff random\nok\nnot ok x\n1..\n");
    assert!(!p.started && p.cases.is_empty() && p.plan.is_none());
}

#[test]
fn panic_in_console_is_detected_with_its_first_line() {
    let log = fixture("panic-5.10-max.console.log");
    let text = String::from_utf8_lossy(&log);
    assert_eq!(
        detect_panic(&text).as_deref(),
        Some("BUG: unable to handle page fault for address: ffffc90000293ff8")
    );
    let tail = parse_console_tail(&text, 3);
    assert_eq!(
        tail,
        [
            "[    3.525500] ---[ end trace 6b3a1c7d0e2f8a91 ]---",
            "[    3.535000] Kernel panic - not syncing: Fatal exception",
            "[    3.535500] Kernel Offset: disabled",
        ]
    );
}

#[test]
fn boot_flake_before_init_is_detected() {
    let text = String::from_utf8_lossy(&fixture("boot-flake.console.log")).into_owned();
    assert_eq!(
        detect_panic(&text).as_deref(),
        Some("int3: 0000 [#1] PREEMPT SMP NOPTI")
    );
    assert!(!text.contains("pkeys-init: starting suite"));
}

#[test]
fn clean_console_has_no_panic() {
    let text =
        "[    0.0] Linux version 6.12\npkeys-init: starting suite\n[    5.0] reboot: Power down\n";
    assert_eq!(detect_panic(text), None);
}

/// The runner's path for a guest that panicked mid-suite: decided results are kept and the
/// run gets an ERROR pseudo-case carrying the panic and the console tail.
#[test]
fn panicked_guest_keeps_streamed_results() {
    let stream = parse_bytes(&fixture("truncated-5.10-max.ktap"));
    let console = String::from_utf8_lossy(&fixture("panic-5.10-max.console.log")).into_owned();
    let kernel = KernelInfo {
        spec: "debian:bullseye/5.10".into(),
        package: "linux-image-5.10.0-35-cloud-amd64".into(),
        version: "5.10.237-1".into(),
        uname: None,
    };
    let mut run = GuestRun::new("5.10-max", kernel, "max", "");
    run.apply_stream(stream);
    assert_eq!(run.kernel.uname.as_deref(), Some("5.10.0-35-cloud-amd64"));
    run.status = RunStatus::Error {
        message: format!("kernel panic: {}", detect_panic(&console).unwrap()),
        console_tail: parse_console_tail(&console, 20),
    };
    classify(&mut run, &Expectations::empty());
    assert_eq!(run.cases.len(), 4);
    let guest = run.cases.last().unwrap();
    assert_eq!(guest.id, "guest::error");
    assert_eq!(guest.verdict, Verdict::Error);
    let reason = guest.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("kernel panic: BUG: unable to handle page fault"),
        "{reason}"
    );
    assert!(reason.contains("3 of 6 results"), "{reason}");
    assert_eq!(guest.diagnostics.len(), 21);
    assert!(guest.diagnostics[0].starts_with("signals::handler_cannot_access_stack"));
}
