//! Classification rules as rstest tables.

use pkeys_report::classify::{GUEST_ERROR_CASE, INCOMPLETE_STREAM_CASE, unclassify};
use pkeys_report::{
    CaseResult, Expectations, GuestRun, KernelInfo, Results, RunStatus, Verdict, classify,
    classify_all,
};
use rstest::rstest;

use Verdict::*;

const EXPECTATIONS: &str = r#"
[[expect]]
case = "signals::handler_*"
kernel = "<6.12"
verdict = "fail"
reason = "frame written with the interrupted PKRU"
fix = "70044df250d0"

[[expect]]
case = "signals::hangs"
kernel = "<6.12"
verdict = "timeout"
reason = "old kernels loop"

[[expect]]
case = "signals::crashes"
verdict = "error"
reason = "always crashes"

[[expect]]
case = "hugetlb::*"
verdict = "skip"
reason = "no huge pages in guests"

[[expect]]
case = "alloc::exhaust"
kernel = ">=6.12"
verdict = "pass"
reason = "must pass since the fix"
fix = "abc123"

[[expect]]
case = "amd::*"
cpu = "EPYC-*"
verdict = "fail"
reason = "AMD only"

[[expect]]
case = "init::*"
append = "*init_pkru=*"
verdict = "fail"
reason = "custom init_pkru"

[[expect]]
case = "guest::*"
append = "*panic_early*"
verdict = "error"
reason = "injected panic"
"#;

fn expectations() -> Expectations {
    Expectations::parse(EXPECTATIONS, "test.toml").unwrap()
}

fn run_with(version: &str, cpu: &str, append: &str, cases: Vec<CaseResult>) -> GuestRun {
    let kernel = KernelInfo {
        spec: format!("debian:{version}"),
        package: "linux-image".into(),
        version: version.into(),
        uname: None,
    };
    let mut run = GuestRun::new("r", kernel, cpu, append);
    run.cases = cases;
    run.complete = true;
    run
}

/// Classifies one case and returns (verdict, whether an expectation was attached).
fn classify_one(
    case: &str,
    reported: Verdict,
    version: &str,
    cpu: &str,
    append: &str,
) -> (Verdict, bool) {
    let mut run = run_with(version, cpu, append, vec![CaseResult::new(case, reported)]);
    classify(&mut run, &expectations());
    assert_eq!(run.cases.len(), 1, "no pseudo-case for a complete run");
    (run.cases[0].verdict, run.cases[0].expectation.is_some())
}

#[rstest]
// FAIL matching an expectation -> XFAIL
#[case::fail_expected("signals::handler_a", Fail, "6.1.153-1", "max", "", XFail, true)]
// PASS where failure was expected -> XPASS (stale expectation)
#[case::pass_where_fail_expected("signals::handler_a", Pass, "6.1.153-1", "max", "", XPass, true)]
// outside the kernel range: no expectation, verdict unchanged
#[case::fail_outside_range("signals::handler_a", Fail, "6.12.43-1", "max", "", Fail, false)]
#[case::pass_outside_range("signals::handler_a", Pass, "6.12.43-1", "max", "", Pass, false)]
// a different failure than expected stays a problem
#[case::timeout_where_fail_expected(
    "signals::handler_a",
    Timeout,
    "6.1.153-1",
    "max",
    "",
    Timeout,
    true
)]
#[case::skip_where_fail_expected("signals::handler_a", Skip, "6.1.153-1", "max", "", Skip, true)]
// expected TIMEOUT / ERROR
#[case::timeout_expected("signals::hangs", Timeout, "5.10.237-1", "max", "", XFail, true)]
#[case::fail_where_timeout_expected("signals::hangs", Fail, "5.10.237-1", "max", "", Fail, true)]
#[case::pass_where_timeout_expected("signals::hangs", Pass, "5.10.237-1", "max", "", XPass, true)]
#[case::error_expected("signals::crashes", Error, "7.2.13-1", "max", "", XFail, true)]
// expected SKIP: SKIP stays SKIP, PASS stays PASS (not a failure expectation)
#[case::skip_expected("hugetlb::read", Skip, "7.2.13-1", "max", "", Skip, true)]
#[case::pass_where_skip_expected("hugetlb::read", Pass, "7.2.13-1", "max", "", Pass, true)]
// expected PASS: a FAIL stays FAIL (regression), annotated with the fix
#[case::regression_after_fix("alloc::exhaust", Fail, "6.12.43-1", "max", "", Fail, true)]
#[case::pass_expected("alloc::exhaust", Pass, "7.3~rc7-1", "max", "", Pass, true)]
// cpu glob
#[case::cpu_matches("amd::x", Fail, "6.1.153-1", "EPYC-Milan", "", XFail, true)]
#[case::cpu_differs("amd::x", Fail, "6.1.153-1", "Skylake-Server", "", Fail, false)]
// append glob
#[case::append_matches(
    "init::x",
    Fail,
    "6.1.153-1",
    "max",
    "init_pkru=0x55555550",
    XFail,
    true
)]
#[case::append_differs("init::x", Fail, "6.1.153-1", "max", "", Fail, false)]
// unmatched cases and suite-emitted XFAIL/XPASS are left alone
#[case::unmatched_fail("alloc::other", Fail, "6.1.153-1", "max", "", Fail, false)]
#[case::unmatched_error("alloc::other", Error, "6.1.153-1", "max", "", Error, false)]
#[case::suite_xfail("alloc::other", XFail, "6.1.153-1", "max", "", XFail, false)]
#[case::suite_xpass("alloc::other", XPass, "6.1.153-1", "max", "", XPass, false)]
// an unknown kernel version matches no ranged expectation
#[case::unknown_version("signals::handler_a", Fail, "", "max", "", Fail, false)]
fn case_rules(
    #[case] case: &str,
    #[case] reported: Verdict,
    #[case] version: &str,
    #[case] cpu: &str,
    #[case] append: &str,
    #[case] expected: Verdict,
    #[case] annotated: bool,
) {
    assert_eq!(
        classify_one(case, reported, version, cpu, append),
        (expected, annotated)
    );
}

