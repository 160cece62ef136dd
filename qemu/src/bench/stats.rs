//! Summaries of repeated measurements: median, min, max.

use serde::Serialize;

/// Median, min and max of a set of samples (seconds, ratios, ...), with the samples.
///
/// (Fields in alphabetical order: the order `bench.json` has always had them in.)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The largest sample.
    pub max: f64,
    /// The median (the mean of the two middle samples for an even count).
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// How many samples.
    pub n: usize,
    /// The samples, in the order they were taken.
    pub samples: Vec<f64>,
}

impl Stats {
    /// Summarises `samples`; `None` when there are none (NaNs are dropped).
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let kept: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        if kept.is_empty() {
            return None;
        }
        let mut sorted = kept.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            n,
            samples: kept,
        })
    }

    /// `median (min–max)` with `digits` decimals and a unit suffix.
    pub fn show(&self, digits: usize, unit: &str) -> String {
        if self.n == 1 {
            return format!("{:.digits$}{unit}", self.median);
        }
        format!(
            "{:.digits$}{unit} (min {:.digits$}, max {:.digits$}, n={})",
            self.median, self.min, self.max, self.n
        )
    }
}

impl Stats {
    /// The same numbers times `k` (unit change).
    pub fn scaled(&self, k: f64) -> Stats {
        Stats {
            median: self.median * k,
            min: self.min * k,
            max: self.max * k,
            n: self.n,
            samples: self.samples.iter().map(|v| v * k).collect(),
        }
    }
}

/// `a / b`, `None` when `b` is zero or either is not finite.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// The runner's overhead over what the guest must do anyway:
/// `(total - bare - suite) / (bare + suite)`, where `total` is the runner's wall time for one
/// guest, `bare` the same kernel's boot-to-init time with a trivial init, and `suite` the
/// suite's own time in the guest.
pub fn overhead(total: f64, bare: f64, suite: f64) -> Option<f64> {
    ratio(total - bare - suite, bare + suite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(&[3.0], 3.0, 3.0, 3.0)]
    #[case(&[5.0, 1.0, 3.0], 3.0, 1.0, 5.0)]
    #[case(&[4.0, 1.0, 2.0, 3.0], 2.5, 1.0, 4.0)]
    #[case(&[2.0, f64::NAN, 1.0], 1.5, 1.0, 2.0)]
    fn summaries(#[case] s: &[f64], #[case] median: f64, #[case] min: f64, #[case] max: f64) {
        let st = Stats::of(s).unwrap();
        assert_eq!((st.median, st.min, st.max), (median, min, max));
        assert_eq!(st.n, s.iter().filter(|v| !v.is_nan()).count());
    }

    #[test]
    fn empty_and_show() {
        assert!(Stats::of(&[]).is_none());
        assert!(Stats::of(&[f64::NAN]).is_none());
        assert_eq!(Stats::of(&[1.25]).unwrap().show(1, " s"), "1.2 s");
        assert_eq!(
            Stats::of(&[1.0, 2.0, 4.0]).unwrap().show(2, " s"),
            "2.00 s (min 1.00, max 4.00, n=3)"
        );
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::INFINITY, 1.0), None);
        // 10 s total, 4 s bare boot, 4 s suite: 2 s of overhead over 8 s of work.
        assert_eq!(overhead(10.0, 4.0, 4.0), Some(0.25));
        assert_eq!(overhead(8.0, 4.0, 4.0), Some(0.0));
    }
}
