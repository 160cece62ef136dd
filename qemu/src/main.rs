//! `pkeys-qemu`: run the pkeys suite in qemu guests (one kernel, or the whole matrix).
//!
//! A thin command line: it parses the arguments, calls the library ([`pkeys_qemu::runner`],
//! [`pkeys_qemu::matrix`], [`pkeys_qemu::bench`], [`pkeys_qemu::kbuild`]), prints what they
//! report and return, and maps the outcome to an exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use pkeys_qemu::config::Config;
use pkeys_qemu::guest::{self, Event};
use pkeys_qemu::runner::{self, BaselineOutcome, Progress, RunOptions, RunOutcome};
use pkeys_qemu::{cleanup, kbuild, matrix, paths};

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

#[derive(Debug, Args)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cleanup::install() {
        pkeys_qemu::say!("error: cannot install the signal handler: {e}");
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
            pkeys_qemu::say!("interrupted; no guest left running");
            ExitCode::from(cleanup::exit_code() as u8)
        }
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            pkeys_qemu::say!("error: {}", one_line(&format!("{e:#}")));
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

use pkeys_qemu::progress::say;

/// Prints what a run reports while it goes.
fn show(p: Progress<'_>) {
    match p {
        Progress::Say(msg) => say(msg),
        Progress::Guest {
            name,
            event,
            expected,
        } => match event {
            Event::Booting { attempt } => say(&format!("{name}: booting (attempt {attempt})")),
            Event::Started { after_s } => {
                say(&format!("{name}: suite started after {after_s:.1} s"))
            }
            Event::Result { line, .. } => match expected {
                Some(reason) => {
                    eprintln!("  {line}  [XFAIL: expected on this kernel: {reason}]")
                }
                None => eprintln!("  {line}"),
            },
            Event::Plan { .. } => {}
            Event::Retrying { reason } => say(&format!(
                "{name}: failed before the suite started ({reason}); retrying once"
            )),
        },
        Progress::Finished(outcome) => show_finished(outcome),
    }
}

/// A finished run: the console tail of an ERROR, the summary line, and a note when every
/// failure is expected.
fn show_finished(o: &RunOutcome) {
    let tail = runner::console_tail(o.run());
    if !tail.is_empty() {
        say(&format!("{}: last console lines:", o.name));
        for line in tail {
            eprintln!("  | {line}");
        }
    }
    say(&guest::summary_line(o.run()));
    if o.only_expected_failures() {
        say(&format!(
            "{}: every failure is expected on this kernel (see {})",
            o.name,
            o.out.join("report.md").display()
        ));
    }
}

fn run_options(a: &RunArgs) -> RunOptions {
    RunOptions {
        kernel: a.kernel.clone(),
        no_build: a.no_build,
        cpu: a.cpu.clone(),
        append: a.append.clone(),
        out: a.out.clone(),
        timeout: Duration::from_secs(a.timeout),
        boot_timeout: Duration::from_secs(a.boot_timeout),
        name: a.name.clone(),
        memory: a.memory.clone(),
        smp: a.smp,
        config: a.common.config.clone(),
        suite: a.common.suite.clone(),
        expectations: a.common.expectations.clone(),
        refresh: a.common.refresh,
        accel: a.common.accel,
        suite_args: a.suite_args.clone(),
        cache: paths::cache_root(),
        qemu: None,
        same_accel_as: None,
    }
}

fn cmd_run(a: RunArgs) -> Result<u8> {
    let opts = run_options(&a);
    match &a.baseline {
        None => Ok(runner::run_one(&opts, &show)?.exit_code()),
        Some(baseline) => {
            let outcome = runner::run_baseline(&opts, baseline, &show)?;
            show_comparison(&outcome);
            Ok(outcome.exit_code())
        }
    }
}

/// The verdict changes of a comparison (stdout), and whether anything got worse.
fn show_comparison(o: &BaselineOutcome) {
    println!("verdict changes, {} -> {}:", o.baseline_spec, o.kernel_spec);
    print!("{}", o.comparison);
    say(&format!(
        "{}; results in {} and {}",
        if o.worse() {
            "something got worse"
        } else {
            "nothing got worse"
        },
        o.out.join("baseline").display(),
        o.out.join("after").display()
    ));
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
    let jobs = a.jobs.unwrap_or_else(runner::jobs_default);
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
    let cfg = runner::load_config(a.config, true)?.context("no kernels file")?;
    let names = if a.names.is_empty() {
        cfg.kernel_names()
    } else {
        a.names
            .iter()
            .map(|n| n.strip_prefix("debian:").unwrap_or(n).to_owned())
            .collect()
    };
    let failed = runner::fetch(
        &names,
        &cfg,
        &paths::cache_root(),
        a.refresh,
        &mut |name, k| match k {
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
            Err(e) => pkeys_qemu::say!("{name}: {}", one_line(&format!("{e:#}"))),
        },
    );
    Ok(u8::from(failed > 0))
}

fn cmd_kernel_build(a: KernelBuildArgs) -> Result<u8> {
    let opts = kbuild::BuildOptions {
        tree: a.source,
        out: a.out,
        fragment: a.config.unwrap_or_else(kbuild::default_fragment),
        jobs: a.jobs.unwrap_or_else(runner::jobs_default),
        reconfigure: a.reconfigure,
    };
    let built = kbuild::build(&opts, &say)?;
    println!("{}", built.image.display());
    Ok(0)
}

fn cmd_kernel_source(a: KernelSourceArgs) -> Result<u8> {
    let tree = runner::fetch_kernel_source(
        &a.series,
        &a.suites,
        a.out,
        &paths::cache_root(),
        a.refresh,
        &say,
    )?;
    println!("{}", tree.display());
    Ok(0)
}
