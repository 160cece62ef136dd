//! Suite arguments that the host side must understand too: a guest runner sizes the suite's time
//! limit from `--explore-time` and `--iterations` before it boots the guest.

use std::time::Duration;

/// How many `explore::*` cases the suite has (a test in `pkeys-cases` keeps this true): a guest
/// runner multiplies `--explore-time` by it to size the suite's time limit.
pub const EXPLORE_CASES: u32 = 7;

/// Parse `500ms`, `90s`, `10m`, `2h` (a bare number is seconds; zero is refused).
pub fn parse_duration(v: &str) -> Option<Duration> {
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => return (n > 0).then(|| Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// How long the explorer may run under these suite arguments: `--explore-time D` times the
/// explorer cases times `--iterations` (None without `--explore-time`).
pub fn explore_budget(args: &[String]) -> Option<Duration> {
    let value = |name: &str| {
        let eq = format!("{name}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == name {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&eq).map(str::to_string)
            }
        })
    };
    let t = parse_duration(&value("--explore-time")?)?;
    let rounds = value("--iterations")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    Some(t * EXPLORE_CASES * rounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_multiplies_time_cases_and_iterations() {
        let args: Vec<String> = ["explore::", "--explore-time", "90s", "--iterations", "2"]
            .map(String::from)
            .into();
        assert_eq!(explore_budget(&args), Some(Duration::from_secs(90 * 7 * 2)));
        let eq: Vec<String> = ["--explore-time=1m"].map(String::from).into();
        assert_eq!(explore_budget(&eq), Some(Duration::from_secs(60 * 7)));
        assert_eq!(explore_budget(&args[..1]), None);
    }

    #[test]
    fn durations() {
        let d = parse_duration;
        assert_eq!(d("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(d("10m"), Some(Duration::from_secs(600)));
        assert_eq!(d("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(d("45"), Some(Duration::from_secs(45)));
        assert_eq!((d("0s"), d("10x"), d("m"), d("")), (None, None, None, None));
    }
}
