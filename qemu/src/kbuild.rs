//! Building a kernel under test: the patch-validation workflow (`pkeys-qemu kernel ...`).
//!
//! - [`Fragment`] reads `ci/pkeys.config`, the configuration fragment applied on top of
//!   `make tinyconfig`, and checks a finished `.config` against its `# required` options;
//! - [`detect_tree`] tells a kernel source tree, an in-tree build and an `O=` build folder
//!   apart, and [`build`] configures (base + fragment + `olddefconfig`, only when needed) and runs
//!   `make bzImage` with every core, reusing the previous build;
//! - [`fetch_source`] fetches Debian's `linux-source-<series>` package through the private apt
//!   configuration of [`crate::apt`] and unpacks its tarball into the cache, atomically.
//!
//! See `docs/kernel-build.md` for the workflow and measured build times.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::apt::{self, PrivateApt};

/// The default configuration fragment, `<workspace>/ci/pkeys.config`.
pub fn default_fragment() -> PathBuf {
    crate::paths::workspace_root().join("ci/pkeys.config")
}

/// The base configuration target the fragment is merged onto.
pub const BASE_CONFIG: &str = "tinyconfig";
/// The normalised fragment last merged into a build folder (its presence marks a `.config`
/// this tool wrote; a different fragment triggers a reconfiguration).
pub const STAMP: &str = "pkeys.fragment";
/// The build log written into the build folder.
pub const LOG: &str = "pkeys-build.log";
/// Where the image lands inside a build folder.
pub const IMAGE: &str = "arch/x86/boot/bzImage";
/// The environment variable the build tests read: a kernel source tree to build for real.
pub const TREE_ENV: &str = "PKEYS_KERNEL_TREE";

/// One `CONFIG_X=value` line of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The symbol with its `CONFIG_` prefix.
    pub name: String,
    /// `y`, `m`, `n` or the literal value (strings keep their quotes).
    pub value: String,
    /// Marked `# required`: `kernel build` fails when the final `.config` differs.
    pub required: bool,
    /// 1-based line in the fragment.
    pub line: usize,
}

/// A kernel configuration fragment (`ci/pkeys.config`).
///
/// Syntax: `CONFIG_X=y|m|n|value`, optionally followed by `# required`; `# CONFIG_X is not
/// set` (= `n`); `#` comments and blank lines. `n` is written out as `# CONFIG_X is not set`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragment {
    /// The entries in file order (a symbol appears once).
    pub entries: Vec<Entry>,
}

/// A required option the `.config` does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The symbol.
    pub name: String,
    /// What the fragment asks for.
    pub wanted: String,
    /// What the `.config` has (`None`: absent, i.e. its dependencies are not met).
    pub found: Option<String>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.found {
            Some(v) => write!(f, "{}={} (the .config has {v})", self.name, self.wanted),
            None => write!(f, "{}={} (absent from the .config)", self.name, self.wanted),
        }
    }
}

fn valid_symbol(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Splits `CONFIG_X=value  # comment` at the first `#` outside double quotes.
fn split_comment(line: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => quoted = !quoted,
            '#' if !quoted => return (line[..i].trim_end(), &line[i..]),
            _ => {}
        }
        prev = c;
    }
    (line, "")
}

