//! Kernel specs: a bzImage/vmlinuz path, or `debian:<name>` resolved through `ci/kernels.toml`
//! and fetched into the cache.
//!
//! Cache layout (`<cache>/kernels/`): `<package>_<version>.vmlinuz` (written atomically: a
//! temporary file renamed into place, so an interrupted fetch never looks like a good kernel)
//! and `<name>.json`, the last resolution of each `debian:<name>` (used when the mirror cannot
//! be reached).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use pkeys_report::KernelInfo;
use serde::{Deserialize, Serialize};

use crate::apt::{self, Candidate, PrivateApt};
use crate::config::{Config, KernelSource};

/// Offset of the x86 boot protocol magic `HdrS` in a bzImage.
pub const HDRS_OFFSET: u64 = 0x202;
/// Offset of the `kernel_version` pointer (relative to 0x200) in the setup header.
const KERNEL_VERSION_PTR: usize = 0x20e;

/// Checks that `path` exists, is a file and carries the x86 boot protocol magic.
pub fn check_image(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("kernel image {}: {e}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "not a kernel image: {} (not a regular file)",
            path.display()
        );
    }
    let mut head = [0u8; HDRS_OFFSET as usize + 4];
    let mut file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("kernel image {}: {e}", path.display()))?;
    let n = read_up_to(&mut file, &mut head)?;
    let magic = HDRS_OFFSET as usize..HDRS_OFFSET as usize + 4;
    if n < head.len() || head[magic] != *b"HdrS" {
        bail!(
            "not a kernel image: {} (no x86 boot-protocol magic \"HdrS\" at offset {HDRS_OFFSET:#x})",
            path.display()
        );
    }
    Ok(())
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The kernel release stored in a bzImage's setup header (`kernel_version`), e.g.
/// `6.12.43+deb13-cloud-amd64`; `None` when absent.
pub fn image_release(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut head = vec![0u8; 0x8000];
    let n = read_up_to(&mut file, &mut head).ok()?;
    head.truncate(n);
    let ptr = u16::from_le_bytes([
        *head.get(KERNEL_VERSION_PTR)?,
        *head.get(KERNEL_VERSION_PTR + 1)?,
    ]);
    if ptr == 0 {
        return None;
    }
    let start = usize::from(ptr) + 0x200;
    let bytes = head.get(start..)?;
    let end = bytes.iter().position(|&b| b == 0)?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKernel {
    /// The image to pass to `-kernel`.
    pub path: PathBuf,
    /// What to record in the results.
    pub info: KernelInfo,
    /// A short name for guest names (`6.12`, or the image's file stem).
    pub short: String,
}

/// The record of one `debian:<name>` resolution, kept in `<cache>/kernels/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CachedResolution {
    package: String,
    version: String,
    suite: String,
    file: String,
    release: Option<String>,
    /// The entry's package glob and suites when it was resolved (a changed entry is
    /// resolved again).
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    suites: Vec<String>,
}

/// What a `--kernel` argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// `debian:<name>`: an entry of `kernels.toml`.
    Debian(String),
    /// A bzImage/vmlinuz path.
    Path(PathBuf),
}

impl KernelSpec {
    /// Parses `debian:<name>` or a path.
    pub fn parse(spec: &str) -> KernelSpec {
        match spec.strip_prefix("debian:") {
            Some(name) => KernelSpec::Debian(name.to_owned()),
            None => KernelSpec::Path(PathBuf::from(spec)),
        }
    }
}

/// Resolves kernel specs, fetching Debian kernels once per process.
#[derive(Debug)]
pub struct Resolver {
    cache: PathBuf,
    refresh: bool,
    apt: Option<PrivateApt>,
    update_error: Option<String>,
    updated: bool,
    quiet: bool,
}

/// The file name dpkg would give `<name>_<version>` (`:` of an epoch escaped).
fn cache_file_name(c: &Candidate) -> String {
    format!("{}_{}.vmlinuz", c.name, c.version.replace(':', "%3a"))
}

/// The kernel release a package's image path implies: `boot/vmlinuz-<rel>` or
/// `usr/lib/modules/<rel>/vmlinuz`.
fn release_from_path(rel: &Path) -> Option<String> {
    let name = rel.file_name()?.to_str()?;
    if let Some(r) = name.strip_prefix("vmlinuz-") {
        return Some(r.to_owned());
    }
    if name == "vmlinuz" {
        return rel.parent()?.file_name()?.to_str().map(str::to_owned);
    }
    None
}

