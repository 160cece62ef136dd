//! A kernel under test can write anything on its serial lines. Property tests: the KTAP and
//! console parsers take arbitrary bytes without panicking (invalid UTF-8, control characters,
//! huge numbers, truncated lines, plans that lie); every valid stream round-trips writer →
//! parser; the HTML and Markdown escape whatever a case id, reason or diagnostic contains.

use std::collections::BTreeMap;

use pkeys_report::ktap::{parse, parse_bytes, parse_console_tail, write_stream};
use pkeys_report::render::{html, junit, markdown, merged_ktap};
use pkeys_report::{CaseResult, GuestRun, KernelInfo, Results, Verdict, console};
use proptest::prelude::*;

/// Lines that look like KTAP, some of them broken, mixed with noise.
fn ktapish_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("KTAP version 1".to_owned()),
        "1\\.\\.[0-9]{1,25}",
        "(not )?ok [0-9]{0,25} [ -~]{0,40}",
        "(not )?ok [0-9]{1,5} [a-z:_]{1,20} # (SKIP|XFAIL|XPASS|TIMEOUT|ERROR|TODO)[ -~]{0,30}",
        "# [a-z:_]{1,12}: duration=[-0-9.eE+a-z]{0,30}s?",
        "# pkeys-suite [ -~]{0,60}",
        "# pkeys-suite: done[ -~]{0,20}",
        "# pkeys-init: suite exit=[ -~]{0,10}",
        "\\[ *[0-9]{1,8}\\.[0-9]{6}\\] [ -~]{0,50}",
        "[\\x00-\\x1f\\x7f\\u{80}-\\u{10ffff}]{0,20}",
        any::<String>(),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(ktapish_line(), 0..60),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(lines, junk, truncate)| {
            let mut bytes = lines.join("\n").into_bytes();
            bytes.extend_from_slice(&junk);
            if !truncate {
                bytes.push(b'\n');
            }
            bytes
        })
}

fn id() -> impl Strategy<Value = String> {
    "[a-z_]{1,8}(::[a-z_0-9]{1,8}){0,3}(#[0-9]{1,2})?"
}

fn case() -> impl Strategy<Value = CaseResult> {
    let verdict = prop::sample::select(Verdict::ALL.to_vec());
    (
        id(),
        verdict,
        proptest::option::of("[!-~]([ -~]{0,30}[!-~])?"),
        // Serial lines do not keep trailing blanks, so a valid diagnostic has none.
        prop::collection::vec(
            "[a-zA-Z0-9=:,.()]([a-zA-Z0-9 =:,.()]{0,22}[a-zA-Z0-9=:,.()])?",
            0..3,
        ),
        proptest::option::of(0u64..1_000_000_000_000),
    )
        .prop_map(|(id, verdict, reason, diags, duration_us)| {
            let mut c = CaseResult::new(id.clone(), verdict);
            // PASS and FAIL carry no directive text (a FAIL's message travels as a diagnostic).
            if !matches!(verdict, Verdict::Pass | Verdict::Fail) {
                c.reason = reason;
            }
            c.diagnostics = diags.into_iter().map(|d| format!("{id}: {d}")).collect();
            c.duration_us = duration_us;
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in stream()) {
        let p = parse_bytes(&bytes);
        prop_assert!(!p.complete || p.plan == Some(p.cases.len()));
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_console_tail(&text, 12);
        let _ = console::detect_panic(&text);
        for line in text.split('\n') {
            let _ = console::strip_timestamp(&console::clean_line(line));
        }
        // Whatever was parsed renders.
        let mut run = GuestRun::new("g", KernelInfo::default(), "max", "");
        run.apply_stream(p);
        let results = Results::new(vec![run]);
        let _ = markdown(&results);
        let _ = html(&results);
        prop_assert!(junit(&results).is_ok());
        let _ = merged_ktap(&results);
    }

    #[test]
    fn valid_streams_round_trip(cases in prop::collection::vec(case(), 0..40), seed in any::<u32>()) {
        let mut meta = BTreeMap::new();
        meta.insert("kernel".to_owned(), "6.12.0".to_owned());
        meta.insert("seed".to_owned(), seed.to_string());
        meta.insert("cpu".to_owned(), "Intel \"Xeon\" (Skylake)".to_owned());
        let mut text = String::new();
        write_stream(&mut text, &meta, &cases);
        text.push_str("# pkeys-suite: done\n");
        let p = parse(&text);
        prop_assert_eq!(&p.meta, &meta);
        prop_assert_eq!(p.plan, Some(cases.len()));
        prop_assert!(p.complete);
        prop_assert_eq!(p.cases, cases);
    }

    #[test]
    fn html_and_markdown_escape_everything(
        id in "[ -~]{1,30}",
        reason in any::<String>(),
        diag in any::<String>(),
    ) {
        let evil = format!("<x-evil>{reason}");
        let mut run = GuestRun::new("g|<x-run>", KernelInfo::default(), "max", "a|b");
        run.complete = true;
        for v in [Verdict::Fail, Verdict::Skip, Verdict::Pass] {
            let mut c = CaseResult::new(format!("{id}{v}"), v);
            c.reason = Some(evil.clone());
            c.diagnostics = vec![diag.clone(), "<x-evil>".into()];
            run.cases.push(c);
        }
        let results = Results::new(vec![run]);
        let page = html(&results);
        prop_assert!(!page.contains("<x-evil>"));
        prop_assert!(!page.contains("<x-run>"));
        let md = markdown(&results);
        // Every table keeps its shape: each row has as many unescaped cell separators as its
        // header, whatever the id, reason or run name contains.
        let mut header: Option<usize> = None;
        for line in md.lines() {
            if line.starts_with('|') {
                let pipes = unescaped_pipes(line);
                match header {
                    None => header = Some(pipes),
                    Some(h) => prop_assert_eq!(pipes, h, "row {:?}", line),
                }
            } else {
                header = None;
            }
        }
    }
}

/// GFM's rule: a pipe is a cell separator unless an odd number of backslashes precede it.
fn unescaped_pipes(line: &str) -> usize {
    let mut n = 0;
    let mut backslashes = 0;
    for c in line.chars() {
        if c == '|' && backslashes % 2 == 0 {
            n += 1;
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
    }
    n
}
