//! One guest: boot qemu, watch the console and the result UART, decide how it ended.
//!
//! The verdict comes from the result stream's end marker (`# pkeys-init: suite ...`) and the
//! console, never from qemu's exit status (qemu exits 0 after a panic with `panic=-1`).
//!
//! | what happened | outcome |
//! |---|---|
//! | end marker seen | done: qemu gets [`POWEROFF_GRACE`] to exit, then is killed |
//! | panic/oops/BUG on the console | ERROR after [`PANIC_GRACE`] (more trace), with the last console lines |
//! | no `KTAP version 1` within the boot timeout | ERROR (hang before the suite started) |
//! | no end marker within the timeout | ERROR (hang) |
//! | qemu exits without the end marker | ERROR |
//!
//! A failure before the `KTAP version 1` line is an infrastructure failure (TCG boots flake
//! rarely): the guest is booted once more, and the run records `attempts = 2` and the reason.
//! A failure after the suite started is a result and is never retried.
//!
//! Each file is read once, line by line, as it grows: result-stream lines go through
//! [`pkeys_report::ktap::StreamParser`] (which both drives the progress events and builds the
//! parsed stream the run is made of), console lines through the panic detector and into the
//! kept console tail. Nothing is parsed again once the guest is gone.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pkeys_report::ktap::{ConsoleTail, ParsedStream, StreamLine, StreamParser};
use pkeys_report::{CaseResult, GuestRun, RunStatus, Timings};

use crate::cleanup;
use crate::kernel::ResolvedKernel;
use crate::qemu::{self, QemuArgs};

/// How long qemu may take to exit after the end marker.
pub const POWEROFF_GRACE: Duration = Duration::from_secs(10);
/// How long to keep reading the console after a panic/oops line.
pub const PANIC_GRACE: Duration = Duration::from_secs(3);
/// How many console lines an ERROR keeps.
pub const CONSOLE_TAIL: usize = 30;
/// How often the files are polled.
const TICK: Duration = Duration::from_millis(50);
/// The prefix of the init's end marker on the result stream.
pub use pkeys_common::protocol::END_MARKER;

/// One guest to run.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// Unique name: file names in the output folder.
    pub name: String,
    /// The kernel.
    pub kernel: ResolvedKernel,
    /// qemu `-accel` (see [`crate::accel`]).
    pub accel: crate::accel::Accel,
    /// qemu `-cpu`.
    pub cpu: String,
    /// Extra kernel command line.
    pub append: String,
    /// Suite arguments (`/pkeys/args`).
    pub args: Vec<String>,
    /// qemu `-m`.
    pub memory: String,
    /// qemu `-smp`.
    pub smp: u32,
    /// Limit for the suite's run, counted from its first KTAP line (the boot is not included).
    pub timeout: Duration,
    /// Limit until `KTAP version 1`.
    pub boot_timeout: Duration,
}

/// What the runner shares between guests.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The qemu binary.
    pub qemu: &'a Path,
    /// The gzip'd base initramfs (suite as `/init`).
    pub base_image: &'a [u8],
    /// The output folder.
    pub out: &'a Path,
}

/// Progress while a guest runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// qemu was started (attempt 1 or 2).
    Booting {
        /// The attempt number.
        attempt: u32,
    },
    /// `KTAP version 1` appeared.
    Started {
        /// Seconds since qemu started.
        after_s: f64,
    },
    /// The plan line `1..N` arrived.
    Plan {
        /// N.
        cases: usize,
    },
    /// A KTAP result line (`ok ...` / `not ok ...`).
    Result {
        /// The line (cleaned).
        line: String,
        /// The result it carries (with the diagnostics that came before it).
        case: CaseResult,
    },
    /// The first boot failed before the suite started; booting again.
    Retrying {
        /// Why.
        reason: String,
    },
}

/// How one boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The end marker arrived.
    Done,
    /// A panic/oops line appeared on the console.
    Crash(String),
    /// The overall timeout passed.
    Timeout,
    /// No `KTAP version 1` within the boot timeout.
    BootTimeout,
    /// qemu exited without the end marker.
    QemuExited(String),
    /// qemu could not be started.
    SpawnFailed(String),
    /// SIGINT/SIGTERM.
    Interrupted,
}

