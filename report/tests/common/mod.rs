//! The sample results the report tests share: a complete 6.12 run and a 5.10 run that panicked,
//! classified with two expectations.
#![allow(dead_code)]

use pkeys_report::ktap::parse_bytes;
use pkeys_report::{Expectations, GuestRun, KernelInfo, Results, RunStatus, classify_all};

const EXPECT: &str = r#"
[[expect]]
case = "signals::handler_with_pkey0_disabled"
kernel = "<6.12"
verdict = "fail"
reason = "frame written with the interrupted PKRU"
fix = "70044df250d0"

[[expect]]
case = "alloc::exhaust"
verdict = "fail"
reason = "execute-only key <taken> & counted"
"#;

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub fn kernel(version: &str) -> KernelInfo {
    KernelInfo {
        spec: format!("debian:{version}"),
        package: format!("linux-image-{version}-cloud-amd64"),
        version: version.into(),
        uname: None,
    }
}

/// A realistic two-run result: a complete 6.12 run and a 5.10 run that panicked.
pub fn sample() -> Results {
    let mut good = GuestRun::new("6.12-max", kernel("6.12.43-1"), "max", "");
    good.apply_stream(parse_bytes(&fixture("complete-6.12-max.ktap")));
    good.timings.boot_to_first_line_s = Some(3.2);
    good.timings.suite_s = Some(12.5);
    good.timings.total_s = Some(16.0);
    let mut bad = GuestRun::new(
        "5.10-max",
        kernel("5.10.237-1"),
        "max",
        "init_pkru=0x55555550",
    );
    bad.apply_stream(parse_bytes(&fixture("truncated-5.10-max.ktap")));
    bad.attempts = 2;
    bad.retried = Some("boot panicked before the suite started (int3 oops)".into());
    bad.status = RunStatus::Error {
        message: "kernel panic: BUG: unable to handle page fault".into(),
        console_tail: vec!["[ 3.5] Kernel panic - not syncing: Fatal exception".into()],
    };
    let mut results = Results::new(vec![good, bad]);
    results.bench =
        Some(serde_json::json!([{"op": "wrpkru", "ns": 12.5}, {"op": "pkey_mprotect", "ns": 830}]));
    classify_all(
        &mut results,
        &Expectations::parse(EXPECT, "e.toml").unwrap(),
    );
    results
}
