//! Reading the guest console: cleaning lines and spotting kernel panics.

/// Cleans one raw line: drops NUL bytes, carriage returns, ANSI escape sequences and
/// other control characters (tabs become spaces), and trailing whitespace.
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte (0x40..=0x7e); other escapes: drop ESC + 1 char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Strips a leading kernel timestamp such as `[    2.345678] ` from a cleaned line.
pub fn strip_timestamp(line: &str) -> &str {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix('[')
        && let Some(end) = rest.find(']')
        && !rest[..end].is_empty()
        && rest[..end]
            .trim()
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
    {
        return rest[end + 1..].trim_start();
    }
    trimmed
}

/// Line prefixes (after the timestamp) that mean the kernel crashed.
const PANIC_PREFIXES: &[&str] = &[
    "Kernel panic",
    "Oops:",
    "Oops ",
    "BUG:",
    "kernel BUG at",
    "general protection fault",
    "Unable to handle kernel",
    "stack segment:",
    "double fault:",
    "invalid opcode:",
    "int3:",
    "divide error:",
    "watchdog: BUG:",
    "INFO: rcu_sched self-detected stall",
    "INFO: rcu_preempt self-detected stall",
];

/// Finds the first sign of a kernel crash in console text: `Kernel panic`, an `Oops`,
/// `BUG:`, `kernel BUG at`, `general protection fault`, an exception oops header such as
/// `int3: 0000 [#1] SMP`, a soft lockup or an RCU stall. Returns that line, cleaned and
/// without its timestamp.
///
/// Only lines that *start* (after the timestamp) with such a marker count, so a user-space
/// fault report (`traps: foo[42] general protection fault ...`) or a test's diagnostic that
/// mentions the words does not.
pub fn detect_panic(text: &str) -> Option<String> {
    text.split('\n').find_map(|raw| {
        let cleaned = clean_line(raw);
        let line = strip_timestamp(&cleaned);
        let hit = PANIC_PREFIXES.iter().any(|p| line.starts_with(p)) || is_oops_header(line);
        hit.then(|| line.to_owned())
    })
}

/// An oops header: `<what>: <hex error code> [#<n>]`, e.g. `int3: 0000 [#1] PREEMPT SMP NOPTI`.
fn is_oops_header(line: &str) -> bool {
    let Some(pos) = line.find(" [#") else {
        return false;
    };
    let after = &line[pos + 3..];
    let digits = after.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 || !after[digits..].starts_with(']') {
        return false;
    }
    let before = &line[..pos];
    before
        .rsplit_once(": ")
        .is_some_and(|(_, code)| !code.is_empty() && code.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "[    3.101] Kernel panic - not syncing: Attempted to kill init!",
        Some("Kernel panic - not syncing: Attempted to kill init!")
    )]
    #[case(
        "[    1.0] BUG: kernel NULL pointer dereference, address: 0000000000000000",
        Some("BUG: kernel NULL pointer dereference, address: 0000000000000000")
    )]
    #[case(
        "[    0.90] int3: 0000 [#1] PREEMPT SMP NOPTI",
        Some("int3: 0000 [#1] PREEMPT SMP NOPTI")
    )]
    #[case(
        "Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP",
        Some(
            "Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP"
        )
    )]
    #[case(
        "[    5.2] traps: pkeys-suite[77] general protection fault ip:4011 sp:7ff error:0",
        None
    )]
    #[case("# signals::x: FAIL: BUG: expected 1 got 2", None)]
    #[case("[    0.000000] Linux version 6.12.43+deb13-cloud-amd64", None)]
    fn panics(#[case] line: &str, #[case] expected: Option<&str>) {
        assert_eq!(detect_panic(line).as_deref(), expected);
    }

    #[test]
    fn clean_line_strips_noise() {
        assert_eq!(clean_line("\u{1b}[0mok 1 a\r\0  "), "ok 1 a");
        assert_eq!(clean_line("a\tb"), "a b");
    }
}
