//! `report.md`: the matrix as a Markdown table, with per-run counts and failure details.

use std::fmt::Write;

use super::{counts_line, expectation_note, kernel_label, run_status, secs};
use crate::model::{Results, RunStatus, Verdict};

/// Renders the Markdown report.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let ids = results.case_ids();
    let problems: usize = results
        .runs
        .iter()
        .flat_map(|r| &r.cases)
        .filter(|c| c.verdict.is_problem())
        .count();
    let _ = writeln!(out, "# pkeys conformance report\n");
    let _ = writeln!(
        out,
        "{} runs, {} cases, pkeys-report {}. Overall: **{}**.\n",
        results.runs.len(),
        ids.len(),
        results.tool_version,
        if problems == 0 {
            "PASS".to_owned()
        } else {
            format!("FAIL ({problems} FAIL/XPASS/TIMEOUT/ERROR)")
        }
    );

    let _ = writeln!(out, "## Runs\n");
    let _ = writeln!(
        out,
        "| run | kernel | CPU | append | boot s | suite s | total s | attempts | status | counts |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for run in &results.runs {
        let attempts = match &run.retried {
            Some(why) => format!("{} (retried: {})", run.attempts, cell(why)),
            None => run.attempts.to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&run.name),
            cell(&kernel_label(run)),
            cell(&format!(
                "{}, {}",
                cpu_label(run.cpu.as_str(), run.cpu_description()),
                run.accel
            )),
            code_or_dash(&run.append),
            secs(run.timings.boot_to_first_line_s),
            secs(run.timings.suite_s),
            secs(run.timings.total_s),
            attempts,
            cell(&run_status(run)),
            counts_line(run),
        );
    }

    let _ = writeln!(out, "\n## Matrix\n");
    let _ = write!(out, "| case |");
    for run in &results.runs {
        let _ = write!(out, " {} |", cell(&run.name));
    }
    let _ = write!(out, "\n|---|");
    for _ in &results.runs {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    for id in &ids {
        let _ = write!(out, "| `{id}` |");
        for run in &results.runs {
            let text = match run.case(id) {
                None => "—".to_owned(),
                Some(c) if c.verdict.is_problem() => format!("**{}**", c.verdict),
                Some(c) => c.verdict.to_string(),
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }

    let details: Vec<_> = results
        .runs
        .iter()
        .flat_map(|r| r.cases.iter().map(move |c| (r, c)))
        .filter(|(_, c)| c.verdict.is_problem())
        .collect();
    if !details.is_empty() {
        let _ = writeln!(out, "\n## Problems\n");
        for (run, case) in details {
            let _ = writeln!(out, "### {} — `{}`: {}\n", run.name, case.id, case.verdict);
            if let Some(reason) = &case.reason {
                let _ = writeln!(out, "{}\n", reason.trim());
            }
            if let Some(e) = &case.expectation {
                let _ = writeln!(out, "*{}*\n", expectation_note(e, case.verdict));
            }
            if !case.diagnostics.is_empty() {
                let _ = writeln!(
                    out,
                    "```\n{}\n```\n",
                    fence_safe(&case.diagnostics.join("\n"))
                );
            }
        }
    }

    let xfails: Vec<_> = results
        .runs
        .iter()
        .flat_map(|r| r.cases.iter().map(move |c| (r, c)))
        .filter(|(_, c)| c.verdict == Verdict::XFail)
        .collect();
    if !xfails.is_empty() {
        let _ = writeln!(out, "\n## Expected failures\n");
        let _ = writeln!(out, "| run | case | reported | reason | fix |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for (run, case) in xfails {
            let (original, reason, fix) = match &case.expectation {
                Some(e) => (e.original.to_string(), e.reason.clone(), e.fix.clone()),
                None => (
                    "XFAIL (suite)".to_owned(),
                    case.reason.clone().unwrap_or_default(),
                    None,
                ),
            };
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} |",
                cell(&run.name),
                case.id,
                original,
                cell(&reason),
                fix.as_deref().map_or("-".to_owned(), |f| format!("`{f}`")),
            );
        }
    }

    let skips: Vec<_> = results
        .runs
        .iter()
        .flat_map(|r| r.cases.iter().map(move |c| (r, c)))
        .filter(|(_, c)| c.verdict == Verdict::Skip)
        .collect();
    if !skips.is_empty() {
        let _ = writeln!(out, "\n## Skips\n");
        let _ = writeln!(out, "| run | case | reason |");
        let _ = writeln!(out, "|---|---|---|");
        for (run, case) in skips {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} |",
                cell(&run.name),
                case.id,
                cell(case.reason.as_deref().unwrap_or("-"))
            );
        }
    }

    for run in &results.runs {
        if let RunStatus::Error { console_tail, .. } = &run.status
            && !console_tail.is_empty()
        {
            let _ = writeln!(out, "\n## Console tail: {}\n", run.name);
            let _ = writeln!(out, "```\n{}\n```", fence_safe(&console_tail.join("\n")));
        }
    }
    out
}

fn cpu_label(model: &str, seen: &str) -> String {
    if model == seen {
        model.to_owned()
    } else {
        format!("{model} ({seen})")
    }
}

/// Makes text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn code_or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        format!("`{}`", cell(text).replace('`', "'"))
    }
}

/// Keeps a code block from being closed early by text containing a fence.
fn fence_safe(text: &str) -> String {
    text.replace("```", "'''")
}
