//! `report.html`: a self-contained page (inline CSS, no scripts or external assets).

use std::fmt::Write;

use super::{counts_line, expectation_note, kernel_label, run_status, secs};
use crate::digest::{Digest, run_list};
use crate::model::{CaseResult, GuestRun, Results, RunStatus, Verdict};

/// The sections a kernel developer reads first (see `markdown::first_screen`).
fn first_screen(out: &mut String, d: &Digest) {
    let problems = &d.problems;
    if !problems.is_empty() {
        out.push_str("<h2>Problems</h2>\n<ul>\n");
        for p in problems {
            let _ = writeln!(out, "<li class=\"bad\">{}</li>", esc(p));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h2>Differences between runs</h2>\n");
    if d.differences.is_empty() {
        out.push_str(
            "<p>Every case that ran has the same verdict in every run (SKIP aside).</p>\n",
        );
    } else {
        out.push_str(
            "<p>Cases whose verdict is not the same in every run where they ran (SKIP is not \
             counted).</p>\n<table class=\"digest\"><thead><tr><th>case</th><th>verdict</th>\
             <th>runs</th></tr></thead><tbody>\n",
        );
        for diff in &d.differences {
            let n = diff.by_verdict.len();
            for (i, (v, runs)) in diff.by_verdict.iter().enumerate() {
                out.push_str("<tr>");
                if i == 0 {
                    let _ = write!(
                        out,
                        "<th class=\"case\" rowspan=\"{n}\">{}</th>",
                        esc(&diff.id)
                    );
                }
                let _ = writeln!(
                    out,
                    "<td class=\"v {v}\">{v}</td><td>{}</td></tr>",
                    esc(&run_list(runs, 8))
                );
            }
        }
        out.push_str("</tbody></table>\n");
    }
    if !d.expected.is_empty() {
        out.push_str(
            "<h2>Expected failures</h2>\n<table class=\"digest\"><thead><tr><th>case</th>\
             <th>reported</th><th>reason</th><th>fix</th><th>runs</th></tr></thead><tbody>\n",
        );
        for e in &d.expected {
            let _ = writeln!(
                out,
                "<tr><th class=\"case\">{}</th><td class=\"v XFAIL\">{}</td><td>{}</td>\
                 <td><code>{}</code></td><td>{}</td></tr>",
                esc(&e.id),
                e.reported,
                esc(&e.reason),
                esc(e.fix.as_deref().unwrap_or("-")),
                esc(&run_list(&e.runs, 8))
            );
        }
        out.push_str("</tbody></table>\n");
    }
    if !d.slowest.is_empty() {
        out.push_str(
            "<h2>Slowest cases</h2>\n<table class=\"digest\"><thead><tr><th>case</th>\
             <th>slowest run</th><th>s</th><th>median s (all runs)</th></tr></thead><tbody>\n",
        );
        for s in &d.slowest {
            let _ = writeln!(
                out,
                "<tr><th class=\"case\">{}</th><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                esc(&s.id),
                esc(&s.run),
                s.secs,
                s.median_secs
            );
        }
        out.push_str("</tbody></table>\n");
    }
    if !d.skips.is_empty() {
        out.push_str(
            "<h2>Skips by reason</h2>\n<table class=\"digest\"><thead><tr><th>reason</th>\
             <th>cases × runs</th><th>runs</th></tr></thead><tbody>\n",
        );
        for (reason, n, runs) in &d.skips {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{n}</td><td>{}</td></tr>",
                esc(reason),
                esc(&run_list(runs, 8))
            );
        }
        out.push_str("</tbody></table>\n");
    }
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222}
h1{margin-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
thead th{background:#f0f0f0;position:sticky;top:0}
th.case{font-family:ui-monospace,monospace;font-weight:normal;white-space:nowrap}
td.v{text-align:center;white-space:nowrap;position:relative}
.PASS{background:#cdeccd}.FAIL{background:#f4b4b4;font-weight:bold}.SKIP{background:#e6e6e6}
.XFAIL{background:#fbe9b0}.XPASS{background:#dcc4f2;font-weight:bold}
.TIMEOUT{background:#fbcf9a;font-weight:bold}.ERROR{background:#e88a8a;font-weight:bold}
.none{color:#999}
details>summary{cursor:pointer}
td.v details[open]>div{position:absolute;z-index:10;left:0;top:100%;min-width:28em;max-width:60em;
 background:#fff;border:1px solid #888;box-shadow:2px 2px 6px #0004;padding:.5em;text-align:left;
 font-weight:normal;white-space:normal}
pre{background:#f6f6f6;padding:.4em;overflow-x:auto;white-space:pre-wrap;margin:.3em 0}
.note{font-style:italic}
.badge{display:inline-block;padding:0 .4em;margin-right:.3em;border-radius:3px}
.ok{color:#1a7f1a;font-weight:bold}.bad{color:#b00;font-weight:bold}
.banner{font-size:1.3em;padding:.4em .7em;border-radius:4px;margin:.3em 0}
.okbg{background:#cdeccd}.badbg{background:#f4b4b4}
.small{font-size:.85em;color:#555;margin-top:0}
table.digest td{max-width:60em}
";

/// Renders the HTML report.
pub fn html(results: &Results) -> String {
    let mut out = String::new();
    let ids = results.case_ids();
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>pkeys conformance report</title>\n<style>",
    );
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n<h1>pkeys conformance report</h1>\n");
    let digest = Digest::of(results);
    let _ = writeln!(
        out,
        "<p class=\"banner {cls}\"><b>{}</b> — {} runs, {} cases: {}.</p>\n<p class=\"small\">pkeys-report {}</p>",
        digest.verdict(),
        results.runs.len(),
        ids.len(),
        esc(&digest.tally.sentence()),
        esc(&results.tool_version),
        cls = if digest.tally.problems() == 0 {
            "okbg"
        } else {
            "badbg"
        },
    );
    first_screen(&mut out, &digest);
    runs_table(&mut out, results);
    matrix(&mut out, results, &ids);
    console_tails(&mut out, results);
    if let Some(bench) = &results.bench {
        out.push_str("<h2>Benchmarks</h2>\n");
        json_table(&mut out, bench);
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn runs_table(out: &mut String, results: &Results) {
    out.push_str(
        "<h2>Runs</h2>\n<table class=\"runs\">\n<thead><tr><th>run</th><th>kernel</th>\
         <th>package</th><th>CPU model</th><th>CPU (guest)</th><th>append</th><th>boot&nbsp;s</th>\
         <th>suite&nbsp;s</th><th>total&nbsp;s</th><th>attempts</th><th>status</th><th>counts</th>\
         </tr></thead>\n<tbody>\n",
    );
    for run in &results.runs {
        let attempts = match &run.retried {
            Some(why) => format!(
                "<details><summary>{}</summary>retried: {}</details>",
                run.attempts,
                esc(why)
            ),
            None => run.attempts.to_string(),
        };
        let status_class = match run.status {
            RunStatus::Error { .. } => "bad",
            RunStatus::Completed if !run.complete || run.has_problems() => "bad",
            RunStatus::Completed => "ok",
        };
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{status_class}\">{}</td>\
             <td>{}</td></tr>",
            esc(&run.name),
            esc(&kernel_label(run)),
            esc(&run.kernel.package),
            esc(&format!("{}, {}", run.cpu, run.accel)),
            esc(run.meta.get("cpu").map_or("-", String::as_str)),
            esc(&run.append),
            secs(run.timings.boot_to_first_line_s),
            secs(run.timings.suite_s),
            secs(run.timings.total_s),
            attempts,
            esc(&run_status(run)),
            esc(&counts_line(run)),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn matrix(out: &mut String, results: &Results, ids: &[String]) {
    out.push_str("<h2>Matrix</h2>\n<p>");
    for v in Verdict::ALL {
        let _ = write!(out, "<span class=\"badge {v}\">{v}</span>");
    }
    out.push_str(" — click a cell for its reason, expectation and diagnostics.</p>\n");
    out.push_str("<table class=\"matrix\">\n<thead><tr><th>case</th>");
    for run in &results.runs {
        let _ = write!(
            out,
            "<th title=\"{}\">{}<br><small>{}</small></th>",
            esc(&format!("{} on {}", kernel_label(run), run.cpu)),
            esc(&run.name),
            esc(&run.cpu)
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for id in ids {
        let _ = write!(out, "<tr><th class=\"case\">{}</th>", esc(id));
        for run in &results.runs {
            match run.case(id) {
                Some(case) => cell(out, run, case),
                None => out.push_str("<td class=\"v none\">—</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n<tfoot>\n");
    for v in Verdict::ALL {
        let _ = write!(out, "<tr><th>{v}</th>");
        for run in &results.runs {
            let n = run.cases.iter().filter(|c| c.verdict == v).count();
            let _ = write!(out, "<td class=\"v\">{n}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tfoot>\n</table>\n");
}

fn cell(out: &mut String, run: &GuestRun, case: &CaseResult) {
    let v = case.verdict;
    let has_detail =
        case.reason.is_some() || case.expectation.is_some() || !case.diagnostics.is_empty();
    if !has_detail {
        let _ = write!(out, "<td class=\"v {v}\">{v}</td>");
        return;
    }
    let _ = write!(
        out,
        "<td class=\"v {v}\"><details><summary>{v}</summary><div><b>{}</b> on {}<br>",
        esc(&case.id),
        esc(&run.name)
    );
    if let Some(reason) = &case.reason {
        let _ = write!(out, "{}<br>", esc(reason));
    }
    if let Some(e) = &case.expectation {
        let _ = write!(
            out,
            "<span class=\"note\">{}</span><br>",
            esc(&expectation_note(e, v))
        );
    }
    if !case.diagnostics.is_empty() {
        let _ = write!(out, "<pre>{}</pre>", esc(&case.diagnostics.join("\n")));
    }
    out.push_str("</div></details></td>");
}

fn console_tails(out: &mut String, results: &Results) {
    let errored: Vec<_> = results
        .runs
        .iter()
        .filter_map(|r| match &r.status {
            RunStatus::Error {
                message,
                console_tail,
            } => Some((r, message, console_tail)),
            RunStatus::Completed => None,
        })
        .collect();
    if errored.is_empty() {
        return;
    }
    out.push_str("<h2>Guest errors</h2>\n");
    for (run, message, tail) in errored {
        let _ = writeln!(
            out,
            "<details><summary><b>{}</b>: {}</summary><pre>{}</pre></details>",
            esc(&run.name),
            esc(message),
            esc(&tail.join("\n"))
        );
    }
}

/// Renders benchmark JSON: an array of objects as a table (columns = union of keys), an
/// object as key/value rows, anything else as preformatted JSON.
fn json_table(out: &mut String, value: &serde_json::Value) {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => esc(s),
        Value::Null => String::new(),
        Value::Number(_) | Value::Bool(_) => esc(&v.to_string()),
        _ => format!("<pre>{}</pre>", esc(&pretty(v))),
    };
    match value {
        Value::Array(rows) if rows.iter().all(Value::is_object) && !rows.is_empty() => {
            let mut columns: Vec<&str> = Vec::new();
            for row in rows.iter().filter_map(Value::as_object) {
                for k in row.keys() {
                    if !columns.contains(&k.as_str()) {
                        columns.push(k);
                    }
                }
            }
            out.push_str("<table class=\"bench\"><thead><tr>");
            for c in &columns {
                let _ = write!(out, "<th>{}</th>", esc(c));
            }
            out.push_str("</tr></thead><tbody>\n");
            for row in rows.iter().filter_map(Value::as_object) {
                out.push_str("<tr>");
                for c in &columns {
                    let _ = write!(
                        out,
                        "<td>{}</td>",
                        row.get(*c).map(scalar).unwrap_or_default()
                    );
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody></table>\n");
        }
        Value::Object(map) => {
            out.push_str("<table class=\"bench\"><tbody>\n");
            for (k, v) in map {
                let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), scalar(v));
            }
            out.push_str("</tbody></table>\n");
        }
        other => {
            let _ = writeln!(out, "<pre>{}</pre>", esc(&pretty(other)));
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}
