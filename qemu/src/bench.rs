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

pub mod bare;
pub mod cselftest;
pub mod stats;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use pkeys_report::{GuestRun, Results};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{self, Config};
use crate::guest::{self, Env, Event, GuestSpec};
use crate::kernel::{ResolvedKernel, Resolver};
use crate::{initramfs, matrix, paths, qemu};
pub use stats::Stats;

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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn say(line: &str) {
    eprintln!("pkeys-qemu: bench: {line}");
}

/// Only retries are worth a line while a benchmark guest runs.
fn quiet_progress(name: &str, event: Event) {
    if let Event::Retrying { reason } = event {
        say(&format!(
            "{name}: failed before the suite started ({reason}); retrying once"
        ));
    }
}

/// A flat row of the report's benchmark table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    section: String,
    item: String,
    metric: String,
    median: f64,
    min: f64,
    max: f64,
    n: usize,
    unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    met: Option<bool>,
}

#[derive(Debug, Default)]
struct Report {
    rows: Vec<Row>,
    json: serde_json::Map<String, Value>,
    targets: Vec<Value>,
}

impl Report {
    /// Records a row and prints it.
    #[allow(clippy::too_many_arguments)]
    fn stat(
        &mut self,
        section: &str,
        item: &str,
        metric: &str,
        st: &Stats,
        unit: &str,
        digits: usize,
        target: Option<(&str, bool)>,
    ) {
        let shown = st.show(digits, &format!(" {unit}"));
        let t = target.map_or(String::new(), |(t, met)| {
            format!("   [target {t}: {}]", if met { "met" } else { "MISSED" })
        });
        println!("  {item:<14} {metric:<34} {shown}{t}");
        self.rows.push(Row {
            section: section.to_owned(),
            item: item.to_owned(),
            metric: metric.to_owned(),
            median: st.median,
            min: st.min,
            max: st.max,
            n: st.n,
            unit: unit.to_owned(),
            target: target.map(|(t, _)| t.to_owned()),
            met: target.map(|(_, m)| m),
        });
    }

    fn target(&mut self, name: &str, target: &str, value: f64, unit: &str, met: bool, note: &str) {
        self.targets.push(json!({
            "name": name, "target": target, "value": value, "unit": unit, "met": met, "note": note,
        }));
    }
}

