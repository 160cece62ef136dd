//! The peer: the kernel's own C selftests `protection_keys` and `pkey_sighandler_tests`, built
//! statically from Debian's `linux-source-6.12` (benchmarks only; the normal tests never need
//! the source).
//!
//! - [`prepare`] downloads the `.deb` once into `<cache>/bench/` (the machine's apt first, else a
//!   private apt state over the suites that carry the package, through [`crate::apt`]),
//!   extracts only the few folders of `tools/` the two programs need, and builds them with
//!   `gcc -static -O2 -m64 -mxsave -pthread` (the selftest Makefile's flags for the `_64`
//!   variants, statically linked so that the guest needs no libc).
//! - [`archive`] puts them into the guest as `/bench/<name>` with the list `/pkeys/bench` that
//!   the guest init runs after the suite (see `suite/src/bench.rs`).
//! - [`parse_guest`] splits the result stream into the sections the init wrote, and
//!   [`count_checks`] counts what each C program reports as done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cpio;

/// The Debian package with the kernel source.
pub const SOURCE_PACKAGE: &str = "linux-source-6.12";
/// Suites where [`SOURCE_PACKAGE`] lives (when the machine's own apt does not have it).
pub const SOURCE_SUITES: &[&str] = &[
    "bookworm-security",
    "bookworm-backports",
    "trixie",
    "trixie-security",
];
/// The two programs, in the order the guest runs them.
pub const PROGRAMS: &[&str] = &["protection_keys", "pkey_sighandler_tests"];
/// The guest's time limit for each program.
pub const PROGRAM_TIMEOUT_S: u32 = 240;
/// The section name of the suite's own per-case overhead measured in the guest.
pub const GUEST_OVERHEAD: &str = "pkeys_overhead";
/// Empty cases the guest runs for [`GUEST_OVERHEAD`].
pub const GUEST_OVERHEAD_CASES: u32 = 200;
/// The marker prefix the guest init writes (`suite/src/bench.rs`).
pub const MARKER: &str = pkeys_common::protocol::BENCH_MARKER;

/// The built programs.
#[derive(Debug, Clone)]
pub struct Built {
    /// The source package's version.
    pub version: String,
    /// `(name, static binary)` in [`PROGRAMS`] order.
    pub programs: Vec<(String, PathBuf)>,
}

fn run(cmd: &mut Command) -> Result<()> {
    let what = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        bail!(
            "{what} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(())
}

/// The source `.deb` in `dir`, downloading it when absent.
fn source_deb(dir: &Path, cache: &Path) -> Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with(&format!("{SOURCE_PACKAGE}_")) && n.ends_with(".deb")
                })
            })
            .collect();
        debs.sort();
        debs.pop()
    };
    if let Some(deb) = find() {
        return Ok(deb);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::say!("bench: downloading {SOURCE_PACKAGE} (about 150 MB, once)");
    let mut own = Command::new("apt-get");
    own.args(["-q", "download", SOURCE_PACKAGE])
        .current_dir(dir)
        .env("LC_ALL", "C");
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    if root {
        own.args(["-o", "APT::Sandbox::User=root"]);
    }
    if let Err(e) = run(&mut own) {
        crate::say!(
            "bench: the machine's apt has no {SOURCE_PACKAGE} ({e:#}); trying {}",
            SOURCE_SUITES.join(", ")
        );
        let suites: Vec<String> = SOURCE_SUITES.iter().map(|s| (*s).to_owned()).collect();
        let apt = crate::apt::PrivateApt::new(
            &cache.join("bench/apt"),
            &suites,
            crate::apt::machine_mirrors()?,
        )?;
        let _lock = apt.lock()?;
        if apt.needs_update(crate::apt::LISTS_MAX_AGE) {
            apt.update()?;
        }
        let candidates = apt.candidates(SOURCE_PACKAGE)?;
        let best = crate::apt::newest(&candidates, &suites, SOURCE_PACKAGE)
            .with_context(|| format!("no {SOURCE_PACKAGE} in {}", suites.join(", ")))?;
        apt.download(best, dir)?;
    }
    find().with_context(|| {
        format!(
            "apt-get download {SOURCE_PACKAGE} left no .deb in {}",
            dir.display()
        )
    })
}

