//! The library runner ([`pkeys_qemu::runner`]) called directly, without the command line: typed
//! outcomes of `run_one` and `run_baseline` against the scripted stand-in for qemu
//! (`fixtures/fake-qemu.sh`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use pkeys_qemu::accel::AccelChoice;
use pkeys_qemu::guest::Event;
use pkeys_qemu::runner::{self, Progress, RunOptions};
use pkeys_report::{RunStatus, Verdict};

mod common;
use common::fake_env;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = fake_env();
        Fixture { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A copy of the fake kernel that plays `scenario` whatever the command line says.
    fn kernel(&self, stem: &str, scenario: &str) -> String {
        let path = self.p(&format!("{stem}.fake-{scenario}"));
        std::fs::copy(self.p("bzImage"), &path).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn options(&self, kernel: &str, out: &str, expectations: &Path) -> RunOptions {
        RunOptions {
            kernel: kernel.to_owned(),
            no_build: false,
            cpu: "max".into(),
            append: "fake=done".into(),
            out: Some(self.p(out)),
            timeout: Duration::from_secs(20),
            boot_timeout: Duration::from_secs(10),
            name: None,
            memory: "512M".into(),
            smp: 1,
            config: None,
            suite: Some(self.p("pkeys-suite")),
            expectations: Some(expectations.to_path_buf()),
            refresh: false,
            accel: AccelChoice::Tcg,
            suite_args: Vec::new(),
            cache: self.p("cache"),
            qemu: Some(self.p("fake-qemu")),
            same_accel_as: None,
        }
    }
}

/// What a run reported, as text (one entry per report).
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    fn record(&self, p: Progress<'_>) {
        let line = match p {
            Progress::Say(m) => format!("say {m}"),
            Progress::Guest {
                name,
                event: Event::Result { line, .. },
                expected,
            } => format!("result {name} {line} expected={expected:?}"),
            Progress::Guest { name, event, .. } => format!("event {name} {event:?}"),
            Progress::Finished(o) => format!("finished {} exit={}", o.name, o.exit_code()),
        };
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
#[serial_test::serial]
fn run_one_returns_the_classified_run() {
    let f = Fixture::new();
    let seen = Seen::default();
    let kernel = f.kernel("bzImage", "done");
    let o = runner::run_one(&f.options(&kernel, "out", Path::new("/dev/null")), &|p| {
        seen.record(p)
    })
    .unwrap();
    assert_eq!(o.name, "bzImage-max");
    assert!(o.ok() && o.raw_ok && !o.only_expected_failures());
    assert_eq!(o.exit_code(), 0);
    assert_eq!(o.run().cases.len(), 2);
    assert!(matches!(o.run().status, RunStatus::Completed));
    assert_eq!(o.accel(), pkeys_qemu::accel::Accel::Tcg);
    // The results written for the user are the ones returned.
    let written = pkeys_report::Results::load(o.out.join("results.json")).unwrap();
    assert_eq!(written.runs[0].cases, o.run().cases);
    let lines = seen.lines();
    assert!(
        lines.contains(&"result bzImage-max ok 1 a::one expected=None".to_owned()),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("finished bzImage-max exit=0")
    );
}

#[test]
#[serial_test::serial]
fn a_failure_fails_unless_it_is_expected() {
    let f = Fixture::new();
    let kernel = f.kernel("bzImage", "fail");
    let o = runner::run_one(
        &f.options(&kernel, "plain", Path::new("/dev/null")),
        &|_| {},
    )
    .unwrap();
    assert_eq!(o.exit_code(), 1);
    assert_eq!(o.run().cases[1].verdict, Verdict::Fail);

    // The same failure, expected on this kernel: an XFAIL, announced as the line arrives.
    let expect = f.p("expect.toml");
    std::fs::write(
        &expect,
        "[[expect]]\ncase = \"a::two\"\nverdict = \"fail\"\nreason = \"known\"\n",
    )
    .unwrap();
    let seen = Seen::default();
    let o = runner::run_one(&f.options(&kernel, "expected", &expect), &|p| {
        seen.record(p)
    })
    .unwrap();
    assert_eq!(o.exit_code(), 0);
    assert!(o.only_expected_failures());
    assert_eq!(o.run().cases[1].verdict, Verdict::XFail);
    assert!(
        seen.lines()
            .contains(&"result bzImage-max not ok 2 a::two expected=Some(\"known\")".to_owned()),
        "{:?}",
        seen.lines()
    );
}

#[test]
#[serial_test::serial]
fn run_baseline_compares_the_two_runs() {
    let f = Fixture::new();
    let clean = f.kernel("clean", "done");
    let same = f.kernel("same", "done");
    let o = runner::run_baseline(
        &f.options(&same, "cmp", Path::new("/dev/null")),
        &clean,
        &|_| {},
    )
    .unwrap();
    assert!(!o.worse());
    assert_eq!(o.exit_code(), 0);
    assert_eq!(o.baseline.name, "clean-max");
    assert_eq!(o.after.name, "same-max");
    assert_eq!(o.baseline.out, f.p("cmp/baseline"));
    assert!(f.p("cmp/after/same-max.ktap").is_file());

    // A kernel under test that fails a case the baseline passes got worse.
    let patched = f.kernel("patched", "fail");
    let seen = Seen::default();
    let o = runner::run_baseline(
        &f.options(&patched, "cmp2", Path::new("/dev/null")),
        &clean,
        &|p| seen.record(p),
    )
    .unwrap();
    assert!(o.worse(), "{}", o.comparison);
    assert_eq!(o.exit_code(), 1);
    assert_eq!(o.after.exit_code(), 1);
    assert_eq!(o.baseline.exit_code(), 0);
    let finished: Vec<String> = seen
        .lines()
        .into_iter()
        .filter(|l| {
            l.starts_with("finished") || l.starts_with("say baseline") || l.starts_with("say after")
        })
        .collect();
    assert_eq!(
        finished,
        [
            format!("say baseline: {clean}"),
            "finished clean-max exit=0".to_owned(),
            format!("say after: {patched}"),
            "finished patched-max exit=1".to_owned(),
        ]
    );
}
