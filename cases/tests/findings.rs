//! The standalone reproducer of docs/findings/core-dump-pkru.md builds warning-free with the
//! machine's C compiler and runs: on a machine without protection keys (or not as root) it says
//! SKIP and exits 4; on a PKU machine as root it prints each child's core PKRU and a summary,
//! exiting 0 (every core right) or 1 (stale PKRU: the kernel defect).

use std::process::Command;

#[test]
fn core_dump_pkru_reproducer_builds_and_runs() {
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/findings/core-dump-pkru.c"
    );
    let dir = std::env::temp_dir().join(format!("pkeys-repro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("core-dump-pkru");
    let cc = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&bin)
        .arg(src)
        .output();
    let cc = match cc {
        Ok(o) => o,
        Err(e) => {
            // gcc is on every machine the project builds on (Rust links with it); say so loudly.
            panic!("gcc not runnable ({e}): the reproducer cannot be checked");
        }
    };
    assert!(
        cc.status.success(),
        "the reproducer does not build:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&bin).arg("3").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    match out.status.code() {
        Some(4) => assert!(text.starts_with("SKIP: "), "{text}"),
        Some(0 | 1) => {
            assert!(
                text.contains("of 3 cores carry the PKRU the child set"),
                "{text}"
            );
            println!("{text}");
        }
        other => panic!("reproducer exit {other:?}:\n{text}"),
    }
}
