//! `bench.json`: the typed document, serialised as it is (no `serde_json::Value` building).
//!
//! Every struct lists its fields in alphabetical order: the key order `bench.json` has always
//! had (it was built as a `serde_json` map, which sorts its keys).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Stats;
use super::cselftest::Checks;
use super::table::{Row, Target};

/// The whole `bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchDoc {
    /// The accelerator and CPU the guests ran on (absent without qemu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accel: Option<AccelFigures>,
    /// The benchmark's own wall time, seconds.
    pub bench_wall_s: f64,
    /// The C selftests side by side (`--with-c-selftests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_selftests: Option<CSelftestsFigures>,
    /// Why the C selftests could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_selftests_error: Option<String>,
    /// The guest settings.
    pub guest: GuestSetup,
    /// Why no guest was booted (no qemu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guests_skipped: Option<String>,
    /// The host.
    pub host: HostFigures,
    /// The initramfs figures.
    pub initramfs: InitramfsFigures,
    /// Per kernel (absent without qemu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<KernelFigures>>,
    /// The matrix runs (absent with `--skip-matrix` or without qemu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Vec<MatrixFigures>>,
    /// The native per-case overhead (absent when it could not be measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeFigures>,
    /// The table rows.
    pub rows: Vec<Row>,
    /// `--runs`.
    pub runs: usize,
    /// The document's schema version.
    pub schema: u32,
    /// Guest sizing (`--sizing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sizing: Option<Vec<SizingFigures>>,
    /// The targets' verdicts.
    pub targets: Vec<Target>,
    /// When the benchmark ended.
    pub unix_time: u64,
}

