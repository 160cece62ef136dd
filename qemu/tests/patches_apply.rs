//! Every patch in `ci/patches/` applies cleanly (`patch --dry-run`) to the Debian kernel source it
//! was written against, when that tree is cached in `.cache/src` (`pkeys-qemu kernel source
//! SERIES`): `*-7.2.patch` to linux-source-7.2, the others to linux-source-6.12. Ignored, with the
//! reason, when the tree is not cached.

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::Command;

fn cached_tree(series: &str) -> Option<PathBuf> {
    let prefix = format!("linux-source-{series}_");
    pkeys_qemu::paths::newest_cached(&pkeys_qemu::paths::cache_root().join("src"), |n, p| {
        n.starts_with(&prefix) && p.join("Makefile").is_file()
    })
}

fn dry_run(tree: &Path, patch: &Path) -> Result<(), Failed> {
    let out = Command::new("patch")
        .args(["--dry-run", "--force", "-p1", "-d"])
        .arg(tree)
        .arg("-i")
        .arg(patch)
        .output()
        .map_err(|e| format!("patch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} does not apply to {}:\n{}",
            patch.display(),
            tree.display(),
            String::from_utf8_lossy(&out.stdout)
        )
        .into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let dir = pkeys_qemu::paths::workspace_root().join("ci/patches");
    let mut patches: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("ci/patches")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    assert!(
        patches.len() >= 3,
        "ci/patches holds the demo patches and the fix"
    );
    let trials = patches
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let series = if name.ends_with("-7.2.patch") {
                "7.2"
            } else {
                "6.12"
            };
            Trial::ignorable_test(format!("applies::{name}"), move || {
                let Some(tree) = cached_tree(series) else {
                    return Ok(Completion::ignored_with(format!(
                        "linux-source-{series} not cached (pkeys-qemu kernel source {series})"
                    )));
                };
                dry_run(&tree, &p)?;
                Ok(Completion::Completed)
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
