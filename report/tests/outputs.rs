//! Renderers, results.json round trip, merge, compare and the CLI.

use std::path::Path;
use std::process::Command;

use pkeys_report::model::FORMAT_VERSION;
use pkeys_report::render::{files, html, junit, markdown, merged_ktap};
use pkeys_report::{
    CaseResult, GuestRun, ReportError, Results, Verdict, compare, merge, write_all,
};
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

mod common;
use common::{kernel, sample};

#[test]
fn sample_is_classified_as_expected() {
    let r = sample();
    let v = |run: usize, id: &str| r.runs[run].case(id).unwrap().verdict;
    assert_eq!(v(0, "alloc::exhaust"), Verdict::XFail);
    assert_eq!(v(0, "ptrace::poke_pkru_xstate_bv"), Verdict::Timeout);
    assert_eq!(v(1, "signals::handler_with_pkey0_disabled"), Verdict::XFail);
    assert_eq!(v(1, "guest::error"), Verdict::Error);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn junit_parses_back_with_the_right_counts() {
    let r = sample();
    let xml = junit(&r).unwrap();
    let report = Report::deserialize_from_str(&xml).expect("well-formed JUnit");
    assert_eq!(report.test_suites.len(), 2);
    let s = &report.test_suites[0];
    assert_eq!(s.name.as_str(), "6.12-max");
    assert_eq!(s.test_cases.len(), 8);
    // 6.12: exhaust XFAIL and a SKIP (both skipped, told apart by pytest's types), TIMEOUT
    // (error).
    assert_eq!((s.failures, s.errors), (0, 1));
    let skipped: Vec<_> = s
        .test_cases
        .iter()
        .filter_map(|c| match &c.status {
            TestCaseStatus::Skipped { ty, message, .. } => Some((
                c.name.as_str(),
                ty.as_ref().map(|t| t.as_str().to_owned()),
                message.as_ref().map(|m| m.as_str().to_owned()),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    let xfail = skipped
        .iter()
        .find(|(name, ..)| *name == "alloc::exhaust")
        .unwrap();
    assert_eq!(xfail.1.as_deref(), Some("pytest.xfail"));
    let msg = xfail.2.as_deref().unwrap();
    assert!(
        msg.starts_with(
            "expected FAIL on this kernel: execute-only key <taken> & counted; reported: "
        ),
        "{msg}"
    );
    assert!(
        skipped
            .iter()
            .any(|(_, ty, _)| ty.as_deref() == Some("pytest.skip"))
    );
    // The fixing commit travels in the message (5.10's handler case).
    let s510 = &report.test_suites[1];
    let handler = s510
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == "signals::handler_with_pkey0_disabled")
        .unwrap();
    match &handler.status {
        TestCaseStatus::Skipped { ty, message, .. } => {
            assert_eq!(ty.as_ref().unwrap().as_str(), "pytest.xfail");
            assert!(
                message
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .contains("(fix: 70044df250d0)")
            );
        }
        other => panic!("{other:?}"),
    }
    let timeout = s
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == "ptrace::poke_pkru_xstate_bv")
        .unwrap();
    match &timeout.status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Error);
            assert_eq!(message.as_ref().unwrap().as_str(), "TIMEOUT: after 10s");
        }
        other => panic!("{other:?}"),
    }
    let s = &report.test_suites[1];
    assert_eq!(s.test_cases.len(), 4); // 3 streamed + guest::error
    assert_eq!((s.failures, s.errors), (0, 1));
    assert!(xml.contains("kernel.version") && xml.contains("5.10.237-1"));
}

