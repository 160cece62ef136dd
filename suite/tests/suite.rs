//! `cargo test` runs the conformance suite on the running kernel through this target.
fn main() -> std::process::ExitCode {
    pkeys_suite::main_entry()
}
