//! `pkeys-suite`: the pkeys conformance suite (see the crate docs for the options).
fn main() -> std::process::ExitCode {
    pkeys_suite::main_entry()
}
