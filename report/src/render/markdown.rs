//! `report.md`: the matrix as a Markdown table, with per-run counts and failure details.

use std::fmt::Write;

use super::{counts_line, expectation_note, kernel_label, run_status, secs};
use crate::digest::{Digest, run_list};
use crate::model::{Results, RunStatus};

/// The sections a kernel developer reads first: problems, what differs between runs, expected
/// failures by case, the slowest cases, skips by reason.
fn first_screen(out: &mut String, d: &Digest) {
    let problems = &d.problems;
    if !problems.is_empty() {
        let _ = writeln!(out, "## Problems\n");
        for p in problems {
            let _ = writeln!(out, "- {}", cell(p));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Differences between runs\n");
    if d.differences.is_empty() {
        let _ = writeln!(
            out,
            "Every case that ran has the same verdict in every run (SKIP aside).\n"
        );
    } else {
        let _ = writeln!(
            out,
            "Cases whose verdict is not the same in every run where they ran (SKIP is not \
             counted: see the skips below).\n"
        );
        let _ = writeln!(out, "| case | verdict → runs |\n|---|---|");
        for diff in &d.differences {
            let parts: Vec<String> = diff
                .by_verdict
                .iter()
                .map(|(v, runs)| format!("**{v}**: {}", cell(&run_list(runs, 6))))
                .collect();
            let _ = writeln!(out, "| {} | {} |", code(&diff.id), parts.join("<br>"));
        }
        out.push('\n');
    }
    if !d.expected.is_empty() {
        let _ = writeln!(out, "## Expected failures\n");
        let _ = writeln!(
            out,
            "| case | reported | reason | fix | runs |\n|---|---|---|---|---|"
        );
        for e in &d.expected {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                code(&e.id),
                e.reported,
                cell(&e.reason),
                e.fix.as_deref().map_or("-".to_owned(), code),
                cell(&run_list(&e.runs, 6)),
            );
        }
        out.push('\n');
    }
    if !d.slowest.is_empty() {
        let _ = writeln!(out, "## Slowest cases\n");
        let _ = writeln!(
            out,
            "| case | slowest run | s | median s (all runs) |\n|---|---|---|---|"
        );
        for s in &d.slowest {
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} | {:.3} |",
                code(&s.id),
                cell(&s.run),
                s.secs,
                s.median_secs
            );
        }
        out.push('\n');
    }
    if !d.skips.is_empty() {
        let _ = writeln!(out, "## Skips by reason\n");
        let _ = writeln!(out, "| reason | cases × runs | runs |\n|---|---|---|");
        for (reason, n, runs) in &d.skips {
            let _ = writeln!(
                out,
                "| {} | {n} | {} |",
                cell(reason),
                cell(&run_list(runs, 6))
            );
        }
        out.push('\n');
    }
}

/// Renders the Markdown report.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let ids = results.case_ids();
    let digest = Digest::of(results);
    let _ = writeln!(out, "# pkeys conformance report\n");
    let _ = writeln!(
        out,
        "**{}** — {} runs, {} cases: {}. pkeys-report {}.\n",
        digest.verdict(),
        results.runs.len(),
        ids.len(),
        digest.tally.sentence(),
        results.tool_version,
    );
    first_screen(&mut out, &digest);

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
        let _ = write!(out, "| {} |", code(id));
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
        let _ = writeln!(out, "\n## Problem details\n");
        for (run, case) in details {
            let _ = writeln!(
                out,
                "### {} — {}: {}\n",
                cell(&run.name),
                code(&case.id),
                case.verdict
            );
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

/// Makes text safe inside a Markdown table cell: backslashes and pipes escaped, one line.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// Text as inline code inside a table cell. Backslashes are literal in code, so one before a
/// pipe could not be told from the pipe's escape: they become `⧵`; backticks become `'`.
fn code(text: &str) -> String {
    let text = text.replace('\\', "⧵").replace('`', "'");
    format!("`{}`", text.replace('|', "\\|").replace(['\n', '\r'], " "))
}

fn code_or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        code(text)
    }
}

/// Keeps a code block from being closed early by text containing a fence.
fn fence_safe(text: &str) -> String {
    text.replace("```", "'''")
}
