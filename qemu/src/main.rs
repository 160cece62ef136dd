//! `pkeys-qemu`: run the pkeys suite in qemu guests (one kernel, or the whole matrix).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use pkeys_qemu::config::{self, Config};
use pkeys_qemu::guest::{self, Env, Event, GuestSpec};
use pkeys_qemu::kernel::Resolver;
use pkeys_qemu::{cleanup, initramfs, matrix, paths, qemu};
use pkeys_report::Results;

/// Run the pkeys conformance suite in qemu guests.
#[derive(Debug, Parser)]
#[command(name = "pkeys-qemu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot one kernel and run the suite in it.
    Run(RunArgs),
    /// Run the matrix of kernels.toml concurrently and write the report.
    Matrix(MatrixArgs),
    /// Resolve and fetch kernels into the cache (all, or the named ones) without booting.
    Fetch(FetchArgs),
    /// Measure boot-to-verdict, runner overhead, matrix wall time and per-case overhead
    /// (docs/bench.md).
    Bench(pkeys_qemu::bench::BenchArgs),
    /// Build a kernel under test, or fetch a Debian kernel source tree (patch validation).
    #[command(subcommand)]
    Kernel(KernelCommand),
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// The kernels file (default: ci/kernels.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A prebuilt static pkeys-suite (default: build it with cargo).
    #[arg(long, value_name = "PATH")]
    suite: Option<PathBuf>,
    /// Expectations used to classify results (default: ci/expectations.toml when present).
    #[arg(long, value_name = "FILE")]
    expectations: Option<PathBuf>,
    /// Update the Debian package lists even when they are fresh.
    #[arg(long)]
    refresh: bool,
    /// Accelerator: `auto` uses KVM when a probe guest shows it works (a guest on `max` then
    /// runs on `-cpu host`; named CPU models stay under TCG), otherwise TCG with the reason;
    /// `kvm` refuses when KVM does not work; `tcg` never tries it.
    #[arg(long, value_enum, default_value_t = pkeys_qemu::accel::AccelChoice::Auto)]
    accel: pkeys_qemu::accel::AccelChoice,
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// A bzImage/vmlinuz path, a kernel source or build tree (built first), or debian:<name>
    /// from kernels.toml (e.g. debian:6.12).
    #[arg(long, value_name = "SPEC")]
    kernel: String,
    /// Run this kernel too (same forms as --kernel) into OUT/baseline, --kernel into OUT/after,
    /// and list the cases whose verdict changed; exit 1 if anything got worse.
    #[arg(long, value_name = "SPEC")]
    baseline: Option<String>,
    /// With a kernel tree: boot its bzImage as it is, without running make.
    #[arg(long)]
    no_build: bool,
    /// qemu CPU model (with PKU under TCG: max, Skylake-Server, EPYC-Milan, ...).
    #[arg(long, default_value = "max", value_name = "MODEL")]
    cpu: String,
    /// Extra kernel command line (e.g. init_pkru=0x55555550).
    #[arg(long, default_value = "", value_name = "ARGS")]
    append: String,
    /// Output folder (default: out/<name>). An earlier run's files in it are removed first; a
    /// folder holding other files is refused.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Seconds the suite may run, counted from its first line (the boot has --boot-timeout).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    timeout: u64,
    /// Seconds until the suite's first line (else: boot failure, retried once).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    boot_timeout: u64,
    /// Guest name (file names; default: <kernel>-<cpu>).
    #[arg(long)]
    name: Option<String>,
    /// qemu -m.
    #[arg(long, default_value = "512M")]
    memory: String,
    /// qemu -smp.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    #[command(flatten)]
    common: Common,
    /// Arguments for the suite in the guest (after `--`).
    #[arg(last = true, value_name = "SUITE ARGS")]
    suite_args: Vec<String>,
    /// Set by `--baseline` for the second run: the accelerator the baseline ran under, so that
    /// both kernels run on the same (virtual) CPU and no probe of the kernel under test is
    /// mistaken for a KVM problem.
    #[arg(skip)]
    same_accel_as: Option<pkeys_qemu::accel::Accel>,
}

#[derive(Debug, Args)]
struct MatrixArgs {
    /// Output folder (default: out/matrix). An earlier run's files in it are removed first; a
    /// folder holding other files is refused.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Guests at once (default: the number of cores).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Run the K-th of N slices of the matrix (for CI fan-out; merge with pkeys-report merge).
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Only guests whose name or kernel matches one of these globs.
    #[arg(long, num_args = 1.., value_name = "NAME")]
    only: Vec<String>,
    /// Print the selected guests and exit.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    common: Common,
    /// Arguments for every guest's suite (e.g. `-- explore:: --iterations 20`).
    #[arg(last = true, value_name = "SUITE ARGS")]
    suite_args: Vec<String>,
}

