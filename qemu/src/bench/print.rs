//! Printing the benchmark: section headers, table lines, the targets table, the closing line.
//! Everything on stdout; progress during a measurement goes to stderr ([`super::measure`]).

use super::Stats;
use super::table::{Line, Row, Target};

/// A line of its own (headers, skipped parts).
pub fn line(text: &str) {
    println!("{text}");
}

/// A section's header, after an empty line.
pub fn section(title: &str) {
    println!("\n{title}");
}

/// `median (min, max, n)` of a row with `digits` decimals and its unit.
fn shown(row: &Row, digits: usize) -> String {
    Stats {
        max: row.max,
        median: row.median,
        min: row.min,
        n: row.n,
        samples: Vec::new(),
    }
    .show(digits, &format!(" {}", row.unit))
}

/// One table line as printed (`None`: stored only).
pub fn table_line(line: &Line) -> Option<String> {
    match line {
        Line::Row { row, digits } => {
            let t = match (&row.target, row.met) {
                (Some(t), Some(met)) => {
                    format!("   [target {t}: {}]", if met { "met" } else { "MISSED" })
                }
                _ => String::new(),
            };
            Some(format!(
                "  {:<14} {:<34} {}{t}",
                row.item,
                row.metric,
                shown(row, *digits)
            ))
        }
        Line::Stored(_) => None,
        Line::Note { item, metric, text } => Some(format!("  {item:<14} {metric:<34} {text}")),
    }
}

/// Prints table lines.
pub fn lines(lines: &[Line]) {
    for l in lines.iter().filter_map(table_line) {
        println!("{l}");
    }
}

/// One line of the targets table.
pub fn target_line(t: &Target) -> String {
    format!(
        "  {:<44} {:<10} {:>10.3} {:<3} {}{}",
        t.name,
        t.target,
        t.value,
        t.unit,
        if t.met { "met" } else { "MISSED" },
        if t.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", t.note)
        }
    )
}

/// The targets table.
pub fn targets(targets: &[Target]) {
    section("targets");
    for t in targets {
        println!("{}", target_line(t));
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::Table;
    use super::*;

    #[test]
    fn lines_as_printed() {
        let mut t = Table::default();
        let st = Stats::of(&[1.0, 2.0, 4.0]).unwrap();
        t.stat("s", "6.12", "suite", &st, "s", 2, Some(("< 10 s", true)));
        t.stat(
            "s",
            "6.12",
            "ratio",
            &Stats::of(&[0.5]).unwrap(),
            "",
            3,
            None,
        );
        t.note("suite", "sizes", "1 KiB".into());
        t.target("x", "< 10", f64::NAN, "s", false, "why");
        let printed: Vec<String> = t.lines.iter().filter_map(table_line).collect();
        assert_eq!(
            printed,
            [
                "  6.12           suite                              2.00 s (min 1.00, max 4.00, n=3)   [target < 10 s: met]",
                "  6.12           ratio                              0.500 ",
                "  suite          sizes                              1 KiB",
            ]
        );
        assert_eq!(
            target_line(&t.targets[0]),
            "  x                                            < 10              NaN s   MISSED (why)"
        );
        assert_eq!(t.rows().len(), 2);
    }
}
