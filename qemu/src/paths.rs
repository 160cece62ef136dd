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

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A crash or interruption leaves either the old file or the new one, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Copies `from` to `to` atomically (see [`write_atomic`]).
pub fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    std::fs::copy(from, tmp.path())?;
    tmp.as_file().sync_all()?;
    tmp.persist(to).map_err(|e| e.error)?;
    Ok(())
}

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