#[test]
fn junit_counts_failures_and_xpass() {
    let mut run = GuestRun::new("r", kernel("6.1"), "max", "");
    run.complete = true;
    let mut fail = CaseResult::new("a::fail", Verdict::Fail);
    fail.reason = Some("expected <1> & got \"2\"".into());
    fail.diagnostics = vec!["a::fail: \u{1b}[31mred\u{1b}[0m".into()];
    let mut ok = CaseResult::new("a::ok", Verdict::Pass);
    ok.duration_us = Some(1_250_000);
    run.cases = vec![fail, CaseResult::new("a::xpass", Verdict::XPass), ok];
    let xml = junit(&Results::new(vec![run])).unwrap();
    let report = Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(report.tests, 3);
    assert_eq!(report.failures, 2);
    assert_eq!(report.errors, 0);
    let cases = &report.test_suites[0].test_cases;
    assert_eq!(cases[2].time, Some(std::time::Duration::from_millis(1250)));
    assert_eq!(
        cases[0].time, None,
        "no duration reported, no time invented"
    );
    match &cases[1].status {
        TestCaseStatus::NonSuccess { message, .. } => {
            assert!(
                message
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .starts_with("[XPASS(strict)]")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn html_is_self_contained_and_explains_cells() {
    let page = html(&sample());
    assert!(page.starts_with("<!DOCTYPE html>"));
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!page.contains(external), "external asset: {external}");
    }
    assert!(page.contains("<details>"));
    assert!(page.contains("frame written with the interrupted PKRU"));
    assert!(page.contains("70044df250d0"));
    assert!(page.contains("execute-only key &lt;taken&gt; &amp; counted"));
    assert!(page.contains("5.10.237-1") && page.contains("Intel(R) Xeon(R) Processor @ QEMU TCG"));
    assert!(page.contains("Benchmarks") && page.contains("pkey_mprotect"));
    assert!(page.contains("boot panicked before the suite started"));
    assert!(page.contains("Kernel panic - not syncing"));
}

#[test]
fn markdown_has_matrix_counts_and_details() {
    let md = markdown(&sample());
    assert!(md.contains("| case | 6.12-max | 5.10-max |"));
    assert!(md.contains("| `alloc::exhaust` | XFAIL | — |"));
    assert!(md.contains("| `guest::error` | — | **ERROR** |"));
    assert!(md.contains("## Problems"));
    assert!(md.contains("after 10s"));
    assert!(md.contains("## Expected failures"));
    assert!(md.contains("`70044df250d0`"));
    assert!(md.contains("1 XFAIL"));
}

#[test]
fn merged_ktap_nests_each_run() {
    let text = merged_ktap(&sample());
    assert!(
        text.starts_with("KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: 6.12-max\n")
    );
    assert!(text.contains("\nnot ok 1 6.12-max\n"));
    assert!(text.contains("\nnot ok 2 5.10-max\n"));
    assert!(text.contains("    ok 3 alloc::exhaust # XFAIL"));
}

#[test]
fn write_all_round_trips_through_results_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let r = sample();
    let written = write_all(&r, &out).unwrap();
    for name in [
        files::RESULTS_JSON,
        files::REPORT_MD,
        files::REPORT_HTML,
        files::JUNIT_XML,
        files::MERGED_KTAP,
    ] {
        assert!(written.contains(&out.join(name)), "{name}");
        assert!(out.join(name).metadata().unwrap().len() > 0);
    }
    assert_eq!(Results::load(out.join(files::RESULTS_JSON)).unwrap(), r);
}

#[test]
fn other_format_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.json");
    std::fs::write(
        &path,
        r#"{"format_version": 99, "tool_version": "9.9.9", "runs": []}"#,
    )
    .unwrap();
    let err = Results::load(&path).unwrap_err();
    assert!(matches!(err, ReportError::FormatVersion { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("old.json") && msg.contains("99") && msg.contains(&FORMAT_VERSION.to_string()),
        "{msg}"
    );
    std::fs::write(&path, r#"{"runs": []}"#).unwrap();
    assert!(
        Results::load(&path)
            .unwrap_err()
            .to_string()
            .contains("<missing>")
    );
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        Results::load(&path).unwrap_err(),
        ReportError::Json { .. }
    ));
}

#[test]
fn merge_combines_and_deduplicates() {
    let r = sample();
    let a = Results::new(vec![r.runs[0].clone()]);
    let mut b = Results::new(vec![r.runs[1].clone(), r.runs[0].clone()]);
    b.runs[1].timings.total_s = Some(99.0); // same name, different content
    let mut c = Results::new(vec![r.runs[0].clone()]); // identical duplicate
    c.bench = Some(serde_json::json!({"x": 1}));
    let (merged, notes) = merge(vec![("a".into(), a), ("b".into(), b), ("c".into(), c)]).unwrap();
    let names: Vec<_> = merged.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["6.12-max", "5.10-max", "6.12-max~2"]);
    assert_eq!(notes.dropped_duplicates, ["6.12-max"]);
    assert_eq!(
        notes.renamed,
        [("6.12-max".to_owned(), "6.12-max~2".to_owned())]
    );
    assert_eq!(merged.bench, Some(serde_json::json!({"x": 1})));

    let mut other = Results::new(vec![]);
    other.tool_version = "0.0.1".into();
    let err = merge(vec![
        ("a".into(), Results::new(vec![])),
        ("other.json".into(), other),
    ])
    .unwrap_err();
    assert!(
        err.to_string().contains("other.json") && err.to_string().contains("0.0.1"),
        "{err}"
    );
}

