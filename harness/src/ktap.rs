//! KTAP version 1 writer (the kernel's test output format, see docs/protocol.md).

use crate::verdict::{CaseReport, Verdict};
use std::io::{self, Write};

/// Writes a KTAP stream, flushing after every record so a crash loses nothing already decided.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    n: usize,
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl<W: Write> Writer<W> {
    /// Start a stream: the version line and a `# key=value...` header line.
    pub fn start(mut out: W, header: &str) -> io::Result<Self> {
        writeln!(out, "KTAP version 1")?;
        writeln!(out, "# {}", one_line(header))?;
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

    /// One case's diagnostics, its duration (`# <id>: duration=<seconds>s`, a diagnostic line
    /// that KTAP readers which do not know it ignore) and its result line.
    pub fn result(&mut self, r: &CaseReport) -> io::Result<()> {
        self.n += 1;
        for d in &r.diagnostics {
            writeln!(self.out, "# {}: {}", r.id, one_line(d))?;
        }
        let n = self.n;
        let id = &r.id;
        if let Verdict::Fail(m) = &r.verdict {
            writeln!(self.out, "# {id}: FAIL: {}", one_line(m))?;
        }
        writeln!(
            self.out,
            "# {id}: duration={:.6}s",
            r.duration.as_secs_f64()
        )?;
        match &r.verdict {
            Verdict::Pass => writeln!(self.out, "ok {n} {id}")?,
            Verdict::Fail(_) => writeln!(self.out, "not ok {n} {id}")?,
            Verdict::Skip(m) => writeln!(self.out, "ok {n} {id} # SKIP {}", one_line(m))?,
            Verdict::XFail(m) => writeln!(self.out, "ok {n} {id} # XFAIL {}", one_line(m))?,
            Verdict::XPass(m) => writeln!(self.out, "not ok {n} {id} # XPASS {}", one_line(m))?,
            Verdict::Timeout(d) => writeln!(
                self.out,
                "not ok {n} {id} # TIMEOUT after {}s",
                d.as_secs_f64()
            )?,
            Verdict::Error(m) => writeln!(self.out, "not ok {n} {id} # ERROR {}", one_line(m))?,
        }
        self.out.flush()
    }

    /// The end marker with totals.
    pub fn finish(mut self, summary: &str) -> io::Result<W> {
        writeln!(self.out, "# pkeys-suite: done {summary}")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let mut w = Writer::start(Vec::new(), "pkeys-suite version=0").unwrap();
        w.plan(4).unwrap();
        w.result(&rep("a::b", Verdict::Pass, &["x=1"])).unwrap();
        w.result(&rep("a::c", Verdict::Fail("bad\nthing".into()), &[]))
            .unwrap();
        w.result(&rep("a::d", Verdict::Skip("CPU lacks PKU".into()), &[]))
            .unwrap();
        w.result(&rep("a::e", Verdict::Timeout(Duration::from_secs(2)), &[]))
            .unwrap();
        let out = String::from_utf8(w.finish("pass=1").unwrap()).unwrap();
        assert_eq!(
            out,
            "KTAP version 1\n# pkeys-suite version=0\n1..4\n# a::b: x=1\n# a::b: duration=1.500000s\nok 1 a::b\n\
             # a::c: FAIL: bad thing\n# a::c: duration=1.500000s\nnot ok 2 a::c\n\
             # a::d: duration=1.500000s\nok 3 a::d # SKIP CPU lacks PKU\n\
             # a::e: duration=1.500000s\nnot ok 4 a::e # TIMEOUT after 2s\n# pkeys-suite: done pass=1\n"
        );
    }
}
