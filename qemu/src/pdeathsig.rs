//! Children that die with the runner: the one place `pkeys-qemu` needs `unsafe`.
//!
//! std has no safe way to run code in a forked child before `exec`; `CommandExt::pre_exec` is
//! `unsafe` because the closure runs between fork and exec, where only async-signal-safe calls
//! are allowed. The closure here makes one `prctl` system call and nothing else.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make the process `cmd` starts receive SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), so a
/// child such as qemu never outlives the runner, even one killed with SIGKILL.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes the prctl system
    // call (async-signal-safe); it touches no locks and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// Spawns `sleep 60` from a thread that then ends: the death signal follows the spawning
    /// thread, so with the hook the sleep is killed at once with SIGKILL.
    fn sleeper(hook: bool) -> std::process::Child {
        std::thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("60");
            if hook {
                die_with_parent(&mut cmd);
            }
            cmd.spawn().unwrap()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn child_dies_with_its_parent() {
        let status = sleeper(true).wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn without_the_hook_the_child_lives_on() {
        let mut child = sleeper(false);
        assert!(
            child.try_wait().unwrap().is_none(),
            "sleep ended on its own"
        );
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
