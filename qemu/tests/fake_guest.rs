//! The guest watcher against a scripted stand-in for qemu (`fixtures/fake-qemu.sh`): every way a
//! guest can end, decided from the two UART files and the console, without qemu or a kernel.

use std::path::Path;
use std::time::{Duration, Instant};

use pkeys_qemu::guest::{self, Env, Event, GuestSpec};
use pkeys_qemu::kernel::ResolvedKernel;
use pkeys_report::{KernelInfo, RunStatus, Verdict};
use rstest::rstest;

mod common;
use common::fake_qemu;

fn spec(scenario: &str, timeout: u64, boot_timeout: u64) -> GuestSpec {
    GuestSpec {
        accel: pkeys_qemu::accel::Accel::Tcg,
        name: format!("fake-{scenario}"),
        kernel: ResolvedKernel {
            path: "/nonexistent/bzImage".into(),
            info: KernelInfo {
                spec: "fake".into(),
                ..KernelInfo::default()
            },
            short: "fake".into(),
        },
        cpu: "max".into(),
        append: format!("fake={scenario}"),
        args: vec![],
        memory: "512M".into(),
        smp: 1,
        timeout: Duration::from_secs(timeout),
        boot_timeout: Duration::from_secs(boot_timeout),
    }
}

struct Outcome {
    run: pkeys_report::GuestRun,
    events: Vec<Event>,
    out: tempfile::TempDir,
}

fn play(scenario: &str, timeout: u64, boot_timeout: u64) -> Outcome {
    play_spec(&spec(scenario, timeout, boot_timeout))
}

fn play_spec(spec: &GuestSpec) -> Outcome {
    let scenario = spec.name.trim_start_matches("fake-").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let qemu = fake_qemu(dir.path());
    let out = tempfile::tempdir().unwrap();
    let env = Env {
        qemu: &qemu,
        base_image: b"not really an initramfs",
        out: out.path(),
    };
    let events = std::sync::Mutex::new(Vec::new());
    let progress = |_: &str, e: Event| events.lock().unwrap().push(e);
    let t = Instant::now();
    let run = guest::run(spec, &env, &progress).unwrap();
    let took = t.elapsed();
    eprintln!(
        "{scenario}: {} (detected in {:.1} s)",
        guest::summary_line(&run),
        took.as_secs_f64()
    );
    Outcome {
        run,
        events: events.into_inner().unwrap(),
        out,
    }
}

fn error_message(run: &pkeys_report::GuestRun) -> String {
    match &run.status {
        RunStatus::Error { message, .. } => message.clone(),
        RunStatus::Completed => String::new(),
    }
}

fn assert_fake_qemu_gone(out: &Path) {
    let pid: i32 = std::fs::read_to_string(out.join("fake-qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The group was SIGKILLed and reaped: the pid no longer names a live process.
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "fake qemu {pid} outlived the run");
}

#[rstest]
#[serial_test::serial]
#[case::done("done", "", 1, true)]
#[case::fail("fail", "", 1, true)]
#[case::panic_mid(
    "panic_mid",
    "kernel crashed: Kernel panic - not syncing: Fatal exception",
    1,
    false
)]
#[case::oops(
    "oops_continue",
    "kernel crashed: BUG: kernel NULL pointer dereference, address: 0000000000000008",
    1,
    true
)]
#[case::die(
    "die",
    "qemu exited (exit status: 1) without the suite's end marker; qemu: qemu: fatal: something broke",
    1,
    false
)]
#[case::panic_before(
    "panic_before",
    "kernel crashed: Kernel panic - not syncing: VFS: Unable to mount root fs",
    2,
    false
)]
#[case::flaky("flaky", "", 2, true)]
fn endings(
    #[case] scenario: &str,
    #[case] error: &str,
    #[case] attempts: u32,
    #[case] complete: bool,
) {
    let o = play(scenario, 20, 10);
    assert_eq!(error_message(&o.run), error, "{scenario}");
    assert_eq!(o.run.attempts, attempts, "{scenario}");
    assert_eq!(o.run.complete, complete, "{scenario}");
    assert_fake_qemu_gone(o.out.path());
    let name = format!("fake-{scenario}");
    assert!(o.out.path().join(format!("{name}.console.log")).is_file());
    assert!(o.out.path().join(format!("{name}.ktap")).is_file());
    if attempts == 2 {
        assert!(o.run.retried.is_some());
        assert!(o.events.iter().any(|e| matches!(e, Event::Retrying { .. })));
        assert!(
            o.out
                .path()
                .join(format!("{name}.attempt1.console.log"))
                .is_file()
        );
    } else {
        assert!(o.run.retried.is_none());
    }
    if let RunStatus::Error { console_tail, .. } = &o.run.status {
        assert!(!console_tail.is_empty(), "an ERROR keeps the console tail");
    }
}

