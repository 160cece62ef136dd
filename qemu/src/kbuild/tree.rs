//! Kernel source-tree detection: a source tree, an in-tree build and an `O=` build folder told
//! apart ([`detect_tree`]), and what a tree's name and image are.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::make::IMAGE;

/// What a directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    /// A kernel source tree (`Makefile`, `Kconfig`, `arch/x86/Kconfig`,
    /// `scripts/kconfig/merge_config.sh`); builds in it are in-tree unless `O=` is given.
    Source(PathBuf),
    /// An `O=` build folder: its generated `Makefile` names the source tree.
    Build {
        /// The build folder.
        objtree: PathBuf,
        /// The source tree it was configured from.
        source: PathBuf,
    },
}

impl Tree {
    /// The folder `make` writes `.config` and `arch/x86/boot/bzImage` into (without `--out`).
    pub fn objtree(&self) -> &Path {
        match self {
            Tree::Source(p) => p,
            Tree::Build { objtree, .. } => objtree,
        }
    }

    /// The source tree.
    pub fn source(&self) -> &Path {
        match self {
            Tree::Source(p) => p,
            Tree::Build { source, .. } => source,
        }
    }
}

/// Whether `dir` looks like a kernel source tree.
pub fn is_source_tree(dir: &Path) -> bool {
    [
        "Makefile",
        "Kconfig",
        "arch/x86/Kconfig",
        "scripts/kconfig/merge_config.sh",
    ]
    .iter()
    .all(|f| dir.join(f).is_file())
}

/// The source tree an `O=` build folder's generated Makefile includes
/// (`include /path/to/linux/Makefile`), or its `source` symlink.
fn build_folder_source(dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dir.join("Makefile")).ok()?;
    if !text.contains("Automatically generated") {
        return None;
    }
    let from_make = text.lines().find_map(|l| {
        let path = l.trim().strip_prefix("include ")?.trim();
        let path = Path::new(path).parent()?;
        is_source_tree(path).then(|| path.to_path_buf())
    });
    from_make.or_else(|| {
        let link = std::fs::canonicalize(dir.join("source")).ok()?;
        is_source_tree(&link).then_some(link)
    })
}

/// Tells a kernel source tree from an `O=` build folder; errors name what is wrong.
pub fn detect_tree(dir: &Path) -> Result<Tree> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| anyhow::anyhow!("kernel tree {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        bail!("kernel tree {}: not a directory", dir.display());
    }
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if is_source_tree(&dir) {
        return Ok(Tree::Source(dir));
    }
    if let Some(source) = build_folder_source(&dir) {
        return Ok(Tree::Build {
            objtree: dir,
            source,
        });
    }
    bail!(
        "{} is not a kernel source tree (no Makefile, Kconfig, arch/x86/Kconfig and scripts/kconfig/merge_config.sh) nor a kernel build folder (make O=...); fetch one with `pkeys-qemu kernel source 6.12`",
        dir.display()
    )
}

/// The image a tree's build folder holds (whether or not it exists).
pub fn tree_image(tree: &Tree) -> PathBuf {
    tree.objtree().join(IMAGE)
}

/// A short name for a tree (its folder name, as a file-name-safe slug).
pub fn tree_short(tree: &Tree) -> String {
    let dir = tree.objtree();
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(crate::config::cpu_slug)
        .filter(|s| !s.is_empty());
    name.unwrap_or_else(|| "kernel".to_owned())
}
