//! Where things live: the workspace root, the cache, the default config and output folders.

use std::path::{Path, PathBuf};

/// The environment variable that overrides the cache root.
pub const CACHE_ENV: &str = "PKEYS_CACHE";

/// The workspace root: the nearest ancestor of the current directory that holds
/// `ci/kernels.toml` next to a `Cargo.toml`; else the workspace this binary was built from.
pub fn workspace_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if dir.join("Cargo.toml").is_file() && dir.join("ci/kernels.toml").is_file() {
                return dir.to_path_buf();
            }
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cache root: `$PKEYS_CACHE`, else `<workspace>/.cache`. Kernels go to `kernels/`, the
/// private apt state to `apt/`, initramfs images to `initramfs/`.
pub fn cache_root() -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".cache"),
    }
}

/// The default matrix file, `<workspace>/ci/kernels.toml`.
pub fn default_config() -> PathBuf {
    workspace_root().join("ci/kernels.toml")
}

/// The default expectations file, `<workspace>/ci/expectations.toml`.
pub fn default_expectations() -> PathBuf {
    workspace_root().join("ci/expectations.toml")
}

/// Atomic writes and copies (a crash leaves the old file or the new one, never half of one).
pub use pkeys_common::fsutil::{copy_atomic, write_atomic};

/// The entry of `dir` that `pick(file name, path)` accepts and whose name sorts last (the newest
/// version of a cached kernel image or source tree), if any.
pub fn newest_cached(dir: &Path, pick: impl Fn(&str, &Path) -> bool) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| pick(n, p))
        })
        .collect();
    found.sort();
    found.pop()
}
