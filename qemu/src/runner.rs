//! The engine behind `pkeys-qemu run`: one kernel ([`run_one`]), or a kernel against a baseline
//! kernel ([`run_baseline`]), returning typed outcomes. The command line (`main.rs`) only parses
//! arguments, prints what these report ([`Progress`]) and what they return, and maps the outcome
//! to an exit status.
//!
//! Also here: what `run` needs around a guest (kernel trees built first, the kernel's
//! configuration checked) and `fetch` (kernels resolved into the cache without booting).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pkeys_report::{Comparison, Expectations, GuestRun, Results, RunStatus};

use crate::accel::{self, Accel, AccelChoice, Decision};
use crate::config::{self, Config};
use crate::guest::{self, Env, Event, GuestSpec};
use crate::kernel::{ResolvedKernel, Resolver};
use crate::{initramfs, kbuild, matrix, outdir, paths, qemu};

/// What `run` was asked to do (one kernel; see [`run_baseline`] for two).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A bzImage/vmlinuz path, a kernel source or build tree, or `debian:<name>`.
    pub kernel: String,
    /// With a kernel tree: boot its bzImage as it is, without running make.
    pub no_build: bool,
    /// qemu CPU model.
    pub cpu: String,
    /// Extra kernel command line.
    pub append: String,
    /// Output folder (`None`: `out/<name>`, or `out/<name>-vs-baseline` for a comparison).
    pub out: Option<PathBuf>,
    /// How long the suite may run, counted from its first line.
    pub timeout: Duration,
    /// How long until the suite's first line.
    pub boot_timeout: Duration,
    /// Guest name (`None`: `<kernel>-<cpu>`).
    pub name: Option<String>,
    /// qemu `-m`.
    pub memory: String,
    /// qemu `-smp`.
    pub smp: u32,
    /// The kernels file (`None`: `ci/kernels.toml`).
    pub config: Option<PathBuf>,
    /// A prebuilt static suite (`None`: built with cargo).
    pub suite: Option<PathBuf>,
    /// Expectations (`None`: `ci/expectations.toml` when present).
    pub expectations: Option<PathBuf>,
    /// Update the Debian package lists even when they are fresh.
    pub refresh: bool,
    /// The accelerator choice.
    pub accel: AccelChoice,
    /// Arguments for the suite in the guest.
    pub suite_args: Vec<String>,
    /// The cache root ([`paths::cache_root`]).
    pub cache: PathBuf,
    /// The qemu binary (`None`: [`qemu::find_qemu`]).
    pub qemu: Option<PathBuf>,
    /// Run under this accelerator without deciding (the kernel under test of a comparison runs
    /// under the baseline's, so that both kernels run on the same (virtual) CPU and no probe of
    /// the kernel under test is mistaken for a KVM problem).
    pub same_accel_as: Option<Accel>,
}

/// What a run reports while it goes (the command line prints it).
#[derive(Debug)]
pub enum Progress<'a> {
    /// A status line.
    Say(&'a str),
    /// A guest's event. For a result line, `expected` is the expectation's reason when the
    /// failure is expected on this kernel (an XFAIL).
    Guest {
        /// The guest.
        name: &'a str,
        /// What happened.
        event: &'a Event,
        /// The reason of the expectation that makes a result line an XFAIL.
        expected: Option<&'a str>,
    },
    /// A run ended (before the next one of a comparison starts).
    Finished(&'a RunOutcome),
}

/// How [`run_one`] ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The guest name.
    pub name: String,
    /// The output folder (results.json, report.md, ... were written there).
    pub out: PathBuf,
    /// The classified results: one run.
    pub results: Results,
    /// Whether the guest passed before classification (no failure at all, expected or not).
    pub raw_ok: bool,
}

impl RunOutcome {
    /// The run.
    pub fn run(&self) -> &GuestRun {
        &self.results.runs[0]
    }

    /// Whether the run passes: complete, and nothing but expected failures.
    pub fn ok(&self) -> bool {
        self.results.exit_code() == 0 && self.run().complete
    }

    /// Every failure is expected on this kernel (the run passes only thanks to expectations).
    pub fn only_expected_failures(&self) -> bool {
        self.ok() && !self.raw_ok
    }

    /// The exit status of `run`: 0 when it passes, else 1.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.ok())
    }

    /// The accelerator the guest ran under.
    pub fn accel(&self) -> Accel {
        if self.run().accel == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }
}

