//! No qemu outlives the command.
//!
//! Every qemu runs in its own process group, registered here while it lives ([`Registered`]
//! kills the group on drop, on every path out of the code that started it). [`install`] starts a
//! thread that waits for SIGINT/SIGTERM (signal-hook): it kills every registered group at once
//! and sets the flag [`interrupted`], which the watch loops check to unwind — removing their
//! temporary folders on the way. A second signal exits immediately. In addition qemu gets
//! `PR_SET_PDEATHSIG(SIGKILL)`, so even a `kill -9` of the runner takes its guests down.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Whether SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The signal that interrupted the run (0: none).
pub fn signal() -> i32 {
    SIGNAL.load(Ordering::SeqCst)
}

/// The exit status for an interrupted run: 128 + signal number.
pub fn exit_code() -> i32 {
    128 + signal().max(2)
}

fn kill_all() -> usize {
    let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    for &pgid in groups.iter() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    groups.len()
}

/// Starts the signal thread (once; later calls do nothing).
pub fn install() -> std::io::Result<()> {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    std::thread::Builder::new()
        .name("pkeys-qemu-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let again = INTERRUPTED.swap(true, Ordering::SeqCst);
                SIGNAL.store(sig, Ordering::SeqCst);
                let n = kill_all();
                if again {
                    say("pkeys-qemu: second signal: exiting now");
                    std::process::exit(128 + sig);
                }
                say(&format!(
                    "pkeys-qemu: interrupted (signal {sig}): stopped {n} guest(s), cleaning up"
                ));
            }
        })?;
    Ok(())
}

/// A registered process group: killed (SIGKILL) and unregistered on drop.
#[derive(Debug)]
pub struct Registered {
    pgid: i32,
}

impl Registered {
    /// Registers the group `pgid` (the pid of a child started with `process_group(0)`).
    /// When an interrupt already arrived the group is killed at once.
    pub fn new(pgid: u32) -> Registered {
        let pgid = pgid as i32;
        GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pgid);
        if interrupted() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        Registered { pgid }
    }

    /// Kills the group now (it stays registered until drop).
    pub fn kill(&self) {
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.kill();
        GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pgid);
    }
}

/// How many groups are registered now (tests).
pub fn registered_count() -> usize {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// How the signal thread's messages reach the terminal (see [`set_printer`]).
type Printer = Box<dyn Fn(&str) + Send + Sync>;

static PRINTER: std::sync::Mutex<Option<Printer>> = std::sync::Mutex::new(None);

/// Routes the signal thread's messages through `printer` while a live status is drawn (a plain
/// `eprintln!` would be overwritten by its next redraw); `None` goes back to stderr.
pub fn set_printer(printer: Option<Printer>) {
    *PRINTER.lock().unwrap_or_else(|e| e.into_inner()) = printer;
}

fn say(msg: &str) {
    match PRINTER.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(p) => p(msg),
        None => eprintln!("{msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    #[serial_test::serial]
    fn drop_kills_the_group() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let reg = Registered::new(child.id());
        assert!(registered_count() >= 1);
        drop(reg);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }
}