/// The version part of `linux-source-6.12_<version>_all.deb` (`%3a` is an epoch colon).
pub fn deb_version(file_name: &str) -> Option<String> {
    let rest = file_name.strip_prefix(&format!("{SOURCE_PACKAGE}_"))?;
    let version = rest.split('_').next()?;
    (!version.is_empty()).then(|| version.replace("%3a", ":"))
}

/// Downloads, extracts and builds the two programs (each step skipped when its output is
/// already in `<cache>/bench/`).
pub fn prepare(cache: &Path) -> Result<Built> {
    let dir = cache.join("bench");
    let deb = source_deb(&dir, cache)?;
    let version = deb
        .file_name()
        .and_then(|n| deb_version(&n.to_string_lossy()))
        .unwrap_or_else(|| "unknown".to_owned());
    let slug = version.replace([':', '~', '+'], "_");
    let bin_dir = dir.join(format!("c-selftests-{slug}"));
    let programs: Vec<(String, PathBuf)> = PROGRAMS
        .iter()
        .map(|p| ((*p).to_owned(), bin_dir.join(p)))
        .collect();
    if programs.iter().all(|(_, p)| p.is_file()) {
        return Ok(Built { version, programs });
    }
    let src = dir.join(format!("tools-{slug}"));
    let top = src.join(SOURCE_PACKAGE);
    // Bumped when the set of extracted folders changes.
    let stamp = src.join(".extracted-v2");
    if !stamp.is_file() {
        crate::say!("bench: extracting tools/ from {}", deb.display());
        let tmp = tempfile::Builder::new()
            .prefix(".extract-")
            .tempdir_in(&dir)
            .context("cannot create a temporary folder")?;
        let tarball = format!("./usr/src/{SOURCE_PACKAGE}.tar.xz");
        run(Command::new("sh")
            .arg("-c")
            .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" \"$3\"")
            .arg("sh")
            .arg(&deb)
            .arg(tmp.path())
            .arg(&tarball))?;
        let out = tmp.path().join("src");
        std::fs::create_dir_all(&out)?;
        run(Command::new("tar")
            .arg("-xJf")
            .arg(tmp.path().join(&tarball))
            .arg("-C")
            .arg(&out)
            .arg("--wildcards")
            .arg(format!("{SOURCE_PACKAGE}/tools/testing/selftests/mm/*"))
            .arg(format!("{SOURCE_PACKAGE}/tools/testing/selftests/*.h"))
            .arg(format!("{SOURCE_PACKAGE}/tools/include/*"))
            .arg(format!("{SOURCE_PACKAGE}/tools/arch/x86/include/*")))?;
        let _ = std::fs::remove_dir_all(&src);
        std::fs::rename(&out, &src)
            .with_context(|| format!("cannot move the sources to {}", src.display()))?;
        std::fs::write(&stamp, b"")?;
    }
    std::fs::create_dir_all(&bin_dir)?;
    let mm = top.join("tools/testing/selftests/mm");
    for (name, bin) in &programs {
        crate::say!("bench: building {name} (gcc -static)");
        let tmp = bin.with_extension("tmp");
        run(Command::new("gcc")
            .current_dir(&mm)
            .args(["-static", "-O2", "-m64", "-mxsave", "-pthread", "-Wall"])
            .arg("-I")
            .arg(top.join("tools/testing/selftests"))
            .arg("-I")
            .arg(top.join("tools/include"))
            .arg("-isystem")
            .arg(top.join("tools/include/uapi"))
            .arg("-o")
            .arg(&tmp)
            .arg(format!("{name}.c"))
            .args(["-lrt", "-ldl"]))
        .with_context(|| {
            format!("building {name} (is gcc installed? apt-get install gcc libc6-dev)")
        })?;
        std::fs::rename(&tmp, bin)?;
    }
    Ok(Built { version, programs })
}

