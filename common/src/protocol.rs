//! The suite's result stream: KTAP version 1 plus the project's marker lines (see
//! docs/protocol.md). The writer and every literal live here; `pkeys-report`'s parser reads the
//! same literals, and a round-trip test there (`report/tests/protocol.rs`) feeds it this writer's
//! output.
//!
//! ```text
//! KTAP version 1
//! # pkeys-suite version=0.1.0 kernel=... pku=1 ...        header (key=value)
//! 1..N
//! # <id>: <diagnostic>                                    diagnostics of the next result
//! # <id>: FAIL: <message>                                 a FAIL's message
//! # <id>: duration=<seconds>s
//! ok 1 <id> [# SKIP|XFAIL <reason>] / not ok 1 <id> [# XPASS|TIMEOUT|ERROR <reason>]
//! # pkeys-suite: done pass=.. total=..                    the suite finished
//! # pkeys-init: suite exit=<code>|signal=<n>              the guest's init saw the suite end
//! ```

use crate::verdict::{CaseReport, Verdict};
use std::io::{self, Write};
use std::time::Duration;

/// The first line of a stream.
pub const VERSION_LINE: &str = "KTAP version 1";
/// The header's tag: `# pkeys-suite key=value ...`.
pub const SUITE: &str = "pkeys-suite";
/// The tag of the line that ends a finished run: `# pkeys-suite: done <summary>`.
pub const DONE: &str = "pkeys-suite: done";
/// The tag of the guest init's lines (`# pkeys-init: suite exit=0`, and its console messages).
pub const INIT: &str = "pkeys-init:";
/// The prefix of the init's end marker: the suite process ended (`exit=` or `signal=` follows).
pub const END_MARKER: &str = "# pkeys-init: suite ";
/// The prefix of the benchmark hooks' lines on the result stream.
pub const BENCH_MARKER: &str = "# pkeys-bench: ";

/// Diagnostics and messages are single lines in the stream.
pub fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The end marker the init writes when the suite exited with `code`.
pub fn end_marker_exit(code: i32) -> String {
    format!("{END_MARKER}exit={code}")
}

/// The end marker the init writes when the suite was killed by signal `sig`.
pub fn end_marker_signal(sig: i32) -> String {
    format!("{END_MARKER}signal={sig}")
}

/// `# <id>: duration=<seconds>s`, six decimals (a diagnostic that KTAP readers which do not know
/// it ignore).
pub fn duration_line(id: &str, d: Duration) -> String {
    format!("# {id}: duration={:.6}s", d.as_secs_f64())
}

/// A result line: `ok N id`, `not ok N id`, with ` # DIRECTIVE reason` when there is one.
pub fn result_line(
    n: usize,
    id: &str,
    ok: bool,
    directive: Option<&str>,
    reason: Option<&str>,
) -> String {
    let mut s = format!("{}ok {n} {id}", if ok { "" } else { "not " });
    if let Some(d) = directive {
        s.push_str(" # ");
        s.push_str(d);
        if let Some(r) = reason {
            s.push(' ');
            s.push_str(&one_line(r));
        }
    }
    s
}

/// Writes a KTAP stream, flushing after every record so a crash loses nothing already decided.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    n: usize,
}

impl<W: Write> Writer<W> {
    /// Start a stream: the version line and the `# pkeys-suite <meta>` header line (`meta` is
    /// `key=value` pairs, values with spaces quoted).
    pub fn start(mut out: W, meta: &str) -> io::Result<Self> {
        writeln!(out, "{VERSION_LINE}")?;
        writeln!(out, "# {SUITE} {}", one_line(meta))?;
        out.flush()?;
        Ok(Writer { out, n: 0 })
    }

    /// The plan line `1..N`.
    pub fn plan(&mut self, n: usize) -> io::Result<()> {
        writeln!(self.out, "1..{n}")?;
        self.out.flush()
    }

    /// A free diagnostic line.
    pub fn diag(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.out, "# {}", one_line(line))?;
        self.out.flush()
    }

    /// One case's diagnostics, its FAIL message, its duration and its result line.
    pub fn result(&mut self, r: &CaseReport) -> io::Result<()> {
        self.n += 1;
        let id = &r.id;
        for d in &r.diagnostics {
            writeln!(self.out, "# {id}: {}", one_line(d))?;
        }
        if let Verdict::Fail(m) = &r.verdict {
            writeln!(self.out, "# {id}: FAIL: {}", one_line(m))?;
        }
        writeln!(self.out, "{}", duration_line(id, r.duration))?;
        let reason = r.verdict.directive().and(r.verdict.message());
        writeln!(
            self.out,
            "{}",
            result_line(
                self.n,
                id,
                r.verdict.is_ok(),
                r.verdict.directive(),
                reason.as_deref()
            )
        )?;
        self.out.flush()
    }

    /// The end line with totals; gives the output back.
    pub fn finish(mut self, summary: &str) -> io::Result<W> {
        writeln!(self.out, "# {DONE} {summary}")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(id: &str, v: Verdict, d: &[&str]) -> CaseReport {
        CaseReport {
            id: id.into(),
            verdict: v,
            diagnostics: d.iter().map(|s| s.to_string()).collect(),
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn writes_every_verdict_form() {
        let mut w = Writer::start(Vec::new(), "version=0").unwrap();
        w.plan(7).unwrap();
        w.result(&rep("a::b", Verdict::Pass, &["x=1"])).unwrap();
        w.result(&rep("a::c", Verdict::Fail("bad\nthing".into()), &[]))
            .unwrap();
        w.result(&rep("a::d", Verdict::Skip("CPU lacks PKU".into()), &[]))
            .unwrap();
        w.result(&rep("a::e", Verdict::Timeout(Duration::from_secs(2)), &[]))
            .unwrap();
        w.result(&rep("a::f", Verdict::XFail("known".into()), &[]))
            .unwrap();
        w.result(&rep("a::g", Verdict::XPass("stale".into()), &[]))
            .unwrap();
        w.result(&rep("a::h", Verdict::Error("no verdict".into()), &[]))
            .unwrap();
        let out = String::from_utf8(w.finish("pass=1").unwrap()).unwrap();
        assert_eq!(
            out,
            "KTAP version 1\n# pkeys-suite version=0\n1..7\n# a::b: x=1\n# a::b: duration=1.500000s\nok 1 a::b\n\
             # a::c: FAIL: bad thing\n# a::c: duration=1.500000s\nnot ok 2 a::c\n\
             # a::d: duration=1.500000s\nok 3 a::d # SKIP CPU lacks PKU\n\
             # a::e: duration=1.500000s\nnot ok 4 a::e # TIMEOUT after 2s\n\
             # a::f: duration=1.500000s\nok 5 a::f # XFAIL known\n\
             # a::g: duration=1.500000s\nnot ok 6 a::g # XPASS stale\n\
             # a::h: duration=1.500000s\nnot ok 7 a::h # ERROR no verdict\n\
             # pkeys-suite: done pass=1\n"
        );
    }

    #[test]
    fn markers_agree_with_their_tags() {
        assert_eq!(END_MARKER, format!("# {INIT} suite "));
        assert_eq!(DONE, format!("{SUITE}: done"));
        assert_eq!(end_marker_exit(3), "# pkeys-init: suite exit=3");
        assert_eq!(end_marker_signal(9), "# pkeys-init: suite signal=9");
    }
}
