//! `pkeys-qemu bench`: how fast the suite reaches a verdict, measured on this machine.
//!
//! Everything is measured in one command, as medians (with min and max) over `--runs`:
//! - per kernel: qemu start → `KTAP version 1`, the suite's time in the guest, the runner's
//!   wall time for the guest (boot-to-verdict, qemu exit included), and the same kernel's bare
//!   boot-to-init time (a 300-byte `/init`, see [`bare`]) booted in the same run, so that the
//!   runner's overhead is a ratio: `(total - bare - suite) / (bare + suite)`;
//! - the default matrix's wall time with `--jobs 1` and the default (`--skip-matrix`);
//! - natively: the fork-per-case overhead of an empty case (`pkeys-suite --bench-overhead`);
//! - the initramfs: size, build time cold and from the cache;
//! - with `--with-c-selftests`: the kernel's C selftests next to the suite in the same guest
//!   ([`cselftest`]);
//! - with `--sizing`: one kernel under other `-m` / `-smp` values.
//!
//! Results go to `<out>/bench.json`, and into the `bench` field of `<out>/results.json` (with
//! the last suite run of each kernel), rendered as a table in `<out>/report.html`.
//!
//! The modules: [`measure`] takes the figures, [`table`] holds the table rows, notes and
//! targets a measurement records, [`print`](mod@print) prints them, and [`json`] is `bench.json`'s typed
//! document; [`run`] drives them.

pub mod bare;
pub mod cselftest;
pub mod json;
pub mod measure;
pub mod print;
pub mod stats;
pub mod table;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pkeys_report::Results;

use crate::config::{self, Config};
use crate::guest::Env;
use crate::kernel::{ResolvedKernel, Resolver};
use crate::{initramfs, matrix, paths, qemu};
use json::{AccelFigures, BenchDoc, GuestSetup, HostFigures};
use measure::{GuestCtx, secs};
pub use stats::Stats;
use table::Table;

/// Targets on the reference machine (2 cores, TCG; see docs/bench.md).
pub mod targets {
    /// Per-kernel boot-to-verdict median for the full suite on 6.12, seconds.
    pub const BOOT_TO_VERDICT_S: f64 = 10.0;
    /// Runner overhead over bare boot + suite.
    pub const OVERHEAD_RATIO: f64 = 0.15;
    /// Default matrix wall time, seconds.
    pub const MATRIX_S: f64 = 40.0;
    /// Native per-case overhead, microseconds.
    pub const CASE_OVERHEAD_US: f64 = 2000.0;
}

/// `pkeys-qemu bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Repetitions of every measurement (medians with min and max).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub runs: usize,
    /// Repetitions of each matrix run (slow: about a minute each).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub matrix_runs: usize,
    /// Output folder (default: out/bench).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Kernel names from kernels.toml (default: every kernel of the matrix).
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub kernels: Vec<String>,
    /// Also run the kernel's C selftests (protection_keys, pkey_sighandler_tests) in the same
    /// guests; downloads linux-source-6.12 once (about 150 MB) and needs gcc.
    #[arg(long)]
    pub with_c_selftests: bool,
    /// Skip the two matrix runs.
    #[arg(long)]
    pub skip_matrix: bool,
    /// Also boot one kernel (6.12 when selected) under other -m/-smp values.
    #[arg(long)]
    pub sizing: bool,
    /// qemu CPU model for the per-kernel guests (`max` becomes `host` under KVM).
    #[arg(long, default_value = "max", value_name = "MODEL")]
    pub cpu: String,
    /// Accelerator: KVM when a probe guest shows it works (auto), or forced.
    #[arg(long, value_enum, default_value_t = crate::accel::AccelChoice::Auto)]
    pub accel: crate::accel::AccelChoice,
    /// Extra kernel command line for every benchmark guest (e.g. `quiet`).
    #[arg(long, default_value = "", value_name = "ARGS")]
    pub append: String,
    /// qemu -m (default: kernels.toml's default).
    #[arg(long)]
    pub memory: Option<String>,
    /// qemu -smp (default: kernels.toml's default).
    #[arg(long)]
    pub smp: Option<u32>,
    /// Empty cases per native measurement.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub cases: u32,
    /// The kernels file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A prebuilt static pkeys-suite (default: build it with cargo).
    #[arg(long, value_name = "PATH")]
    pub suite: Option<PathBuf>,
    /// Update the Debian package lists even when they are fresh.
    #[arg(long)]
    pub refresh: bool,
}

