//! Helpers shared by the integration tests: fake kernels, fake suites, a fake qemu.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Copies the fake qemu (`fixtures/fake-qemu.sh`) into `dir`, executable, and returns its path.
pub fn fake_qemu(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-qemu.sh");
    let dst = dir.join("fake-qemu");
    std::fs::copy(&src, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

/// A file with the x86 boot-protocol magic, enough to pass the kernel check.
pub fn fake_bzimage(dir: &Path) -> PathBuf {
    let mut img = vec![0u8; 0x1000];
    img[0x202..0x206].copy_from_slice(b"HdrS");
    let p = dir.join("bzImage");
    std::fs::write(&p, img).unwrap();
    p
}

/// A minimal x86-64 ELF without `PT_INTERP`, enough to pass the static-suite check.
pub fn fake_static_suite(dir: &Path) -> PathBuf {
    let mut b = vec![0u8; 64 + 56];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[18] = 62;
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&1u16.to_le_bytes());
    b[64..68].copy_from_slice(&1u32.to_le_bytes());
    let p = dir.join("pkeys-suite");
    std::fs::write(&p, b).unwrap();
    p
}

/// A temporary folder holding a fake `bzImage`, a fake static `pkeys-suite` and the fake qemu.
pub fn fake_env() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fake_bzimage(dir.path());
    fake_static_suite(dir.path());
    fake_qemu(dir.path());
    dir
}

/// The runner binary under test.
pub fn runner() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_pkeys-qemu"))
}