impl Fragment {
    /// Parses fragment text; `origin` names the file in errors (`origin:line: ...`).
    pub fn parse(text: &str, origin: &str) -> Result<Fragment> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            let (name, value, comment) = if let Some(rest) = trimmed.strip_prefix("# CONFIG_") {
                let Some(sym) = rest.strip_suffix(" is not set") else {
                    continue; // a comment that happens to start with CONFIG_
                };
                (format!("CONFIG_{sym}"), "n".to_owned(), "")
            } else if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            } else {
                let (assign, comment) = split_comment(trimmed);
                let Some((name, value)) = assign.split_once('=') else {
                    bail!("{origin}:{line}: expected CONFIG_NAME=value, found {trimmed:?}");
                };
                (name.trim().to_owned(), value.trim().to_owned(), comment)
            };
            if !valid_symbol(&name) {
                bail!("{origin}:{line}: {name:?} is not a CONFIG_ symbol");
            }
            if value.is_empty() {
                bail!("{origin}:{line}: {name} has no value");
            }
            if let Some(prev) = entries.iter().find(|e| e.name == name) {
                bail!(
                    "{origin}:{line}: {name} is already set on line {}",
                    prev.line
                );
            }
            let required = comment
                .trim_start_matches('#')
                .split_whitespace()
                .any(|w| w == "required");
            entries.push(Entry {
                name,
                value,
                required,
                line,
            });
        }
        if entries.is_empty() {
            bail!("{origin}: no CONFIG_ options");
        }
        Ok(Fragment { entries })
    }

    /// Reads and parses a fragment file.
    pub fn load(path: &Path) -> Result<Fragment> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config fragment {}", path.display()))?;
        Fragment::parse(&text, &path.display().to_string())
    }

    /// The fragment as Kconfig reads it (no trailing comments; `n` as `# ... is not set`).
    pub fn normalized(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            if e.value == "n" {
                out.push_str(&format!("# {} is not set\n", e.name));
            } else {
                out.push_str(&format!("{}={}\n", e.name, e.value));
            }
        }
        out
    }

    /// The required options whose value in `config` (a `.config`'s text) differs.
    pub fn missing(&self, config: &str) -> Vec<Missing> {
        let have = parse_dotconfig(config);
        self.entries
            .iter()
            .filter(|e| e.required)
            .filter_map(|e| {
                let found = have.get(&e.name).cloned();
                let ok = match found.as_deref() {
                    Some(v) => v == e.value,
                    None => e.value == "n",
                };
                (!ok).then(|| Missing {
                    name: e.name.clone(),
                    wanted: e.value.clone(),
                    found,
                })
            })
            .collect()
    }

    /// The options (required or not) the `.config` does not have as asked.
    pub fn not_applied(&self, config: &str) -> Vec<String> {
        let have = parse_dotconfig(config);
        self.entries
            .iter()
            .filter(|e| match have.get(&e.name) {
                Some(v) => *v != e.value,
                None => e.value != "n",
            })
            .map(|e| e.name.clone())
            .collect()
    }
}

/// The symbols of a `.config`: `CONFIG_X=v` and `# CONFIG_X is not set` (as `n`).
pub fn parse_dotconfig(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_")
            && let Some(sym) = rest.strip_suffix(" is not set")
        {
            out.insert(format!("CONFIG_{sym}"), "n".to_owned());
        } else if line.starts_with("CONFIG_")
            && let Some((k, v)) = line.split_once('=')
        {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

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

/// A build tool and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// A program on `PATH`, or an absolute path to a header.
    pub what: &'static str,
    /// The Debian package.
    pub package: &'static str,
}

/// What a tinyconfig x86-64 build needs (objtool needs libelf; `bc` for timeconst; `xz` for
/// the tinyconfig's compressed image; `perl` for headers; `cpio`/`zstd` are not needed).
pub const BUILD_TOOLS: &[Tool] = &[
    Tool {
        what: "gcc",
        package: "gcc",
    },
    Tool {
        what: "make",
        package: "make",
    },
    Tool {
        what: "flex",
        package: "flex",
    },
    Tool {
        what: "bison",
        package: "bison",
    },
    Tool {
        what: "bc",
        package: "bc",
    },
    Tool {
        what: "perl",
        package: "perl",
    },
    Tool {
        what: "xz",
        package: "xz-utils",
    },
    Tool {
        what: "/usr/include/gelf.h",
        package: "libelf-dev",
    },
    Tool {
        what: "/usr/include/openssl/ssl.h",
        package: "libssl-dev",
    },
];

fn on_path(prog: &str, path_var: &std::ffi::OsStr) -> bool {
    std::env::split_paths(path_var).any(|d| d.join(prog).is_file())
}

/// The tools of `tools` that are missing (programs looked up in `path_var`).
pub fn missing_tools(tools: &[Tool], path_var: &std::ffi::OsStr) -> Vec<Tool> {
    tools
        .iter()
        .filter(|t| {
            if t.what.starts_with('/') {
                !Path::new(t.what).exists()
            } else {
                !on_path(t.what, path_var)
            }
        })
        .copied()
        .collect()
}

/// Fails naming the packages to install when a build tool is missing.
pub fn check_tools() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing = missing_tools(BUILD_TOOLS, &path);
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    bail!(
        "missing kernel build tools: {}; install them with: apt-get install {}",
        missing
            .iter()
            .map(|t| t.what)
            .collect::<Vec<_>>()
            .join(", "),
        packages.join(" ")
    )
}