/// Finds the kernel image in an extracted package tree.
fn find_vmlinuz(root: &Path) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root.join("boot")) {
        candidates.extend(dir.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz"))
        }));
    }
    for modules in ["usr/lib/modules", "lib/modules"] {
        if let Ok(dir) = std::fs::read_dir(root.join(modules)) {
            candidates.extend(dir.flatten().map(|e| e.path().join("vmlinuz")));
        }
    }
    candidates.sort();
    candidates.into_iter().find(|p| check_image(p).is_ok())
}

impl Resolver {
    /// A resolver over the cache root (kernels in `<cache>/kernels`, apt state in
    /// `<cache>/apt`). With `refresh`, apt lists are updated even when fresh.
    pub fn new(cache: &Path, refresh: bool) -> Resolver {
        Resolver {
            cache: cache.to_path_buf(),
            refresh,
            apt: None,
            update_error: None,
            updated: false,
            quiet: false,
        }
    }

    /// Silences the progress messages (tests).
    pub fn quiet(mut self) -> Resolver {
        self.quiet = true;
        self
    }

    fn say(&self, msg: &str) {
        if !self.quiet {
            crate::progress::say(msg);
        }
    }

    fn kernels_dir(&self) -> PathBuf {
        self.cache.join("kernels")
    }

    /// Resolves a `--kernel` spec. `config` is needed for `debian:` specs.
    pub fn resolve(&mut self, spec: &str, config: Option<&Config>) -> Result<ResolvedKernel> {
        match KernelSpec::parse(spec) {
            KernelSpec::Path(path) => {
                if !path.exists()
                    && let Some(c) = config
                    && c.file.kernels.contains_key(spec)
                {
                    bail!("kernel image {spec}: no such file (did you mean debian:{spec}?)");
                }
                resolve_path(spec, &path)
            }
            KernelSpec::Debian(name) => {
                let Some(config) = config else {
                    bail!("debian:{name} needs a kernels.toml");
                };
                self.resolve_named(&name, config, spec)
            }
        }
    }

    /// Resolves the `[kernels.<name>]` entry of `config`.
    pub fn resolve_named(
        &mut self,
        name: &str,
        config: &Config,
        spec: &str,
    ) -> Result<ResolvedKernel> {
        match config.kernel_source(name)? {
            KernelSource::Path(path) => {
                let mut k = resolve_path(spec, &path)?;
                k.short = name.to_owned();
                Ok(k)
            }
            KernelSource::Debian { suites, package } => {
                self.resolve_debian(name, config, &suites, &package, spec)
            }
        }
    }

    fn apt(&mut self, config: &Config) -> Result<&PrivateApt> {
        if self.apt.is_none() {
            let mirrors = apt::machine_mirrors()?;
            self.apt = Some(PrivateApt::new(
                &self.cache.join("apt"),
                &config.all_suites(),
                mirrors,
            )?);
        }
        Ok(self.apt.as_ref().expect("set above"))
    }

    fn index_path(&self, name: &str) -> PathBuf {
        self.kernels_dir().join(format!("{name}.json"))
    }

    /// The last resolution of `name` whose image is still in the cache.
    fn cached(&self, name: &str) -> Option<(CachedResolution, PathBuf)> {
        let text = std::fs::read_to_string(self.index_path(name)).ok()?;
        let rec: CachedResolution = serde_json::from_str(&text).ok()?;
        let path = self.kernels_dir().join(&rec.file);
        check_image(&path).ok()?;
        Some((rec, path))
    }

    fn resolved(name: &str, spec: &str, rec: &CachedResolution, path: PathBuf) -> ResolvedKernel {
        ResolvedKernel {
            path,
            info: KernelInfo {
                spec: spec.to_owned(),
                package: rec.package.clone(),
                version: rec.version.clone(),
                uname: rec.release.clone(),
            },
            short: name.to_owned(),
        }
    }

