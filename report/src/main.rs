//! `pkeys-report`: re-render, merge and compare pkeys conformance results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pkeys_report::{Expectations, Results, classify_all, compare, merge, write_all};

/// Re-render, merge and compare pkeys conformance results (results.json).
///
/// Exit status: 0 when no FAIL, XPASS, TIMEOUT or ERROR remains (render, merge) or nothing
/// got worse (compare); 1 otherwise; 2 on a usage or input error.
#[derive(Debug, Parser)]
#[command(name = "pkeys-report", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write report.md, report.html, junit.xml, results.ktap and results.json from a results file.
    Render {
        /// The results.json to render.
        results: PathBuf,
        /// Re-classify against this expectations file (else verdicts stay as stored).
        #[arg(long, short)]
        expectations: Option<PathBuf>,
        /// Output directory (default: the results file's directory).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Exit 0 even when the results have problems.
        #[arg(long)]
        exit_zero: bool,
    },
    /// Combine the results.json of several shards into one report.
    Merge {
        /// The shards' results.json files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output directory.
        #[arg(long, short)]
        out: PathBuf,
        /// Re-classify against this expectations file.
        #[arg(long, short)]
        expectations: Option<PathBuf>,
        /// Exit 0 even when the results have problems.
        #[arg(long)]
        exit_zero: bool,
    },
    /// List the cases whose verdict changed, per run name; exit 1 if anything got worse.
    Compare {
        /// Results before (e.g. the unpatched kernel).
        before: PathBuf,
        /// Results after.
        after: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pkeys-report: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Render {
            results,
            expectations,
            out,
            exit_zero,
        } => {
            let mut loaded = Results::load(&results)?;
            reclassify(&mut loaded, expectations.as_deref())?;
            let dir = match out {
                Some(dir) => dir,
                None => {
                    let dir = parent_dir(&results);
                    eprintln!(
                        "pkeys-report: writing into {}, the results file's folder (--out DIR \
                         writes elsewhere)",
                        dir.display()
                    );
                    dir
                }
            };
            finish(&loaded, &dir, exit_zero)
        }
        Command::Merge {
            inputs,
            out,
            expectations,
            exit_zero,
        } => {
            let loaded = inputs
                .into_iter()
                .map(|p| Results::load(&p).map(|r| (p, r)))
                .collect::<Result<Vec<_>, _>>()?;
            let (mut merged, notes) = merge(loaded)?;
            for name in &notes.dropped_duplicates {
                eprintln!("pkeys-report: dropped duplicate run {name}");
            }
            for (old, new) in &notes.renamed {
                eprintln!("pkeys-report: run name {old} taken, renamed {new}");
            }
            reclassify(&mut merged, expectations.as_deref())?;
            finish(&merged, &out, exit_zero)
        }
        Command::Compare { before, after } => {
            let b = Results::load(&before)?;
            let a = Results::load(&after)?;
            let cmp = compare(&b, &a);
            print!("{cmp}");
            Ok(if cmp.is_worse() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn reclassify(results: &mut Results, expectations: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = expectations {
        classify_all(results, &Expectations::load(path)?);
    }
    Ok(())
}

fn finish(results: &Results, dir: &Path, exit_zero: bool) -> anyhow::Result<ExitCode> {
    let written = write_all(results, dir)
        .with_context(|| format!("writing the report into {}", dir.display()))?;
    for path in &written {
        println!("{}", path.display());
    }
    for run in &results.runs {
        println!("{}: {}", run.name, pkeys_report::render::summary_line(run));
    }
    Ok(if results.has_problems() && !exit_zero {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}