/// How [`run_baseline`] ended.
#[derive(Debug, Clone)]
pub struct BaselineOutcome {
    /// The baseline's kernel spec.
    pub baseline_spec: String,
    /// The kernel under test's spec.
    pub kernel_spec: String,
    /// The output folder (`baseline/` and `after/` in it).
    pub out: PathBuf,
    /// The baseline kernel's run.
    pub baseline: RunOutcome,
    /// The kernel under test's run.
    pub after: RunOutcome,
    /// The verdict changes, baseline → after.
    pub comparison: Comparison,
}

impl BaselineOutcome {
    /// Whether something got worse.
    pub fn worse(&self) -> bool {
        self.comparison.is_worse()
    }

    /// The exit status: 1 when something got worse, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.worse())
    }
}

/// Loads the kernels file: `path`, else `ci/kernels.toml`; `None` when the default is absent
/// and not `required`.
pub fn load_config(path: Option<PathBuf>, required: bool) -> Result<Option<Config>> {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(paths::default_config);
    if !explicit && !required && !path.exists() {
        return Ok(None);
    }
    Config::load(&path).map(Some)
}

/// The number of cores (`make -j` default).
pub fn jobs_default() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `run --kernel DIR`: builds the tree's bzImage (incrementally, configuring only when needed).
/// A tree `kernel build --config FRAG` configured keeps that configuration (its stamp holds the
/// fragment); any other tree is configured with `ci/pkeys.config` as `kernel build` does.
pub fn build_tree(dir: &Path, say: &dyn Fn(&str)) -> Result<()> {
    let stamp = kbuild::detect_tree(dir)
        .map(|t| t.objtree().join(kbuild::STAMP))
        .ok()
        .filter(|s| s.is_file());
    let opts = kbuild::BuildOptions {
        tree: dir.to_path_buf(),
        out: None,
        fragment: stamp.unwrap_or_else(kbuild::default_fragment),
        jobs: jobs_default(),
        reconfigure: false,
    };
    kbuild::build(&opts, say)?;
    Ok(())
}

/// What the kernel lacks of `ci/pkeys.config`'s required options, as one line (a warning, not
/// a refusal).
pub fn config_check_line(kernel: &Path) -> String {
    let frag_path = kbuild::default_fragment();
    match kbuild::Fragment::load(&frag_path) {
        Ok(frag) => crate::kconfig_check::check(kernel, &frag).line("ci/pkeys.config"),
        Err(e) => format!(
            "kernel config: could not check it: {}: {e:#}",
            frag_path.display()
        ),
    }
}

/// A file-name-safe short name for a kernel spec (the guest name of a baseline comparison).
pub fn spec_short(spec: &str) -> String {
    if let Some(name) = spec.strip_prefix("debian:") {
        return config::cpu_slug(name);
    }
    let path = Path::new(spec);
    if let Ok(tree) = kbuild::detect_tree(path) {
        return kbuild::tree_short(&tree);
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let slug = config::cpu_slug(stem);
    if slug.is_empty() {
        "kernel".to_owned()
    } else {
        slug
    }
}

/// The expectation's reason when a result is an expected failure on `run`'s kernel.
fn expected_reason<'e>(
    case: &pkeys_report::CaseResult,
    run: &GuestRun,
    expectations: &'e Expectations,
) -> Option<&'e str> {
    let e = expectations.lookup(run, &case.id)?;
    (pkeys_report::classify::classified(case.verdict, e.verdict) == pkeys_report::Verdict::XFail)
        .then_some(e.reason.as_str())
}

