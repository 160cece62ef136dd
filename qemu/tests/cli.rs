//! The `pkeys-qemu` command: bad input gives one clear line and a non-zero exit; Ctrl-C and
//! SIGTERM stop the guests and leave nothing behind. Runs without qemu (a scripted stand-in).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rstest::rstest;

mod common;
use common::{fake_env, runner};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = fake_env();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        std::fs::create_dir(dir.path().join("empty-path")).unwrap();
        std::fs::write(dir.path().join("not-a-kernel"), vec![b'x'; 4096]).unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "[defaults]\ntimeout = 5\ncpu = [\"max\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad-expect.toml"), "this is = = not toml\n").unwrap();
        Fixture { dir }
    }

    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// `run` of the fake kernel and suite under the fake qemu playing `scenario`, into `out`,
    /// with no expectations.
    fn run_fake(&self, scenario: &str, out: &str) -> (i32, String) {
        let append = format!("fake={scenario}");
        self.run(
            &[
                "run",
                "--kernel",
                "@bzImage",
                "--suite",
                "@pkeys-suite",
                "--append",
                &append,
                "--out",
                out,
                "--expectations",
                "/dev/null",
            ],
            true,
        )
    }

    /// Runs the runner with `args` (`@x` = path of fixture file x); returns (code, stderr).
    fn run(&self, args: &[&str], fake_qemu: bool) -> (i32, String) {
        let args: Vec<String> = args
            .iter()
            .map(|a| match a.strip_prefix('@') {
                Some(f) => self.p(f),
                None => (*a).to_owned(),
            })
            .collect();
        let mut cmd = runner();
        cmd.args(&args)
            .env("PKEYS_CACHE", self.p("cache"))
            .env("TMPDIR", self.p("tmp"))
            .env_remove("PKEYS_QEMU");
        if fake_qemu {
            cmd.env("PKEYS_QEMU", self.p("fake-qemu"))
                .env("FAKE_QEMU_STATE", self.dir.path());
        } else {
            cmd.env("PATH", self.p("empty-path"));
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[rstest]
#[case::no_qemu(&["run", "--kernel", "@bzImage", "--suite", "@pkeys-suite"], false,
    "pkeys-qemu: error: qemu-system-x86_64 not found on PATH: install it with `apt-get install qemu-system-x86`")]
#[case::missing_kernel(&["run", "--kernel", "/nonexistent/bzImage"], false,
    "pkeys-qemu: error: kernel image /nonexistent/bzImage: No such file or directory (os error 2)")]
#[case::not_a_kernel(&["run", "--kernel", "@not-a-kernel"], false,
    "pkeys-qemu: error: not a kernel image: @not-a-kernel (no x86 boot-protocol magic \"HdrS\" at offset 0x202)")]
#[case::directory(&["run", "--kernel", "@tmp"], false, "pkeys-qemu: error: @tmp is not a kernel source tree (no Makefile, Kconfig, arch/x86/Kconfig and scripts/kconfig/merge_config.sh) nor a kernel build folder")]
#[case::unknown_debian(&["run", "--kernel", "debian:9.99"], false, "pkeys-qemu: error: unknown kernel `9.99` in ")]
#[case::bad_config(&["run", "--kernel", "@bzImage", "--config", "@bad.toml"], false,
    "pkeys-qemu: error: @bad.toml:3:1: unknown field `cpu`, expected one of")]
#[case::bad_config_matrix(&["matrix", "--config", "@bad.toml"], false, "pkeys-qemu: error: @bad.toml:3:1: unknown field `cpu`")]
#[case::bad_expectations(&["run", "--kernel", "@bzImage", "--expectations", "@bad-expect.toml"], false,
    "pkeys-qemu: error: @bad-expect.toml:")]
#[case::unknown_cpu(&["run", "--kernel", "@bzImage", "--suite", "@pkeys-suite", "--cpu", "Pentium-Pro"], true,
    "pkeys-qemu: error: unknown CPU model `Pentium-Pro`")]
