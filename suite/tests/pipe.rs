//! The KTAP stream into a pipe whose reader is gone (`pkeys-suite --format ktap | head`): the
//! suite stops quietly with 141 (128 + SIGPIPE), as a shell filter does; any other write error
//! is still reported.

use std::process::{Command, Stdio};

#[test]
fn a_closed_pipe_ends_the_suite_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_pkeys-suite"))
        .args(["--format", "ktap"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn other_write_errors_are_reported() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pkeys-suite"))
        .args(["--format", "ktap"])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pkeys-suite: writing KTAP: No space left on device"),
        "{err}"
    );
}
