//! Parsing the suite's KTAP result stream (see `docs/protocol.md`).

use std::collections::BTreeMap;

use crate::console::{clean_line, strip_timestamp};
use crate::model::{CaseResult, Verdict};
use pkeys_common::protocol::{self, DONE, INIT, SUITE, VERSION_LINE};

/// What [`parse`] recovered from a result stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedStream {
    /// A `KTAP version 1` line was seen: the suite started.
    pub started: bool,
    /// The `# pkeys-suite key=value ...` header.
    pub meta: BTreeMap<String, String>,
    /// The plan `1..N`.
    pub plan: Option<usize>,
    /// The results, in stream order.
    pub cases: Vec<CaseResult>,
    /// The `# pkeys-suite: done ...` line was seen.
    pub done: bool,
    /// The code from `# pkeys-init: suite exit=<code>`.
    pub init_exit: Option<String>,
    /// Diagnostics after the last result: they belong to a case that never reported
    /// (the one running when the guest died).
    pub trailing_diagnostics: Vec<String>,
    /// Whether the plan's count of results arrived and the done line was seen.
    pub complete: bool,
}

/// Parses a KTAP stream as `pkeys-suite --format ktap` writes it.
///
/// Tolerant by design, since the stream may come from a crashing guest: NUL bytes, `\r`,
/// ANSI escapes and kernel timestamps are removed; lines that are not KTAP are ignored;
/// a last line with no terminating newline (truncated) is left out. Diagnostic lines
/// belong to the next result; a FAIL's message is its `# <id>: FAIL: <message>` line.
/// [`StreamParser`] is the same parser fed one line at a time.
pub fn parse(text: &str) -> ParsedStream {
    let mut parser = StreamParser::default();
    let mut lines: Vec<&str> = text.split('\n').collect();
    // The last element follows the final newline: empty, or a truncated line.
    lines.pop();
    for raw in lines {
        parser.line(raw);
    }
    parser.finish()
}

/// What one line of a result stream was (see [`StreamParser::line`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamLine {
    /// `KTAP version 1`: the suite started.
    Version,
    /// The `# pkeys-suite key=value ...` header.
    Header,
    /// The plan `1..N`.
    Plan(usize),
    /// A result: the index of its case in [`ParsedStream::cases`].
    Result(usize),
    /// `# pkeys-suite: done ...`.
    Done,
    /// A `# pkeys-init: ...` line of the guest's init.
    Init,
    /// A diagnostic (it belongs to the next result).
    Diagnostic,
    /// Empty, console noise or garbage.
    Other,
}

/// [`parse`] one line at a time, for a reader that watches a stream as it arrives: each line
/// is cleaned and parsed once, [`StreamParser::line`] says what it was, and
/// [`StreamParser::finish`] gives the same [`ParsedStream`] as [`parse`] of the lines.
#[derive(Debug, Clone, Default)]
pub struct StreamParser {
    out: ParsedStream,
    pending: Vec<String>,
    cleaned: String,
}

impl StreamParser {
    /// Parses one complete line (without its `\n`).
    pub fn line(&mut self, raw: &str) -> StreamLine {
        self.cleaned = clean_line(raw);
        let line = strip_timestamp(&self.cleaned);
        let out = &mut self.out;
        if line.is_empty() {
            return StreamLine::Other;
        }
        if line.contains(VERSION_LINE) {
            out.started = true;
            StreamLine::Version
        } else if let Some(rest) = line.strip_prefix('#') {
            let body = rest.trim_start();
            if let Some(header) = body.strip_prefix(SUITE).and_then(|r| r.strip_prefix(' ')) {
                out.meta.extend(parse_key_values(header));
                StreamLine::Header
            } else if body.starts_with(DONE) {
                out.done = true;
                StreamLine::Done
            } else if let Some(rest) = body.strip_prefix(INIT) {
                if let Some(code) = rest.trim().strip_prefix("suite exit=") {
                    out.init_exit = Some(code.trim().to_owned());
                }
                StreamLine::Init
            } else {
                self.pending.push(body.to_owned());
                StreamLine::Diagnostic
            }
        } else if let Some(n) = parse_plan(line) {
            out.plan = Some(n);
            StreamLine::Plan(n)
        } else if let Some(mut case) = parse_result(line) {
            let pending = &mut self.pending;
            let fail_prefix = format!("{}: FAIL:", case.id);
            if case.verdict == Verdict::Fail && case.reason.is_none() {
                case.reason = pending
                    .iter()
                    .rev()
                    .find_map(|d| d.strip_prefix(&fail_prefix))
                    .map(|m| m.trim().to_owned());
            }
            let duration_prefix = format!("{}: duration=", case.id);
            pending.retain(|d| match d.strip_prefix(&duration_prefix) {
                Some(value) => {
                    if case.duration_us.is_none() {
                        case.duration_us = parse_seconds_us(value);
                    }
                    false
                }
                None => true,
            });
            case.diagnostics = std::mem::take(pending);
            out.cases.push(case);
            StreamLine::Result(out.cases.len() - 1)
        } else {
            // Console noise or garbage.
            StreamLine::Other
        }
    }

