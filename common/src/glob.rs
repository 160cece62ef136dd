//! Minimal glob matching for case ids, CPU models and command lines.

/// Whether `text` matches `pattern`, where `*` matches any run of characters (including
/// `::`) and `?` matches exactly one character; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use rstest::rstest;

    #[rstest]
    #[case("signals::*", "signals::handler_with_pkey0_disabled", true)]
    #[case("signals::*", "signal::x", false)]
    #[case("*::anon", "access::read_ad::anon", true)]
    #[case("a?c", "abc", true)]
    #[case("a?c", "ac", false)]
    #[case("*", "", true)]
    #[case("", "", true)]
    #[case("", "x", false)]
    #[case("exact", "exact", true)]
    #[case("exact", "exactly", false)]
    #[case("*init_pkru=0x5*", "console=ttyS0 init_pkru=0x55555550", true)]
    #[case("a*b*c", "aXbYbZc", true)]
    #[case("a*b*c", "aXbYbZ", false)]
    fn matches(#[case] pattern: &str, #[case] text: &str, #[case] expected: bool) {
        assert_eq!(glob_match(pattern, text), expected);
    }
}