    fn resolve_debian(
        &mut self,
        name: &str,
        config: &Config,
        suites: &[String],
        package: &str,
        spec: &str,
    ) -> Result<ResolvedKernel> {
        let refresh = self.refresh;
        let apt = self.apt(config)?.clone();
        let _lock = apt.lock()?;
        if !self.updated && (refresh || apt.needs_update(apt::LISTS_MAX_AGE)) {
            self.say(&format!(
                "updating the private apt lists for {}",
                config.all_suites().join(", ")
            ));
            if let Err(e) = apt.update() {
                self.update_error = Some(format!("{e:#}"));
            }
            self.updated = true;
        }
        // The lists did not change since the last resolution of this very entry: reuse it
        // (apt-cache takes seconds on eight suites' lists).
        if let Some((rec, path)) = self.cached(name)
            && rec.pattern == package
            && rec.suites == suites
            && let Some(updated) = apt.updated_at()
            && std::fs::metadata(self.index_path(name))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > updated)
        {
            return Ok(Self::resolved(name, spec, &rec, path));
        }
        let candidates = match apt.candidates(package) {
            Ok(c) => c,
            Err(e) => {
                if let Some((rec, path)) = self.cached(name) {
                    self.say(&format!(
                        "warning: {e:#}; using the cached {} {}",
                        rec.package, rec.version
                    ));
                    return Ok(Self::resolved(name, spec, &rec, path));
                }
                return Err(e);
            }
        };
        let Some(best) = apt::newest(&candidates, suites, package).cloned() else {
            if let Some((rec, path)) = self.cached(name) {
                self.say(&format!(
                    "warning: no `{package}` in {} now{}; using the cached {} {}",
                    suites.join(", "),
                    self.update_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default(),
                    rec.package,
                    rec.version
                ));
                return Ok(Self::resolved(name, spec, &rec, path));
            }
            bail!(
                "debian:{name}: no package matching `{package}` in suite(s) {}{}",
                suites.join(", "),
                self.update_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        };
        let file = cache_file_name(&best);
        let dest = self.kernels_dir().join(&file);
        let index = self.index_path(name);
        let previous: Option<CachedResolution> = std::fs::read_to_string(&index)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let release = if check_image(&dest).is_ok() {
            previous
                .filter(|p| p.file == file)
                .and_then(|p| p.release)
                .or_else(|| image_release(&dest))
        } else {
            self.say(&format!(
                "fetching {} {} ({})",
                best.name, best.version, best.suite
            ));
            self.fetch(&apt, &best, &dest)?
        };
        let rec = CachedResolution {
            package: best.name.clone(),
            version: best.version.clone(),
            suite: best.suite.clone(),
            file,
            release,
            pattern: package.to_owned(),
            suites: suites.to_vec(),
        };
        let json = serde_json::to_string_pretty(&rec).expect("plain data serialises");
        crate::paths::write_atomic(&index, json.as_bytes())
            .with_context(|| format!("cannot write {}", index.display()))?;
        Ok(Self::resolved(name, spec, &rec, dest))
    }

    /// Downloads and extracts a package, copying its image to `dest` atomically.
    fn fetch(&self, apt: &PrivateApt, c: &Candidate, dest: &Path) -> Result<Option<String>> {
        let dir = self.kernels_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(&dir)
            .with_context(|| format!("cannot create a temporary folder in {}", dir.display()))?;
        let deb = apt.download(c, tmp.path())?;
        let root = tmp.path().join("x");
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .output()
            .context("cannot run dpkg-deb")?;
        if !out.status.success() {
            bail!(
                "dpkg-deb -x {} failed: {}",
                deb.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let Some(image) = find_vmlinuz(&root) else {
            bail!(
                "{} {} has no kernel image (boot/vmlinuz-* or usr/lib/modules/*/vmlinuz); from 7.x the image is in linux-binary-*",
                c.name,
                c.version
            );
        };
        let release = image
            .strip_prefix(&root)
            .ok()
            .and_then(release_from_path)
            .or_else(|| image_release(&image));
        crate::paths::copy_atomic(&image, dest)
            .with_context(|| format!("cannot write {}", dest.display()))?;
        Ok(release)
    }

    /// Cached images of `debian:<name>` entries, without touching the network: `(name, path)`.
    pub fn cached_kernels(&self) -> Vec<(String, PathBuf)> {
        let Ok(dir) = std::fs::read_dir(self.kernels_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PathBuf)> = dir
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let name = p.file_name()?.to_str()?.strip_suffix(".json")?.to_owned();
                let (_, path) = self.cached(&name)?;
                Some((name, path))
            })
            .collect();
        out.sort();
        out
    }