    /// The last line given to [`StreamParser::line`], cleaned (NULs, `\r`, escapes removed;
    /// the kernel timestamp kept).
    pub fn cleaned(&self) -> &str {
        &self.cleaned
    }

    /// What the lines so far gave (diagnostics not yet followed by a result are not in it).
    pub fn stream(&self) -> &ParsedStream {
        &self.out
    }

    /// The parsed stream: diagnostics after the last result are its trailing diagnostics.
    pub fn finish(self) -> ParsedStream {
        let mut out = self.out;
        out.trailing_diagnostics = self.pending;
        out.complete = out.done && out.plan == Some(out.cases.len());
        out
    }
}

/// `1.234567s` as microseconds; `None` for anything else (negative, not finite, absurd).
fn parse_seconds_us(value: &str) -> Option<u64> {
    let secs: f64 = value.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| (secs * 1e6).round() as u64)
}

/// Parses a plan line `1..N`.
pub fn parse_plan(line: &str) -> Option<usize> {
    line.strip_prefix("1..")?.trim().parse().ok()
}

/// [`parse`] for raw bytes (invalid UTF-8, as serial lines produce, is replaced).
pub fn parse_bytes(bytes: &[u8]) -> ParsedStream {
    parse(&String::from_utf8_lossy(bytes))
}

/// Parses `ok N id [# DIRECTIVE reason]` / `not ok N id [# ...]`.
fn parse_result(line: &str) -> Option<CaseResult> {
    parse_result_line(line)
}

/// Parses one result line, `ok N id [# DIRECTIVE reason]` or `not ok N id [# ...]`; `None` for
/// anything else.
pub fn parse_result_line(line: &str) -> Option<CaseResult> {
    let (ok, rest) = if let Some(rest) = line.strip_prefix("not ok ") {
        (false, rest)
    } else if let Some(rest) = line.strip_prefix("ok ") {
        (true, rest)
    } else {
        return None;
    };
    let rest = rest.trim_start();
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = rest[digits..].trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    // The directive starts at " #" (KTAP separates it with whitespace), so a '#' inside the
    // description (e.g. an iteration suffix) is not taken for one.
    let (desc, directive) = match rest.split_once(" #") {
        Some((d, dir)) => (d.trim(), Some(dir.trim())),
        None => (rest.trim(), None),
    };
    if desc.is_empty() {
        return None;
    }
    let mut verdict = if ok { Verdict::Pass } else { Verdict::Fail };
    let mut reason = None;
    if let Some(directive) = directive {
        let (word, why) = directive
            .split_once(char::is_whitespace)
            .map_or((directive, ""), |(w, r)| (w, r.trim()));
        match word.to_ascii_uppercase().as_str() {
            "SKIP" => verdict = Verdict::Skip,
            "XFAIL" => verdict = Verdict::XFail,
            "XPASS" => verdict = Verdict::XPass,
            "TIMEOUT" => verdict = Verdict::Timeout,
            "ERROR" => verdict = Verdict::Error,
            // An unknown directive (e.g. TODO): keep ok/not ok and the whole text.
            _ => {
                if !directive.is_empty() {
                    reason = Some(directive.to_owned());
                }
            }
        }
        if reason.is_none() && !why.is_empty() {
            reason = Some(why.to_owned());
        }
    }
    Some(CaseResult {
        id: desc.to_owned(),
        verdict,
        reason,
        diagnostics: Vec::new(),
        expectation: None,
        duration_us: None,
    })
}