/// What [`build`] is asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// A kernel source tree, or an `O=` build folder of one.
    pub tree: PathBuf,
    /// The build folder (`make O=`); `None`: in the tree (or the build folder given).
    pub out: Option<PathBuf>,
    /// The configuration fragment (`ci/pkeys.config`).
    pub fragment: PathBuf,
    /// `make -j`.
    pub jobs: usize,
    /// Configure again even when the `.config` is up to date.
    pub reconfigure: bool,
}

/// What [`build`] did.
#[derive(Debug, Clone)]
pub struct Built {
    /// The bzImage.
    pub image: PathBuf,
    /// The build folder.
    pub objtree: PathBuf,
    /// Whether the tree was (re)configured.
    pub configured: bool,
    /// Seconds spent in `make bzImage`.
    pub build_secs: f64,
}

/// Why the `.config` of `objtree` has to be (re)written, or `None` when it can stay.
///
/// A `.config` this tool wrote carries [`STAMP`] next to it: it is rewritten when the fragment
/// changed. A `.config` without the stamp belongs to the user and is never overwritten: it is
/// used when it has every required option, else the build fails naming them (see [`build`]).
pub fn config_action(objtree: &Path, fragment: &Fragment) -> ConfigAction {
    let config = objtree.join(".config");
    let Ok(text) = std::fs::read_to_string(&config) else {
        return ConfigAction::Configure("no .config yet");
    };
    match std::fs::read_to_string(objtree.join(STAMP)) {
        Ok(stamp) if stamp == fragment.normalized() => {
            if fragment.missing(&text).is_empty() {
                ConfigAction::Keep
            } else {
                ConfigAction::Configure("the .config lost required options")
            }
        }
        Ok(_) => ConfigAction::Configure("the fragment changed"),
        Err(_) => ConfigAction::Foreign,
    }
}

/// See [`config_action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigAction {
    /// The `.config` is ours and up to date.
    Keep,
    /// Write it (the reason).
    Configure(&'static str),
    /// A `.config` this tool did not write: use it as it is.
    Foreign,
}

fn make(source: &Path, objtree: &Path, in_tree: bool) -> Command {
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(source);
    if !in_tree {
        cmd.arg(format!("O={}", objtree.display()));
    }
    cmd
}