#[case::close_cpu(&["run", "--kernel", "@bzImage", "--suite", "@pkeys-suite", "--cpu", "skylake"], true,
    "pkeys-qemu: error: unknown CPU model `skylake` (did you mean Skylake-Server?")]
#[case::deny_key0(&["run", "--kernel", "@bzImage", "--append", "quiet init_pkru=0x55555555"], false,
    "pkeys-qemu: error: --append: `init_pkru=0x55555555` denies key 0")]
#[case::dynamic_suite(&["run", "--kernel", "@bzImage", "--suite", "/bin/sh"], true, "is dynamically linked (it has PT_INTERP)")]
#[case::bad_shard(&["matrix", "--shard", "3/2"], false, "pkeys-qemu: error: --shard 3/2: expected K/N")]
#[case::no_match(&["matrix", "--only", "no-such-guest", "--list"], false, "pkeys-qemu: error: --only no-such-guest: matches no guest")]
fn bad_input(#[case] args: &[&str], #[case] fake: bool, #[case] expected: &str) {
    let f = Fixture::new();
    let (code, stderr) = f.run(args, fake);
    let expected = expected.replace('@', &format!("{}/", f.dir.path().display()));
    assert_eq!(code, 2, "exit status; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&expected),
        "stderr `{}` lacks `{expected}`",
        stderr.trim()
    );
}

#[test]
fn fake_guest_end_to_end() {
    let f = Fixture::new();
    let out = f.p("out");
    let (code, stderr) = f.run_fake("done", &out);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("  ok 1 a::one"),
        "result lines are streamed: {stderr}"
    );
    assert!(
        stderr.contains("bzImage-max: PASS: pass=2 | boot→first line"),
        "{stderr}"
    );
    for file in [
        "bzImage-max.ktap",
        "bzImage-max.console.log",
        "results.json",
        "report.md",
        "junit.xml",
    ] {
        assert!(Path::new(&out).join(file).is_file(), "{file} missing");
    }
    let results = pkeys_report::Results::load(Path::new(&out).join("results.json")).unwrap();
    assert_eq!(results.runs[0].cases.len(), 2);

    let (code, stderr) = f.run_fake("fail", &out);
    assert_eq!(code, 1, "a FAIL exits 1: {stderr}");
    let (code, stderr) = f.run_fake("panic_mid", &out);
    assert_eq!(code, 1, "a panic exits 1: {stderr}");
    assert!(
        stderr.contains("ERROR (kernel crashed: Kernel panic"),
        "{stderr}"
    );
    assert!(stderr.contains("last console lines"), "{stderr}");
    assert!(
        stderr.contains(&format!("removed 7 file(s) of an earlier run from {out}")),
        "a second run into the folder says it replaces the first: {stderr}"
    );

    // A folder holding a file the runner did not write is refused, untouched.
    std::fs::write(Path::new(&out).join("notes.txt"), "mine").unwrap();
    let (code, stderr) = f.run_fake("done", &out);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("notes.txt, which pkeys-qemu did not write"),
        "{stderr}"
    );
    assert!(Path::new(&out).join("results.json").is_file());
}

#[test]
fn a_guest_without_pku_is_named_as_such() {
    let f = Fixture::new();
    let out = f.p("out");
    let (code, stderr) = f.run_fake("nopku", &out);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "| no PKU in this guest (CPU model max): every case that needs keys was skipped"
        ),
        "{stderr}"
    );
}

#[test]
fn help_shows_the_defaults() {
    let out = runner().args(["matrix", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("(default: out/matrix)"), "{help}");
    assert!(help.contains("(default: ci/kernels.toml)"), "{help}");
    assert!(help.contains("[default: auto]"), "{help}");
    let out = runner().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("(default: out/<name>)"), "{help}");
}

