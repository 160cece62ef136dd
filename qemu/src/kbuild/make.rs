//! The make driver: configures a build folder (base + fragment + `olddefconfig`, only when
//! needed, see [`config_action`]) and runs `make bzImage` with its output in a log and a
//! progress line every 10 s.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::fragment::Fragment;
use super::tools::check_tools;
use super::tree::detect_tree;

/// The base configuration target the fragment is merged onto.
pub const BASE_CONFIG: &str = "tinyconfig";
/// The normalised fragment last merged into a build folder (its presence marks a `.config`
/// this tool wrote; a different fragment triggers a reconfiguration).
pub const STAMP: &str = "pkeys.fragment";
/// The build log written into the build folder.
pub const LOG: &str = "pkeys-build.log";
/// Where the image lands inside a build folder.
pub const IMAGE: &str = "arch/x86/boot/bzImage";

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