fn run_quiet(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// Configures (when needed) and builds `bzImage`. `say` gets progress lines.
pub fn build(opts: &BuildOptions, say: &dyn Fn(&str)) -> Result<Built> {
    let tree = detect_tree(&opts.tree)?;
    let fragment = Fragment::load(&opts.fragment)?;
    check_tools()?;
    let source = tree.source().to_path_buf();
    let objtree = match &opts.out {
        Some(out) => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create the build folder {}", out.display()))?;
            std::fs::canonicalize(out).unwrap_or_else(|_| out.clone())
        }
        None => tree.objtree().to_path_buf(),
    };
    let in_tree = objtree == source;
    if !in_tree && (source.join(".config").exists() || source.join("include/config").exists()) {
        bail!(
            "{} has an in-tree build (.config), so kbuild refuses O={}: build in the tree (no --out), or run `make -C {} mrproper` first",
            source.display(),
            objtree.display(),
            source.display()
        );
    }
    let action = if opts.reconfigure {
        ConfigAction::Configure("--reconfigure")
    } else {
        config_action(&objtree, &fragment)
    };
    let configured = matches!(action, ConfigAction::Configure(_));
    match action {
        ConfigAction::Configure(why) => {
            say(&format!(
                "configuring {} ({why}): {BASE_CONFIG} + {}",
                objtree.display(),
                opts.fragment.display()
            ));
            let normalized = fragment.normalized();
            let frag_path = objtree.join(".pkeys.fragment.tmp");
            std::fs::write(&frag_path, &normalized)
                .with_context(|| format!("cannot write {}", frag_path.display()))?;
            run_quiet(
                make(&source, &objtree, in_tree).arg(BASE_CONFIG),
                &format!("make {BASE_CONFIG}"),
            )?;
            run_quiet(
                Command::new(source.join("scripts/kconfig/merge_config.sh"))
                    .current_dir(&source)
                    .arg("-m")
                    .arg("-O")
                    .arg(&objtree)
                    .arg(objtree.join(".config"))
                    .arg(&frag_path),
                "scripts/kconfig/merge_config.sh",
            )?;
            run_quiet(
                make(&source, &objtree, in_tree).arg("olddefconfig"),
                "make olddefconfig",
            )?;
            let _ = std::fs::remove_file(&frag_path);
            let text = std::fs::read_to_string(objtree.join(".config"))?;
            let skipped = fragment.not_applied(&text);
            if !skipped.is_empty() {
                say(&format!(
                    "note: not set as the fragment asks (dependencies unmet): {}",
                    skipped.join(", ")
                ));
            }
            crate::paths::write_atomic(&objtree.join(STAMP), normalized.as_bytes())?;
        }
        ConfigAction::Keep => say(&format!(
            "reusing the configured build in {}",
            objtree.display()
        )),
        ConfigAction::Foreign => say(&format!(
            "using the existing .config of {} as it is (not written by pkeys-qemu)",
            objtree.display()
        )),
    }
    let config_text = std::fs::read_to_string(objtree.join(".config"))
        .with_context(|| format!("cannot read {}/.config", objtree.display()))?;
    check_required(&fragment, &config_text, &objtree, &opts.fragment)?;

    say(&format!(
        "make -j{} bzImage in {} (log: {})",
        opts.jobs,
        objtree.display(),
        objtree.join(LOG).display()
    ));
    let started = Instant::now();
    run_make_streaming(
        make(&source, &objtree, in_tree)
            .arg(format!("-j{}", opts.jobs.max(1)))
            .arg("bzImage"),
        &objtree.join(LOG),
        say,
    )?;
    let build_secs = started.elapsed().as_secs_f64();
    let image = objtree.join(IMAGE);
    crate::kernel::check_image(&image).with_context(|| {
        format!(
            "make bzImage succeeded but left no image in {}",
            image.display()
        )
    })?;
    say(&format!("built {} in {build_secs:.0} s", image.display()));
    Ok(Built {
        image,
        objtree,
        configured,
        build_secs,
    })
}

/// Fails naming every required option of `fragment` that `config_text` lacks.
pub fn check_required(
    fragment: &Fragment,
    config_text: &str,
    objtree: &Path,
    fragment_path: &Path,
) -> Result<()> {
    let missing = fragment.missing(config_text);
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "{}/.config lacks options the suite needs: {}; set them (e.g. scripts/config --file {0}/.config --enable NAME; make olddefconfig) or configure from {} with `pkeys-qemu kernel build --reconfigure`",
        objtree.display(),
        missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        fragment_path.display()
    )
}