/// Runs the benchmark; returns the exit status (0 when every measurement could be taken).
pub fn run(a: &BenchArgs) -> Result<u8> {
    if a.runs == 0 || a.matrix_runs == 0 {
        bail!("--runs and --matrix-runs must be at least 1");
    }
    if let Err(e) = config::check_append(&a.append) {
        bail!("--append: {e}");
    }
    let config_path = a.config.clone().unwrap_or_else(paths::default_config);
    let cfg = Config::load(&config_path)?;
    let kernels: Vec<String> = if a.kernels.is_empty() {
        let mut names = Vec::new();
        for g in cfg.guests() {
            if !names.contains(&g.kernel) {
                names.push(g.kernel);
            }
        }
        names
    } else {
        a.kernels
            .iter()
            .map(|k| k.strip_prefix("debian:").unwrap_or(k).to_owned())
            .collect()
    };
    for k in &kernels {
        cfg.kernel_source(k)?;
    }
    let memory = a
        .memory
        .clone()
        .unwrap_or_else(|| cfg.file.defaults.memory.clone());
    let smp = a.smp.unwrap_or(cfg.file.defaults.smp);
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| paths::workspace_root().join("out/bench"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let cache = paths::cache_root();
    let mut table = Table::default();
    let mut status = 0u8;
    let started = Instant::now();
    let load_before = measure::load_avg();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    print::line(&format!(
        "pkeys-qemu bench: {} run(s), {cores} core(s), load average {load_before}{}",
        a.runs,
        if cores <= 2 {
            " (timings are noisy while anything else runs)"
        } else {
            ""
        }
    ));
    // Each part's lines are printed as soon as it is measured.
    let shown = |table: &mut Table, part: Table| {
        print::lines(&part.lines);
        table.extend(part);
    };

    // The suite binary and the initramfs.
    print::section("initramfs");
    let t = Instant::now();
    let suite = matrix::suite_binary(a.suite.as_deref())?;
    let build_s = secs(t.elapsed());
    let suite_bytes = std::fs::read(&suite)?;
    let m = measure::initramfs(a, &suite, &suite_bytes, &cache, build_s)?;
    shown(&mut table, m.table);
    let mut doc = BenchDoc {
        accel: None,
        bench_wall_s: 0.0,
        c_selftests: None,
        c_selftests_error: None,
        guest: GuestSetup {
            append: a.append.clone(),
            cpu: a.cpu.clone(),
            memory: memory.clone(),
            smp,
        },
        guests_skipped: None,
        host: HostFigures {
            accel: "tcg",
            cores,
            kvm: false,
            load_after: String::new(),
            load_before: load_before.clone(),
        },
        initramfs: m.figures,
        kernels: None,
        matrix: None,
        native: None,
        rows: Vec::new(),
        runs: a.runs,
        schema: 1,
        sizing: None,
        targets: Vec::new(),
        unix_time: 0,
    };

    // Native per-case overhead.
    print::section(&format!(
        "native (this host, {} empty cases per sample)",
        a.cases
    ));
    match measure::native(a, &suite) {
        Ok(m) => {
            shown(&mut table, m.table);
            doc.native = Some(m.figures);
        }
        Err(e) => {
            status = 1;
            print::line(&format!("  native: failed: {e:#}"));
        }
    }

    // Guests.
    let qemu_bin = match qemu::find_qemu() {
        Ok(q) => Some(q),
        Err(e) => {
            print::section(&format!("guests: SKIPPED: {e:#}"));
            doc.guests_skipped = Some(format!("{e:#}"));
            None
        }
    };
    let mut last_runs = Vec::new();
    if let Some(qemu_bin) = &qemu_bin {
        qemu::check_cpu(&a.cpu, qemu::cpu_models(qemu_bin)?)?;
        let mut resolver = Resolver::new(&cache, a.refresh);
        let mut resolved: Vec<ResolvedKernel> = Vec::new();
        for k in &kernels {
            match resolver.resolve_named(k, &cfg, &format!("debian:{k}")) {
                Ok(r) => resolved.push(r),
                Err(e) => {
                    status = 1;
                    print::line(&format!("kernel {k}: not available: {e:#}"));
                }
            }
        }
        let base = initramfs::base_image(&suite, &cache)?;
        let bare_image = measure::gzip(&bare::archive()?)?;
        let guests_out = out.join("guests");
        let probe_env = Env {
            qemu: qemu_bin,
            base_image: &base,
            out: &guests_out,
        };
        let decision = crate::accel::decide(a.accel, crate::accel::host_has_pkeys(), || {
            match resolved.first() {
                Some(k) => crate::accel::probe_kvm(k, &probe_env),
                None => Err("no kernel to probe with".into()),
            }
        })?;
        if let Some(why) = &decision.why_not {
            print::line(why);
        }
        let (accel, cpu) = crate::accel::placement(&a.cpu, decision.kvm);
        doc.accel = Some(AccelFigures {
            accel: accel.as_str(),
            cpu: cpu.clone(),
            host: crate::accel::host_record().model,
        });
        let ctx = GuestCtx {
            qemu: qemu_bin,
            accel,
            cpu: &cpu,
            memory: &memory,
            smp,
            append: &a.append,
            out: &guests_out,
        };
        print::section(&format!(
            "per kernel (cpu {}, -m {memory}, -smp {smp}{}; bare = same kernel with a trivial /init)",
            a.cpu,
            if a.append.is_empty() {
                String::new()
            } else {
                format!(", append {:?}", a.append)
            }
        ));
        let (m, runs) = measure::kernels(a, &ctx, &resolved, &base, &bare_image)?;
        shown(&mut table, m.table);
        doc.kernels = Some(m.figures);
        last_runs = runs;

        if a.with_c_selftests {
            print::section(
                "C selftests side by side (same guest, same boot, timed by the guest init)",
            );
            match measure::c_selftests(a, &ctx, &resolved, &base, &cache) {
                Ok(m) => {
                    shown(&mut table, m.table);
                    doc.c_selftests = Some(m.figures);
                }
                Err(e) => {
                    status = 1;
                    print::line(&format!("  C selftests: failed: {e:#}"));
                    doc.c_selftests_error = Some(format!("{e:#}"));
                }
            }
        }

        if a.sizing {
            let k = resolved
                .iter()
                .find(|k| k.short == "6.12")
                .or(resolved.first());
            if let Some(k) = k {
                print::section(&format!("guest sizing ({}, boot-to-verdict)", k.short));
                let m = measure::sizing(a, &ctx, k, &base)?;
                shown(&mut table, m.table);
                doc.sizing = Some(m.figures);
            }
        }

        if a.skip_matrix {
            print::section("matrix: skipped (--skip-matrix)");
        } else {
            print::section(&format!("matrix ({}, all guests)", config_path.display()));
            let m = measure::matrix(a, &cfg, &config_path, &suite, &cache, &out, cores)?;
            shown(&mut table, m.table);
            doc.matrix = Some(m.figures);
        }
    }

    let load_after = measure::load_avg();
    print::targets(&table.targets);
    doc.unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    doc.host.load_after = load_after.clone();
    doc.bench_wall_s = secs(started.elapsed());
    doc.rows = table.rows();
    doc.targets = table.targets;
    let bench_json = out.join("bench.json");
    doc.write(&bench_json)?;

    let mut results = Results::new(last_runs);
    let expectations = matrix::load_expectations(None)?;
    pkeys_report::classify_all(&mut results, &expectations);
    results.bench = Some(serde_json::to_value(&doc.rows)?);
    pkeys_report::write_all(&results, &out).context("cannot write the results")?;
    print::line(&format!(
        "\nbench: {:.0} s; load average {load_before} before, {load_after} after; wrote {} and {}",
        secs(started.elapsed()),
        bench_json.display(),
        out.join("report.html").display()
    ));
    Ok(status)
}