/// Per-kernel samples of one run.
#[derive(Debug, Default, Clone)]
struct KernelSamples {
    first_line: Vec<f64>,
    suite: Vec<f64>,
    total: Vec<f64>,
    qemu_total: Vec<f64>,
    bare_init: Vec<f64>,
    bare_total: Vec<f64>,
    overhead: Vec<f64>,
    verdicts: Vec<String>,
    plan: Option<usize>,
    last: Option<GuestRun>,
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
    let mut rep = Report::default();
    let mut status = 0u8;
    let started = Instant::now();
    let load_before = load_avg();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "pkeys-qemu bench: {} run(s), {cores} core(s), load average {load_before}{}",
        a.runs,
        if cores <= 2 {
            " (timings are noisy while anything else runs)"
        } else {
            ""
        }
    );

    // The suite binary and the initramfs.
    println!("\ninitramfs");
    let t = Instant::now();
    let suite = matrix::suite_binary(a.suite.as_deref())?;
    let build_s = secs(t.elapsed());
    let suite_bytes = std::fs::read(&suite)?;
    let initramfs_json = measure_initramfs(a, &suite, &suite_bytes, &cache, build_s, &mut rep)?;
    rep.json.insert("initramfs".into(), initramfs_json);

    // Native per-case overhead.
    println!("\nnative (this host, {} empty cases per sample)", a.cases);
    match measure_native(a, &suite, &mut rep) {
        Ok(v) => {
            rep.json.insert("native".into(), v);
        }
        Err(e) => {
            status = 1;
            println!("  native: failed: {e:#}");
        }
    }

    // Guests.
    let qemu_bin = match qemu::find_qemu() {
        Ok(q) => Some(q),
        Err(e) => {
            println!("\nguests: SKIPPED: {e:#}");
            rep.json
                .insert("guests_skipped".into(), json!(format!("{e:#}")));
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
                    println!("kernel {k}: not available: {e:#}");
                }
            }
        }
        let base = initramfs::base_image(&suite, &cache)?;
        let bare_image = gzip(&bare::archive()?)?;
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
            println!("{why}");
        }
        let (accel, cpu) = crate::accel::placement(&a.cpu, decision.kvm);
        rep.json.insert(
            "accel".into(),
            json!({"accel": accel.as_str(), "cpu": cpu, "host": crate::accel::host_record().model}),
        );
        let ctx = GuestCtx {
            qemu: qemu_bin,
            accel,
            cpu: &cpu,
            memory: &memory,
            smp,
            append: &a.append,
            out: &out.join("guests"),
        };
        println!(
            "\nper kernel (cpu {}, -m {memory}, -smp {smp}{}; bare = same kernel with a trivial /init)",
            a.cpu,
            if a.append.is_empty() {
                String::new()
            } else {
                format!(", append {:?}", a.append)
            }
        );
        let samples = measure_kernels(a, &ctx, &resolved, &base, &bare_image, &mut rep)?;
        let mut kjson = Vec::new();
        for k in &resolved {
            let s = &samples[&k.short];
            kjson.push(json!({
                "kernel": k.short, "package": k.info.package, "version": k.info.version,
                "boot_to_first_line_s": Stats::of(&s.first_line),
                "suite_s": Stats::of(&s.suite),
                "boot_to_verdict_s": Stats::of(&s.total),
                "qemu_lifetime_s": Stats::of(&s.qemu_total),
                "bare_boot_to_init_s": Stats::of(&s.bare_init),
                "bare_qemu_lifetime_s": Stats::of(&s.bare_total),
                "overhead_ratio": Stats::of(&s.overhead),
                "plan": s.plan, "verdicts": s.verdicts,
            }));
            if let Some(run) = &s.last {
                last_runs.push(run.clone());
            }
        }
        rep.json.insert("kernels".into(), Value::Array(kjson));

        if a.with_c_selftests {
            println!("\nC selftests side by side (same guest, same boot, timed by the guest init)");
            match measure_c_selftests(a, &ctx, &resolved, &base, &cache, &mut rep) {
                Ok(v) => {
                    rep.json.insert("c_selftests".into(), v);
                }
                Err(e) => {
                    status = 1;
                    println!("  C selftests: failed: {e:#}");
                    rep.json
                        .insert("c_selftests_error".into(), json!(format!("{e:#}")));
                }
            }
        }

        if a.sizing {
            let k = resolved
                .iter()
                .find(|k| k.short == "6.12")
                .or(resolved.first());
            if let Some(k) = k {
                println!("\nguest sizing ({}, boot-to-verdict)", k.short);
                let v = measure_sizing(a, &ctx, k, &base, &mut rep)?;
                rep.json.insert("sizing".into(), v);
            }
        }

        if a.skip_matrix {
            println!("\nmatrix: skipped (--skip-matrix)");
        } else {
            println!("\nmatrix ({}, all guests)", config_path.display());
            let v = measure_matrix(a, &cfg, &config_path, &suite, &cache, &out, cores, &mut rep)?;
            rep.json.insert("matrix".into(), v);
        }
    }

    let load_after = load_avg();
    println!("\ntargets");
    for t in &rep.targets {
        println!(
            "  {:<44} {:<10} {:>10.3} {:<3} {}{}",
            t["name"].as_str().unwrap_or_default(),
            t["target"].as_str().unwrap_or_default(),
            t["value"].as_f64().unwrap_or(f64::NAN),
            t["unit"].as_str().unwrap_or_default(),
            if t["met"].as_bool() == Some(true) {
                "met"
            } else {
                "MISSED"
            },
            t["note"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    let mut doc = serde_json::Map::new();
    doc.insert("schema".into(), json!(1));
    doc.insert(
        "unix_time".into(),
        json!(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ),
    );
    doc.insert(
        "host".into(),
        json!({"cores": cores, "load_before": load_before, "load_after": load_after,
               "kvm": false, "accel": "tcg"}),
    );
    doc.insert("runs".into(), json!(a.runs));
    doc.insert(
        "guest".into(),
        json!({"cpu": a.cpu, "memory": memory, "smp": smp, "append": a.append}),
    );
    doc.insert("bench_wall_s".into(), json!(secs(started.elapsed())));
    doc.extend(std::mem::take(&mut rep.json));
    doc.insert("targets".into(), Value::Array(rep.targets.clone()));
    doc.insert("rows".into(), serde_json::to_value(&rep.rows)?);
    let bench_json = out.join("bench.json");
    paths::write_atomic(&bench_json, serde_json::to_string_pretty(&doc)?.as_bytes())
        .with_context(|| format!("cannot write {}", bench_json.display()))?;

    let mut results = Results::new(last_runs);
    let expectations = matrix::load_expectations(None)?;
    pkeys_report::classify_all(&mut results, &expectations);
    results.bench = Some(serde_json::to_value(&rep.rows)?);
    pkeys_report::write_all(&results, &out).context("cannot write the results")?;
    println!(
        "\nbench: {:.0} s; load average {load_before} before, {load_after} after; wrote {} and {}",
        secs(started.elapsed()),
        bench_json.display(),
        out.join("report.html").display()
    );
    Ok(status)
}

fn measure_initramfs(
    a: &BenchArgs,
    suite: &Path,
    suite_bytes: &[u8],
    cache: &Path,
    build_s: f64,
    rep: &mut Report,
) -> Result<Value> {
    let archive = initramfs::base_archive(suite_bytes)?;
    let mut cold = Vec::new();
    let mut hit = Vec::new();
    let mut per_guest = Vec::new();
    let mut image = Vec::new();
    let _ = initramfs::base_image(suite, cache)?; // make sure the real cache holds it
    for _ in 0..a.runs {
        let tmp = tempfile::tempdir()?;
        let t = Instant::now();
        image = initramfs::base_image(suite, tmp.path())?;
        cold.push(secs(t.elapsed()));
        let t = Instant::now();
        let cached = initramfs::base_image(suite, cache)?;
        hit.push(secs(t.elapsed()));
        if cached != image {
            bail!("the cached initramfs differs from a fresh build of the same suite");
        }
        let t = Instant::now();
        initramfs::write(&tmp.path().join("initrd.img"), &image, &[])?;
        per_guest.push(secs(t.elapsed()));
    }
    // Is the cache key stable while the suite is unchanged? Build again (a no-op for cargo).
    let stable = if a.suite.is_none() {
        let t = Instant::now();
        let again = matrix::suite_binary(None)?;
        let noop_s = secs(t.elapsed());
        let same = std::fs::read(&again)? == suite_bytes;
        println!(
            "  {:<14} {:<34} {noop_s:.2} s; binary unchanged: {same}",
            "suite", "cargo build (up to date)",
        );
        Some(same)
    } else {
        None
    };
    let kib = |n: usize| n as f64 / 1024.0;
    println!(
        "  {:<14} {:<34} {:.0} KiB static binary, {:.0} KiB cpio, {:.0} KiB gzip",
        "suite",
        "sizes",
        kib(suite_bytes.len()),
        kib(archive.len()),
        kib(image.len())
    );
    println!(
        "  {:<14} {:<34} {build_s:.2} s",
        "suite", "first build call of this command"
    );
    let cold_st = Stats::of(&cold).expect("runs >= 1");
    let hit_st = Stats::of(&hit).expect("runs >= 1");
    let guest_st = Stats::of(&per_guest).expect("runs >= 1");
    rep.stat(
        "initramfs",
        "base image",
        "build, cold (cpio + gzip + write)",
        &cold_st.scaled(1e3),
        "ms",
        1,
        None,
    );
    rep.stat(
        "initramfs",
        "base image",
        "cache hit (read + hash)",
        &hit_st.scaled(1e3),
        "ms",
        2,
        None,
    );
    rep.stat(
        "initramfs",
        "per guest",
        "write base + /pkeys/args",
        &guest_st.scaled(1e3),
        "ms",
        2,
        None,
    );
    for (metric, v) in [
        ("suite binary size", kib(suite_bytes.len())),
        ("initramfs size (gzip)", kib(image.len())),
    ] {
        rep.rows.push(Row {
            section: "initramfs".into(),
            item: "size".into(),
            metric: metric.into(),
            median: v,
            min: v,
            max: v,
            n: 1,
            unit: "KiB".into(),
            target: None,
            met: None,
        });
    }
    Ok(json!({
        "suite_bytes": suite_bytes.len(), "cpio_bytes": archive.len(), "gzip_bytes": image.len(),
        "cold_build_s": cold_st, "cache_hit_s": hit_st, "per_guest_write_s": guest_st,
        "first_suite_build_call_s": build_s, "cache_key_stable": stable,
    }))
}

impl Stats {
    /// The same numbers times `k` (unit change).
    pub fn scaled(&self, k: f64) -> Stats {
        Stats {
            median: self.median * k,
            min: self.min * k,
            max: self.max * k,
            n: self.n,
            samples: self.samples.iter().map(|v| v * k).collect(),
        }
    }
}

fn measure_native(a: &BenchArgs, suite: &Path, rep: &mut Report) -> Result<Value> {
    let mut case_us = Vec::new();
    let mut fork_us = Vec::new();
    for _ in 0..a.runs {
        let out = std::process::Command::new(suite)
            .args(["--bench-overhead", &a.cases.to_string()])
            .output()
            .with_context(|| format!("cannot run {}", suite.display()))?;
        if !out.status.success() {
            bail!(
                "{} --bench-overhead: {} {}",
                suite.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{} --bench-overhead: not JSON", suite.display()))?;
        case_us.push(v["case_mean_us"].as_f64().unwrap_or(f64::NAN));
        fork_us.push(v["fork_mean_us"].as_f64().unwrap_or(f64::NAN));
    }
    let case = Stats::of(&case_us).context("no native samples")?;
    let fork = Stats::of(&fork_us).context("no native samples")?;
    let per_s: Vec<f64> = case_us.iter().map(|us| 1e6 / us).collect();
    let per_s = Stats::of(&per_s).context("no native samples")?;
    let met = case.median < targets::CASE_OVERHEAD_US;
    rep.stat(
        "native",
        "empty case",
        "fork-per-case overhead",
        &case,
        "µs",
        0,
        Some(("< 2000 µs", met)),
    );
    rep.stat(
        "native",
        "empty case",
        "cases per second",
        &per_s,
        "/s",
        0,
        None,
    );
    rep.stat(
        "native",
        "fork+exit+wait",
        "floor under any fork-per-case",
        &fork,
        "µs",
        0,
        None,
    );
    rep.target(
        "native per-case overhead (empty case)",
        "< 2000",
        case.median,
        "µs",
        met,
        "",
    );
    Ok(
        json!({"cases_per_sample": a.cases, "case_overhead_us": case, "cases_per_s": per_s, "fork_exit_wait_us": fork}),
    )
}

/// What every benchmark guest shares.
struct GuestCtx<'a> {
    qemu: &'a Path,
    accel: crate::accel::Accel,
    cpu: &'a str,
    memory: &'a str,
    smp: u32,
    append: &'a str,
    out: &'a Path,
}

impl GuestCtx<'_> {
    fn spec(&self, k: &ResolvedKernel, name: &str, timeout: u64) -> GuestSpec {
        GuestSpec {
            name: name.to_owned(),
            kernel: k.clone(),
            accel: self.accel,
            cpu: self.cpu.to_owned(),
            append: self.append.to_owned(),
            args: Vec::new(),
            memory: self.memory.to_owned(),
            smp: self.smp,
            timeout: Duration::from_secs(timeout),
            boot_timeout: Duration::from_secs(120),
        }
    }

    /// Boots once; returns the run and the runner's wall time for it.
    fn boot(&self, spec: &GuestSpec, image: &[u8]) -> Result<(GuestRun, f64)> {
        let env = Env {
            qemu: self.qemu,
            base_image: image,
            out: self.out,
        };
        let t = Instant::now();
        let run = guest::run(spec, &env, &quiet_progress)?;
        Ok((run, secs(t.elapsed())))
    }
}

fn measure_kernels(
    a: &BenchArgs,
    ctx: &GuestCtx<'_>,
    kernels: &[ResolvedKernel],
    base: &[u8],
    bare_image: &[u8],
    rep: &mut Report,
) -> Result<BTreeMap<String, KernelSamples>> {
    let slug = config::cpu_slug(ctx.cpu);
    let expectations = matrix::load_expectations(None)?;
    let mut samples: BTreeMap<String, KernelSamples> = BTreeMap::new();
    for r in 1..=a.runs {
        for k in kernels {
            let s = samples.entry(k.short.clone()).or_default();
            let (bare, _) = ctx.boot(
                &ctx.spec(k, &format!("{}-bare-{slug}", k.short), 120),
                bare_image,
            )?;
            let bare_init = bare.timings.boot_to_first_line_s;
            if bare_init.is_none() || !matches!(bare.status, pkeys_report::RunStatus::Completed) {
                say(&format!(
                    "{}: bare boot: {}",
                    k.short,
                    guest::summary_line(&bare)
                ));
            }
            let (run, wall) = ctx.boot(&ctx.spec(k, &format!("{}-{slug}", k.short), 300), base)?;
            let suite_s = run.timings.suite_s;
            // Printed after classification (an expected failure is XFAIL, as in `run`).
            let mut shown = run.clone();
            pkeys_report::classify(&mut shown, &expectations);
            let line = guest::summary_line(&shown);
            say(&format!(
                "run {r}/{}: {line}; bare boot-to-init {}",
                a.runs,
                bare_init.map_or("-".to_owned(), |b| format!("{b:.2} s"))
            ));
            if let (Some(first), Some(suite_s)) = (run.timings.boot_to_first_line_s, suite_s) {
                s.first_line.push(first);
                s.suite.push(suite_s);
                s.total.push(wall);
                s.qemu_total.push(run.timings.total_s.unwrap_or(f64::NAN));
                if let Some(b) = bare_init {
                    s.bare_init.push(b);
                    s.overhead
                        .push(stats::overhead(wall, b, suite_s).unwrap_or(f64::NAN));
                }
            }
            if let Some(b) = bare.timings.total_s {
                s.bare_total.push(b);
            }
            s.plan = run.plan.or(s.plan);
            s.verdicts.push(guest::counts_line(&run));
            s.last = Some(run);
        }
    }
    for k in kernels {
        let s = &samples[&k.short];
        let item = k.short.as_str();
        let mut show =
            |metric: &str, v: &[f64], unit: &str, digits: usize, target: Option<(&str, bool)>| {
                if let Some(st) = Stats::of(v) {
                    rep.stat("per kernel", item, metric, &st, unit, digits, target);
                }
            };
        show("qemu start → first KTAP line", &s.first_line, "s", 2, None);
        show("suite in the guest", &s.suite, "s", 2, None);
        let total = Stats::of(&s.total);
        let t_target = (k.short == "6.12").then(|| {
            total
                .as_ref()
                .map(|t| ("< 10 s", t.median < targets::BOOT_TO_VERDICT_S))
        });
        show(
            "boot-to-verdict (runner wall)",
            &s.total,
            "s",
            2,
            t_target.flatten(),
        );
        show("bare kernel boot-to-init", &s.bare_init, "s", 2, None);
        show("bare qemu start → exit", &s.bare_total, "s", 2, None);
        let over = Stats::of(&s.overhead);
        show(
            "runner overhead ratio",
            &s.overhead,
            "",
            3,
            over.as_ref()
                .map(|o| ("< 0.15", o.median < targets::OVERHEAD_RATIO)),
        );
        if let (Some(t), true) = (&total, k.short == "6.12") {
            rep.target(
                "boot-to-verdict 6.12, full suite",
                "< 10",
                t.median,
                "s",
                t.median < targets::BOOT_TO_VERDICT_S,
                "",
            );
        }
        if let Some(o) = over {
            rep.target(
                &format!("runner overhead {}", k.short),
                "< 0.15",
                o.median,
                "",
                o.median < targets::OVERHEAD_RATIO,
                "",
            );
        }
    }
    Ok(samples)
}

fn measure_c_selftests(
    a: &BenchArgs,
    ctx: &GuestCtx<'_>,
    kernels: &[ResolvedKernel],
    base: &[u8],
    cache: &Path,
    rep: &mut Report,
) -> Result<Value> {
    let built = cselftest::prepare(cache)?;
    let mut image = base.to_vec();
    image.extend(gzip(&cselftest::archive(&built)?)?);
    let slug = config::cpu_slug(ctx.cpu);
    let mut out = Vec::new();
    for k in kernels {
        let mut ours_s = Vec::new();
        let mut c_s: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut c_total = Vec::new();
        let mut guest_case_us = Vec::new();
        let mut ours_checks = None;
        let mut c_checks: BTreeMap<String, cselftest::Checks> = BTreeMap::new();
        let mut c_status: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in 1..=a.runs {
            let name = format!("{}-c-selftests-{slug}", k.short);
            let (run, _) = ctx.boot(&ctx.spec(k, &name, 900), &image)?;
            let stream =
                std::fs::read_to_string(ctx.out.join(format!("{name}.ktap"))).unwrap_or_default();
            let g = cselftest::parse_guest(&stream);
            ours_checks = cselftest::ktap_plan(&stream).or(ours_checks);
            let Some(ours) = g.suite_s else {
                say(&format!(
                    "{}: C selftest boot {r}: no bench output ({})",
                    k.short,
                    guest::summary_line(&run)
                ));
                continue;
            };
            ours_s.push(ours);
            let mut total = 0.0;
            let mut parts = Vec::new();
            for p in cselftest::PROGRAMS {
                if let Some(sec) = g.programs.get(*p) {
                    c_s.entry(p).or_default().push(sec.wall_s);
                    total += sec.wall_s;
                    let checks = cselftest::count_checks(&sec.output);
                    c_checks.insert((*p).to_owned(), checks);
                    let st = format!(
                        "{}{}{}",
                        sec.status,
                        if sec.timed_out { " timed out" } else { "" },
                        if sec.others_failed > 0 {
                            format!(" ({} descendant(s) failed)", sec.others_failed)
                        } else {
                            String::new()
                        }
                    );
                    parts.push(format!(
                        "{p} {:.2} s {st}, {} check(s)",
                        sec.wall_s, checks.run
                    ));
                    c_status.entry((*p).to_owned()).or_default().push(st);
                }
            }
            c_total.push(total);
            if let Some(us) = g
                .programs
                .get(cselftest::GUEST_OVERHEAD)
                .and_then(|sec| serde_json::from_str::<Value>(sec.output.trim()).ok())
                .and_then(|v| v["case_mean_us"].as_f64())
            {
                guest_case_us.push(us);
            }
            say(&format!(
                "{} run {r}/{}: ours {ours:.2} s; {}",
                k.short,
                a.runs,
                parts.join("; ")
            ));
        }
        let item = k.short.as_str();
        let mut entry = serde_json::Map::new();
        entry.insert("kernel".into(), json!(k.short));
        if let Some(st) = Stats::of(&ours_s) {
            rep.stat(
                "C selftests",
                item,
                "ours: suite wall in guest",
                &st,
                "s",
                2,
                None,
            );
            entry.insert("ours_s".into(), json!(st));
        }
        for (p, v) in &c_s {
            if let Some(st) = Stats::of(v) {
                rep.stat("C selftests", item, &format!("C: {p}"), &st, "s", 2, None);
                entry.insert(format!("{p}_s"), json!(st));
            }
        }
        if let Some(st) = Stats::of(&c_total) {
            rep.stat("C selftests", item, "C: both programs", &st, "s", 2, None);
            entry.insert("c_total_s".into(), json!(st));
        }
        let ratios: Vec<f64> = ours_s
            .iter()
            .zip(&c_total)
            .filter_map(|(o, c)| stats::ratio(*o, *c))
            .collect();
        if let Some(st) = Stats::of(&ratios) {
            rep.stat("C selftests", item, "wall ratio ours / C", &st, "", 2, None);
            entry.insert("wall_ratio_ours_over_c".into(), json!(st));
        }
        let c_run: u32 = c_checks.values().map(|c| c.run).sum();
        if let Some(ours) = ours_checks {
            let ratio = stats::ratio(f64::from(ours), f64::from(c_run));
            println!(
                "  {item:<14} {:<34} ours {ours} (KTAP plan), C {c_run} ({}){}",
                "checks",
                c_checks
                    .iter()
                    .map(|(p, c)| format!(
                        "{p}: {} run ({} distinct), {} failed{}",
                        c.run,
                        c.distinct,
                        c.failed,
                        if c.finished { "" } else { ", unfinished" }
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                ratio.map_or(String::new(), |r| format!("; ratio ours / C {r:.2}"))
            );
            if let Some(r) = ratio {
                rep.stat(
                    "C selftests",
                    item,
                    "checks ratio ours / C",
                    &Stats::of(&[r]).expect("one"),
                    "",
                    2,
                    None,
                );
            }
            let c_distinct: u32 = c_checks.values().map(|c| c.distinct).sum();
            if let Some(r) = stats::ratio(f64::from(ours), f64::from(c_distinct)) {
                println!(
                    "  {item:<14} {:<34} ours {ours}, C {c_distinct}; ratio ours / C {r:.2}",
                    "distinct checks"
                );
                rep.stat(
                    "C selftests",
                    item,
                    "distinct checks ratio ours / C",
                    &Stats::of(&[r]).expect("one"),
                    "",
                    2,
                    None,
                );
            }
            entry.insert("c_distinct_checks".into(), json!(c_distinct));
            entry.insert("ours_checks".into(), json!(ours));
            entry.insert("c_checks".into(), json!(c_checks));
            entry.insert("checks_ratio_ours_over_c".into(), json!(ratio));
        }
        if let Some(st) = Stats::of(&guest_case_us) {
            rep.stat(
                "C selftests",
                item,
                "ours: empty-case overhead in the guest",
                &st,
                "µs",
                0,
                None,
            );
            entry.insert("guest_case_overhead_us".into(), json!(st));
        }
        entry.insert("c_status".into(), json!(c_status));
        out.push(Value::Object(entry));
    }
    Ok(json!({"source_version": built.version, "kernels": out}))
}

fn measure_sizing(
    a: &BenchArgs,
    ctx: &GuestCtx<'_>,
    k: &ResolvedKernel,
    base: &[u8],
    rep: &mut Report,
) -> Result<Value> {
    const SIZES: [(&str, u32); 4] = [("256M", 1), ("512M", 1), ("1G", 1), ("512M", 2)];
    // [size][first, suite, total]; sizes interleaved within each run so that a change in the
    // machine's load hits every size alike.
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new()]; SIZES.len()];
    for _ in 0..a.runs {
        for (i, (memory, smp)) in SIZES.iter().enumerate() {
            let c = GuestCtx {
                memory,
                smp: *smp,
                ..*ctx
            };
            let name = format!("{}-sizing-{memory}-smp{smp}", k.short);
            let (run, wall) = c.boot(&c.spec(k, &name, 300), base)?;
            if let (Some(f), Some(s)) = (run.timings.boot_to_first_line_s, run.timings.suite_s) {
                samples[i][0].push(f);
                samples[i][1].push(s);
                samples[i][2].push(wall);
            }
        }
    }
    let mut out = Vec::new();
    for ((memory, smp), [first, suite, total]) in SIZES.iter().zip(&samples) {
        let item = format!("-m {memory} -smp {smp}");
        for (metric, v) in [
            ("first KTAP line", first),
            ("suite", suite),
            ("boot-to-verdict", total),
        ] {
            if let Some(st) = Stats::of(v) {
                rep.stat("sizing", &item, metric, &st, "s", 2, None);
            }
        }
        out.push(
            json!({"memory": memory, "smp": smp, "first_line_s": Stats::of(first),
                        "suite_s": Stats::of(suite), "boot_to_verdict_s": Stats::of(total)}),
        );
    }
    Ok(Value::Array(out))
}

#[allow(clippy::too_many_arguments)]
fn measure_matrix(
    a: &BenchArgs,
    cfg: &Config,
    config_path: &Path,
    suite: &Path,
    cache: &Path,
    out: &Path,
    cores: usize,
    rep: &mut Report,
) -> Result<Value> {
    // One guest per kernel: each kernel's guest on `max` without a label.
    let per_kernel: Vec<String> = cfg
        .guests()
        .into_iter()
        .filter(|g| g.cpu == "max" && g.name == format!("{}-max", g.kernel))
        .map(|g| g.name)
        .collect();
    let mut plan: Vec<(String, usize, Vec<String>)> =
        vec![("default matrix".to_owned(), 1, Vec::new())];
    if cores > 1 {
        plan.push(("default matrix".to_owned(), cores, Vec::new()));
    }
    if !per_kernel.is_empty() && per_kernel.len() < cfg.guests().len() {
        plan.push((
            format!("{}-kernel matrix (max)", per_kernel.len()),
            cores,
            per_kernel,
        ));
    }
    let mut entries = Vec::new();
    for (label, jobs, only) in plan {
        let mut walls = Vec::new();
        let mut guest_s = Vec::new();
        let mut guests = 0;
        let mut problems = 0;
        for _ in 0..a.matrix_runs {
            let opts = matrix::MatrixOptions {
                config: config_path.to_path_buf(),
                out: out.join(format!(
                    "matrix-{}-j{jobs}",
                    if only.is_empty() {
                        "default"
                    } else {
                        "per-kernel"
                    }
                )),
                jobs,
                shard: None,
                only: only.clone(),
                suite: Some(suite.to_path_buf()),
                expectations: None,
                refresh: false,
                cache: cache.to_path_buf(),
                accel: a.accel,
                suite_args: Vec::new(),
            };
            let t = Instant::now();
            let results = matrix::run(&opts)?;
            walls.push(secs(t.elapsed()));
            guests = results.runs.len();
            guest_s.push(
                results
                    .runs
                    .iter()
                    .filter_map(|r| r.timings.total_s)
                    .sum::<f64>(),
            );
            problems = results.exit_code();
        }
        let st = Stats::of(&walls).expect("matrix_runs >= 1");
        let sum = Stats::of(&guest_s).expect("matrix_runs >= 1");
        let parallel = jobs == cores;
        let met = st.median < targets::MATRIX_S;
        let item = format!("--jobs {jobs}");
        rep.stat(
            "matrix",
            &item,
            &format!("{label}, {guests} guests: wall"),
            &st,
            "s",
            1,
            parallel.then_some(("< 40 s", met)),
        );
        rep.stat(
            "matrix",
            &item,
            &format!("{label}: sum of guest times"),
            &sum,
            "s",
            1,
            None,
        );
        if parallel {
            rep.target(
                &format!("{label} wall ({guests} guests, --jobs {jobs})"),
                "< 40",
                st.median,
                "s",
                met,
                &format!(
                    "bound: {:.0} s of guest time / {jobs} cores = {:.0} s",
                    sum.median,
                    sum.median / jobs as f64
                ),
            );
        }
        entries.push(
            json!({"label": label, "jobs": jobs, "guests": guests, "wall_s": st,
                            "sum_of_guest_times_s": sum, "exit_code": problems}),
        );
    }
    Ok(Value::Array(entries))
}