#[test]
fn compare_lists_changes_and_flags_regressions() {
    let before = sample();
    let mut after = before.clone();
    let run = &mut after.runs[0];
    run.cases
        .iter_mut()
        .find(|c| c.id == "alloc::first_key_is_1")
        .unwrap()
        .verdict = Verdict::Fail;
    run.cases
        .iter_mut()
        .find(|c| c.id == "ptrace::poke_pkru_xstate_bv")
        .unwrap()
        .verdict = Verdict::Pass;
    let cmp = compare(&before, &after);
    assert_eq!(cmp.changes.len(), 2);
    assert!(cmp.is_worse());
    let text = cmp.to_string();
    assert!(
        text.contains("6.12-max:\n  alloc::first_key_is_1: PASS -> FAIL  (worse)"),
        "{text}"
    );
    assert!(
        text.contains("  ptrace::poke_pkru_xstate_bv: TIMEOUT -> PASS  (better)\n"),
        "{text}"
    );

    // Going back: FAIL -> PASS is better, PASS -> TIMEOUT is worse.
    let back = compare(&after, &before);
    let worse: Vec<_> = back
        .changes
        .iter()
        .filter(|c| c.is_worse())
        .map(|c| c.case.as_str())
        .collect();
    assert_eq!(worse, ["ptrace::poke_pkru_xstate_bv"]);
    assert!(!compare(&before, &before).is_worse());
    assert_eq!(
        compare(&before, &before).to_string(),
        "no verdict changed\n"
    );

    // One run a side (a kernel against its baseline, each named after its kernel): compared
    // whatever the names; with more runs, names pair them.
    let one = |r: &Results, name: &str| {
        let mut run = r.runs[0].clone();
        run.name = name.into();
        Results::new(vec![run])
    };
    let cmp = compare(
        &one(&before, "bzImage-clean-max"),
        &one(&after, "bzImage-max"),
    );
    assert!(cmp.runs_only_before.is_empty() && cmp.runs_only_after.is_empty());
    assert_eq!(cmp.changes.len(), 2, "{cmp}");
    let mut renamed = after.clone();
    renamed.runs[0].name = "other".into();
    let cmp = compare(&before, &renamed);
    assert_eq!(cmp.runs_only_before, ["6.12-max"]);
    assert!(cmp.is_worse());

    // A patch that fixes a known failure: XFAIL -> XPASS is the kernel going FAIL -> PASS.
    let mut known = before.clone();
    let c = known.runs[0]
        .cases
        .iter_mut()
        .find(|c| c.id == "alloc::first_key_is_1")
        .unwrap();
    c.verdict = Verdict::XFail;
    c.expectation = Some(pkeys_report::AppliedExpectation {
        original: Verdict::Fail,
        expected: Verdict::Fail,
        reason: "known".into(),
        fix: None,
        pattern: "alloc::*".into(),
    });
    let mut fixed = known.clone();
    let c = fixed.runs[0]
        .cases
        .iter_mut()
        .find(|c| c.id == "alloc::first_key_is_1")
        .unwrap();
    c.verdict = Verdict::XPass;
    c.expectation.as_mut().unwrap().original = Verdict::Pass;
    let cmp = compare(&known, &fixed);
    assert!(!cmp.is_worse(), "{cmp}");
    assert!(
        cmp.to_string()
            .contains("alloc::first_key_is_1: XFAIL -> XPASS (the kernel: FAIL -> PASS)  (better)"),
        "{cmp}"
    );
    assert!(compare(&fixed, &known).is_worse());

    let mut lost = before.clone();
    lost.runs.pop();
    assert!(compare(&before, &lost).is_worse());
    assert!(!compare(&lost, &before).is_worse());
}