#[test]
#[serial_test::serial]
fn done_passes_and_times() {
    let o = play("done", 20, 10);
    assert!(guest::run_passed(&o.run));
    assert_eq!(o.run.cases.len(), 2);
    assert_eq!(o.run.init_exit.as_deref(), Some("0"));
    assert_eq!(o.run.kernel.uname.as_deref(), Some("6.99.0-fake"));
    assert!(o.run.timings.boot_to_first_line_s.is_some());
    assert!(o.run.timings.suite_s.is_some());
    assert!(o.run.timings.total_s.is_some());
    let results: Vec<_> = o
        .events
        .iter()
        .filter(|e| matches!(e, Event::Result { .. }))
        .collect();
    assert_eq!(results.len(), 2, "{:?}", o.events);
    assert!(matches!(o.events[0], Event::Booting { attempt: 1 }));
}

#[test]
#[serial_test::serial]
fn fail_is_a_result() {
    let o = play("fail", 20, 10);
    assert!(!guest::run_passed(&o.run));
    assert_eq!(o.run.cases[1].verdict, Verdict::Fail);
    assert_eq!(o.run.cases[1].reason.as_deref(), Some("expected 1, got 2"));
}

#[test]
#[serial_test::serial]
fn panic_mid_suite_keeps_streamed_results_and_is_not_retried() {
    let o = play("panic_mid", 20, 10);
    assert_eq!(o.run.attempts, 1);
    assert_eq!(
        o.run.cases.len(),
        1,
        "the result streamed before the panic is kept"
    );
    assert_eq!(o.run.cases[0].verdict, Verdict::Pass);
    let RunStatus::Error { console_tail, .. } = &o.run.status else {
        panic!()
    };
    assert!(
        console_tail.iter().any(|l| l.contains("Kernel panic")),
        "{console_tail:?}"
    );
}

/// The accelerator reaches qemu's command line and the results: `-accel kvm -cpu host` for a KVM
/// guest, `-accel tcg` otherwise; `results.json` records it with the host's CPU.
#[rstest]
#[serial_test::serial]
#[case::kvm(pkeys_qemu::accel::Accel::Kvm, "host", "-accel kvm ", "kvm")]
#[case::tcg(pkeys_qemu::accel::Accel::Tcg, "max", "-accel tcg ", "tcg")]
fn accelerator_arguments(
    #[case] accel: pkeys_qemu::accel::Accel,
    #[case] cpu: &str,
    #[case] want: &str,
    #[case] recorded: &str,
) {
    let mut s = spec("done", 20, 10);
    s.accel = accel;
    s.cpu = cpu.into();
    let o = play_spec(&s);
    let run = o.run;
    let args = std::fs::read_to_string(o.out.path().join("fake-qemu.args")).unwrap();
    assert!(args.starts_with(want), "{args}");
    assert!(args.contains(&format!("-cpu {cpu} ")), "{args}");
    assert_eq!(run.accel, recorded);
    let host = run.host_cpu.expect("host CPU recorded");
    assert_eq!(host.model, pkeys_qemu::accel::HostCpu::probe().model);
}

#[test]
#[serial_test::serial]
fn hang_after_start_is_an_error_at_the_timeout() {
    let o = play("hang_after", 3, 2);
    assert_eq!(
        error_message(&o.run),
        "guest hung: the suite started but sent no end marker within 3 s"
    );
    assert_eq!(
        o.run.attempts, 1,
        "a failure after the suite started is never retried"
    );
    assert_eq!(o.run.cases.len(), 1);
    assert_fake_qemu_gone(o.out.path());
}

#[test]
#[serial_test::serial]
fn hang_before_start_is_retried_once() {
    let o = play("hang_before", 10, 1);
    assert_eq!(
        error_message(&o.run),
        "guest hung before the suite started: no `KTAP version 1` within 1 s"
    );
    assert_eq!(o.run.attempts, 2);
    assert_eq!(
        o.run.retried.as_deref(),
        Some("guest hung before the suite started: no `KTAP version 1` within 1 s")
    );
    assert_fake_qemu_gone(o.out.path());
}

#[test]
#[serial_test::serial]
fn qemu_that_cannot_start() {
    let out = tempfile::tempdir().unwrap();
    let env = Env {
        qemu: Path::new("/nonexistent/qemu"),
        base_image: b"x",
        out: out.path(),
    };
    let run = guest::run(&spec("done", 5, 5), &env, &|_, _| {}).unwrap();
    assert!(
        error_message(&run)
            .starts_with("qemu could not be started: cannot start /nonexistent/qemu"),
        "{}",
        error_message(&run)
    );
    assert_eq!(run.attempts, 2);
}

#[test]
#[serial_test::serial]
fn no_temporary_files_left() {
    let tmp = tempfile::tempdir().unwrap();
    // Temporary folders of the runner go to $TMPDIR: count ours before and after.
    let count = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("pkeys-qemu-"))
            .count()
    };
    let before = count();
    let _ = play("done", 20, 10);
    let _ = play("panic_mid", 20, 10);
    drop(tmp);
    assert!(count() <= before, "temporary folders left behind");
}