/// Whether a kbuild output line says something was compiled or linked (`  CC      mm/x.o`).
pub fn progress_step(line: &str) -> Option<&str> {
    let line = line.strip_prefix("  ")?;
    let (tag, rest) = line.split_once(' ')?;
    (!tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
    .then(|| rest.trim())
}

/// Runs `make`, writing everything to `log` and a progress line to `say` every 10 s; on
/// failure the error carries the last error lines.
fn run_make_streaming(cmd: &mut Command, log: &Path, say: &dyn Fn(&str)) -> Result<()> {
    let mut file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run make")?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tx2.send(line).is_err() {
                break;
            }
        }
    });
    let stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut last_say = Instant::now();
    let mut steps = 0usize;
    let mut last_step = String::new();
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                let _ = writeln!(file, "{line}");
                if let Some(step) = progress_step(&line) {
                    steps += 1;
                    last_step = step.to_owned();
                }
                tail.push_back(line);
                if tail.len() > 200 {
                    tail.pop_front();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if crate::cleanup::interrupted() {
            let _ = child.kill();
        }
        if last_say.elapsed() >= Duration::from_secs(10) {
            say(&format!(
                "  [{:>4} s] {steps} steps, last: {last_step}",
                started.elapsed().as_secs()
            ));
            last_say = Instant::now();
        }
    }
    let _ = out_thread.join();
    let _ = err_thread.join();
    let status = child.wait().context("cannot wait for make")?;
    if !status.success() {
        let errors: Vec<&String> = tail
            .iter()
            .filter(|l| l.contains("error") || l.contains("Error") || l.contains("***"))
            .collect();
        let shown: Vec<&String> = if errors.is_empty() {
            tail.iter().rev().take(15).rev().collect()
        } else {
            errors.into_iter().rev().take(15).rev().collect()
        };
        bail!(
            "make bzImage failed ({status}); full log: {}\n{}",
            log.display(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn workspace_fragment() -> Fragment {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/pkeys.config");
        Fragment::load(&path).unwrap()
    }

    #[test]
    fn the_shipped_fragment_parses_and_requires_the_essentials() {
        let f = workspace_fragment();
        let req: Vec<&str> = f
            .entries
            .iter()
            .filter(|e| e.required)
            .map(|e| e.name.as_str())
            .collect();
        for name in [
            "CONFIG_64BIT",
            "CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS",
            "CONFIG_HUGETLBFS",
            "CONFIG_TRANSPARENT_HUGEPAGE",
            "CONFIG_SERIAL_8250_CONSOLE",
            "CONFIG_BLK_DEV_INITRD",
            "CONFIG_RD_GZIP",
            "CONFIG_DEVTMPFS",
            "CONFIG_DEBUG_FS",
            "CONFIG_ACPI",
            // Without PCI the kernel cannot load qemu's DSDT: no ACPI power-off (measured).
            "CONFIG_PCI",
            "CONFIG_NET",
            "CONFIG_UNIX",
            "CONFIG_PROC_PAGE_MONITOR",
        ] {
            assert!(req.contains(&name), "{name} not required");
        }
        let norm = f.normalized();
        assert!(!norm.contains("required"));
        assert!(
            norm.contains("# CONFIG_PANIC_ON_OOPS is not set\n"),
            "{norm}"
        );
        assert!(
            norm.lines()
                .all(|l| l.starts_with("CONFIG_") || l.ends_with(" is not set"))
        );
    }

    #[test]
    fn parse_forms() {
        let text = "# comment\n\nCONFIG_A=y   # required\nCONFIG_B=n\n# CONFIG_C is not set\nCONFIG_D=\"x # y\" # required\nCONFIG_E=4\n# CONFIG_F mentioned in prose\n";
        let f = Fragment::parse(text, "f").unwrap();
        let got: Vec<(&str, &str, bool, usize)> = f
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str(), e.required, e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("CONFIG_A", "y", true, 3),
                ("CONFIG_B", "n", false, 4),
                ("CONFIG_C", "n", false, 5),
                ("CONFIG_D", "\"x # y\"", true, 6),
                ("CONFIG_E", "4", false, 7),
            ]
        );
        assert_eq!(
            f.normalized(),
            "CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_C is not set\nCONFIG_D=\"x # y\"\nCONFIG_E=4\n"
        );
    }

    #[rstest]
    #[case("CONFIG_A\n", "f:1: expected CONFIG_NAME=value")]
    #[case("FOO=y\n", "f:1: \"FOO\" is not a CONFIG_ symbol")]
    #[case("CONFIG_a=y\n", "is not a CONFIG_ symbol")]
    #[case("CONFIG_A=\n", "f:1: CONFIG_A has no value")]
    #[case("CONFIG_A=y\nCONFIG_A=n\n", "f:2: CONFIG_A is already set on line 1")]
    #[case("# only comments\n", "f: no CONFIG_ options")]
    fn parse_errors(#[case] text: &str, #[case] want: &str) {
        let err = Fragment::parse(text, "f").unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }

    #[test]
    fn verification_names_what_is_missing() {
        let f = Fragment::parse(
            "CONFIG_A=y # required\nCONFIG_B=y # required\nCONFIG_C=n # required\nCONFIG_D=4 # required\nCONFIG_E=y\n",
            "f",
        )
        .unwrap();
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=4\n";
        let missing = f.missing(config);
        let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "CONFIG_B=y (the .config has n)",
                "CONFIG_C=n (the .config has y)"
            ]
        );
        assert_eq!(f.not_applied(config), ["CONFIG_B", "CONFIG_C", "CONFIG_E"]);
        // Absent `n` is fine; absent `y` is missing.
        let f = Fragment::parse("CONFIG_X=n # required\nCONFIG_Y=y # required\n", "f").unwrap();
        let m = f.missing("");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].to_string(), "CONFIG_Y=y (absent from the .config)");
        let err = check_required(&f, "", Path::new("/b"), Path::new("ci/pkeys.config"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/b/.config lacks options the suite needs: CONFIG_Y=y"),
            "{err}"
        );
    }

    fn fake_source(dir: &Path) {
        for f in [
            "Makefile",
            "Kconfig",
            "arch/x86/Kconfig",
            "scripts/kconfig/merge_config.sh",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
    }

    #[test]
    fn tree_detection() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("linux");
        fake_source(&src);
        let src = std::fs::canonicalize(&src).unwrap();
        assert_eq!(detect_tree(&src).unwrap(), Tree::Source(src.clone()));
        // An O= folder: kbuild's generated Makefile includes the source Makefile.
        let obj = tmp.path().join("build");
        std::fs::create_dir(&obj).unwrap();
        std::fs::write(
            obj.join("Makefile"),
            format!(
                "# Automatically generated by {0}/Makefile: don't edit\ninclude {0}/Makefile\n",
                src.display()
            ),
        )
        .unwrap();
        let t = detect_tree(&obj).unwrap();
        let obj = std::fs::canonicalize(&obj).unwrap();
        assert_eq!(
            t,
            Tree::Build {
                objtree: obj.clone(),
                source: src.clone()
            }
        );
        assert_eq!(tree_image(&t), obj.join("arch/x86/boot/bzImage"));
        assert_eq!(tree_short(&t), "build");
        // Errors.
        let err = detect_tree(&tmp.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope: No such file"), "{err}");
        let plain = tmp.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let err = detect_tree(&plain).unwrap_err().to_string();
        assert!(err.contains("is not a kernel source tree"), "{err}");
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = detect_tree(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn config_actions() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fragment::parse("CONFIG_A=y # required\n", "f").unwrap();
        assert_eq!(
            config_action(tmp.path(), &f),
            ConfigAction::Configure("no .config yet")
        );
        std::fs::write(tmp.path().join(".config"), "CONFIG_A=y\n").unwrap();
        assert_eq!(config_action(tmp.path(), &f), ConfigAction::Foreign);
        std::fs::write(tmp.path().join(STAMP), f.normalized()).unwrap();
        assert_eq!(config_action(tmp.path(), &f), ConfigAction::Keep);
        std::fs::write(tmp.path().join(".config"), "# CONFIG_A is not set\n").unwrap();
        assert_eq!(
            config_action(tmp.path(), &f),
            ConfigAction::Configure("the .config lost required options")
        );
        std::fs::write(tmp.path().join(STAMP), "CONFIG_OLD=y\n").unwrap();
        assert_eq!(
            config_action(tmp.path(), &f),
            ConfigAction::Configure("the fragment changed")
        );
    }

    #[test]
    fn tools_name_their_packages() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("gcc"), "").unwrap();
        let tools = [
            Tool {
                what: "gcc",
                package: "gcc",
            },
            Tool {
                what: "flex",
                package: "flex",
            },
            Tool {
                what: "/nonexistent/gelf.h",
                package: "libelf-dev",
            },
        ];
        let missing = missing_tools(&tools, tmp.path().as_os_str());
        let pk: Vec<&str> = missing.iter().map(|t| t.package).collect();
        assert_eq!(pk, ["flex", "libelf-dev"]);
    }

    #[rstest]
    #[case("  CC      mm/mprotect.o", Some("mm/mprotect.o"))]
    #[case("  LD      vmlinux", Some("vmlinux"))]
    #[case("  OBJCOPY arch/x86/boot/setup.bin", Some("arch/x86/boot/setup.bin"))]
    #[case("make[1]: Entering directory", None)]
    #[case("mm/mprotect.c:12: error: x", None)]
    fn progress_lines(#[case] line: &str, #[case] step: Option<&str>) {
        assert_eq!(progress_step(line), step);
    }

    #[rstest]
    #[case("6.12", Some("linux-source-6.12"))]
    #[case("6.1", Some("linux-source-6.1"))]
    #[case("6", None)]
    #[case("6.12.3", None)]
    #[case("six.1", None)]
    #[case("", None)]
    fn source_packages(#[case] series: &str, #[case] want: Option<&str>) {
        assert_eq!(source_package(series).ok().as_deref(), want);
    }

    #[test]
    fn source_dirs() {
        assert_eq!(
            source_dir_name("linux-source-6.12", "6.12.118-1"),
            "linux-source-6.12_6.12.118-1"
        );
        assert_eq!(source_dir_name("p", "1:2"), "p_1%3a2");
    }

    #[test]
    fn build_refuses_bad_trees_before_anything_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            tree: tmp.path().join("missing"),
            out: None,
            fragment: tmp.path().join("f.config"),
            jobs: 1,
            reconfigure: false,
        };
        let err = build(&opts, &|_| {}).unwrap_err().to_string();
        assert!(err.contains("missing: No such file"), "{err}");
        let opts = BuildOptions {
            tree: tmp.path().to_path_buf(),
            ..opts
        };
        let err = build(&opts, &|_| {}).unwrap_err().to_string();
        assert!(err.contains("is not a kernel source tree"), "{err}");
        // A source tree with an in-tree .config cannot take O=.
        let src = tmp.path().join("linux");
        fake_source(&src);
        std::fs::write(src.join(".config"), "").unwrap();
        std::fs::write(tmp.path().join("f.config"), "CONFIG_A=y\n").unwrap();
        let opts = BuildOptions {
            tree: src,
            out: Some(tmp.path().join("o")),
            ..opts
        };
        match build(&opts, &|_| {}) {
            Err(e) if e.to_string().contains("missing kernel build tools") => {}
            Err(e) => assert!(e.to_string().contains("has an in-tree build"), "{e}"),
            Ok(_) => panic!("built a fake tree"),
        }
    }
}
