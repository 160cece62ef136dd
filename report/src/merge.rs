//! Combining the `results.json` of several shards into one.

use std::path::PathBuf;

use crate::error::{ReportError, Result};
use crate::model::{GuestRun, Results};

/// What [`merge`] did besides concatenating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeNotes {
    /// Runs dropped because an identical run (same name, same content) was already merged.
    pub dropped_duplicates: Vec<String>,
    /// Runs renamed `old -> new` because another run already had their name.
    pub renamed: Vec<(String, String)>,
}

/// Merges shard results, in order. All inputs must share `format_version` (checked when
/// loading) and `tool_version`. A run identical to one already merged is dropped; a
/// different run with a name already taken is renamed `<name>~2`, `<name>~3`, ...
/// Benchmark data is kept: one input's as is, several inputs' as an array (arrays are
/// concatenated).
pub fn merge(inputs: Vec<(PathBuf, Results)>) -> Result<(Results, MergeNotes)> {
    let mut notes = MergeNotes::default();
    let mut iter = inputs.into_iter();
    let Some((_, first)) = iter.next() else {
        return Ok((Results::default(), notes));
    };
    let tool_version = first.tool_version.clone();
    let mut merged = Results {
        runs: Vec::new(),
        bench: None,
        ..first.clone()
    };
    let mut benches = Vec::new();
    for (path, results) in std::iter::once((PathBuf::new(), first)).chain(iter) {
        if results.tool_version != tool_version {
            return Err(ReportError::Merge {
                path,
                reason: format!(
                    "written by pkeys-report {} but the first input by {tool_version}",
                    results.tool_version
                ),
            });
        }
        if let Some(b) = results.bench {
            benches.push(b);
        }
        for run in results.runs {
            add_run(&mut merged.runs, run, &mut notes);
        }
    }
    merged.bench = match benches.len() {
        0 => None,
        1 => benches.pop(),
        _ => Some(serde_json::Value::Array(
            benches
                .into_iter()
                .flat_map(|b| match b {
                    serde_json::Value::Array(items) => items,
                    other => vec![other],
                })
                .collect(),
        )),
    };
    Ok((merged, notes))
}

fn add_run(runs: &mut Vec<GuestRun>, mut run: GuestRun, notes: &mut MergeNotes) {
    if runs.contains(&run) {
        notes.dropped_duplicates.push(run.name);
        return;
    }
    if runs.iter().any(|r| r.name == run.name) {
        let new = (2..)
            .map(|i| format!("{}~{i}", run.name))
            .find(|n| runs.iter().all(|r| &r.name != n))
            .unwrap_or_default();
        notes.renamed.push((run.name.clone(), new.clone()));
        run.name = new;
    }
    runs.push(run);
}