#[derive(Debug, Args)]
struct FetchArgs {
    /// The kernels file (default: ci/kernels.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Update the Debian package lists even when they are fresh.
    #[arg(long)]
    refresh: bool,
    /// Kernel names (default: every Debian kernel of the file).
    names: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cleanup::install() {
        eprintln!("pkeys-qemu: error: cannot install the signal handler: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Run(a) => cmd_run(a),
        Command::Matrix(a) => cmd_matrix(a),
        Command::Fetch(a) => cmd_fetch(a),
        Command::Bench(a) => pkeys_qemu::bench::run(&a),
        Command::Kernel(KernelCommand::Build(a)) => cmd_kernel_build(a),
        Command::Kernel(KernelCommand::Source(a)) => cmd_kernel_source(a),
    };
    match result {
        _ if cleanup::interrupted() => {
            eprintln!("pkeys-qemu: interrupted; no guest left running");
            ExitCode::from(cleanup::exit_code() as u8)
        }
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pkeys-qemu: error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn load_config(path: Option<PathBuf>, required: bool) -> Result<Option<Config>> {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(paths::default_config);
    if !explicit && !required && !path.exists() {
        return Ok(None);
    }
    Config::load(&path).map(Some)
}

fn cmd_run(a: RunArgs) -> Result<u8> {
    if let Err(e) = config::check_append(&a.append) {
        bail!("--append: {e}");
    }
    if a.baseline.is_some() {
        return cmd_run_baseline(a);
    }
    let debian = a.kernel.starts_with("debian:");
    let cfg = load_config(a.common.config.clone(), debian)?;
    if !debian {
        // Bad paths are reported before anything else is looked at.
        let path = std::path::Path::new(&a.kernel);
        if path.is_dir() {
            if !a.no_build {
                build_tree(path)?;
            }
        } else if path.exists()
            || cfg
                .as_ref()
                .is_none_or(|c| !c.file.kernels.contains_key(&a.kernel))
        {
            pkeys_qemu::kernel::check_image(path)?;
        }
    }
    if let (Some(name), Some(cfg)) = (a.kernel.strip_prefix("debian:"), &cfg) {
        cfg.kernel_source(name)?;
    }
    let expectations = matrix::load_expectations(a.common.expectations.as_deref())?;
    if let Some(suite) = &a.common.suite {
        pkeys_qemu::suite::check_static(suite)?;
    }
    let qemu_bin = qemu::find_qemu()?;
    qemu::check_cpu(&a.cpu, qemu::cpu_models(&qemu_bin)?)?;
    let cache = paths::cache_root();
    let kernel = Resolver::new(&cache, a.common.refresh).resolve(&a.kernel, cfg.as_ref())?;
    if !debian && std::path::Path::new(&a.kernel).exists() {
        // Once the input is known to be good: what the kernel lacks (a warning, not a refusal).
        say_config_check(std::path::Path::new(&a.kernel));
    }
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", kernel.short, config::cpu_slug(&a.cpu)));
    if name.is_empty() || name.contains('/') {
        bail!("--name {name:?}: not usable as a file name");
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| paths::workspace_root().join("out").join(&name));
    pkeys_qemu::outdir::check(&out)?;
    let suite = matrix::suite_binary(a.common.suite.as_deref())?;
    let base = initramfs::base_image(&suite, &cache)?;
    pkeys_qemu::outdir::prepare_announced(&out)?;
    let env = Env {
        qemu: &qemu_bin,
        base_image: &base,
        out: &out,
    };
    use pkeys_qemu::accel::{Accel, AccelChoice, Decision};
    let named_model = pkeys_qemu::accel::placement(&a.cpu, true).0 == Accel::Tcg;
    let decision = match (named_model, a.common.accel) {
        _ if a.same_accel_as.is_some() => Decision {
            kvm: a.same_accel_as == Some(Accel::Kvm),
            why_not: None,
        },
        (true, AccelChoice::Kvm) => bail!(
            "--accel kvm: CPU model {} cannot run under KVM, which offers only the host's CPU \
             (use --cpu max or host)",
            a.cpu
        ),
        (true, choice) => Decision {
            kvm: false,
            why_not: (choice == AccelChoice::Auto).then(|| {
                format!(
                    "cpu {}: TCG (KVM offers only the host's CPU; --cpu max runs on it)",
                    a.cpu
                )
            }),
        },
        (false, choice) => {
            pkeys_qemu::accel::decide(choice, pkeys_qemu::accel::host_has_pkeys(), || {
                pkeys_qemu::accel::probe_kvm(&kernel, &env)
            })?
        }
    };
    if let Some(why) = &decision.why_not {
        say(why);
    }
    let (accel, cpu) = pkeys_qemu::accel::placement(&a.cpu, decision.kvm);
    let host = pkeys_qemu::accel::host_record();
    let spec = GuestSpec {
        name: name.clone(),
        kernel,
        accel,
        cpu,
        append: a.append.clone(),
        args: a.suite_args.clone(),
        memory: a.memory.clone(),
        smp: a.smp,
        timeout: Duration::from_secs(a.timeout)
            + pkeys_common::suite_args::explore_budget(&a.suite_args).unwrap_or_default(),
        boot_timeout: Duration::from_secs(a.boot_timeout),
    };
    eprintln!(
        "pkeys-qemu: {name}: kernel {} ({}), cpu {} under {} (host: {}, pku={} ospke={}), output in {}",
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
    );
    // Result lines are classified as they arrive, against what is known before the guest's
    // header: the kernel package version, CPU, command line and accelerator.
    let mut provisional = pkeys_report::GuestRun::new(
        name.clone(),
        spec.kernel.info.clone(),
        spec.cpu.clone(),
        spec.append.clone(),
    );
    provisional.accel = spec.accel.to_string();
    let progress = |name: &str, event: Event| match event {
        Event::Booting { attempt } => eprintln!("pkeys-qemu: {name}: booting (attempt {attempt})"),
        Event::Started { after_s } => {
            eprintln!("pkeys-qemu: {name}: suite started after {after_s:.1} s")
        }
        Event::Result(line) => eprintln!("  {}", live_line(&line, &provisional, &expectations)),
        Event::Plan { .. } => {}
        Event::Retrying { reason } => {
            eprintln!(
                "pkeys-qemu: {name}: failed before the suite started ({reason}); retrying once"
            )
        }
    };
    let run = guest::run(&spec, &env, &progress)?;
    if let pkeys_report::RunStatus::Error { console_tail, .. } = &run.status
        && !console_tail.is_empty()
    {
        eprintln!("pkeys-qemu: {name}: last console lines:");
        for line in console_tail.iter().rev().take(12).rev() {
            eprintln!("  | {line}");
        }
    }
    let raw_ok = guest::run_passed(&run);
    let mut results = Results::new(vec![run]);
    pkeys_report::classify_all(&mut results, &expectations);
    pkeys_report::write_all(&results, &out).context("cannot write the results")?;
    eprintln!("pkeys-qemu: {}", guest::summary_line(&results.runs[0]));
    let ok = results.exit_code() == 0 && results.runs[0].complete;
    if ok && !raw_ok {
        eprintln!(
            "pkeys-qemu: {name}: every failure is expected on this kernel (see {})",
            out.join("report.md").display()
        );
    }
    Ok(if ok { 0 } else { 1 })
}

/// A live result line as a person should read it: an expected failure says so.
fn live_line(
    line: &str,
    run: &pkeys_report::GuestRun,
    expectations: &pkeys_report::Expectations,
) -> String {
    let Some(case) = pkeys_report::ktap::parse_result_line(line) else {
        return line.to_owned();
    };
    match expectations.lookup(run, &case.id) {
        Some(e)
            if pkeys_report::classify::classified(case.verdict, e.verdict)
                == pkeys_report::Verdict::XFail =>
        {
            format!("{line}  [XFAIL: expected on this kernel: {}]", e.reason)
        }
        _ => line.to_owned(),
    }
}

fn cmd_matrix(a: MatrixArgs) -> Result<u8> {
    let config = a
        .common
        .config
        .clone()
        .unwrap_or_else(paths::default_config);
    let shard = a.shard.as_deref().map(matrix::parse_shard).transpose()?;
    if a.list {
        let cfg = Config::load(&config)?;
        for g in matrix::select(cfg.guests(), &a.only, shard)? {
            println!(
                "{}\tkernel={} cpu={} append={:?}",
                g.name, g.kernel, g.cpu, g.append
            );
        }
        return Ok(0);
    }
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let opts = matrix::MatrixOptions {
        config,
        out: a
            .out
            .unwrap_or_else(|| paths::workspace_root().join("out/matrix")),
        jobs,
        shard,
        only: a.only,
        suite: a.common.suite,
        expectations: a.common.expectations,
        refresh: a.common.refresh,
        cache: paths::cache_root(),
        accel: a.common.accel,
        suite_args: a.suite_args,
    };
    let results = matrix::run(&opts)?;
    Ok(results.exit_code() as u8)
}

fn cmd_fetch(a: FetchArgs) -> Result<u8> {
    let cfg = load_config(a.config, true)?.context("no kernels file")?;
    let names = if a.names.is_empty() {
        cfg.kernel_names()
    } else {
        a.names
            .iter()
            .map(|n| n.strip_prefix("debian:").unwrap_or(n).to_owned())
            .collect()
    };
    let mut resolver = Resolver::new(&paths::cache_root(), a.refresh);
    let mut failed = 0;
    for name in names {
        match resolver.resolve_named(&name, &cfg, &format!("debian:{name}")) {
            Ok(k) => println!(
                "{name}\t{}\t{}\t{}",
                if k.info.package.is_empty() {
                    "-"
                } else {
                    &k.info.package
                },
                k.info.version,
                k.path.display()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("pkeys-qemu: {name}: {}", one_line(&format!("{e:#}")));
            }
        }
        if cleanup::interrupted() {
            break;
        }
    }
    Ok(u8::from(failed > 0))
}

#[derive(Debug, Subcommand)]
enum KernelCommand {
    /// Configure (tinyconfig + ci/pkeys.config) and build a bzImage from a kernel tree.
    Build(KernelBuildArgs),
    /// Fetch Debian's linux-source-<SERIES> and unpack it into the cache; prints the tree.
    Source(KernelSourceArgs),
}

#[derive(Debug, Args)]
struct KernelBuildArgs {
    /// A kernel source tree, or a build folder of one (make O=...).
    #[arg(long, value_name = "DIR")]
    source: PathBuf,
    /// Build folder (make O=DIR; default: in the tree, or the build folder given).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The configuration fragment (default: ci/pkeys.config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// make -j (default: the number of cores).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Configure again even when the .config is up to date (or was not written by pkeys-qemu).
    #[arg(long)]
    reconfigure: bool,
}

#[derive(Debug, Args)]
struct KernelSourceArgs {
    /// The kernel series, e.g. 6.12 (Debian package linux-source-6.12).
    series: String,
    /// Where to unpack (default: <cache>/src).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Debian suites to search, newest version wins (default: trixie, trixie-security).
    #[arg(long = "suite", value_name = "SUITE")]
    suites: Vec<String>,
    /// Update the Debian package lists even when they are fresh.
    #[arg(long)]
    refresh: bool,
}

fn jobs_default() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn say(msg: &str) {
    eprintln!("pkeys-qemu: {msg}");
}

/// `run --kernel DIR`: builds the tree's bzImage (incrementally, configuring only when needed).
/// A tree `kernel build --config FRAG` configured keeps that configuration (its stamp holds the
/// fragment); any other tree is configured with `ci/pkeys.config` as `kernel build` does.
fn build_tree(dir: &std::path::Path) -> Result<()> {
    let stamp = pkeys_qemu::kbuild::detect_tree(dir)
        .map(|t| t.objtree().join(pkeys_qemu::kbuild::STAMP))
        .ok()
        .filter(|s| s.is_file());
    let opts = pkeys_qemu::kbuild::BuildOptions {
        tree: dir.to_path_buf(),
        out: None,
        fragment: stamp.unwrap_or_else(pkeys_qemu::kbuild::default_fragment),
        jobs: jobs_default(),
        reconfigure: false,
    };
    pkeys_qemu::kbuild::build(&opts, &say)?;
    Ok(())
}

/// Say what the kernel lacks of `ci/pkeys.config`'s required options (a warning, not a refusal).
fn say_config_check(kernel: &std::path::Path) {
    let frag_path = pkeys_qemu::kbuild::default_fragment();
    match pkeys_qemu::kbuild::Fragment::load(&frag_path) {
        Ok(frag) => say(&pkeys_qemu::kconfig_check::check(kernel, &frag).line("ci/pkeys.config")),
        Err(e) => say(&format!(
            "kernel config: could not check it: {}: {e:#}",
            frag_path.display()
        )),
    }
}

fn cmd_kernel_build(a: KernelBuildArgs) -> Result<u8> {
    let opts = pkeys_qemu::kbuild::BuildOptions {
        tree: a.source,
        out: a.out,
        fragment: a
            .config
            .unwrap_or_else(pkeys_qemu::kbuild::default_fragment),
        jobs: a.jobs.unwrap_or_else(jobs_default),
        reconfigure: a.reconfigure,
    };
    let built = pkeys_qemu::kbuild::build(&opts, &say)?;
    println!("{}", built.image.display());
    Ok(0)
}

fn cmd_kernel_source(a: KernelSourceArgs) -> Result<u8> {
    let suites: Vec<String> = if a.suites.is_empty() {
        pkeys_qemu::kbuild::SOURCE_SUITES
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        a.suites
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
    let cache = paths::cache_root();
    let out = a.out.unwrap_or_else(|| cache.join("src"));
    let tree = pkeys_qemu::kbuild::fetch_source(
        &a.series,
        &suites,
        &all,
        &cache.join("apt"),
        &out,
        a.refresh,
        &say,
    )?;
    println!("{}", tree.display());
    Ok(0)
}

/// A file-name-safe short name for a kernel spec (the guest name of a baseline comparison).
fn spec_short(spec: &str) -> String {
    if let Some(name) = spec.strip_prefix("debian:") {
        return config::cpu_slug(name);
    }
    let path = std::path::Path::new(spec);
    if let Ok(tree) = pkeys_qemu::kbuild::detect_tree(path) {
        return pkeys_qemu::kbuild::tree_short(&tree);
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let slug = config::cpu_slug(stem);
    if slug.is_empty() {
        "kernel".to_owned()
    } else {
        slug
    }
}

/// `run --kernel A --baseline B`: both kernels under one guest name, into OUT/baseline and
/// OUT/after, then `pkeys_report::compare`.
fn cmd_run_baseline(a: RunArgs) -> Result<u8> {
    let baseline = a.baseline.clone().expect("checked by the caller");
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", spec_short(&a.kernel), config::cpu_slug(&a.cpu)));
    let out = a.out.clone().unwrap_or_else(|| {
        paths::workspace_root()
            .join("out")
            .join(format!("{name}-vs-baseline"))
    });
    // Nothing of an earlier comparison is removed before both trees have built: a typo or a
    // patch that does not compile leaves it as it was.
    pkeys_qemu::outdir::check(&out)?;
    // Build both trees first: a patch that does not compile fails before anything boots.
    for spec in [&a.kernel, &baseline] {
        let path = std::path::Path::new(spec.as_str());
        if path.is_dir() && !a.no_build {
            build_tree(path)?;
        }
    }
    pkeys_qemu::outdir::prepare_announced(&out)?;
    let mut runs = Vec::new();
    let mut base_accel = None;
    for (role, spec) in [("baseline", baseline.clone()), ("after", a.kernel.clone())] {
        let mut one = a.clone();
        one.same_accel_as = base_accel;
        one.baseline = None;
        one.no_build = true;
        one.kernel = spec.clone();
        // Each run is named after its own kernel (the baseline's files and lines must not carry
        // the name of the kernel under test).
        one.name = Some(if role == "baseline" {
            match &a.name {
                Some(n) => format!("{n}-baseline"),
                None => format!("{}-{}", spec_short(&baseline), config::cpu_slug(&a.cpu)),
            }
        } else {
            name.clone()
        });
        one.out = Some(out.join(role));
        say(&format!("{role}: {spec}"));
        let code = cmd_run(one)?;
        if cleanup::interrupted() {
            return Ok(1);
        }
        let results = Results::load(out.join(role).join("results.json"))
            .with_context(|| format!("cannot read the {role} results"))?;
        if role == "baseline" {
            // The kernel under test runs under the baseline's accelerator.
            base_accel = results.runs.first().map(|r| {
                if r.accel == "kvm" {
                    pkeys_qemu::accel::Accel::Kvm
                } else {
                    pkeys_qemu::accel::Accel::Tcg
                }
            });
        }
        runs.push((code, results));
    }
    // One run a side: compared with each other whatever their names.
    let cmp = pkeys_report::compare(&runs[0].1, &runs[1].1);
    println!("verdict changes, {baseline} -> {}:", a.kernel);
    print!("{cmp}");
    let worse = cmp.is_worse();
    say(&format!(
        "{}; results in {} and {}",
        if worse {
            "something got worse"
        } else {
            "nothing got worse"
        },
        out.join("baseline").display(),
        out.join("after").display()
    ));
    Ok(u8::from(worse))
}