fn cli(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pkeys-report"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_render_merge_compare() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = sample();
    Results::new(vec![r.runs[0].clone()])
        .save(d.join("a.json"))
        .unwrap();
    Results::new(vec![r.runs[1].clone()])
        .save(d.join("b.json"))
        .unwrap();
    std::fs::write(d.join("none.toml"), "").unwrap();

    let (code, stdout, stderr) = cli(&["merge", "a.json", "b.json", "--out", "merged"], d);
    assert_eq!(code, 1, "problems remain: {stdout}{stderr}");
    let merged = Results::load(d.join("merged/results.json")).unwrap();
    assert_eq!(merged.runs.len(), 2);
    assert!(d.join("merged/report.html").exists() && d.join("merged/junit.xml").exists());

    // Re-render with empty expectations: the XFAILs return to FAIL.
    let (code, _, stderr) = cli(
        &[
            "render",
            "merged/results.json",
            "-e",
            "none.toml",
            "--out",
            "plain",
        ],
        d,
    );
    assert_eq!(code, 1, "{stderr}");
    let plain = Results::load(d.join("plain/results.json")).unwrap();
    assert_eq!(
        plain.runs[0].case("alloc::exhaust").unwrap().verdict,
        Verdict::Fail
    );
    let (code, _, _) = cli(
        &["render", "merged/results.json", "--exit-zero", "--out", "z"],
        d,
    );
    assert_eq!(code, 0);
    // Without --out it writes beside its input, and says so.
    let (code, _, stderr) = cli(&["render", "z/results.json", "--exit-zero"], d);
    assert_eq!(code, 0);
    assert!(
        stderr.contains("pkeys-report: writing into z, the results file's folder"),
        "{stderr}"
    );

    let (code, stdout, _) = cli(&["compare", "merged/results.json", "plain/results.json"], d);
    assert_eq!(code, 1, "XFAIL -> FAIL is worse: {stdout}");
    assert!(
        stdout.contains("alloc::exhaust: XFAIL -> FAIL (the kernel: FAIL -> FAIL)  (worse)"),
        "{stdout}"
    );
    let (code, _, _) = cli(&["compare", "plain/results.json", "merged/results.json"], d);
    assert_eq!(code, 0);

    std::fs::write(
        d.join("old.json"),
        r#"{"format_version": 0, "tool_version": "0", "runs": []}"#,
    )
    .unwrap();
    let (code, _, stderr) = cli(&["merge", "a.json", "old.json", "--out", "x"], d);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("old.json") && stderr.contains("format version 0"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");

    std::fs::write(
        d.join("bad.toml"),
        "[[expect]]\ncase = \"x\"\nverdict = \"fail\"\nreason = \"r\"\nwhy = 1\n",
    )
    .unwrap();
    let (code, _, stderr) = cli(&["render", "a.json", "-e", "bad.toml", "--out", "y"], d);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:5:") && stderr.contains("why"),
        "{stderr}"
    );
}

#[test]
fn reports_open_with_the_verdict_differences_and_expected_failures() {
    let r = sample();
    let md = markdown(&r);
    let at = |needle: &str| {
        md.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing:\n{md}"))
    };
    assert!(md.contains("**FAIL** — 2 runs"));
    assert!(at("## Problems") < at("## Differences between runs"));
    assert!(at("## Differences between runs") < at("## Expected failures"));
    assert!(at("## Expected failures") < at("## Runs"));
    assert!(at("## Runs") < at("## Matrix"));
    assert!(md.contains("- 6.12-max: TIMEOUT ptrace::poke_pkru_xstate_bv: after 10s"));
    // The 5.10 handler case is XFAIL there and PASS on 6.12: one grouped row.
    assert!(
        md.contains(
            "| `signals::handler_with_pkey0_disabled` | **PASS**: 6.12-max<br>**XFAIL**: 5.10-max |"
        ),
        "{md}"
    );
    let page = html(&r);
    let banner = page.find("class=\"banner badbg\"").unwrap();
    assert!(banner < page.find("<h2>Differences between runs</h2>").unwrap());
    assert!(
        page.find("<h2>Expected failures</h2>").unwrap() < page.find("<h2>Matrix</h2>").unwrap()
    );
}
