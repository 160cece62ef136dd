//! Debian packages through a private apt configuration.
//!
//! Suites other than the machine's own (bullseye, trixie, sid, experimental, ...) are reached
//! through an apt state kept under the cache (`<cache>/apt/`): its own `sources.list`, lists and
//! package cache, passed to `apt-get`/`apt-cache` with `-o Dir::Etc::sourcelist=...`. The mirror
//! URIs are read from the machine's apt sources at run time (never written into the project):
//! the Debian archive and, for `*-security` suites, the security archive. `PKEYS_DEBIAN_MIRROR`
//! and `PKEYS_DEBIAN_SECURITY_MIRROR` override them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

use crate::debver;
use pkeys_common::glob::glob_match;

/// The keyring that signs every Debian suite (also sid and experimental).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Environment override for the Debian archive URI.
pub const MIRROR_ENV: &str = "PKEYS_DEBIAN_MIRROR";
/// Environment override for the Debian security archive URI.
pub const SECURITY_MIRROR_ENV: &str = "PKEYS_DEBIAN_SECURITY_MIRROR";
/// How old the private lists may get before `apt-get update` runs again.
pub const LISTS_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// Debian release names (codenames and aliases) used to recognise a Debian source.
const DEBIAN_SUITES: &[&str] = &[
    "jessie",
    "stretch",
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "experimental",
    "rc-buggy",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// The Debian archive URIs to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// The Debian archive (`.../debian`).
    pub main: String,
    /// The Debian security archive (`.../debian-security`).
    pub security: String,
}

/// One `deb` source: its URIs and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uris: Vec<String>,
    suites: Vec<String>,
}

/// Parses deb822 `.sources` text (paragraphs of `Key: value`), keeping `Types: deb` ones.
fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in para.lines() {
            let line = line.trim_end();
            if line.trim_start().starts_with('#') || line.starts_with(char::is_whitespace) {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let words = value.split_whitespace().map(str::to_owned);
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types.extend(words),
                "uris" => uris.extend(words),
                "suites" => suites.extend(words),
                "enabled" => enabled = !value.trim().eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") && !uris.is_empty() {
            out.push(Source { uris, suites });
        }
    }
    out
}

/// Parses one-line-style `sources.list` text (`deb [opts] URI suite comp...`).
fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
            rest.drain(..=end);
        }
        if rest.len() >= 2 {
            out.push(Source {
                uris: vec![rest[0].to_owned()],
                suites: vec![rest[1].to_owned()],
            });
        }
    }
    out
}

fn base_suite(suite: &str) -> &str {
    suite.split(['-', '/']).next().unwrap_or(suite)
}

fn is_security(suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates")
}

fn usable_uri(uri: &str) -> bool {
    ["http://", "https://", "file:/", "ftp://"]
        .iter()
        .any(|p| uri.starts_with(p))
}

/// Picks the Debian and Debian-security URIs from parsed sources.
fn pick_mirrors(sources: &[Source]) -> Option<Mirrors> {
    let debian = |s: &&Source| {
        s.suites
            .iter()
            .any(|x| DEBIAN_SUITES.contains(&base_suite(x)))
    };
    let main = sources
        .iter()
        .filter(debian)
        .filter(|s| s.suites.iter().any(|x| !is_security(x)))
        .flat_map(|s| &s.uris)
        .find(|u| usable_uri(u))?
        .trim_end_matches('/')
        .to_owned();
    let security = sources
        .iter()
        .filter(debian)
        .filter(|s| s.suites.iter().any(|x| is_security(x)))
        .flat_map(|s| &s.uris)
        .find(|u| usable_uri(u))
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("{main}-security"));
    Some(Mirrors { main, security })
}

/// Reads the mirror URIs from the machine's apt sources (`/etc/apt/sources.list`,
/// `/etc/apt/sources.list.d/*.list` and `*.sources`), or from the environment overrides.
pub fn machine_mirrors() -> Result<Mirrors> {
    machine_mirrors_in(Path::new("/etc/apt"))
}