#[rstest]
// Exit-code rule: non-zero exactly when a FAIL, XPASS, TIMEOUT or ERROR remains.
#[case(&[Pass], 0)]
#[case(&[Pass, Skip, XFail], 0)]
#[case(&[Pass, Fail], 1)]
#[case(&[XPass], 1)]
#[case(&[Timeout], 1)]
#[case(&[Error, Pass], 1)]
#[case(&[], 0)]
fn exit_code_rule(#[case] verdicts: &[Verdict], #[case] code: i32) {
    let cases = verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| CaseResult::new(format!("c::{i}"), *v))
        .collect();
    let results = Results::new(vec![run_with("6.12", "max", "", cases)]);
    assert_eq!(results.exit_code(), code);
    for v in Verdict::ALL {
        assert_eq!(v.is_problem(), matches!(v, Fail | XPass | Timeout | Error));
    }
}

#[rstest]
// (status error?, stream complete?, append) -> pseudo-case id and verdict
#[case::completed_complete(false, true, "", None)]
#[case::completed_incomplete(false, false, "", Some((INCOMPLETE_STREAM_CASE, Error)))]
#[case::error_incomplete(true, false, "", Some((GUEST_ERROR_CASE, Error)))]
#[case::error_complete(true, true, "", Some((GUEST_ERROR_CASE, Error)))]
#[case::error_expected(true, false, "panic_early=1", Some((GUEST_ERROR_CASE, XFail)))]
fn run_rules(
    #[case] errored: bool,
    #[case] complete: bool,
    #[case] append: &str,
    #[case] pseudo: Option<(&str, Verdict)>,
) {
    let mut run = run_with(
        "6.12.43-1",
        "max",
        append,
        vec![CaseResult::new("a::b", Pass)],
    );
    run.complete = complete;
    run.plan = Some(2);
    if errored {
        run.status = RunStatus::Error {
            message: "kernel panic: Kernel panic - not syncing".into(),
            console_tail: vec!["[ 1.0] Kernel panic - not syncing".into()],
        };
    }
    classify(&mut run, &expectations());
    assert_eq!(run.cases[0].verdict, Pass, "streamed results are kept");
    let got = run
        .cases
        .iter()
        .find(|c| c.is_guest_pseudo_case())
        .map(|c| (c.id.as_str(), c.verdict));
    assert_eq!(got, pseudo);
    assert_eq!(run.cases.len(), 1 + usize::from(pseudo.is_some()));
}

#[test]
fn classification_is_idempotent_and_reversible() {
    let cases = vec![
        CaseResult::new("signals::handler_a", Fail),
        CaseResult::new("signals::handler_b", Pass),
    ];
    let mut run = run_with("6.1.153-1", "max", "", cases);
    run.complete = false;
    let raw = run.clone();
    classify(&mut run, &expectations());
    let once = run.clone();
    classify(&mut run, &expectations());
    assert_eq!(run, once);
    let verdicts: Vec<_> = run.cases.iter().map(|c| c.verdict).collect();
    assert_eq!(verdicts, [XFail, XPass, Error]);
    let xfail = run.cases[0].expectation.as_ref().unwrap();
    assert_eq!(
        (xfail.original, xfail.fix.as_deref()),
        (Fail, Some("70044df250d0"))
    );
    unclassify(&mut run);
    assert_eq!(run, raw);
    // re-classifying with no expectations restores the raw verdicts (plus the pseudo-case)
    let mut results = Results::new(vec![once]);
    classify_all(&mut results, &Expectations::empty());
    let verdicts: Vec<_> = results.runs[0].cases.iter().map(|c| c.verdict).collect();
    assert_eq!(verdicts, [Fail, Pass, Error]);
}

#[test]
fn first_matching_entry_wins() {
    let text = r#"
[[expect]]
case = "a::*"
verdict = "fail"
reason = "first"
[[expect]]
case = "a::b"
verdict = "fail"
reason = "second"
"#;
    let e = Expectations::parse(text, "t.toml").unwrap();
    let mut run = run_with("6.1", "max", "", vec![CaseResult::new("a::b", Fail)]);
    classify(&mut run, &e);
    assert_eq!(run.cases[0].expectation.as_ref().unwrap().reason, "first");
}

#[test]
fn shipped_expectations_file_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/expectations.toml");
    let e = Expectations::load(path).unwrap();
    assert!(
        e.entries
            .iter()
            .any(|x| x.case == "signals::handler_with_pkey0_disabled")
    );
    assert!(e.entries.iter().all(|x| !x.reason.is_empty()));
}
