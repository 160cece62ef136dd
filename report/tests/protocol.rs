//! The suite's writer and this crate's parser agree: what `pkeys_common::protocol::Writer` writes,
//! followed by the init's end marker, parses back into the same cases, verdicts, reasons,
//! diagnostics and durations.

use pkeys_common::protocol::{self, Writer};
use pkeys_common::{CaseReport, Verdict as V};
use pkeys_report::Verdict;
use pkeys_report::ktap::parse;
use std::time::Duration;

fn rep(id: &str, verdict: V, diagnostics: &[&str], ms: u64) -> CaseReport {
    CaseReport {
        id: id.into(),
        verdict,
        diagnostics: diagnostics.iter().map(|s| s.to_string()).collect(),
        duration: Duration::from_micros(ms * 1000 + 7),
    }
}

fn written(reports: &[CaseReport], end: &str) -> String {
    let mut w = Writer::start(
        Vec::new(),
        "version=0.1.0 kernel=6.12.0 cpu=\"Xeon (Skylake)\" pku=1",
    )
    .unwrap();
    w.plan(reports.len()).unwrap();
    w.diag("free line before the first case").unwrap();
    for r in reports {
        w.result(r).unwrap();
    }
    let mut out = String::from_utf8(w.finish("pass=1 total=7").unwrap()).unwrap();
    out.push_str(&format!("\n{end}\n"));
    out
}

#[test]
fn every_verdict_round_trips() {
    let reports = vec![
        rep("a::pass", V::Pass, &["PKRU 0x55555554"], 1),
        rep(
            "a::fail",
            V::Fail("expected EINVAL,\ngot 0".into()),
            &["x=1"],
            2,
        ),
        rep("a::skip", V::Skip("CPU lacks PKU".into()), &[], 3),
        rep("a::xfail", V::XFail("known on 5.10".into()), &[], 4),
        rep("a::xpass", V::XPass("stale".into()), &[], 5),
        rep("a::timeout", V::Timeout(Duration::from_secs(20)), &[], 6),
        rep(
            "a::error@2",
            V::Error("exited without a verdict".into()),
            &[],
            7,
        ),
    ];
    let text = written(&reports, &protocol::end_marker_exit(1));
    let p = parse(&text);
    assert!(p.started && p.done && p.complete, "{p:#?}");
    assert_eq!(p.plan, Some(7));
    assert_eq!(p.init_exit.as_deref(), Some("1"));
    assert_eq!(p.meta["cpu"], "Xeon (Skylake)");
    assert_eq!(p.meta["pku"], "1");
    let got: Vec<(&str, Verdict, Option<&str>, Option<u64>)> = p
        .cases
        .iter()
        .map(|c| (c.id.as_str(), c.verdict, c.reason.as_deref(), c.duration_us))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a::pass", Verdict::Pass, None, Some(1007)),
            (
                "a::fail",
                Verdict::Fail,
                Some("expected EINVAL, got 0"),
                Some(2007)
            ),
            ("a::skip", Verdict::Skip, Some("CPU lacks PKU"), Some(3007)),
            (
                "a::xfail",
                Verdict::XFail,
                Some("known on 5.10"),
                Some(4007)
            ),
            ("a::xpass", Verdict::XPass, Some("stale"), Some(5007)),
            (
                "a::timeout",
                Verdict::Timeout,
                Some("after 20s"),
                Some(6007)
            ),
            (
                "a::error@2",
                Verdict::Error,
                Some("exited without a verdict"),
                Some(7007)
            ),
        ]
    );
    assert_eq!(
        p.cases[0].diagnostics,
        vec![
            "free line before the first case",
            "a::pass: PKRU 0x55555554"
        ]
    );
    assert_eq!(
        p.cases[1].diagnostics,
        vec!["a::fail: x=1", "a::fail: FAIL: expected EINVAL, got 0"]
    );
}

#[test]
fn a_signal_end_marker_is_not_an_exit_code_and_a_cut_stream_is_incomplete() {
    let reports = vec![rep("a::pass", V::Pass, &[], 1)];
    let text = written(&reports, &protocol::end_marker_signal(9));
    let p = parse(&text);
    assert_eq!(p.init_exit, None);
    assert!(p.complete);
    // Cut after the first result: no done line, so the run is not complete.
    let cut: String = text
        .lines()
        .take_while(|l| !l.contains(protocol::DONE))
        .map(|l| format!("{l}\n"))
        .collect();
    let p = parse(&cut);
    assert!(!p.done && !p.complete);
    assert_eq!(p.cases.len(), 1);
}