/// The guest archive (uncompressed cpio newc): `/bench/<name>` and `/pkeys/bench`.
pub fn archive(built: &Built) -> Result<Vec<u8>> {
    let mut w = cpio::Writer::new(Vec::new(), 5000);
    w.dir("bench", 0o755)?;
    let mut list = String::new();
    for (name, path) in &built.programs {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        w.file(&format!("bench/{name}"), 0o755, &bytes)?;
        list.push_str(&format!("{name} {PROGRAM_TIMEOUT_S} /bench/{name}\n"));
    }
    // Last: the suite's fork-per-case overhead under TCG (`/init` is the suite; not PID 1 here).
    list.push_str(&format!(
        "{GUEST_OVERHEAD} {PROGRAM_TIMEOUT_S} /init --bench-overhead {GUEST_OVERHEAD_CASES}\n"
    ));
    w.dir("pkeys", 0o755)?;
    w.file("pkeys/bench", 0o644, list.as_bytes())?;
    // protection_keys' kernel-access tests read() from /etc/passwd into protected buffers.
    w.dir("etc", 0o755)?;
    w.file("etc/passwd", 0o644, b"root:x:0:0:root:/:/init\n")?;
    Ok(w.finish()?)
}

/// One program's section of the guest's result stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Section {
    /// Wall time from fork until every descendant was gone.
    pub wall_s: f64,
    /// `exit=<code>`, `signal=<n>`.
    pub status: String,
    /// How many processes were reaped (the program and its orphans).
    pub reaped: u32,
    /// Descendants other than the program that did not exit 0.
    pub others_failed: u32,
    /// Whether the guest's time limit killed it.
    pub timed_out: bool,
    /// What it printed.
    #[serde(skip)]
    pub output: String,
}

/// What the bench hook wrote: the suite's wall time in the guest, and one section per program.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestBench {
    /// The suite's wall time measured by the init (fork to exit).
    pub suite_s: Option<f64>,
    /// Sections by program name.
    pub programs: BTreeMap<String, Section>,
}

fn key<'a>(words: &[&'a str], k: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
}

/// Splits the result stream of a bench boot.
pub fn parse_guest(stream: &str) -> GuestBench {
    let mut out = GuestBench::default();
    let mut current: Option<(String, String)> = None;
    for raw in stream.split('\n') {
        let line = raw.trim_end_matches('\r');
        let Some(rest) = line.find(MARKER).map(|i| &line[i + MARKER.len()..]) else {
            if let Some((_, text)) = &mut current {
                text.push_str(line);
                text.push('\n');
            }
            continue;
        };
        // Text before the marker on the same line belongs to the program (no final newline).
        if let Some((_, text)) = &mut current {
            let before = &line[..line.find(MARKER).unwrap_or(0)];
            if !before.is_empty() {
                text.push_str(before);
                text.push('\n');
            }
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.first().copied() {
            Some("suite") => {
                out.suite_s = key(&words, "wall_ns")
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|ns| ns as f64 / 1e9);
            }
            Some("begin") => {
                current = words.get(1).map(|n| ((*n).to_owned(), String::new()));
            }
            Some("end") => {
                let name = words.get(1).copied().unwrap_or_default().to_owned();
                let output = match current.take() {
                    Some((n, text)) if n == name => text,
                    _ => String::new(),
                };
                let status = words
                    .iter()
                    .find(|w| w.starts_with("exit=") || w.starts_with("signal="))
                    .map_or_else(String::new, |w| (*w).to_owned());
                out.programs.insert(
                    name,
                    Section {
                        wall_s: key(&words, "wall_ns")
                            .and_then(|v| v.parse::<u64>().ok())
                            .map_or(f64::NAN, |ns| ns as f64 / 1e9),
                        status,
                        reaped: key(&words, "reaped")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                        others_failed: key(&words, "others_failed")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                        timed_out: key(&words, "timed_out") == Some("1"),
                        output,
                    },
                );
            }
            _ => {}
        }
    }
    out
}

/// What a C program reports as done.
///
/// (Fields in alphabetical order: the order `bench.json` has always had them in.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Checks {
    /// Distinct checks among them (test numbers of `protection_keys`, whose 21 tests run in
    /// 22 rounds; test names of kselftest lines).
    pub distinct: u32,
    /// Failed ones: `assert() at` (protection_keys exits at its first failed assertion) or
    /// `not ok`.
    pub failed: u32,
    /// Whether the program said it finished (`done (all tests OK)`, or kselftest's `# Totals`).
    pub finished: bool,
    /// Checks that ran to a verdict: `test N PASSED` lines of `protection_keys` (one per
    /// test function per round), `ok`/`not ok` lines of `pkey_sighandler_tests` (kselftest).
    pub run: u32,
}