/// What one boot produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// How it ended (a crash wins over the end marker).
    pub end: End,
    /// The result stream, parsed.
    pub stream: ParsedStream,
    /// The last [`CONSOLE_TAIL`] non-empty console lines, cleaned (a last line without newline
    /// included).
    pub console_tail: Vec<String>,
    /// Whether `KTAP version 1` was seen.
    pub started: bool,
    /// qemu start → `KTAP version 1`.
    pub first_line: Option<Duration>,
    /// qemu start → end marker (or last stream byte).
    pub last_line: Option<Duration>,
    /// qemu start → qemu gone.
    pub total: Duration,
    /// The last lines qemu wrote on stderr.
    pub qemu_stderr: String,
}

/// Reads what was appended to a file since the last call.
#[derive(Debug)]
struct Tail {
    file: File,
    buf: Vec<u8>,
    /// Bytes of `buf` already split into lines.
    scanned: usize,
}

impl Tail {
    fn open(path: &Path) -> Result<Tail> {
        Ok(Tail {
            file: File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
            buf: Vec::new(),
            scanned: 0,
        })
    }

    /// Reads new bytes; returns the new complete lines.
    fn poll(&mut self) -> Vec<String> {
        let _ = self.file.read_to_end(&mut self.buf);
        let mut lines = Vec::new();
        while let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[self.scanned..self.scanned + pos];
            lines.push(
                String::from_utf8_lossy(line)
                    .trim_end_matches('\r')
                    .to_owned(),
            );
            self.scanned += pos + 1;
        }
        lines
    }

    /// The bytes after the last complete line (a line still being written, or truncated).
    fn partial(&self) -> String {
        String::from_utf8_lossy(&self.buf[self.scanned..]).into_owned()
    }

    /// Whether anything was read at all.
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Paths of one attempt's files.
struct Files {
    console: PathBuf,
    ktap: PathBuf,
    qemu_log: PathBuf,
}

impl Files {
    fn new(out: &Path, name: &str) -> Files {
        Files {
            console: out.join(format!("{name}.console.log")),
            ktap: out.join(format!("{name}.ktap")),
            qemu_log: out.join(format!("{name}.qemu.log")),
        }
    }
}