    /// The cached resolution of `name` as a ready kernel, without touching the network.
    pub fn cached_kernel(&self, name: &str) -> Option<ResolvedKernel> {
        let (rec, path) = self.cached(name)?;
        Some(Self::resolved(name, &format!("debian:{name}"), &rec, path))
    }
}

fn resolve_path(spec: &str, path: &Path) -> Result<ResolvedKernel> {
    if path.is_dir() {
        return resolve_tree(spec, path);
    }
    check_image(path)?;
    let release = image_release(path);
    let short = path
        .file_stem()
        .and_then(|s| s.to_str())
        .map(crate::config::cpu_slug)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kernel".to_owned());
    Ok(ResolvedKernel {
        path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        info: KernelInfo {
            spec: spec.to_owned(),
            package: String::new(),
            version: release.clone().unwrap_or_default(),
            uname: release,
        },
        short,
    })
}

/// A kernel source or build tree: its `arch/x86/boot/bzImage`, which must exist (the runner's
/// `run --kernel DIR` builds it first with [`crate::kbuild::build`]).
fn resolve_tree(spec: &str, dir: &Path) -> Result<ResolvedKernel> {
    let tree = crate::kbuild::detect_tree(dir)?;
    let image = crate::kbuild::tree_image(&tree);
    if !image.exists() {
        bail!(
            "kernel tree {}: no {} yet; build it with `pkeys-qemu kernel build --source {}`",
            dir.display(),
            crate::kbuild::IMAGE,
            dir.display()
        );
    }
    let mut k = resolve_path(spec, &image)?;
    k.short = crate::kbuild::tree_short(&tree);
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A fake bzImage: setup header magic and a version string.
    pub(crate) fn fake_bzimage(dir: &Path, name: &str) -> PathBuf {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        let ver = b"6.99.0-test (me@here) #1 SMP\0";
        img[0x400..0x400 + ver.len()].copy_from_slice(ver);
        img[KERNEL_VERSION_PTR..KERNEL_VERSION_PTR + 2].copy_from_slice(&(0x200u16).to_le_bytes());
        let p = dir.join(name);
        std::fs::write(&p, img).unwrap();
        p
    }

    #[test]
    fn magic_ok_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let p = fake_bzimage(dir.path(), "bzImage");
        check_image(&p).unwrap();
        assert_eq!(image_release(&p).as_deref(), Some("6.99.0-test"));
        let k = Resolver::new(dir.path(), false)
            .quiet()
            .resolve(p.to_str().unwrap(), None)
            .unwrap();
        assert_eq!(k.info.version, "6.99.0-test");
        assert_eq!(k.short, "bzImage");
    }

    #[rstest]
    #[case::missing(None, "No such file")]
    #[case::short(Some(&b"HdrS"[..]), "not a kernel image")]
    #[case::elf(Some(&b"\x7fELF\x02\x01\x01"[..]), "not a kernel image")]
    fn magic_rejects(#[case] content: Option<&[u8]>, #[case] expected: &str) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        if let Some(c) = content {
            let mut v = c.to_vec();
            v.resize(0x300, 0);
            std::fs::write(&p, v).unwrap();
        }
        let err = check_image(&p).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(err.contains(p.to_str().unwrap()), "{err}");
    }

    #[test]
    fn directory_is_not_a_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_image(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("not a kernel image:"), "{err}");
    }

    #[test]
    fn unknown_debian_name() {
        let cfg = Config::parse(Path::new("k.toml"), "[kernels.a]\npath = \"x\"\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = Resolver::new(dir.path(), false)
            .quiet()
            .resolve("debian:zz", Some(&cfg))
            .unwrap_err();
        assert!(err.to_string().contains("unknown kernel `zz`"), "{err}");
        let err = Resolver::new(dir.path(), false)
            .quiet()
            .resolve("a", Some(&cfg))
            .unwrap_err();
        assert!(err.to_string().contains("did you mean debian:a"), "{err}");
    }

    #[rstest]
    #[case("boot/vmlinuz-5.10.0-46-cloud-amd64", Some("5.10.0-46-cloud-amd64"))]
    #[case(
        "usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz",
        Some("7.2.13+deb14-cloud-amd64")
    )]
    #[case("boot/config", None)]
    fn releases(#[case] p: &str, #[case] r: Option<&str>) {
        assert_eq!(release_from_path(Path::new(p)).as_deref(), r);
    }
}
