//! Source fetching from apt: Debian's `linux-source-<series>` through the private apt
//! configuration of [`crate::apt`], unpacked into the cache atomically.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::apt::{self, PrivateApt};

use super::tree::is_source_tree;

/// The Debian suites searched for `linux-source-<series>` by default.
pub const SOURCE_SUITES: &[&str] = &["trixie", "trixie-security"];

/// The package name of a source series (`6.12` → `linux-source-6.12`).
pub fn source_package(series: &str) -> Result<String> {
    let ok = !series.is_empty()
        && series.split('.').count() == 2
        && series
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !ok {
        bail!("kernel series {series:?}: expected MAJOR.MINOR, e.g. 6.12");
    }
    Ok(format!("linux-source-{series}"))
}

/// The folder a fetched source lands in: `<dir>/linux-source-<series>_<version>`.
pub fn source_dir_name(package: &str, version: &str) -> String {
    format!("{package}_{}", version.replace(':', "%3a"))
}

/// Fetches Debian's `linux-source-<series>` (newest in `suites`) and unpacks its tarball to
/// `<out>/linux-source-<series>_<version>` (atomically: a temporary folder renamed into
/// place). Reuses an earlier unpacked copy. `apt_root` is the private apt state, `all_suites`
/// the suites its `sources.list` must list (a superset of `suites`).
pub fn fetch_source(
    series: &str,
    suites: &[String],
    all_suites: &[String],
    apt_root: &Path,
    out: &Path,
    refresh: bool,
    say: &dyn Fn(&str),
) -> Result<PathBuf> {
    let package = source_package(series)?;
    let apt = PrivateApt::new(apt_root, all_suites, apt::machine_mirrors()?)?;
    let best = {
        let _lock = apt.lock()?;
        if refresh || apt.needs_update(apt::LISTS_MAX_AGE) {
            say(&format!(
                "updating the private apt lists for {}",
                all_suites.join(", ")
            ));
            apt.update()?;
        }
        let candidates = apt.candidates(&package)?;
        apt::newest(&candidates, suites, &package)
            .cloned()
            .with_context(|| format!("no {package} in suite(s) {}", suites.join(", ")))?
    };
    let dest = out.join(source_dir_name(&package, &best.version));
    if is_source_tree(&dest) {
        say(&format!(
            "{package} {} already unpacked in {}",
            best.version,
            dest.display()
        ));
        return Ok(dest);
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(out)
        .with_context(|| format!("cannot create a temporary folder in {}", out.display()))?;
    say(&format!(
        "fetching {package} {} ({})",
        best.version, best.suite
    ));
    let deb = apt.download(&best, tmp.path())?;
    let tarball = format!("./usr/src/{package}.tar.xz");
    say(&format!("unpacking {tarball} from {}", deb.display()));
    let unpack = tmp.path().join("x");
    std::fs::create_dir(&unpack)?;
    // dpkg-deb --fsys-tarfile DEB | tar -xO TARBALL | tar -xJ -C UNPACK
    let script =
        "set -o pipefail; dpkg-deb --fsys-tarfile \"$1\" | tar -xO \"$2\" | tar -xJ -C \"$3\"";
    let status = Command::new("bash")
        .args(["-ec", script, "bash"])
        .arg(&deb)
        .arg(&tarball)
        .arg(&unpack)
        .status()
        .context("cannot run dpkg-deb/tar")?;
    if !status.success() {
        bail!(
            "unpacking {tarball} from {} failed ({status}): is xz-utils installed?",
            deb.display()
        );
    }
    let inner = unpack.join(&package);
    if !is_source_tree(&inner) {
        bail!("{} did not hold a kernel tree at {package}/", deb.display());
    }
    std::fs::rename(&inner, &dest)
        .with_context(|| format!("cannot move the tree into place at {}", dest.display()))?;
    Ok(dest)
}