/// Counts the checks in a C program's output.
pub fn count_checks(output: &str) -> Checks {
    let mut c = Checks::default();
    let mut seen = std::collections::BTreeSet::new();
    // `ok 3 name` / `not ok 3 name` → `name`.
    let tap_name = |rest: &str| {
        rest.split_once(' ')
            .map_or(rest, |(_, name)| name)
            .trim()
            .to_owned()
    };
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((nr, _)) = rest.split_once(" PASSED")
        {
            c.run += 1;
            seen.insert(format!("test {}", nr.trim()));
        } else if let Some(rest) = line.strip_prefix("ok ") {
            c.run += 1;
            seen.insert(tap_name(rest));
        } else if let Some(rest) = line.strip_prefix("not ok ") {
            c.run += 1;
            c.failed += 1;
            seen.insert(tap_name(rest));
        } else if let Some(rest) = line.split_once("assert() at ").map(|(_, r)| r) {
            c.run += 1;
            c.failed += 1;
            let nr = rest
                .split("test_nr: ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next());
            seen.insert(format!("test {}", nr.unwrap_or("?")));
        } else if line.starts_with("done (all tests OK)") || line.starts_with("# Totals:") {
            c.finished = true;
        }
    }
    c.distinct = seen.len() as u32;
    c
}

/// The number of cases in a KTAP plan line (`1..N`) of our suite's stream.
pub fn ktap_plan(stream: &str) -> Option<u32> {
    stream
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find_map(|l| l.strip_prefix("1..").and_then(|n| n.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "KTAP version 1\n1..3\nok 1 a\nok 2 b\nok 3 c\n# pkeys-suite: pass=3\n\n# pkeys-bench: suite wall_ns=1500000000\n# pkeys-bench: begin protection_keys\nhas pkeys: 1\nstartup pkey_reg: 0000000055555554\nrunning test_read_of_write_disabled_region()...\ntest  0 PASSED (iteration 1)\ntest  1 PASSED (iteration 1)\ntest  0 PASSED (iteration 2)\r\ndone (all tests OK)\n\n# pkeys-bench: end protection_keys wall_ns=4200000000 exit=0 reaped=3 others_failed=0 timed_out=0\n# pkeys-bench: begin pkey_sighandler_tests\nTAP version 13\n1..5\nok 1 test_sigsegv_handler_with_pkey0_disabled\nnot ok 2 test_sigsegv_handler_cannot_access_stack\n# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0# pkeys-bench: end pkey_sighandler_tests wall_ns=300000000 signal=11 reaped=1 others_failed=0 timed_out=0\n\n# pkeys-init: suite exit=0\n";

    #[test]
    fn sections() {
        let g = parse_guest(STREAM);
        assert_eq!(g.suite_s, Some(1.5));
        let pk = &g.programs["protection_keys"];
        assert_eq!(pk.wall_s, 4.2);
        assert_eq!(pk.status, "exit=0");
        assert_eq!(pk.reaped, 3);
        assert!(!pk.timed_out);
        assert_eq!(
            count_checks(&pk.output),
            Checks {
                run: 3,
                failed: 0,
                distinct: 2,
                finished: true
            }
        );
        let sh = &g.programs["pkey_sighandler_tests"];
        assert_eq!(sh.status, "signal=11");
        assert_eq!(
            count_checks(&sh.output),
            Checks {
                run: 2,
                failed: 1,
                distinct: 2,
                finished: true
            }
        );
        assert_eq!(ktap_plan(STREAM), Some(3));
    }

    #[test]
    fn assert_failure_and_missing_parts() {
        let c = count_checks(
            "test  0 PASSED (iteration 1)\nassert() at protection_keys.c::1234 test_nr: 1 iteration: 1\n",
        );
        assert_eq!(
            c,
            Checks {
                run: 2,
                failed: 1,
                distinct: 2,
                finished: false
            }
        );
        let g = parse_guest("KTAP version 1\n# pkeys-init: suite exit=0\n");
        assert!(g.suite_s.is_none() && g.programs.is_empty());
        assert_eq!(ktap_plan("KTAP version 1\n"), None);
    }

    #[test]
    fn versions() {
        assert_eq!(
            deb_version("linux-source-6.12_6.12.117-1~deb12u1_all.deb").as_deref(),
            Some("6.12.117-1~deb12u1")
        );
        assert_eq!(deb_version("other_1_all.deb"), None);
    }
}
