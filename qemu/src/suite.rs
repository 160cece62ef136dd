//! The guest payload: the statically linked `pkeys-suite`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use pkeys_common::elf::{self, Elf64};

/// The target the static suite is built for. Naming it explicitly keeps `+crt-static` away from
/// proc-macros and build scripts (they are built for the host without `--target` flags).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The environment variable that carries the static-linking flag to the target only.
pub const RUSTFLAGS_ENV: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS";

/// What an ELF file's program headers say about linking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// No `PT_INTERP`: runs without a dynamic loader (static or static-pie).
    Static,
    /// Needs a dynamic loader.
    Dynamic,
}

/// Reads an x86-64 ELF64 little-endian file's program headers and tells whether a `PT_INTERP`
/// is present.
pub fn elf_linkage(bytes: &[u8]) -> Result<Linkage> {
    let elf = Elf64::parse(bytes)?;
    let machine = elf.machine();
    if machine != elf::EM_X86_64 {
        bail!("not an x86-64 ELF file (e_machine {machine})");
    }
    Ok(if elf.has_interp()? {
        Linkage::Dynamic
    } else {
        Linkage::Static
    })
}

/// Checks that `path` is a static x86-64 executable fit to be `/init`.
pub fn check_static(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("suite binary {}", path.display()))?;
    match elf_linkage(&bytes).with_context(|| format!("suite binary {}", path.display()))? {
        Linkage::Static => Ok(()),
        Linkage::Dynamic => bail!(
            "suite binary {} is dynamically linked (it has PT_INTERP); build it with {RUSTFLAGS_ENV}=\"-C target-feature=+crt-static\" --target {TARGET} (a global RUSTFLAGS overrides that)",
            path.display()
        ),
    }
}

/// Builds the static suite with cargo (release, explicit target) in `workspace` and returns its
/// path, `target/x86_64-unknown-linux-gnu/release/pkeys-suite` (or under `$CARGO_TARGET_DIR`).
pub fn build(workspace: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "pkeys-qemu: building the static pkeys-suite (cargo build --release --target {TARGET})"
    );
    let status = Command::new(&cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "pkeys-suite",
            "--bin",
            "pkeys-suite",
            "--target",
            TARGET,
        ])
        .env(RUSTFLAGS_ENV, "-C target-feature=+crt-static")
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("building the static pkeys-suite failed ({status})");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| {
            if d.is_absolute() {
                d
            } else {
                workspace.join(d)
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    let path = target_dir.join(TARGET).join("release/pkeys-suite");
    check_static(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(with_interp: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 2 * 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18] = 62;
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        b[64..68].copy_from_slice(&6u32.to_le_bytes()); // PT_PHDR
        let t: u32 = if with_interp { elf::PT_INTERP } else { 1 };
        b[120..124].copy_from_slice(&t.to_le_bytes());
        b
    }

    #[test]
    fn linkage() {
        assert_eq!(elf_linkage(&elf(false)).unwrap(), Linkage::Static);
        assert_eq!(elf_linkage(&elf(true)).unwrap(), Linkage::Dynamic);
        assert!(elf_linkage(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn this_test_binary_is_dynamic_or_static() {
        // The test binary itself is a real ELF: the parser must accept it.
        let exe = std::env::current_exe().unwrap();
        elf_linkage(&std::fs::read(exe).unwrap()).unwrap();
    }
}