/// Boots once and watches until the guest ends.
fn boot_once(
    spec: &GuestSpec,
    env: &Env<'_>,
    initrd: &Path,
    files: &Files,
    progress: &(dyn Fn(&str, Event) + Sync),
) -> Result<Attempt> {
    for p in [&files.console, &files.ktap] {
        File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    let mut console = Tail::open(&files.console)?;
    let mut ktap = Tail::open(&files.ktap)?;
    let args = QemuArgs {
        accel: spec.accel,
        kernel: spec.kernel.path.clone(),
        initrd: initrd.to_path_buf(),
        cpu: spec.cpu.clone(),
        memory: spec.memory.clone(),
        smp: spec.smp,
        append: spec.append.clone(),
        console_log: files.console.clone(),
        ktap: files.ktap.clone(),
    };
    let start = Instant::now();
    let mut running = match qemu::spawn(env.qemu, &args, &files.qemu_log) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Attempt {
                end: End::SpawnFailed(format!("{e:#}")),
                stream: ParsedStream::default(),
                console_tail: Vec::new(),
                started: false,
                first_line: None,
                last_line: None,
                total: start.elapsed(),
                qemu_stderr: String::new(),
            });
        }
    };
    let mut first_line = None;
    let mut last_line = None;
    let mut crash: Option<(String, Instant)> = None;
    let mut done_at: Option<Instant> = None;
    let mut exited: Option<String> = None;
    let mut parser = StreamParser::default();
    let mut tail = ConsoleTail::new(CONSOLE_TAIL);
    let end = loop {
        // Decide on the state *before* this read only after a final read following exit.
        let exited_before_read = match running.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        };
        for line in console.poll() {
            let line = pkeys_report::console::clean_line(&line);
            if crash.is_none()
                && let Some(hit) = pkeys_report::console::detect_panic(&line)
            {
                crash = Some((hit, Instant::now()));
            }
            tail.push(line);
        }
        for raw in ktap.poll() {
            match parser.line(&raw) {
                StreamLine::Version if first_line.is_none() => {
                    let t = start.elapsed();
                    first_line = Some(t);
                    progress(
                        &spec.name,
                        Event::Started {
                            after_s: t.as_secs_f64(),
                        },
                    );
                }
                StreamLine::Plan(cases) => progress(&spec.name, Event::Plan { cases }),
                StreamLine::Result(i) => progress(
                    &spec.name,
                    Event::Result {
                        line: parser.cleaned().to_owned(),
                        case: parser.stream().cases[i].clone(),
                    },
                ),
                StreamLine::Init
                    if done_at.is_none() && parser.cleaned().starts_with(END_MARKER) =>
                {
                    done_at = Some(Instant::now());
                    last_line = Some(start.elapsed());
                }
                _ => {}
            }
        }
        if exited.is_none() {
            exited = exited_before_read;
        }
        if cleanup::interrupted() {
            running.kill();
            break End::Interrupted;
        }
        if let Some((line, at)) = &crash
            && (exited.is_some() || at.elapsed() >= PANIC_GRACE)
        {
            break End::Crash(line.clone());
        }
        if let Some(at) = done_at
            && crash.is_none()
            && (exited.is_some() || at.elapsed() >= POWEROFF_GRACE)
        {
            break End::Done;
        }
        if crash.is_none()
            && done_at.is_none()
            && let Some(status) = &exited
        {
            break End::QemuExited(status.clone());
        }
        let elapsed = start.elapsed();
        if crash.is_none() && done_at.is_none() {
            if first_line.is_none() && elapsed >= spec.boot_timeout {
                break End::BootTimeout;
            }
            // The suite's limit counts from its first line, so a slow boot (a busy machine)
            // never eats into it; the boot has its own limit above.
            if let Some(started) = first_line
                && elapsed.saturating_sub(started) >= spec.timeout
            {
                break End::Timeout;
            }
        }
        std::thread::sleep(TICK);
    };
    running.kill();
    // One last read: whatever the guest wrote before it was stopped (into the results, without
    // events).
    for line in console.poll() {
        tail.push(pkeys_report::console::clean_line(&line));
    }
    tail.push(pkeys_report::console::clean_line(&console.partial()));
    for raw in ktap.poll() {
        parser.line(&raw);
    }
    if last_line.is_none() && !ktap.is_empty() {
        last_line = Some(start.elapsed());
    }
    // A `KTAP version` line still without its newline counts as a start too.
    let started = first_line.is_some()
        || parser.stream().started
        || ktap
            .partial()
            .contains(pkeys_common::protocol::VERSION_PREFIX);
    let qemu_stderr = std::fs::read_to_string(&files.qemu_log).unwrap_or_default();
    if qemu_stderr.trim().is_empty() {
        let _ = std::fs::remove_file(&files.qemu_log);
    }
    Ok(Attempt {
        started,
        end,
        stream: parser.finish(),
        console_tail: tail.into_vec(),
        first_line,
        last_line,
        total: start.elapsed(),
        qemu_stderr: last_lines(&qemu_stderr, 3),
    })
}

impl Attempt {
    /// One line saying why this boot is an ERROR (`None`: it is not).
    pub fn error_message(&self, spec: &GuestSpec) -> Option<String> {
        let qemu_said = if self.qemu_stderr.is_empty() {
            String::new()
        } else {
            format!("; qemu: {}", self.qemu_stderr)
        };
        match &self.end {
            End::Done => None,
            End::Crash(line) => Some(format!("kernel crashed: {line}")),
            End::Timeout if self.started => Some(format!(
                "guest hung: the suite started but sent no end marker within {} s",
                spec.timeout.as_secs()
            )),
            End::Timeout | End::BootTimeout => Some(format!(
                "guest hung before the suite started: no `KTAP version 1` within {} s",
                if self.end == End::Timeout {
                    spec.timeout
                } else {
                    spec.boot_timeout
                }
                .as_secs()
            )),
            End::QemuExited(status) => Some(format!(
                "qemu exited ({status}) without the suite's end marker{qemu_said}"
            )),
            End::SpawnFailed(e) => Some(format!("qemu could not be started: {e}")),
            End::Interrupted => Some("interrupted".to_owned()),
        }
    }
}

