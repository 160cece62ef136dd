//! Measuring: each part of the benchmark as a function that returns its typed figures (its
//! part of `bench.json`, [`super::json`]) and its table lines ([`super::table`]). Nothing here
//! prints the tables ([`super::print`] does); progress while guests boot goes to stderr.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pkeys_report::GuestRun;
use serde::Deserialize;

use super::json::{
    CSelftestsFigures, CSelftestsKernel, InitramfsFigures, KernelFigures, MatrixFigures,
    NativeFigures, SizingFigures,
};
use super::table::{Measured, Row, Table};
use super::{BenchArgs, Stats, cselftest, stats, targets};
use crate::config::{self, Config};
use crate::guest::{self, Env, Event, GuestSpec};
use crate::kernel::ResolvedKernel;
use crate::{initramfs, matrix};

/// Seconds as `f64`.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Gzip'd `data`.
pub use crate::initramfs::gzip;

/// The load averages of `/proc/loadavg`.
pub fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A progress line on stderr.
pub fn say(line: &str) {
    crate::say!("bench: {line}");
}

/// Only retries are worth a line while a benchmark guest runs.
fn quiet_progress(name: &str, event: Event) {
    if let Event::Retrying { reason } = event {
        say(&format!(
            "{name}: failed before the suite started ({reason}); retrying once"
        ));
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

/// The initramfs: sizes, a cold build, a cache hit, the per-guest image; `build_s` is how long
/// the first suite build call of the command took.
pub fn initramfs(
    a: &BenchArgs,
    suite: &Path,
    suite_bytes: &[u8],
    cache: &Path,
    build_s: f64,
) -> Result<Measured<InitramfsFigures>> {
    let mut table = Table::default();
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
        table.note(
            "suite",
            "cargo build (up to date)",
            format!("{noop_s:.2} s; binary unchanged: {same}"),
        );
        Some(same)
    } else {
        None
    };
    let kib = |n: usize| n as f64 / 1024.0;
    table.note(
        "suite",
        "sizes",
        format!(
            "{:.0} KiB static binary, {:.0} KiB cpio, {:.0} KiB gzip",
            kib(suite_bytes.len()),
            kib(archive.len()),
            kib(image.len())
        ),
    );
    table.note(
        "suite",
        "first build call of this command",
        format!("{build_s:.2} s"),
    );
    let cold_st = Stats::of(&cold).expect("runs >= 1");
    let hit_st = Stats::of(&hit).expect("runs >= 1");
    let guest_st = Stats::of(&per_guest).expect("runs >= 1");
    table.stat(
        "initramfs",
        "base image",
        "build, cold (cpio + gzip + write)",
        &cold_st.scaled(1e3),
        "ms",
        1,
        None,
    );
    table.stat(
        "initramfs",
        "base image",
        "cache hit (read + hash)",
        &hit_st.scaled(1e3),
        "ms",
        2,
        None,
    );
    table.stat(
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
        table.stored(Row {
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
    Ok(Measured {
        figures: InitramfsFigures {
            suite_bytes: suite_bytes.len(),
            cpio_bytes: archive.len(),
            gzip_bytes: image.len(),
            cold_build_s: cold_st,
            cache_hit_s: hit_st,
            per_guest_write_s: guest_st,
            first_suite_build_call_s: build_s,
            cache_key_stable: stable,
        },
        table,
    })
}

/// What `pkeys-suite --bench-overhead` prints (a missing figure is NaN, dropped from the stats).
#[derive(Debug, Deserialize)]
struct Overhead {
    #[serde(default)]
    case_mean_us: Option<f64>,
    #[serde(default)]
    fork_mean_us: Option<f64>,
}

/// The native fork-per-case overhead of an empty case (`pkeys-suite --bench-overhead`).
pub fn native(a: &BenchArgs, suite: &Path) -> Result<Measured<NativeFigures>> {
    let mut table = Table::default();
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
        let v: Overhead = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{} --bench-overhead: not JSON", suite.display()))?;
        case_us.push(v.case_mean_us.unwrap_or(f64::NAN));
        fork_us.push(v.fork_mean_us.unwrap_or(f64::NAN));
    }
    let case = Stats::of(&case_us).context("no native samples")?;
    let fork = Stats::of(&fork_us).context("no native samples")?;
    let per_s: Vec<f64> = case_us.iter().map(|us| 1e6 / us).collect();
    let per_s = Stats::of(&per_s).context("no native samples")?;
    let met = case.median < targets::CASE_OVERHEAD_US;
    table.stat(
        "native",
        "empty case",
        "fork-per-case overhead",
        &case,
        "µs",
        0,
        Some(("< 2000 µs", met)),
    );
    table.stat(
        "native",
        "empty case",
        "cases per second",
        &per_s,
        "/s",
        0,
        None,
    );
    table.stat(
        "native",
        "fork+exit+wait",
        "floor under any fork-per-case",
        &fork,
        "µs",
        0,
        None,
    );
    table.target(
        "native per-case overhead (empty case)",
        "< 2000",
        case.median,
        "µs",
        met,
        "",
    );
    Ok(Measured {
        figures: NativeFigures {
            cases_per_sample: a.cases,
            case_overhead_us: case,
            cases_per_s: per_s,
            fork_exit_wait_us: fork,
        },
        table,
    })
}

/// What every benchmark guest shares.
#[derive(Debug, Clone, Copy)]
pub struct GuestCtx<'a> {
    /// The qemu binary.
    pub qemu: &'a Path,
    /// The accelerator.
    pub accel: crate::accel::Accel,
    /// qemu `-cpu`.
    pub cpu: &'a str,
    /// qemu `-m`.
    pub memory: &'a str,
    /// qemu `-smp`.
    pub smp: u32,
    /// Extra kernel command line.
    pub append: &'a str,
    /// Where the guests' files go.
    pub out: &'a Path,
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

/// Per kernel: the suite's guest and the same kernel's bare boot, alternating, `--runs` times.
/// Also returns the last suite run of each kernel (for `results.json`).
pub fn kernels(
    a: &BenchArgs,
    ctx: &GuestCtx<'_>,
    kernels: &[ResolvedKernel],
    base: &[u8],
    bare_image: &[u8],
) -> Result<(Measured<Vec<KernelFigures>>, Vec<GuestRun>)> {
    let mut table = Table::default();
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
                    table.stat("per kernel", item, metric, &st, unit, digits, target);
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
            table.target(
                "boot-to-verdict 6.12, full suite",
                "< 10",
                t.median,
                "s",
                t.median < targets::BOOT_TO_VERDICT_S,
                "",
            );
        }
        if let Some(o) = over {
            table.target(
                &format!("runner overhead {}", k.short),
                "< 0.15",
                o.median,
                "",
                o.median < targets::OVERHEAD_RATIO,
                "",
            );
        }
    }
    let mut figures = Vec::new();
    let mut last_runs = Vec::new();
    for k in kernels {
        let s = &samples[&k.short];
        figures.push(KernelFigures {
            kernel: k.short.clone(),
            package: k.info.package.clone(),
            version: k.info.version.clone(),
            boot_to_first_line_s: Stats::of(&s.first_line),
            suite_s: Stats::of(&s.suite),
            boot_to_verdict_s: Stats::of(&s.total),
            qemu_lifetime_s: Stats::of(&s.qemu_total),
            bare_boot_to_init_s: Stats::of(&s.bare_init),
            bare_qemu_lifetime_s: Stats::of(&s.bare_total),
            overhead_ratio: Stats::of(&s.overhead),
            plan: s.plan,
            verdicts: s.verdicts.clone(),
        });
        if let Some(run) = &s.last {
            last_runs.push(run.clone());
        }
    }
    Ok((Measured { figures, table }, last_runs))
}

/// The kernel's C selftests next to the suite in the same guests (`--with-c-selftests`).
pub fn c_selftests(
    a: &BenchArgs,
    ctx: &GuestCtx<'_>,
    kernels: &[ResolvedKernel],
    base: &[u8],
    cache: &Path,
) -> Result<Measured<CSelftestsFigures>> {
    let mut table = Table::default();
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
                .and_then(|sec| serde_json::from_str::<Overhead>(sec.output.trim()).ok())
                .and_then(|v| v.case_mean_us)
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
        let mut entry = CSelftestsKernel {
            kernel: k.short.clone(),
            ..CSelftestsKernel::default()
        };
        if let Some(st) = Stats::of(&ours_s) {
            table.stat(
                "C selftests",
                item,
                "ours: suite wall in guest",
                &st,
                "s",
                2,
                None,
            );
            entry.ours_s = Some(st);
        }
        for (p, v) in &c_s {
            if let Some(st) = Stats::of(v) {
                table.stat("C selftests", item, &format!("C: {p}"), &st, "s", 2, None);
                entry.programs_s.insert(format!("{p}_s"), st);
            }
        }
        if let Some(st) = Stats::of(&c_total) {
            table.stat("C selftests", item, "C: both programs", &st, "s", 2, None);
            entry.c_total_s = Some(st);
        }
        let ratios: Vec<f64> = ours_s
            .iter()
            .zip(&c_total)
            .filter_map(|(o, c)| stats::ratio(*o, *c))
            .collect();
        if let Some(st) = Stats::of(&ratios) {
            table.stat("C selftests", item, "wall ratio ours / C", &st, "", 2, None);
            entry.wall_ratio_ours_over_c = Some(st);
        }
        let c_run: u32 = c_checks.values().map(|c| c.run).sum();
        if let Some(ours) = ours_checks {
            let ratio = stats::ratio(f64::from(ours), f64::from(c_run));
            table.note(
                item,
                "checks",
                format!(
                    "ours {ours} (KTAP plan), C {c_run} ({}){}",
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
                ),
            );
            if let Some(r) = ratio {
                table.stat(
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
                table.note(
                    item,
                    "distinct checks",
                    format!("ours {ours}, C {c_distinct}; ratio ours / C {r:.2}"),
                );
                table.stat(
                    "C selftests",
                    item,
                    "distinct checks ratio ours / C",
                    &Stats::of(&[r]).expect("one"),
                    "",
                    2,
                    None,
                );
            }
            entry.c_distinct_checks = Some(c_distinct);
            entry.ours_checks = Some(ours);
            entry.c_checks = Some(c_checks.clone());
            entry.checks_ratio_ours_over_c = Some(ratio);
        }
        if let Some(st) = Stats::of(&guest_case_us) {
            table.stat(
                "C selftests",
                item,
                "ours: empty-case overhead in the guest",
                &st,
                "µs",
                0,
                None,
            );
            entry.guest_case_overhead_us = Some(st);
        }
        entry.c_status = c_status;
        out.push(entry);
    }
    Ok(Measured {
        figures: CSelftestsFigures {
            source_version: built.version,
            kernels: out,
        },
        table,
    })
}

/// One kernel under other `-m`/`-smp` values (`--sizing`).
pub fn sizing(
    a: &BenchArgs,
    ctx: &GuestCtx<'_>,
    k: &ResolvedKernel,
    base: &[u8],
) -> Result<Measured<Vec<SizingFigures>>> {
    let mut table = Table::default();
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
                table.stat("sizing", &item, metric, &st, "s", 2, None);
            }
        }
        out.push(SizingFigures {
            memory,
            smp: *smp,
            first_line_s: Stats::of(first),
            suite_s: Stats::of(suite),
            boot_to_verdict_s: Stats::of(total),
        });
    }
    Ok(Measured {
        figures: out,
        table,
    })
}

/// The matrix's wall time: the default matrix with `--jobs 1` and one guest per core, and one
/// guest per kernel.
#[allow(clippy::too_many_arguments)]
pub fn matrix(
    a: &BenchArgs,
    cfg: &Config,
    config_path: &Path,
    suite: &Path,
    cache: &Path,
    out: &Path,
    cores: usize,
) -> Result<Measured<Vec<MatrixFigures>>> {
    let mut table = Table::default();
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
        table.stat(
            "matrix",
            &item,
            &format!("{label}, {guests} guests: wall"),
            &st,
            "s",
            1,
            parallel.then_some(("< 40 s", met)),
        );
        table.stat(
            "matrix",
            &item,
            &format!("{label}: sum of guest times"),
            &sum,
            "s",
            1,
            None,
        );
        if parallel {
            table.target(
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
        entries.push(MatrixFigures {
            label,
            jobs,
            guests,
            wall_s: st,
            sum_of_guest_times_s: sum,
            exit_code: problems,
        });
    }
    Ok(Measured {
        figures: entries,
        table,
    })
}
