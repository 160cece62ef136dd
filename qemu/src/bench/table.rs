//! What a measurement records besides its figures: the rows of the benchmark table (stored in
//! `bench.json` and `results.json`, printed as they are listed), notes that are only printed,
//! and the targets verdicts. Recording prints nothing; [`super::print`] does.

use serde::Serialize;

use super::Stats;

/// A flat row of the report's benchmark table.
///
/// (Fields in alphabetical order: the order `bench.json` has always had them in.)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// What was measured (a kernel, `base image`, `--jobs 2`, ...).
    pub item: String,
    /// The largest sample.
    pub max: f64,
    /// The median.
    pub median: f64,
    /// Whether the target was met (with `target` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// Which figure of the item.
    pub metric: String,
    /// The smallest sample.
    pub min: f64,
    /// How many samples.
    pub n: usize,
    /// The table section (`initramfs`, `native`, `per kernel`, ...).
    pub section: String,
    /// The target, e.g. `< 10 s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The unit (may be empty: a ratio).
    pub unit: String,
}

/// A target's verdict (the `targets` table).
///
/// (Fields in alphabetical order: the order `bench.json` has always had them in.)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Whether it was met.
    pub met: bool,
    /// What is measured.
    pub name: String,
    /// A note (may be empty).
    pub note: String,
    /// The target, e.g. `< 10`.
    pub target: String,
    /// Its unit.
    pub unit: String,
    /// The measured median.
    pub value: f64,
}

/// One line of a section's table, in the order measured.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A row, printed with `digits` decimals and stored.
    Row {
        /// The row.
        row: Row,
        /// Decimals when printed.
        digits: usize,
    },
    /// A row that is stored only (the sizes of the initramfs: printed as a note).
    Stored(Row),
    /// A line that is printed only: `item`, `metric`, then free text.
    Note {
        /// First column.
        item: String,
        /// Second column.
        metric: String,
        /// The rest of the line.
        text: String,
    },
}

/// The lines and targets of one or more sections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// The lines, in order.
    pub lines: Vec<Line>,
    /// The targets, in order.
    pub targets: Vec<Target>,
}

impl Table {
    /// Records a row of `st`, printed with `digits` decimals; `target` is the target's text and
    /// whether it was met.
    #[allow(clippy::too_many_arguments)]
    pub fn stat(
        &mut self,
        section: &str,
        item: &str,
        metric: &str,
        st: &Stats,
        unit: &str,
        digits: usize,
        target: Option<(&str, bool)>,
    ) {
        self.lines.push(Line::Row {
            row: Row {
                section: section.to_owned(),
                item: item.to_owned(),
                metric: metric.to_owned(),
                median: st.median,
                min: st.min,
                max: st.max,
                n: st.n,
                unit: unit.to_owned(),
                target: target.map(|(t, _)| t.to_owned()),
                met: target.map(|(_, m)| m),
            },
            digits,
        });
    }

    /// Records a row that is not printed.
    pub fn stored(&mut self, row: Row) {
        self.lines.push(Line::Stored(row));
    }

    /// Records a printed-only line.
    pub fn note(&mut self, item: &str, metric: &str, text: String) {
        self.lines.push(Line::Note {
            item: item.to_owned(),
            metric: metric.to_owned(),
            text,
        });
    }

    /// Records a target's verdict.
    pub fn target(
        &mut self,
        name: &str,
        target: &str,
        value: f64,
        unit: &str,
        met: bool,
        note: &str,
    ) {
        self.targets.push(Target {
            name: name.to_owned(),
            target: target.to_owned(),
            value,
            unit: unit.to_owned(),
            met,
            note: note.to_owned(),
        });
    }

    /// Appends another table's lines and targets.
    pub fn extend(&mut self, other: Table) {
        self.lines.extend(other.lines);
        self.targets.extend(other.targets);
    }

    /// The stored rows, in order.
    pub fn rows(&self) -> Vec<Row> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Row { row, .. } | Line::Stored(row) => Some(row.clone()),
                Line::Note { .. } => None,
            })
            .collect()
    }
}

/// A measurement's typed figures (its part of `bench.json`) and its table.
#[derive(Debug, Clone)]
pub struct Measured<T> {
    /// The figures.
    pub figures: T,
    /// The table lines and targets.
    pub table: Table,
}