/// Boots one kernel and runs the suite in it; writes the results into the output folder.
/// An `Err` is bad input or a failure to prepare; what the guest did is in the outcome.
pub fn run_one(o: &RunOptions, progress: &(dyn Fn(Progress<'_>) + Sync)) -> Result<RunOutcome> {
    let say = |msg: &str| progress(Progress::Say(msg));
    if let Err(e) = config::check_append(&o.append) {
        bail!("--append: {e}");
    }
    let debian = o.kernel.starts_with("debian:");
    let cfg = load_config(o.config.clone(), debian)?;
    if !debian {
        // Bad paths are reported before anything else is looked at.
        let path = Path::new(&o.kernel);
        if path.is_dir() {
            if !o.no_build {
                build_tree(path, &say)?;
            }
        } else if path.exists()
            || cfg
                .as_ref()
                .is_none_or(|c| !c.file.kernels.contains_key(&o.kernel))
        {
            crate::kernel::check_image(path)?;
        }
    }
    if let (Some(name), Some(cfg)) = (o.kernel.strip_prefix("debian:"), &cfg) {
        cfg.kernel_source(name)?;
    }
    let expectations = matrix::load_expectations(o.expectations.as_deref())?;
    if let Some(suite) = &o.suite {
        crate::suite::check_static(suite)?;
    }
    let qemu_bin = match &o.qemu {
        Some(q) => q.clone(),
        None => qemu::find_qemu()?,
    };
    qemu::check_cpu(&o.cpu, qemu::cpu_models(&qemu_bin)?)?;
    let kernel = Resolver::new(&o.cache, o.refresh).resolve(&o.kernel, cfg.as_ref())?;
    if !debian && Path::new(&o.kernel).exists() {
        // Once the input is known to be good: what the kernel lacks (a warning, not a refusal).
        say(&config_check_line(Path::new(&o.kernel)));
    }
    let name = o
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", kernel.short, config::cpu_slug(&o.cpu)));
    if name.is_empty() || name.contains('/') {
        bail!("--name {name:?}: not usable as a file name");
    }
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| paths::workspace_root().join("out").join(&name));
    outdir::check(&out)?;
    let suite = matrix::suite_binary(o.suite.as_deref())?;
    let base = initramfs::base_image(&suite, &o.cache)?;
    outdir::prepare_announced(&out)?;
    let env = Env {
        qemu: &qemu_bin,
        base_image: &base,
        out: &out,
    };
    let decision = decide_accel(o, &kernel, &env)?;
    if let Some(why) = &decision.why_not {
        say(why);
    }
    let (accel, cpu) = accel::placement(&o.cpu, decision.kvm);
    let host = accel::host_record();
    let spec = GuestSpec {
        name: name.clone(),
        kernel,
        accel,
        cpu,
        append: o.append.clone(),
        args: o.suite_args.clone(),
        memory: o.memory.clone(),
        smp: o.smp,
        timeout: o.timeout
            + pkeys_common::suite_args::explore_budget(&o.suite_args).unwrap_or_default(),
        boot_timeout: o.boot_timeout,
    };
    say(&format!(
        "{name}: kernel {} ({}), cpu {} under {} (host: {}, pku={} ospke={}), output in {}",
        spec.kernel.path.display(),
        if spec.kernel.info.package.is_empty() {
            spec.kernel.info.version.clone()
        } else {
            format!("{} {}", spec.kernel.info.package, spec.kernel.info.version)
        },
        spec.cpu,
        spec.accel,
        host.model,
        u8::from(host.pku),
        u8::from(host.ospke),
        out.display()
    ));
    // Result lines are classified as they arrive, against what is known before the guest's
    // header: the kernel package version, CPU, command line and accelerator.
    let mut provisional = GuestRun::new(
        name.clone(),
        spec.kernel.info.clone(),
        spec.cpu.clone(),
        spec.append.clone(),
    );
    provisional.accel = spec.accel.to_string();
    let on_event = |name: &str, event: Event| {
        let expected = match &event {
            Event::Result { case, .. } => expected_reason(case, &provisional, &expectations),
            _ => None,
        };
        progress(Progress::Guest {
            name,
            event: &event,
            expected,
        });
    };
    let run = guest::run(&spec, &env, &on_event)?;
    let raw_ok = guest::run_passed(&run);
    let mut results = Results::new(vec![run]);
    pkeys_report::classify_all(&mut results, &expectations);
    pkeys_report::write_all(&results, &out).context("cannot write the results")?;
    let outcome = RunOutcome {
        name,
        out,
        results,
        raw_ok,
    };
    progress(Progress::Finished(&outcome));
    Ok(outcome)
}

/// KVM or TCG for one run: the baseline's when given, TCG for a named CPU model, else
/// [`accel::decide`] (with a probe guest).
fn decide_accel(o: &RunOptions, kernel: &ResolvedKernel, env: &Env<'_>) -> Result<Decision> {
    let named_model = accel::placement(&o.cpu, true).0 == Accel::Tcg;
    Ok(match (named_model, o.accel) {
        _ if o.same_accel_as.is_some() => Decision {
            kvm: o.same_accel_as == Some(Accel::Kvm),
            why_not: None,
        },
        (true, AccelChoice::Kvm) => bail!(
            "--accel kvm: CPU model {} cannot run under KVM, which offers only the host's CPU \
             (use --cpu max or host)",
            o.cpu
        ),
        (true, choice) => Decision {
            kvm: false,
            why_not: (choice == AccelChoice::Auto).then(|| {
                format!(
                    "cpu {}: TCG (KVM offers only the host's CPU; --cpu max runs on it)",
                    o.cpu
                )
            }),
        },
        (false, choice) => accel::decide(choice, accel::host_has_pkeys(), || {
            accel::probe_kvm(kernel, env)
        })?,
    })
}

/// `run --kernel A --baseline B`: both kernels under one guest name, into `OUT/baseline` and
/// `OUT/after`, the kernel under test under the baseline's accelerator; then
/// [`pkeys_report::compare()`] of the two runs' results (in memory).
pub fn run_baseline(
    o: &RunOptions,
    baseline: &str,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<BaselineOutcome> {
    let say = |msg: &str| progress(Progress::Say(msg));
    if let Err(e) = config::check_append(&o.append) {
        bail!("--append: {e}");
    }
    let name = o
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", spec_short(&o.kernel), config::cpu_slug(&o.cpu)));
    let out = o.out.clone().unwrap_or_else(|| {
        paths::workspace_root()
            .join("out")
            .join(format!("{name}-vs-baseline"))
    });
    // Nothing of an earlier comparison is removed before both trees have built: a typo or a
    // patch that does not compile leaves it as it was.
    outdir::check(&out)?;
    // Build both trees first: a patch that does not compile fails before anything boots.
    for spec in [o.kernel.as_str(), baseline] {
        let path = Path::new(spec);
        if path.is_dir() && !o.no_build {
            build_tree(path, &say)?;
        }
    }
    outdir::prepare_announced(&out)?;
    let mut base_accel = None;
    let mut outcomes = Vec::new();
    for (role, spec) in [("baseline", baseline), ("after", o.kernel.as_str())] {
        let mut one = o.clone();
        one.same_accel_as = base_accel;
        one.no_build = true;
        one.kernel = spec.to_owned();
        // Each run is named after its own kernel (the baseline's files and lines must not carry
        // the name of the kernel under test).
        one.name = Some(if role == "baseline" {
            match &o.name {
                Some(n) => format!("{n}-baseline"),
                None => format!("{}-{}", spec_short(baseline), config::cpu_slug(&o.cpu)),
            }
        } else {
            name.clone()
        });
        one.out = Some(out.join(role));
        say(&format!("{role}: {spec}"));
        let outcome = run_one(&one, progress)?;
        if crate::cleanup::interrupted() {
            bail!("interrupted");
        }
        if role == "baseline" {
            // The kernel under test runs under the baseline's accelerator.
            base_accel = Some(outcome.accel());
        }
        outcomes.push(outcome);
    }
    let after = outcomes.pop().expect("two runs");
    let before = outcomes.pop().expect("two runs");
    // One run a side: compared with each other whatever their names.
    let comparison = pkeys_report::compare(&before.results, &after.results);
    Ok(BaselineOutcome {
        baseline_spec: baseline.to_owned(),
        kernel_spec: o.kernel.clone(),
        out,
        baseline: before,
        after,
        comparison,
    })
}

/// `fetch`: resolves each named Debian kernel into the cache (`on_each` gets every result as it
/// comes); stops early when interrupted. Returns how many failed.
pub fn fetch(
    names: &[String],
    cfg: &Config,
    cache: &Path,
    refresh: bool,
    on_each: &mut dyn FnMut(&str, &Result<ResolvedKernel>),
) -> usize {
    let mut resolver = Resolver::new(cache, refresh);
    let mut failed = 0;
    for name in names {
        let k = resolver.resolve_named(name, cfg, &format!("debian:{name}"));
        if k.is_err() {
            failed += 1;
        }
        on_each(name, &k);
        if crate::cleanup::interrupted() {
            break;
        }
    }
    failed
}

/// `kernel source`: fetches `linux-source-<series>` from `suites` (default
/// [`kbuild::SOURCE_SUITES`]) into `out` (default `<cache>/src`); returns the tree.
pub fn fetch_kernel_source(
    series: &str,
    suites: &[String],
    out: Option<PathBuf>,
    cache: &Path,
    refresh: bool,
    say: &dyn Fn(&str),
) -> Result<PathBuf> {
    let suites: Vec<String> = if suites.is_empty() {
        kbuild::SOURCE_SUITES
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        suites.to_vec()
    };
    // Share the runner's apt state: its sources.list lists the suites of kernels.toml (plus
    // ours when they are not among them).
    let mut all = load_config(None, false)?
        .map(|c| c.all_suites())
        .unwrap_or_default();
    for s in &suites {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    let out = out.unwrap_or_else(|| cache.join("src"));
    kbuild::fetch_source(
        series,
        &suites,
        &all,
        &cache.join("apt"),
        &out,
        refresh,
        say,
    )
}

/// The status of a finished run as printed: the console tail of an ERROR (up to 12 lines).
pub fn console_tail(run: &GuestRun) -> &[String] {
    match &run.status {
        RunStatus::Error { console_tail, .. } => {
            &console_tail[console_tail.len().saturating_sub(12)..]
        }
        RunStatus::Completed => &[],
    }
}
