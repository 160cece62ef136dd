//! `init_pkru`: the boot parameter and the debugfs knob decide what a fresh process and a signal
//! handler start with; values that deny key 0 are refused.
//!
//! References: kernel-parameters (`init_pkru=`), `arch/x86/kernel/fpu/core.c`/`pkeys.c`
//! (`/sys/kernel/debug/x86/init_pkru`), pkeys(7). Beyond every upstream suite. The matrix boots
//! guests with non-default `init_pkru` values (ci/kernels.toml) to exercise the parameter.

use crate::util::init_pkru;
use pkeys_harness::fault;
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Case, Ctx, Needs, Outcome, Stop, check_eq, check_pkru, pkru, skip};

const KNOB: &str = "/sys/kernel/debug/x86/init_pkru";

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "init_pkru::fresh_process_and_handler",
            Needs::PKEYS.root(),
            fresh_process_and_handler,
        ),
        Case::new(
            "init_pkru::debugfs_accepts_and_refuses",
            Needs::PKEYS.root(),
            debugfs,
        ),
    ]
}

fn knob() -> Result<u32, Stop> {
    let text = match std::fs::read_to_string(KNOB) {
        Ok(t) => t,
        Err(e) => skip!("{KNOB} not readable ({e}): debugfs not mounted?"),
    };
    let t = text.trim();
    u32::from_str_radix(t.trim_start_matches("0x"), 16)
        .map_err(|e| Stop::Fail(format!("{KNOB}: {t:?}: {e}")))
}

fn cmdline_init_pkru() -> Option<u32> {
    let cmd = std::fs::read_to_string("/proc/cmdline").ok()?;
    let v = cmd
        .split_whitespace()
        .find_map(|w| w.strip_prefix("init_pkru="))?;
    u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}

/// The debugfs value equals the boot parameter (when given, else 0x55555554), the PKRU this
/// process started with, and the PKRU a signal handler starts with.
pub(crate) fn fresh_process_and_handler(ctx: &mut Ctx) -> Outcome {
    let k = knob()?;
    let boot = cmdline_init_pkru();
    ctx.diag(format!(
        "debugfs init_pkru {}, command line {:?}",
        pkru::fmt(k),
        boot.map(pkru::fmt)
    ));
    check_pkru!(
        k,
        boot.unwrap_or(pkru::DEFAULT_INIT_PKRU) + ctx.skew() as u32,
        "debugfs init_pkru vs the boot parameter"
    );
    check_pkru!(init_pkru(ctx), k, "PKRU the suite process started with");
    pkru::write(0);
    fault::install_recorder(libc::SIGUSR1, false, false);
    sys::raise(libc::SIGUSR1);
    let got = fault::recorded();
    check_eq!(got.len(), 1, "SIGUSR1 deliveries");
    check_pkru!(got[0].pkru_in_handler, k, "PKRU entering a signal handler");
    Ok(())
}

fn write_knob(v: &str) -> Result<(), Errno> {
    std::fs::write(KNOB, v).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

/// Writing an allowed value changes what an exec'd process starts with; values that deny or
/// write-disable key 0 are refused with EINVAL and leave the knob unchanged. The original value
/// is restored.
fn debugfs(ctx: &mut Ctx) -> Outcome {
    let orig = knob()?;
    let res = (|| -> Outcome {
        let new = 0x5555_5550u32;
        check_eq!(
            write_knob(&format!("{new:#x}")),
            Ok(()),
            "writing {} to {KNOB}",
            pkru::fmt(new)
        );
        check_pkru!(knob()?, new, "knob after the write");
        let exe = std::fs::read_link("/proc/self/exe")
            .map_err(|e| Stop::Fail(format!("/proc/self/exe: {e}")))?;
        let out = std::process::Command::new(&exe)
            .env(sys::PRINT_PKRU_ENV, "1")
            .output()
            .map_err(|e| Stop::Fail(format!("exec: {e}")))?;
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
        check_eq!(
            printed,
            format!("pkru={}", pkru::fmt(new)),
            "PKRU of a process exec'd after the write"
        );
        for bad in [0x5555_5555u32, 0x5555_5556, 0x5555_5557, 1] {
            check_eq!(
                write_knob(&format!("{bad:#x}")),
                Err(Errno::EINVAL),
                "writing {} (denies key 0)",
                pkru::fmt(bad)
            );
            check_pkru!(
                knob()?,
                new,
                "knob after the refused write of {}",
                pkru::fmt(bad)
            );
        }
        ctx.diag("0x55555550 accepted; values denying key 0 refused with EINVAL");
        Ok(())
    })();
    let restore = write_knob(&format!("{orig:#x}"));
    res?;
    check_eq!(restore, Ok(()), "restoring {KNOB} to {}", pkru::fmt(orig));
    Ok(())
}