/// Runs one guest (booting it a second time after an infrastructure failure) and returns its
/// result. Only an interruption or a failure to prepare files is an `Err`; everything the
/// guest does is in the returned run.
pub fn run(
    spec: &GuestSpec,
    env: &Env<'_>,
    progress: &(dyn Fn(&str, Event) + Sync),
) -> Result<GuestRun> {
    std::fs::create_dir_all(env.out)
        .with_context(|| format!("cannot create {}", env.out.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("pkeys-qemu-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let initrd =
        crate::initramfs::write(&tmp.path().join("initrd.img"), env.base_image, &spec.args)?;
    let files = Files::new(env.out, &spec.name);
    let mut run = GuestRun::new(
        &spec.name,
        spec.kernel.info.clone(),
        &spec.cpu,
        &spec.append,
    );
    run.accel = spec.accel.as_str().to_owned();
    run.host_cpu = Some(crate::accel::host_record());
    let mut total = Duration::ZERO;

    progress(&spec.name, Event::Booting { attempt: 1 });
    let mut attempt = boot_once(spec, env, &initrd, &files, progress)?;
    total += attempt.total;
    if attempt.end == End::Interrupted {
        bail!("interrupted");
    }
    if !attempt.started
        && let Some(reason) = attempt.error_message(spec)
    {
        // Keep the failed boot's files for the post-mortem.
        let keep = Files::new(env.out, &format!("{}.attempt1", spec.name));
        let _ = std::fs::rename(&files.console, &keep.console);
        let _ = std::fs::rename(&files.ktap, &keep.ktap);
        let _ = std::fs::rename(&files.qemu_log, &keep.qemu_log);
        progress(
            &spec.name,
            Event::Retrying {
                reason: reason.clone(),
            },
        );
        run.attempts = 2;
        run.retried = Some(reason);
        progress(&spec.name, Event::Booting { attempt: 2 });
        attempt = boot_once(spec, env, &initrd, &files, progress)?;
        total += attempt.total;
        if attempt.end == End::Interrupted {
            bail!("interrupted");
        }
    }
    let message = attempt.error_message(spec);
    run.apply_stream(attempt.stream);
    if let Some(message) = message {
        run.status = RunStatus::Error {
            message,
            console_tail: attempt.console_tail,
        };
    }
    run.timings = Timings {
        boot_to_first_line_s: attempt.first_line.map(|d| d.as_secs_f64()),
        suite_s: match (attempt.first_line, attempt.last_line) {
            (Some(a), Some(b)) if b >= a => Some((b - a).as_secs_f64()),
            _ => None,
        },
        total_s: Some(total.as_secs_f64()),
    };
    drop(tmp);
    Ok(run)
}

/// Whether a single run passes: stream complete, guest ended normally, and no FAIL, XPASS,
/// TIMEOUT or ERROR.
pub fn run_passed(run: &GuestRun) -> bool {
    run.complete && matches!(run.status, RunStatus::Completed) && !run.has_problems()
}

/// `pass=3 fail=1 ...` for a run (verdicts that occur only).
pub fn counts_line(run: &GuestRun) -> String {
    let counts = run.counts();
    if counts.is_empty() {
        return "no results".to_owned();
    }
    counts
        .iter()
        .map(|(v, n)| format!("{}={n}", v.as_str().to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one-line summary of a run: its classified verdict ([`pkeys_report::run_verdict`]: an
/// expected failure is neither a FAIL nor a pass), counts, timings, attempts. Classify first;
/// an unclassified run shows the guest's raw verdicts.
pub fn summary_line(run: &GuestRun) -> String {
    let verdict = pkeys_report::run_verdict(run);
    let secs = |v: Option<f64>| v.map_or("-".to_owned(), |s| format!("{s:.1} s"));
    let mut line = format!(
        "{}: {verdict}: {} | boot→first line {}, suite {}, total {}",
        run.name,
        counts_line(run),
        secs(run.timings.boot_to_first_line_s),
        secs(run.timings.suite_s),
        secs(run.timings.total_s)
    );
    if let Some(reason) = &run.retried {
        line.push_str(&format!(" | attempts={} (retried: {reason})", run.attempts));
    }
    if run.meta.get("pku").is_some_and(|p| p == "0") {
        line.push_str(&format!(
            " | no PKU in this guest (CPU model {}{}): every case that needs keys was skipped",
            run.cpu,
            if run.append.split_whitespace().any(|w| w == "nopku") {
                ", nopku on the command line"
            } else {
                ""
            }
        ));
    }
    line
}
