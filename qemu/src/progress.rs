//! Status lines on stderr, `pkeys-qemu: <message>`: one format for every command and module.
//! (While a live status is drawn on a terminal, [`crate::live`] and [`crate::cleanup`] route
//! their lines around it; everything else goes straight to stderr.)

/// The program name every line starts with.
pub const PREFIX: &str = "pkeys-qemu";

/// The line [`say`] prints for `msg`.
pub fn line(msg: &str) -> String {
    format!("{PREFIX}: {msg}")
}

/// Prints `pkeys-qemu: <msg>` on stderr.
pub fn say(msg: &str) {
    eprintln!("{}", line(msg));
}

/// [`say`] with `format!` arguments.
#[macro_export]
macro_rules! say {
    ($($arg:tt)+) => {
        $crate::progress::say(&format!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_carry_the_program_name() {
        assert_eq!(
            super::line("kernel 6.12: ok"),
            "pkeys-qemu: kernel 6.12: ok"
        );
    }
}