impl BenchDoc {
    /// Writes the document, pretty-printed, atomically to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::paths::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The host while the benchmark ran.
#[derive(Debug, Clone, Serialize)]
pub struct HostFigures {
    /// Always `tcg` (the field predates `--accel`; see [`BenchDoc::accel`]).
    pub accel: &'static str,
    /// Cores.
    pub cores: usize,
    /// Always false (see `accel`).
    pub kvm: bool,
    /// `/proc/loadavg` after.
    pub load_after: String,
    /// `/proc/loadavg` before.
    pub load_before: String,
}

/// The per-kernel guests' settings.
#[derive(Debug, Clone, Serialize)]
pub struct GuestSetup {
    /// Extra kernel command line.
    pub append: String,
    /// `--cpu`.
    pub cpu: String,
    /// qemu `-m`.
    pub memory: String,
    /// qemu `-smp`.
    pub smp: u32,
}

/// The accelerator decision.
#[derive(Debug, Clone, Serialize)]
pub struct AccelFigures {
    /// `kvm` or `tcg`.
    pub accel: &'static str,
    /// The qemu `-cpu` used.
    pub cpu: String,
    /// The host's CPU model.
    pub host: String,
}

/// The initramfs: sizes and build times.
#[derive(Debug, Clone, Serialize)]
pub struct InitramfsFigures {
    /// A cache hit (read + hash), seconds.
    pub cache_hit_s: Stats,
    /// Whether a second `cargo build` left the suite unchanged (`None` with `--suite`).
    pub cache_key_stable: Option<bool>,
    /// A cold build (cpio + gzip + write), seconds.
    pub cold_build_s: Stats,
    /// The cpio's size.
    pub cpio_bytes: usize,
    /// The first suite build call of the command, seconds.
    pub first_suite_build_call_s: f64,
    /// The gzip'd image's size.
    pub gzip_bytes: usize,
    /// The per-guest image (base + `/pkeys/args`), seconds.
    pub per_guest_write_s: Stats,
    /// The static suite's size.
    pub suite_bytes: usize,
}

/// The native per-case overhead.
#[derive(Debug, Clone, Serialize)]
pub struct NativeFigures {
    /// Per empty case, µs.
    pub case_overhead_us: Stats,
    /// Empty cases per second.
    pub cases_per_s: Stats,
    /// Empty cases per sample.
    pub cases_per_sample: u32,
    /// A bare fork + exit + wait, µs.
    pub fork_exit_wait_us: Stats,
}

/// One kernel's guests.
#[derive(Debug, Clone, Serialize)]
pub struct KernelFigures {
    /// The same kernel with a trivial `/init`: qemu start → init.
    pub bare_boot_to_init_s: Option<Stats>,
    /// The same kernel with a trivial `/init`: qemu start → exit.
    pub bare_qemu_lifetime_s: Option<Stats>,
    /// qemu start → first KTAP line.
    pub boot_to_first_line_s: Option<Stats>,
    /// The runner's wall time for the guest.
    pub boot_to_verdict_s: Option<Stats>,
    /// The kernel's short name.
    pub kernel: String,
    /// `(total - bare - suite) / (bare + suite)`.
    pub overhead_ratio: Option<Stats>,
    /// The Debian package.
    pub package: String,
    /// The suite's plan.
    pub plan: Option<usize>,
    /// qemu start → qemu gone.
    pub qemu_lifetime_s: Option<Stats>,
    /// The suite's time in the guest.
    pub suite_s: Option<Stats>,
    /// Each run's counts line.
    pub verdicts: Vec<String>,
    /// The package version.
    pub version: String,
}

/// The C selftests side by side.
#[derive(Debug, Clone, Serialize)]
pub struct CSelftestsFigures {
    /// Per kernel.
    pub kernels: Vec<CSelftestsKernel>,
    /// The `linux-source` version the programs were built from.
    pub source_version: String,
}

/// The C selftests on one kernel. Absent fields had no samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CSelftestsKernel {
    /// Checks per C program.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_checks: Option<BTreeMap<String, Checks>>,
    /// Distinct checks of the C programs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_distinct_checks: Option<u32>,
    /// Each C program's status per run.
    pub c_status: BTreeMap<String, Vec<String>>,
    /// Both C programs, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_total_s: Option<Stats>,
    /// Checks ratio ours / C (present, maybe null, when our plan is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks_ratio_ours_over_c: Option<Option<f64>>,
    /// The empty-case overhead in the guest, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_case_overhead_us: Option<Stats>,
    /// The kernel's short name.
    pub kernel: String,
    /// Our checks (the KTAP plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ours_checks: Option<u32>,
    /// The suite's wall time in the guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ours_s: Option<Stats>,
    /// Each C program's wall time, keyed `<program>_s` (between `ours_s` and
    /// `wall_ratio_ours_over_c` in key order, as the program names sort).
    #[serde(flatten)]
    pub programs_s: BTreeMap<String, Stats>,
    /// Wall ratio ours / C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ratio_ours_over_c: Option<Stats>,
}

/// One kernel under one `-m`/`-smp`.
#[derive(Debug, Clone, Serialize)]
pub struct SizingFigures {
    /// The runner's wall time.
    pub boot_to_verdict_s: Option<Stats>,
    /// qemu start → first KTAP line.
    pub first_line_s: Option<Stats>,
    /// qemu `-m`.
    pub memory: &'static str,
    /// qemu `-smp`.
    pub smp: u32,
    /// The suite in the guest.
    pub suite_s: Option<Stats>,
}

