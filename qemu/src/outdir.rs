//! Output folders: a run owns the folder it writes to. A folder that holds an earlier run's
//! files is cleared of them (and says so), so a report never sits beside another run's
//! per-guest files; a folder holding anything this tool does not write is refused.
//!
//! A folder counts as an earlier run's only when it carries the marker [`MARKER`] (written by
//! every run), or, for folders written before the marker existed, when it lies under the
//! workspace's `out/`. Anywhere else, files that merely look like ours (a `.ktap` archive, a
//! `report.md`) are never deleted: the folder is refused.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The marker every output folder gets; its presence says the folder is this tool's.
pub const MARKER: &str = ".pkeys-qemu-output";

/// Whether a file name is one this tool writes into an output folder.
pub fn is_ours(name: &str) -> bool {
    const EXACT: [&str; 7] = [
        MARKER,
        "results.json",
        "report.md",
        "report.html",
        "junit.xml",
        "results.ktap",
        "bench.json",
    ];
    const SUFFIXES: [&str; 4] = [".ktap", ".console.log", ".qemu.log", ".kunit.json"];
    // Atomic writes go through hidden temporary files; one survives a SIGKILL mid-write.
    EXACT.contains(&name) || SUFFIXES.iter().any(|s| name.ends_with(s)) || name.starts_with(".tmp")
}

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The folder was new or empty.
    Fresh,
    /// An earlier run's files were removed.
    Cleared(usize),
}

/// Checks, removing nothing, that [`prepare`] will accept `dir`: call it before long work.
pub fn check(dir: &Path) -> Result<()> {
    removable(dir).map(drop)
}

/// What [`prepare`] would remove from `dir`, deepest first; an error when it must refuse.
fn removable(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut ours = Vec::new();
    collect(dir, &mut ours)?;
    owned(dir, &ours)?;
    Ok(ours)
}

/// Files that look like ours are deleted only from a marked folder (or a legacy one under the
/// workspace's `out/`).
fn owned(dir: &Path, ours: &[PathBuf]) -> Result<()> {
    let files = ours
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n != MARKER));
    if !files || dir.join(MARKER).is_file() || under_workspace_out(dir) {
        return Ok(());
    }
    bail!(
        "--out {}: the folder holds files (e.g. {}) but no {MARKER} marker, so pkeys-qemu did \
         not write them; choose an empty or new folder",
        dir.display(),
        ours[0].display()
    )
}

fn under_workspace_out(dir: &Path) -> bool {
    let out = crate::paths::workspace_root().join("out");
    match (std::fs::canonicalize(dir), std::fs::canonicalize(&out)) {
        (Ok(d), Ok(o)) => d.starts_with(&o) && d != o,
        _ => false,
    }
}

/// Makes `dir` ready for a run: creates it, or removes an earlier run's files from it (and from
/// its `baseline/` and `after/` sub-folders, a patch validation's). Refuses, naming a file, when
/// the folder holds something this tool did not write, or is not marked as an earlier run's.
pub fn prepare(dir: &Path) -> Result<Prepared> {
    let ours = removable(dir)?;
    let files = ours
        .iter()
        .filter(|p| !p.is_dir() && p.file_name().is_some_and(|n| n != MARKER))
        .count();
    for p in &ours {
        if p.is_dir() {
            std::fs::remove_dir(p)
        } else {
            std::fs::remove_file(p)
        }
        .with_context(|| format!("cannot remove {}", p.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "written by pkeys-qemu; its files here are replaced by the next run into this folder\n",
    )
    .with_context(|| format!("cannot write into {}", dir.display()))?;
    Ok(if files == 0 {
        Prepared::Fresh
    } else {
        Prepared::Cleared(files)
    })
}

/// [`prepare`], saying on stderr when it removed an earlier run's files.
pub fn prepare_announced(dir: &Path) -> Result<()> {
    if let Prepared::Cleared(n) = prepare(dir)? {
        crate::say!(
            "removed {n} file(s) of an earlier run from {}",
            dir.display()
        );
    }
    Ok(())
}

/// Collects, deepest first, what `dir` holds of ours; fails on anything else.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("--out {}: not a folder", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        if kind.is_dir() && (name == "baseline" || name == "after") {
            subdirs.push(path);
        } else if kind.is_file() && is_ours(&name) {
            out.push(path);
        } else {
            bail!(
                "--out {}: the folder holds {}, which pkeys-qemu did not write; \
                 choose another --out or remove it (pkeys-qemu replaces only its own files)",
                dir.display(),
                path.display()
            );
        }
    }
    for sub in subdirs {
        collect(&sub, out)?;
        out.push(sub);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_folder_is_fresh_and_marked() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        assert_eq!(prepare(&d).unwrap(), Prepared::Fresh);
        assert!(d.join(MARKER).is_file());
        assert_eq!(prepare(&d).unwrap(), Prepared::Fresh, "only the marker");
    }

    #[test]
    fn an_earlier_runs_files_are_cleared() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join(MARKER), "").unwrap();
        for f in [
            "results.json",
            "report.md",
            "5.10-max.ktap",
            "5.10-max.console.log",
        ] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        std::fs::create_dir(d.join("baseline")).unwrap();
        std::fs::write(d.join("baseline/6.12-max.qemu.log"), "x").unwrap();
        assert_eq!(prepare(d).unwrap(), Prepared::Cleared(5));
        let left: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [MARKER]);
    }

    #[test]
    fn files_that_only_look_like_ours_are_never_deleted() {
        // An archive of KTAP files and a report, outside the workspace, with no marker.
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("old.ktap"), "KTAP version 1\n").unwrap();
        std::fs::write(d.join("report.md"), "mine").unwrap();
        let err = prepare(d).unwrap_err().to_string();
        assert!(err.contains("no .pkeys-qemu-output marker"), "{err}");
        assert!(check(d).is_err());
        assert!(d.join("old.ktap").is_file() && d.join("report.md").is_file());
    }

    #[test]
    fn a_folder_with_other_files_is_refused_untouched() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join(MARKER), "").unwrap();
        std::fs::write(d.join("results.json"), "x").unwrap();
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        let err = prepare(d).unwrap_err().to_string();
        assert!(
            err.contains("notes.txt") && err.contains("did not write"),
            "{err}"
        );
        assert!(
            d.join("results.json").exists(),
            "nothing removed on refusal"
        );
        let f = d.join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(
            prepare(&f)
                .unwrap_err()
                .to_string()
                .contains("not a folder")
        );
    }
}