/// [`machine_mirrors`] with another `/etc/apt` (for tests).
pub fn machine_mirrors_in(etc_apt: &Path) -> Result<Mirrors> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut sources = Vec::new();
    if let Ok(text) = std::fs::read_to_string(etc_apt.join("sources.list")) {
        sources.extend(parse_one_line(&text));
    }
    if let Ok(dir) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            match file.extension().and_then(|e| e.to_str()) {
                Some("sources") => sources.extend(parse_deb822(&text)),
                Some("list") => sources.extend(parse_one_line(&text)),
                _ => {}
            }
        }
    }
    let found = pick_mirrors(&sources);
    let main = env(MIRROR_ENV).or_else(|| found.as_ref().map(|m| m.main.clone()));
    let Some(main) = main else {
        bail!(
            "no Debian mirror in the machine's apt sources ({0}/sources.list, {0}/sources.list.d/*.sources); set {MIRROR_ENV}",
            etc_apt.display()
        );
    };
    let security = env(SECURITY_MIRROR_ENV)
        .or_else(|| found.map(|m| m.security))
        .unwrap_or_else(|| format!("{main}-security"));
    Ok(Mirrors {
        main: main.trim_end_matches('/').to_owned(),
        security: security.trim_end_matches('/').to_owned(),
    })
}

/// A package version found in a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// The suite it is in.
    pub suite: String,
}

/// The POSIX extended regex `apt-cache search` gets for a glob.
pub fn glob_to_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c if "\\.+()[]{}^$|".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re.push('$');
    re
}

/// Parses `apt-cache madison` output: `name | version | URI suite/component arch Packages`.
fn parse_madison(text: &str) -> Vec<Candidate> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split('|').map(str::trim);
            let name = parts.next()?;
            let version = parts.next()?;
            let source = parts.next()?;
            let dist = source.split_whitespace().nth(1)?;
            let suite = dist.split('/').next()?;
            (!name.is_empty() && !version.is_empty()).then(|| Candidate {
                name: name.to_owned(),
                version: version.to_owned(),
                suite: suite.to_owned(),
            })
        })
        .collect()
}

/// The newest candidate whose suite is one of `suites` and whose name matches `glob`.
pub fn newest<'a>(
    candidates: &'a [Candidate],
    suites: &[String],
    glob: &str,
) -> Option<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| suites.contains(&c.suite) && glob_match(glob, &c.name))
        .max_by(|a, b| debver::compare(&a.version, &b.version).then_with(|| a.name.cmp(&b.name)))
}

/// The private apt state under `<cache>/apt/`.
#[derive(Debug, Clone)]
pub struct PrivateApt {
    root: PathBuf,
    suites: Vec<String>,
    mirrors: Mirrors,
}

fn run_captured(cmd: &mut Command) -> Result<(bool, String, String)> {
    let prog = format!("{:?}", cmd.get_program());
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {prog} (is apt installed?)"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The `E:`/`W:`/`Err:` lines of apt output, joined on one line.
fn apt_problems(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("E:") || l.starts_with("Err:") || l.starts_with("W:"))
        .collect();
    if lines.is_empty() {
        text.lines().last().unwrap_or("").trim().to_owned()
    } else {
        lines.join(" | ")
    }
}