/// One matrix configuration.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixFigures {
    /// The last run's exit code.
    pub exit_code: i32,
    /// Guests run.
    pub guests: usize,
    /// `--jobs`.
    pub jobs: usize,
    /// What ran.
    pub label: String,
    /// The sum of the guests' own times.
    pub sum_of_guest_times_s: Stats,
    /// The matrix's wall time.
    pub wall_s: Stats,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> Stats {
        Stats::of(&[1.0, 2.0]).unwrap()
    }

    /// The keys of a JSON object, in the order written.
    fn keys(v: &str) -> Vec<String> {
        // serde_json's Value sorts its keys: read the order from the text instead.
        let mut out = Vec::new();
        let mut depth = 0;
        let mut chars = v.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' => depth -= 1,
                '"' => {
                    let end = v[i + 1..].find('"').unwrap() + i + 1;
                    let word = &v[i + 1..end];
                    while chars.peek().is_some_and(|(j, _)| *j <= end) {
                        chars.next();
                    }
                    if depth == 1 && v[end + 1..].starts_with(':') {
                        out.push(word.to_owned());
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The keys `bench.json` had when it was built as a `serde_json` map (sorted).
    #[test]
    fn the_document_keeps_its_keys_in_their_order() {
        let doc = BenchDoc {
            accel: Some(AccelFigures {
                accel: "tcg",
                cpu: "max".into(),
                host: "x".into(),
            }),
            bench_wall_s: 1.0,
            c_selftests: Some(CSelftestsFigures {
                kernels: vec![],
                source_version: "1".into(),
            }),
            c_selftests_error: Some("e".into()),
            guest: GuestSetup {
                append: String::new(),
                cpu: "max".into(),
                memory: "512M".into(),
                smp: 1,
            },
            guests_skipped: Some("no qemu".into()),
            host: HostFigures {
                accel: "tcg",
                cores: 2,
                kvm: false,
                load_after: String::new(),
                load_before: String::new(),
            },
            initramfs: InitramfsFigures {
                cache_hit_s: st(),
                cache_key_stable: None,
                cold_build_s: st(),
                cpio_bytes: 1,
                first_suite_build_call_s: 1.0,
                gzip_bytes: 1,
                per_guest_write_s: st(),
                suite_bytes: 1,
            },
            kernels: Some(vec![]),
            matrix: Some(vec![]),
            native: None,
            rows: vec![],
            runs: 1,
            schema: 1,
            sizing: None,
            targets: vec![],
            unix_time: 0,
        };
        let text = serde_json::to_string(&doc).unwrap();
        let got = keys(&text);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted, "{text}");
        assert_eq!(
            got,
            [
                "accel",
                "bench_wall_s",
                "c_selftests",
                "c_selftests_error",
                "guest",
                "guests_skipped",
                "host",
                "initramfs",
                "kernels",
                "matrix",
                "rows",
                "runs",
                "schema",
                "targets",
                "unix_time"
            ]
        );
        assert_eq!(
            keys(&serde_json::to_string(&doc.initramfs).unwrap()),
            [
                "cache_hit_s",
                "cache_key_stable",
                "cold_build_s",
                "cpio_bytes",
                "first_suite_build_call_s",
                "gzip_bytes",
                "per_guest_write_s",
                "suite_bytes"
            ]
        );
        assert_eq!(
            keys(&serde_json::to_string(&st()).unwrap()),
            ["max", "median", "min", "n", "samples"]
        );
    }

    /// A C selftests entry: the programs' `<name>_s` keys sit where a sorted map put them, and
    /// the check counts appear only when our plan is known.
    #[test]
    fn c_selftests_entries_keep_their_keys() {
        let mut e = CSelftestsKernel {
            kernel: "6.12".into(),
            ours_s: Some(st()),
            c_total_s: Some(st()),
            wall_ratio_ours_over_c: Some(st()),
            ..CSelftestsKernel::default()
        };
        for p in super::super::cselftest::PROGRAMS {
            e.programs_s.insert(format!("{p}_s"), st());
        }
        let without = keys(&serde_json::to_string(&e).unwrap());
        assert_eq!(
            without,
            [
                "c_status",
                "c_total_s",
                "kernel",
                "ours_s",
                "pkey_sighandler_tests_s",
                "protection_keys_s",
                "wall_ratio_ours_over_c"
            ]
        );
        e.ours_checks = Some(3);
        e.c_distinct_checks = Some(2);
        e.c_checks = Some(BTreeMap::new());
        e.checks_ratio_ours_over_c = Some(None);
        let text = serde_json::to_string(&e).unwrap();
        let with = keys(&text);
        let mut sorted = with.clone();
        sorted.sort();
        assert_eq!(with, sorted);
        assert_eq!(with.len(), without.len() + 4);
        assert!(text.contains("\"checks_ratio_ours_over_c\":null"), "{text}");
    }
}
