//! Debian package version ordering (`dpkg --compare-versions`), to pick the newest kernel.
//!
//! # References
//! deb-version(7): `[epoch:]upstream_version[-debian_revision]`; `~` sorts before everything,
//! even the end of the string; letters sort before other characters.

use std::cmp::Ordering;

/// Compares two Debian versions as dpkg does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

fn split(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((u, r)) => (epoch, u, r),
        None => (epoch, rest, ""),
    }
}

/// dpkg's weight of a character in the non-digit parts.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix, character by character.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let ord = order(ca).cmp(&order(cb));
            if ord != Ordering::Equal {
                return ord;
            }
            a = &a[1..];
            b = &b[1..];
        }
        // Digit run, numerically.
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = trim_zeros(&a[..da]);
        let nb = trim_zeros(&b[..db]);
        let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if ord != Ordering::Equal {
            return ord;
        }
        a = &a[da..];
        b = &b[db..];
    }
    Ordering::Equal
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("6.12.117-1", "6.12.96-1", Ordering::Greater)]
    #[case("7.3~rc7-1~exp1", "7.3-1", Ordering::Less)]
    #[case("7.3~rc7-1~exp1", "7.3~rc6-1~exp1", Ordering::Greater)]
    #[case("6.1.180-1~deb11u1", "6.1.180-1", Ordering::Less)]
    #[case("6.12.95-1~bpo12+1", "6.12.95-1", Ordering::Less)]
    #[case("1:1.0", "2.0", Ordering::Greater)]
    #[case("1.0", "1.0", Ordering::Equal)]
    #[case("1.00", "1.0", Ordering::Equal)]
    #[case("1.0a", "1.0+", Ordering::Less)]
    #[case("1.0", "1.0a", Ordering::Less)]
    #[case("1.0~", "1.0", Ordering::Less)]
    #[case("5.10.262-1", "5.10.244-1", Ordering::Greater)]
    fn versions(#[case] a: &str, #[case] b: &str, #[case] ord: Ordering) {
        assert_eq!(compare(a, b), ord, "{a} vs {b}");
        assert_eq!(compare(b, a), ord.reverse(), "{b} vs {a}");
    }
}
