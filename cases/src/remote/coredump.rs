//! The PKRU in the `NT_X86_XSTATE` note of a core dump.

use crate::util::{forkfail, forward, sysfail};
use pkeys_common::elf::Elf64;
use pkeys_harness::child::{self, Ended};
use pkeys_harness::fault;
use pkeys_harness::ptrace as pt;
use pkeys_harness::sys;
use pkeys_harness::{Ctx, Outcome, Stop, check, check_eq, cpu, pkru, skip};

/// The PKRU the core-dumping child sets: key 0 allowed (libc and the stack live there), every
/// other key a different pattern.
const CORE_PKRU: u32 = 0xa5a5_a5a0;
const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";
/// Children dumped per case: with a sleep (each dump is then right on a correct kernel), and
/// without one (the stale copy shows unless a context switch happens to intervene, which load on
/// the host makes more likely: measured 0–5 right of 5 on 6.12, so 20 rounds).
const CORE_ROUNDS_AFTER_SWITCH: usize = 5;
const CORE_ROUNDS_IMMEDIATE: usize = 20;

/// The core dump of a process killed by SIGABRT carries its PKRU: the `NT_X86_XSTATE` note of the
/// ELF core (core(5); the regset ptrace's PTRACE_GETREGSET returns) holds the XSAVE area in the
/// standard format, with XSTATE_BV bit 9 set and PKRU at the CPUID offset equal to the value the
/// child wrote before it raised SIGABRT. Each child (5, or 20 without the sleep) writes the
/// value and, with `sleep`, sleeps until the kernel counts a voluntary context switch (which
/// stores the live PKRU in the kernel's per-task copy; 2 ms sleeps, checked with getrusage)
/// before raising SIGABRT; without it, raises at once — the note must still carry the live
/// value. 5.10 does; 6.1 and 7.2 write the PKRU the task had at its last context switch (here:
/// the value inherited at fork) instead — since the 5.14 FPU rework keeps PKRU out of the XSAVE
/// buffer, the regset copies the per-task `thread.pkru`, which is only refreshed when the task is
/// switched out. Needs root to point `core_pattern` at `/tmp` (restored afterwards); the child
/// sets RLIMIT_CORE unlimited and `coredump_filter` 0 (notes only).
pub(super) fn core_dump_pkru(ctx: &mut Ctx, sleep: bool) -> Outcome {
    if !sys::is_root() {
        skip!("core_pattern can't be set (not root)");
    }
    let old = std::fs::read_to_string(CORE_PATTERN)
        .map_err(|e| Stop::Skip(format!("core_pattern can't be read: {e}")))?;
    if let Err(e) = std::fs::write(CORE_PATTERN, "/tmp/core.%p") {
        skip!("core_pattern can't be set: {e}");
    }
    // A parent PKRU different from init_pkru (key 15's rights cleared), so that a core carrying
    // the value inherited at fork can be told apart from one carrying init_pkru.
    let saved = pkru::read();
    let at_fork = pkru::with_rights(saved, 15, 0);
    pkru::write(at_fork);
    let mut seen = Vec::new();
    let mut res = Ok(());
    let rounds = if sleep {
        CORE_ROUNDS_AFTER_SWITCH
    } else {
        CORE_ROUNDS_IMMEDIATE
    };
    for _ in 0..rounds {
        match core_round(ctx, sleep) {
            Ok(v) => seen.push(v),
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    let _ = std::fs::write(CORE_PATTERN, old.trim_end());
    pkru::write(saved);
    res?;
    let shown: Vec<String> = seen.iter().map(|&v| pkru::fmt(v)).collect();
    ctx.diag(format!(
        "PKRU in the cores of {} children: {} (the children's PKRU at fork: {})",
        seen.len(),
        shown.join(" "),
        pkru::fmt(at_fork)
    ));
    let right = seen.iter().filter(|&&v| v == CORE_PKRU).count();
    check_eq!(
        right,
        rounds,
        "cores whose NT_X86_XSTATE PKRU is the {} the child set",
        pkru::fmt(CORE_PKRU)
    );
    Ok(())
}

/// One child: set PKRU, maybe sleep, raise SIGABRT; the PKRU found in its core.
fn core_round(ctx: &mut Ctx, sleep: bool) -> Result<u32, Stop> {
    let mut dumper = forkfail(child::spawn(|_| {
        sys::default_signal(libc::SIGABRT);
        sysfail("setrlimit(RLIMIT_CORE)", sys::core_limit_unlimited())?;
        let _ = std::fs::write("/proc/self/coredump_filter", "0");
        if !sleep {
            // Start a fresh time slice, so that no context switch falls between the PKRU
            // write and the dump (one would refresh the kernel's per-task copy).
            std::thread::yield_now();
        }
        pkru::wrpkru_raw(CORE_PKRU);
        if sleep {
            // The context switch is what stores the live PKRU in the kernel's per-task copy.
            // A sleep whose timer expires before the task blocks does not switch (a vCPU
            // stalled by a busy host loses a 1 ms sleep that way: a FAIL seen under load), so
            // sleep until the kernel counts a voluntary switch.
            use nix::sys::resource::{UsageWho, getrusage};
            let switches =
                || getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| u.voluntary_context_switches());
            let before = switches();
            for _ in 0..50 {
                std::thread::sleep(std::time::Duration::from_millis(2));
                if switches() > before {
                    break;
                }
            }
        }
        sys::raise(libc::SIGABRT);
        Err(Stop::Fail("still running after raising SIGABRT".into()))
    }))?;
    let child = dumper.pid();
    let end = dumper.finish();
    forward(ctx, "child", &end);
    let path = format!("/tmp/core.{child}");
    let core = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    check!(
        matches!(
            end.ended,
            Ended::Killed {
                signo: libc::SIGABRT,
                ..
            }
        ),
        "child not killed by SIGABRT: {}",
        end.ended
    );
    if !matches!(end.ended, Ended::Killed { core: true, .. }) {
        skip!("the kernel wrote no core for the child ({})", end.ended);
    }
    let core = match core {
        Ok(c) => c,
        Err(e) => skip!("no core appeared at {path}: {e}"),
    };
    let notes = Elf64::parse(&core)
        .and_then(|elf| elf.notes())
        .map_err(|e| Stop::Fail(format!("core: {e}")))?;
    let xs: Vec<&[u8]> = notes
        .iter()
        .filter(|n| n.kind == pt::NT_X86_XSTATE as u32 && n.name == b"LINUX")
        .map(|n| n.desc)
        .collect();
    check_eq!(xs.len(), 1, "NT_X86_XSTATE notes in the core");
    let x = xs[0];
    let off = cpu::probe().xsave_pkru_offset as usize;
    let bv_at = fault::XSTATE_BV_OFFSET;
    check!(
        off != 0 && x.len() >= off + 4 && x.len() >= bv_at + 8,
        "NT_X86_XSTATE note of {} bytes has no PKRU (offset {off})",
        x.len()
    );
    let bv = u64::from_le_bytes(x[bv_at..bv_at + 8].try_into().unwrap());
    let got = u32::from_le_bytes(x[off..off + 4].try_into().unwrap());
    ctx.diag(format!(
        "core {path}: {} bytes, note {} bytes, XSTATE_BV {bv:#x}, PKRU at {off:#x} = {}",
        core.len(),
        x.len(),
        pkru::fmt(got)
    ));
    check!(
        bv & fault::XSTATE_PKRU != 0,
        "XSTATE_BV bit 9 clear in the core's xstate: {bv:#x}"
    );
    Ok(got)
}