impl PrivateApt {
    /// Prepares the private state for `suites` under `root` (writes its `sources.list`).
    pub fn new(root: &Path, suites: &[String], mirrors: Mirrors) -> Result<PrivateApt> {
        if !Path::new(DEBIAN_KEYRING).is_file() {
            bail!("{DEBIAN_KEYRING} is missing: apt-get install debian-archive-keyring");
        }
        for dir in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
            std::fs::create_dir_all(root.join(dir))
                .with_context(|| format!("cannot create {}", root.join(dir).display()))?;
        }
        let apt = PrivateApt {
            root: root.to_path_buf(),
            suites: suites.to_vec(),
            mirrors,
        };
        let list = apt.sources_list();
        let path = root.join("sources.list");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(list.as_str()) {
            crate::paths::write_atomic(&path, list.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(apt)
    }

    /// The `sources.list` text: one `deb` line per suite.
    pub fn sources_list(&self) -> String {
        let mut out =
            String::from("# written by pkeys-qemu; mirrors from the machine's apt sources\n");
        for suite in &self.suites {
            let uri = if is_security(suite) {
                &self.mirrors.security
            } else {
                &self.mirrors.main
            };
            out.push_str(&format!(
                "deb [signed-by={DEBIAN_KEYRING}] {uri} {suite} main\n"
            ));
        }
        out
    }

    /// The `-o` options that point apt at this state.
    pub fn options(&self) -> Vec<String> {
        let r = self.root.display();
        let mut opts = vec![
            format!("Dir::Etc::sourcelist={r}/sources.list"),
            format!("Dir::Etc::sourceparts={r}/sources.list.d"),
            format!("Dir::State::Lists={r}/lists"),
            format!("Dir::Cache={r}/cache"),
            // Some images (Docker's docker-clean) turn the binary caches off; without
            // pkgcache.bin every apt-cache call re-reads all lists (~3 s instead of 0.2 s).
            "Dir::Cache::pkgcache=pkgcache.bin".to_owned(),
            "Dir::Cache::srcpkgcache=".to_owned(),
            "APT::Get::List-Cleanup=0".to_owned(),
            "Acquire::Check-Valid-Until=false".to_owned(),
            "Acquire::Languages=none".to_owned(),
        ];
        for target in [
            "DEP-11",
            "DEP-11-icons",
            "DEP-11-icons-small",
            "DEP-11-icons-hidpi",
        ] {
            opts.push(format!(
                "Acquire::IndexTargets::deb::{target}::DefaultEnabled=false"
            ));
        }
        if pkeys_common::user::is_root() {
            opts.push("APT::Sandbox::User=root".to_owned());
        }
        opts.into_iter()
            .flat_map(|o| ["-o".to_owned(), o])
            .collect()
    }

    fn command(&self, prog: &str) -> Command {
        let mut cmd = Command::new(prog);
        cmd.args(["-q"]).args(self.options()).env("LC_ALL", "C");
        cmd
    }

    /// Takes the state's lock (apt state is shared by concurrent runner processes).
    pub fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let path = self.root.join(".pkeys-lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
    }

    fn stamp(&self) -> PathBuf {
        self.root.join("updated")
    }

    /// When the lists were last updated successfully.
    pub fn updated_at(&self) -> Option<SystemTime> {
        std::fs::metadata(self.stamp())
            .and_then(|m| m.modified())
            .ok()
    }

    /// Whether the lists are missing, older than `max_age`, or were fetched for other suites.
    pub fn needs_update(&self, max_age: Duration) -> bool {
        let stamp = self.stamp();
        let Ok(meta) = std::fs::metadata(&stamp) else {
            return true;
        };
        let fresh = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < max_age);
        let same =
            std::fs::read_to_string(&stamp).ok().as_deref() == Some(self.sources_list().as_str());
        !(fresh && same)
    }