/// Parses `key=value key="quoted value" ...`; bare words are ignored; a backslash escapes
/// the next character inside quotes.
pub fn parse_key_values(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if chars.next_if_eq(&'=').is_none() {
            continue; // bare word
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

/// The last `n` non-empty lines of console text, cleaned (NULs, `\r`, escapes removed).
/// Unlike [`parse`], a final line without newline is kept: it is often the most telling.
pub fn parse_console_tail(text: &str, n: usize) -> Vec<String> {
    let mut tail = ConsoleTail::new(n);
    for line in text.split('\n') {
        tail.push(clean_line(line));
    }
    tail.into_vec()
}

/// The last `n` non-empty console lines, kept as they arrive (a runner watching a console reads
/// each line once): [`parse_console_tail`] is this fed every line of a text.
#[derive(Debug, Clone)]
pub struct ConsoleTail {
    lines: std::collections::VecDeque<String>,
    n: usize,
}

impl ConsoleTail {
    /// An empty tail that keeps `n` lines.
    pub fn new(n: usize) -> ConsoleTail {
        ConsoleTail {
            lines: std::collections::VecDeque::with_capacity(n + 1),
            n,
        }
    }

    /// Keeps a cleaned line ([`clean_line`]) unless it is blank, dropping the oldest beyond `n`.
    pub fn push(&mut self, cleaned: String) {
        if cleaned.trim().is_empty() || self.n == 0 {
            return;
        }
        if self.lines.len() == self.n {
            self.lines.pop_front();
        }
        self.lines.push_back(cleaned);
    }

    /// The lines kept, oldest first.
    pub fn into_vec(self) -> Vec<String> {
        self.lines.into()
    }
}

/// Writes results back as a KTAP version 1 stream (used for the merged KTAP file).
pub fn write_stream(out: &mut String, meta: &BTreeMap<String, String>, cases: &[CaseResult]) {
    use std::fmt::Write;
    let _ = writeln!(out, "{VERSION_LINE}");
    if !meta.is_empty() {
        let _ = write!(out, "# {SUITE}");
        for (k, v) in meta {
            if v.is_empty() || v.contains(char::is_whitespace) || v.contains('"') {
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(out, " {k}=\"{escaped}\"");
            } else {
                let _ = write!(out, " {k}={v}");
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "1..{}", cases.len());
    for (i, case) in cases.iter().enumerate() {
        for d in &case.diagnostics {
            let _ = writeln!(out, "# {}", one_line(d));
        }
        if let Some(us) = case.duration_us {
            let d = std::time::Duration::from_micros(us);
            let _ = writeln!(out, "{}", protocol::duration_line(&case.id, d));
        }
        if let Some(exp) = &case.expectation {
            let _ = writeln!(
                out,
                "# {}: expected {} ({}): {}{}",
                case.id,
                exp.expected,
                exp.pattern,
                one_line(&exp.reason),
                exp.fix
                    .as_deref()
                    .map(|f| format!(" [fix {f}]"))
                    .unwrap_or_default()
            );
        }
        // `not ok` exactly for the verdicts that fail a run; every verdict but PASS and FAIL is a
        // directive.
        let v = case.verdict;
        let directive = (!matches!(v, Verdict::Pass | Verdict::Fail)).then(|| v.as_str());
        let line = protocol::result_line(
            i + 1,
            &case.id,
            !v.is_problem(),
            directive,
            case.reason.as_deref(),
        );
        let _ = writeln!(out, "{line}");
    }
}

use protocol::one_line;

#[cfg(test)]
mod tests {
    use super::*;

    /// Line by line, the parser says what each line was and ends with what [`parse`] gives.
    #[test]
    fn stream_parser_is_parse_one_line_at_a_time() {
        let text = "\x1b[0m[    1.5] KTAP version 1\r\n# pkeys-suite pku=1\n1..2\nnoise\n\
                    # a: duration=0.5s\n# a: FAIL: bad\nnot ok 1 a\nok 2 b # SKIP why\n\
                    # pkeys-suite: done\n# trailing\n# pkeys-init: suite exit=0\ntrunc";
        let mut p = StreamParser::default();
        let kinds: Vec<StreamLine> = text.split('\n').take(12).map(|l| p.line(l)).collect();
        assert_eq!(
            kinds,
            [
                StreamLine::Version,
                StreamLine::Header,
                StreamLine::Plan(2),
                StreamLine::Other,
                StreamLine::Diagnostic,
                StreamLine::Diagnostic,
                StreamLine::Result(0),
                StreamLine::Result(1),
                StreamLine::Done,
                StreamLine::Diagnostic,
                StreamLine::Init,
                StreamLine::Other,
            ]
        );
        assert_eq!(p.cleaned(), "trunc");
        assert_eq!(p.stream().cases[0].reason.as_deref(), Some("bad"));
        assert_eq!(p.stream().cases[0].duration_us, Some(500_000));
        let whole = parse(text);
        assert_eq!(whole.trailing_diagnostics, ["trailing"]);
        assert!(whole.complete);
        let mut again = StreamParser::default();
        for l in text.split('\n').take(11) {
            again.line(l);
        }
        assert_eq!(again.finish(), whole);
    }

    #[test]
    fn protocol_example() {
        let text = "KTAP version 1\n\
# pkeys-suite version=0.1.0 kernel=6.12.43+deb13-cloud-amd64 cpu=\"Intel Xeon Processor (Skylake)\" pku=1\n\
1..7\n\
# access::read_ad::anon: fault si_code=4 si_pkey=1\n\
ok 1 access::read_ad::anon\n\
# alloc::exhaust: FAIL: pkey_alloc count: expected 15, got 14\n\
not ok 2 alloc::exhaust\n\
ok 3 hugetlb::read_ad::hugetlb # SKIP no huge pages could be reserved\n\
not ok 4 signals::hang # TIMEOUT after 10s\n\
not ok 5 x::y # ERROR case exited without a verdict (status 3)\n\
ok 6 x::z # XFAIL reason\n\
not ok 7 x::w # XPASS reason\n\
# pkeys-suite: done pass=1 fail=5 skip=1 total=7\n\
# pkeys-init: suite exit=1\n";
        let p = parse(text);
        assert!(p.started && p.done && p.complete);
        assert_eq!(p.plan, Some(7));
        assert_eq!(p.init_exit.as_deref(), Some("1"));
        assert_eq!(p.meta["cpu"], "Intel Xeon Processor (Skylake)");
        assert_eq!(p.meta["kernel"], "6.12.43+deb13-cloud-amd64");
        let v: Vec<_> = p.cases.iter().map(|c| c.verdict).collect();
        use Verdict::*;
        assert_eq!(v, [Pass, Fail, Skip, Timeout, Error, XFail, XPass]);
        assert_eq!(
            p.cases[0].diagnostics,
            ["access::read_ad::anon: fault si_code=4 si_pkey=1"]
        );
        assert_eq!(
            p.cases[1].reason.as_deref(),
            Some("pkey_alloc count: expected 15, got 14")
        );
        assert_eq!(
            p.cases[2].reason.as_deref(),
            Some("no huge pages could be reserved")
        );
        assert_eq!(p.cases[3].reason.as_deref(), Some("after 10s"));
    }

    #[test]
    fn key_values() {
        let kv = parse_key_values(r#"a=1 b="x y" c="q\"z" bare d="#);
        assert_eq!(kv["a"], "1");
        assert_eq!(kv["b"], "x y");
        assert_eq!(kv["c"], "q\"z");
        assert_eq!(kv["d"], "");
        assert!(!kv.contains_key("bare"));
    }

    #[test]
    fn roundtrip_through_writer() {
        let text = "KTAP version 1\n1..2\n# a: FAIL: boom\nnot ok 1 a\nok 2 b # SKIP no pku\n";
        let p = parse(text);
        let mut out = String::new();
        write_stream(&mut out, &p.meta, &p.cases);
        let q = parse(&out);
        assert_eq!(p.cases, q.cases);
    }

    #[test]
    fn durations_are_taken_out_of_the_diagnostics() {
        let text = "KTAP version 1\n1..3\n# a: x=1\n# a: duration=0.012345s\nok 1 a\n\
                    # b: duration=-1s\n# b: duration=NaNs\nok 2 b\n# zz: duration=2s\nok 3 c\n";
        let p = parse(text);
        assert_eq!(p.cases[0].duration_us, Some(12_345));
        assert_eq!(p.cases[0].diagnostics, ["a: x=1"]);
        // Nonsense values are dropped, and a line naming another case stays a diagnostic.
        assert_eq!(p.cases[1].duration_us, None);
        assert!(p.cases[1].diagnostics.is_empty());
        assert_eq!(p.cases[2].duration_us, None);
        assert_eq!(p.cases[2].diagnostics, ["zz: duration=2s"]);
        let mut out = String::new();
        write_stream(&mut out, &p.meta, &p.cases);
        assert_eq!(parse(&out).cases, p.cases);
    }

    #[test]
    fn console_tail() {
        assert_eq!(
            parse_console_tail("a\r\n\nb\nc\0\npartial", 3),
            ["b", "c", "partial"]
        );
        let text = "a\r\n\n\x1b[0mb\n  \nc\nd\npartial";
        assert_eq!(
            parse_console_tail(text, 30),
            ["a", "b", "c", "d", "partial"]
        );
        assert!(parse_console_tail(text, 0).is_empty());
        assert!(parse_console_tail("\n\n\n", 3).is_empty());
        // Fed line by line, as a runner reads a console: the oldest lines go first.
        let mut tail = ConsoleTail::new(2);
        for l in ["one", "", "two", "three"] {
            tail.push(l.to_owned());
        }
        assert_eq!(tail.into_vec(), ["two", "three"]);
    }

    #[test]
    fn a_hash_inside_the_id_is_not_a_directive() {
        let r = parse_result_line("ok 2 support::x#1 # SKIP CPU has PKU").unwrap();
        assert_eq!((r.id.as_str(), r.verdict), ("support::x#1", Verdict::Skip));
        assert_eq!(r.reason.as_deref(), Some("CPU has PKU"));
        let r = parse_result_line("not ok 3 a::b@2").unwrap();
        assert_eq!((r.id.as_str(), r.verdict), ("a::b@2", Verdict::Fail));
    }
}
