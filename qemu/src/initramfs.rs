//! The guest's initramfs: two concatenated gzip'd cpio newc archives.
//!
//! 1. The base (cached under `<cache>/initramfs/`, keyed by the suite binary's content hash):
//!    folders `dev proc sys tmp`, the nodes `dev/console` and `dev/null` (without a console node
//!    the kernel starts init with fds 0-2 closed, and Rust's runtime aborts when it cannot reopen
//!    them on `/dev/null`), and `/init` = the static `pkeys-suite` (mode 0755).
//! 2. Per guest: `/pkeys/args`, the suite arguments, one per line.
//!
//! The kernel unpacks concatenated archives in order, each compressed on its own.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::cpio;

/// Bumped when the base layout changes, so old cached images are not reused.
const LAYOUT_VERSION: u32 = 1;

/// FNV-1a 64: a stable content hash (the same on every Rust version) for the cache key.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// gzip at the default level (the initramfs, and the C selftests' archive for benchmarks).
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// The uncompressed base archive around `suite` (the binary's bytes).
pub fn base_archive(suite: &[u8]) -> Result<Vec<u8>> {
    let mut w = cpio::Writer::new(Vec::with_capacity(suite.len() + 4096), 1);
    for dir in ["dev", "proc", "sys", "tmp"] {
        w.dir(dir, 0o755)?;
    }
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.char_dev("dev/null", 0o666, 1, 3)?;
    w.file("init", 0o755, suite)?;
    Ok(w.finish()?)
}

/// The uncompressed per-guest archive: `/pkeys/args`.
pub fn args_archive(args: &[String]) -> Result<Vec<u8>> {
    if let Some(bad) = args
        .iter()
        .find(|a| a.contains('\n') || a.contains('\0') || a.is_empty())
    {
        bail!("suite argument {bad:?}: empty, or holds a newline or NUL byte");
    }
    let mut text = args.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let mut w = cpio::Writer::new(Vec::new(), 1000);
    w.dir("pkeys", 0o755)?;
    w.file("pkeys/args", 0o644, text.as_bytes())?;
    Ok(w.finish()?)
}

/// The gzip'd base image for a suite binary, from the cache when present (written there
/// atomically otherwise). Returns the image's bytes.
pub fn base_image(suite: &Path, cache_root: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(suite).with_context(|| format!("cannot read {}", suite.display()))?;
    let key = format!(
        "suite-v{LAYOUT_VERSION}-{}-{:016x}.cpio.gz",
        bytes.len(),
        fnv1a(&bytes)
    );
    let path = cache_root.join("initramfs").join(key);
    if let Ok(cached) = std::fs::read(&path)
        && !cached.is_empty()
    {
        return Ok(cached);
    }
    let image = gzip(&base_archive(&bytes)?)?;
    crate::paths::write_atomic(&path, &image)
        .with_context(|| format!("cannot write {}", path.display()))?;
    prune(&cache_root.join("initramfs"), KEEP_CACHED);
    Ok(image)
}

/// Cached base images kept (one per recent suite binary); older ones are deleted.
const KEEP_CACHED: usize = 4;

/// Delete all but the `keep` most recently modified `suite-*.cpio.gz` files in `dir`.
fn prune(dir: &Path, keep: usize) {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("suite-") && n.ends_with(".cpio.gz")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, old) in files.into_iter().skip(keep) {
        let _ = std::fs::remove_file(old);
    }
}

/// Writes the full initramfs (base image + args member) to `path`.
pub fn write(path: &Path, base_image: &[u8], args: &[String]) -> Result<PathBuf> {
    let mut image = base_image.to_vec();
    image.extend(gzip(&args_archive(args)?)?);
    std::fs::write(path, image).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn prune_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..6 {
            let p = d.path().join(format!("suite-v1-{i}.cpio.gz"));
            std::fs::write(&p, b"x").unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(d.path().join("other.txt"), b"y").unwrap();
        prune(d.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["other.txt", "suite-v1-4.cpio.gz", "suite-v1-5.cpio.gz"]
        );
    }

    fn gunzip_all(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn image_layout_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let suite = dir.path().join("pkeys-suite");
        std::fs::write(&suite, b"\x7fELF fake suite").unwrap();
        let base = base_image(&suite, dir.path()).unwrap();
        let cached: Vec<_> = std::fs::read_dir(dir.path().join("initramfs"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(cached.len(), 1);
        assert_eq!(
            base_image(&suite, dir.path()).unwrap(),
            base,
            "second call reads the cache"
        );

        let out = dir.path().join("initrd.img");
        write(&out, &base, &["--exact".into(), "a::b".into()]).unwrap();
        let entries = cpio::read(&gunzip_all(&std::fs::read(&out).unwrap())).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "proc",
                "sys",
                "tmp",
                "dev/console",
                "dev/null",
                "init",
                "pkeys",
                "pkeys/args"
            ]
        );
        let init = &entries[6];
        assert_eq!(init.mode, cpio::S_IFREG | 0o755);
        assert_eq!(init.data, b"\x7fELF fake suite");
        assert_eq!(entries[4].rdev, (5, 1));
        assert_eq!(entries[8].data, b"--exact\na::b\n");
    }

    #[test]
    fn empty_and_bad_args() {
        let e = cpio::read(&args_archive(&[]).unwrap()).unwrap();
        assert_eq!(e[1].data, b"");
        assert!(args_archive(&["a\nb".into()]).is_err());
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