    /// `apt-get update` on the private state. Errors carry apt's `E:` lines.
    pub fn update(&self) -> Result<()> {
        let (ok, stdout, stderr) = run_captured(self.command("apt-get").arg("update"))?;
        if !ok
            || stderr
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("Err:"))
        {
            bail!(
                "apt-get update (private config {}) failed: {}",
                self.root.display(),
                apt_problems(&format!("{stdout}\n{stderr}"))
            );
        }
        crate::paths::write_atomic(&self.stamp(), self.sources_list().as_bytes())
            .context("cannot write the update stamp")?;
        Ok(())
    }

    /// Every version of every package whose name matches `glob`, with its suite.
    pub fn candidates(&self, glob: &str) -> Result<Vec<Candidate>> {
        let regex = glob_to_regex(glob);
        let (ok, stdout, stderr) =
            run_captured(
                self.command("apt-cache")
                    .args(["search", "--names-only", &regex]),
            )?;
        if !ok {
            bail!("apt-cache search {regex} failed: {}", apt_problems(&stderr));
        }
        let names: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.split(" - ").next())
            .map(str::trim)
            .filter(|n| glob_match(glob, n))
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let (ok, stdout, stderr) =
            run_captured(self.command("apt-cache").arg("madison").args(&names))?;
        if !ok {
            bail!("apt-cache madison failed: {}", apt_problems(&stderr));
        }
        Ok(parse_madison(&stdout))
    }

    /// `apt-get download name=version` into `dir`; returns the `.deb` path.
    pub fn download(&self, candidate: &Candidate, dir: &Path) -> Result<PathBuf> {
        let spec = format!("{}={}", candidate.name, candidate.version);
        let (ok, stdout, stderr) = run_captured(
            self.command("apt-get")
                .arg("download")
                .arg(&spec)
                .current_dir(dir),
        )?;
        if !ok {
            bail!(
                "apt-get download {spec} failed: {}",
                apt_problems(&format!("{stdout}\n{stderr}"))
            );
        }
        let deb = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {spec} produced no .deb"))?;
        Ok(deb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn deb822_and_one_line() {
        let deb822 = "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
Types: deb\nURIs: http://mirror.example/debian-security/\nSuites: bookworm-security\nComponents: main\n\n\
Types: deb\nURIs: https://other.example/node\nSuites: nodistro\n";
        let s = parse_deb822(deb822);
        assert_eq!(s.len(), 3);
        assert_eq!(
            pick_mirrors(&s).unwrap(),
            Mirrors {
                main: "http://mirror.example/debian".into(),
                security: "http://mirror.example/debian-security".into()
            }
        );
        let one = "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian trixie main\n# deb http://x y z\ndeb-src http://s.example/debian trixie main\n";
        let s = parse_one_line(one);
        assert_eq!(
            s,
            [Source {
                uris: vec!["http://m.example/debian".into()],
                suites: vec!["trixie".into()]
            }]
        );
        assert_eq!(
            pick_mirrors(&s).unwrap().security,
            "http://m.example/debian-security"
        );
        assert!(
            pick_mirrors(&parse_deb822(
                "Types: deb\nURIs: https://x/node\nSuites: nodistro\n"
            ))
            .is_none()
        );
    }

    #[test]
    fn mirrors_from_a_fake_etc_apt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/x.sources.disabled"),
            "Types: deb\nURIs: http://no/debian\nSuites: sid\n",
        )
        .unwrap();
        let m = machine_mirrors_in(dir.path()).unwrap();
        assert_eq!(m.main, "http://m.example/debian");
        let empty = tempfile::tempdir().unwrap();
        let err = machine_mirrors_in(empty.path()).unwrap_err().to_string();
        assert!(err.contains("no Debian mirror"), "{err}");
    }

    #[rstest]
    #[case(
        "linux-image-6.12.*+deb13-cloud-amd64",
        "linux-image-6.12.117+deb13-cloud-amd64",
        true
    )]
    #[case(
        "linux-image-6.12.*+deb13-cloud-amd64",
        "linux-image-6.12.117+deb13-cloud-amd64-dbg",
        false
    )]
    #[case(
        "linux-image-6.12.*+deb13-cloud-amd64",
        "linux-image-6.12.95+deb12-cloud-amd64",
        false
    )]
    #[case("linux-binary-7.3*-cloud-amd64", "linux-binary-7.3-cloud-amd64", true)]
    #[case("a?c", "abc", true)]
    #[case("a?c", "ac", false)]
    fn globs(#[case] pattern: &str, #[case] name: &str, #[case] m: bool) {
        assert_eq!(glob_match(pattern, name), m);
    }

    #[test]
    fn regex_escapes() {
        assert_eq!(
            glob_to_regex("linux-image-6.12.*+deb13"),
            "^linux-image-6\\.12\\..*\\+deb13$"
        );
    }

    #[test]
    fn madison_and_newest() {
        let text = "linux-image-6.12.96+deb13-cloud-amd64 |  6.12.96-1 | http://m/debian-security trixie-security/main amd64 Packages\n\
linux-image-6.12.117+deb13-cloud-amd64 | 6.12.117-1 | http://m/debian trixie/main amd64 Packages\n\
linux-image-6.12.120+deb13-cloud-amd64 | 6.12.120-1 | http://m/debian forky/main amd64 Packages\n";
        let c = parse_madison(text);
        assert_eq!(c.len(), 3);
        let suites = vec!["trixie".to_owned(), "trixie-security".to_owned()];
        let n = newest(&c, &suites, "linux-image-6.12.*+deb13-cloud-amd64").unwrap();
        assert_eq!(n.version, "6.12.117-1");
        assert_eq!(n.suite, "trixie");
        assert!(newest(&c, &["sid".to_owned()], "*").is_none());
    }
}