#[rstest]
#[case::sigint(nix::sys::signal::Signal::SIGINT, 130)]
#[case::sigterm(nix::sys::signal::Signal::SIGTERM, 143)]
fn signal_stops_guests_and_cleans_up(#[case] sig: nix::sys::signal::Signal, #[case] want: i32) {
    let f = Fixture::new();
    let mut child = runner()
        .args([
            "run",
            "--kernel",
            &f.p("bzImage"),
            "--suite",
            &f.p("pkeys-suite"),
        ])
        .args([
            "--append",
            "fake=hang_after",
            "--out",
            &f.p("out"),
            "--timeout",
            "60",
        ])
        .args(["--expectations", "/dev/null"])
        .env("PKEYS_CACHE", f.p("cache"))
        .env("TMPDIR", f.p("tmp"))
        .env("PKEYS_QEMU", f.p("fake-qemu"))
        .env("FAKE_QEMU_STATE", f.dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "runner ended early: {seen}"
        );
        seen.push_str(&line);
        if line.contains("ok 1 a::one") {
            break;
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(want), "{seen}{rest}");
    assert!(rest.contains("no guest left running"), "{rest}");
    let pid: i32 = std::fs::read_to_string(f.dir.path().join("fake-qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "qemu {pid} outlived the runner");
    let left: Vec<_> = std::fs::read_dir(f.p("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn baseline_runs_carry_the_baseline_kernels_name() {
    let f = Fixture::new();
    std::fs::copy(f.p("bzImage"), f.p("bzImage-clean")).unwrap();
    let out = f.p("cmp");
    let (code, stderr) = f.run(
        &[
            "run",
            "--kernel",
            "@bzImage",
            "--baseline",
            "@bzImage-clean",
            "--suite",
            "@pkeys-suite",
            "--append",
            "fake=done",
            "--out",
            &out,
            "--expectations",
            "/dev/null",
        ],
        true,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("pkeys-qemu: bzImage-clean-max: kernel "),
        "{stderr}"
    );
    assert!(
        stderr.contains("pkeys-qemu: bzImage-max: kernel "),
        "{stderr}"
    );
    assert!(
        Path::new(&out)
            .join("baseline/bzImage-clean-max.ktap")
            .is_file()
    );
    assert!(Path::new(&out).join("after/bzImage-max.ktap").is_file());
    assert!(stderr.contains("nothing got worse"), "{stderr}");
}

/// Every `pkeys-qemu <command>` and `pkeys-report <command>` the README shows as code (inline
/// code, or a line of a code block) names a real subcommand, and every `cargo run -p <package>` a
/// workspace package with a binary.
#[test]
fn readme_commands_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let report_bin = Path::new(env!("CARGO_BIN_EXE_pkeys-qemu")).with_file_name("pkeys-report");
    // Code: inline spans (the odd `-separated pieces of a line) and code-block lines.
    let mut code: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            code.push(line.to_owned());
        } else {
            code.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    let mut checked = 0;
    for piece in &code {
        for (tool, bin) in [
            (
                "pkeys-qemu",
                Path::new(env!("CARGO_BIN_EXE_pkeys-qemu")).to_path_buf(),
            ),
            ("pkeys-report", report_bin.clone()),
        ] {
            let mut rest = piece.as_str();
            while let Some(i) = rest.find(&format!("{tool} ")) {
                rest = &rest[i + tool.len() + 1..];
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if word.is_empty() || word.starts_with('-') {
                    continue; // `pkeys-qemu …`, or options only
                }
                assert!(
                    bin.exists(),
                    "{} not built (cargo test --workspace builds it)",
                    bin.display()
                );
                let out = Command::new(&bin)
                    .args([word.as_str(), "--help"])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "README shows `{tool} {word}`, which is not a command: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "README commands found: {checked}");
    let packages = ["pkeys-qemu", "pkeys-report", "pkeys-suite"];
    for line in readme.lines().filter(|l| l.contains("cargo run")) {
        if let Some(i) = line.find(" -p ") {
            let pkg: String = line[i + 4..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            assert!(
                packages.contains(&pkg.as_str()),
                "README: cargo run -p {pkg}"
            );
        }
    }
}
