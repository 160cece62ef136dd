//! `init_pkru`: the boot parameter and the debugfs knob decide what a fresh process and a signal
//! handler start with; values that deny key 0 are refused.
//!
//! References: kernel-parameters (`init_pkru=`), `arch/x86/kernel/fpu/core.c`/`pkeys.c`
//! (`/sys/kernel/debug/x86/init_pkru`), pkeys(7). Beyond every upstream suite. The matrix boots
//! guests with non-default `init_pkru` values (ci/kernels.toml) to exercise the parameter.

use crate::util::init_pkru;
use pkeys_harness::case;
use pkeys_harness::fault;
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, check_eq, check_pkru, pkru};

const KNOB: &str = "/sys/kernel/debug/x86/init_pkru";

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "fresh_process_and_handler",
            Needs::PKEYS,
            fresh_process_and_handler,
        ),
        case!(
            "debugfs_accepts_and_refuses",
            Needs::PKEYS.root().feature(Feature::Debugfs),
            debugfs,
        ),
    ]
}

/// The knob's value, and the mount made for it. When debugfs is not mounted it is mounted for
/// this case only (root; a private mount namespace, see [`sys::mount_debugfs_private`]; the
/// guard unmounts it). `Err(reason)` when the knob cannot be read here: the mount is refused
/// (a container without CAP_SYS_ADMIN in the host's namespace) or the read is (EPERM under
/// kernel lockdown). A value that reads but does not parse is a FAIL.
fn knob_mounted(ctx: &mut Ctx) -> Result<Result<(u32, Option<sys::PrivateDebugfs>), String>, Stop> {
    let guard = if sys::debugfs_mounted() {
        None
    } else {
        match sys::mount_debugfs_private() {
            Ok(g) => {
                ctx.diag(format!(
                    "debugfs was not mounted: mounted on {} for this case (private mount namespace)",
                    sys::DEBUGFS
                ));
                Some(g)
            }
            Err(e) => {
                return Ok(Err(format!(
                    "debugfs could not be mounted for the case: {e}"
                )));
            }
        }
    };
    let text = match std::fs::read_to_string(KNOB) {
        Ok(t) => t,
        // Refused (lockdown, a security module): the knob cannot be checked here.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(Err(format!("{KNOB} not readable: {e}")));
        }
        // debugfs is there and x86 pkeys are built in: the knob must be too.
        Err(e) => return Err(Stop::Fail(format!("{KNOB}: {e}"))),
    };
    Ok(Ok((parse_knob(&text)?, guard)))
}

fn knob() -> Result<u32, Stop> {
    let text = std::fs::read_to_string(KNOB).map_err(|e| Stop::Fail(format!("{KNOB}: {e}")))?;
    parse_knob(&text)
}

/// The knob's text (`0x55555554\n`) as a value; anything else is a FAIL.
fn parse_knob(text: &str) -> Result<u32, Stop> {
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

/// A fresh process (this suite process) and a signal handler start with `init_pkru`: the boot
/// parameter when given, else 0x55555554. Where the knob can be read (root, and a kernel with
/// debugfs, mounted for the case when it is not), it must hold the same value; without it the
/// check stands on the command line alone (a value written to the knob at run time by someone
/// else would then show as a FAIL, which the diagnostics make plain).
pub(crate) fn fresh_process_and_handler(ctx: &mut Ctx) -> Outcome {
    let boot = cmdline_init_pkru();
    let want = boot.unwrap_or(pkru::DEFAULT_INIT_PKRU);
    let knob = if !ctx.caps.root {
        Err("not root".to_owned())
    } else if let Some(e) = ctx.caps.features.absent(Feature::Debugfs) {
        Err(Feature::Debugfs.skip_reason(e))
    } else {
        knob_mounted(ctx)?
    };
    let (expected, _guard) = if let Ok((k, guard)) = knob {
        ctx.diag(format!(
            "debugfs init_pkru {}, command line {:?}",
            pkru::fmt(k),
            boot.map(pkru::fmt)
        ));
        check_pkru!(
            k,
            want + ctx.skew() as u32,
            "debugfs init_pkru vs the boot parameter"
        );
        (k, guard)
    } else {
        let why = knob.err().unwrap_or_default();
        ctx.diag(format!(
            "debugfs knob not read ({why}); expecting the command line's init_pkru {:?} or the \
             default",
            boot.map(pkru::fmt)
        ));
        (want + ctx.skew() as u32, None)
    };
    check_pkru!(
        init_pkru(ctx),
        expected,
        "PKRU the suite process started with"
    );
    pkru::write(0);
    fault::install_recorder(libc::SIGUSR1, false, false);
    sys::raise(libc::SIGUSR1);
    let got = fault::recorded();
    check_eq!(got.len(), 1, "SIGUSR1 deliveries");
    check_pkru!(
        got[0].pkru_in_handler,
        expected,
        "PKRU entering a signal handler"
    );
    Ok(())
}

fn write_knob(v: &str) -> Result<(), Errno> {
    std::fs::write(KNOB, v).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

/// Writing an allowed value changes what an exec'd process starts with; values that deny or
/// write-disable key 0 are refused with EINVAL and leave the knob unchanged. The original value
/// is restored.
fn debugfs(ctx: &mut Ctx) -> Outcome {
    pkeys_harness::features::touch(Feature::Debugfs);
    let (orig, _guard) = match knob_mounted(ctx)? {
        Ok(v) => v,
        Err(why) => pkeys_harness::skip!("{why}"),
    };
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
