//! Kernel version numbers and ranges such as `">=5.10, <6.2"`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A kernel version: its leading numeric components, e.g. `6.12.43` from
/// `6.12.43+deb13-cloud-amd64` or from the Debian package version `6.12.43-1`.
///
/// Only the numbers count: `7.3-rc7` reads as `7.3`, and missing components compare as 0
/// (`6.12` == `6.12.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelVersion(pub Vec<u64>);

impl KernelVersion {
    /// Extracts the leading `N(.N)*` of `text` (after optional whitespace); `None` if
    /// `text` does not start with a number.
    pub fn extract(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut parts = Vec::new();
        for piece in text.split('.') {
            let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                break;
            }
            parts.push(digits.parse().ok()?);
            if digits.len() != piece.len() {
                break;
            }
        }
        (!parts.is_empty()).then_some(KernelVersion(parts))
    }

    fn component(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }

    /// Whether `self` starts with all of `prefix`'s components (`6.1.153` has prefix `6.1`).
    pub fn has_prefix(&self, prefix: &KernelVersion) -> bool {
        (0..prefix.0.len()).all(|i| self.component(i) == prefix.component(i))
    }
}

impl Ord for KernelVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| self.component(i).cmp(&other.component(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for KernelVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// A comparison operator in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    /// `=6.1` or a bare `6.1`: same leading components.
    Prefix,
}

/// A range of kernel versions: comparators joined by commas, all of which must hold,
/// e.g. `"<6.12"`, `">=5.10, <6.2"`, `"6.1"` (any 6.1.x), or `"*"` (any kernel, even one
/// whose version is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRange {
    text: String,
    comparators: Vec<(Op, KernelVersion)>,
}

/// Error for a malformed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid kernel range `{text}`: {why} (examples: \"<6.12\", \">=5.10, <6.2\", \"6.1\", \"*\")"
)]
pub struct BadRange {
    text: String,
    why: String,
}

impl FromStr for KernelRange {
    type Err = BadRange;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| BadRange {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let mut comparators = Vec::new();
        if text.trim() != "*" {
            for part in text.split(',') {
                let part = part.trim();
                let (op, rest) = [
                    ("<=", Op::Le),
                    (">=", Op::Ge),
                    ("==", Op::Prefix),
                    ("<", Op::Lt),
                    (">", Op::Gt),
                    ("=", Op::Prefix),
                ]
                .into_iter()
                .find_map(|(s, op)| part.strip_prefix(s).map(|r| (op, r.trim())))
                .unwrap_or((Op::Prefix, part));
                if rest.is_empty() {
                    return Err(bad("empty comparator"));
                }
                let version = KernelVersion::extract(rest)
                    .filter(|v| v.to_string() == rest)
                    .ok_or_else(|| bad(&format!("`{rest}` is not a version like 6.12 or 6.1.2")))?;
                comparators.push((op, version));
            }
        }
        Ok(KernelRange {
            text: text.trim().to_owned(),
            comparators,
        })
    }
}

impl KernelRange {
    /// The range that matches every kernel.
    pub fn any() -> Self {
        KernelRange {
            text: "*".to_owned(),
            comparators: Vec::new(),
        }
    }

    /// Whether `version` lies in the range. An unknown version (`None`) only matches `"*"`.
    pub fn contains(&self, version: Option<&KernelVersion>) -> bool {
        if self.comparators.is_empty() {
            return true;
        }
        let Some(v) = version else { return false };
        self.comparators.iter().all(|(op, bound)| match op {
            Op::Lt => v < bound,
            Op::Le => v <= bound,
            Op::Gt => v > bound,
            Op::Ge => v >= bound,
            Op::Prefix => v.has_prefix(bound),
        })
    }
}

impl fmt::Display for KernelRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("6.12.43+deb13-cloud-amd64", Some("6.12.43"))]
    #[case("6.1.153-1", Some("6.1.153"))]
    #[case("7.3~rc7-1~exp1", Some("7.3"))]
    #[case("5.10.0-35-cloud-amd64", Some("5.10.0"))]
    #[case("linux", None)]
    fn extract(#[case] text: &str, #[case] expected: Option<&str>) {
        assert_eq!(
            KernelVersion::extract(text)
                .map(|v| v.to_string())
                .as_deref(),
            expected
        );
    }

    #[rstest]
    #[case("<6.12", "6.1.153", true)]
    #[case("<6.12", "6.12.0", false)]
    #[case("<6.12", "6.12.43", false)]
    #[case(">=5.10, <6.2", "5.10.0", true)]
    #[case(">=5.10, <6.2", "6.2", false)]
    #[case(">=5.10, <6.2", "5.4.1", false)]
    #[case("6.1", "6.1.153", true)]
    #[case("6.1", "6.12.1", false)]
    #[case("=6.12.5", "6.12.5", true)]
    #[case("<=6.12.4", "6.12.5", false)]
    #[case(">7.2", "7.3", true)]
    #[case("*", "anything", true)]
    fn ranges(#[case] range: &str, #[case] version: &str, #[case] expected: bool) {
        let r: KernelRange = range.parse().unwrap();
        assert_eq!(
            r.contains(KernelVersion::extract(version).as_ref()),
            expected
        );
    }

    #[rstest]
    #[case("<")]
    #[case("<six")]
    #[case(">=5.10,")]
    #[case("~6.1")]
    fn bad_ranges(#[case] range: &str) {
        assert!(range.parse::<KernelRange>().is_err());
    }

    #[test]
    fn unknown_version_only_matches_any() {
        assert!(KernelRange::any().contains(None));
        assert!(!"<6.12".parse::<KernelRange>().unwrap().contains(None));
    }
}
