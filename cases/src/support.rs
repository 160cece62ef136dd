//! Support probing and the unsupported-CPU checks.
//!
//! References: pkey_alloc(2), pkey_mprotect(2); kernel `Documentation/core-api/protection-keys.rst`.
//! Ports `test_mprotect_pkey_on_unsupported_cpu` of `tools/testing/selftests/mm/protection_keys.c`.

use crate::util::sysfail;
use pkeys_harness::case;
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Case, Needs, Stop, check_eq, cpu};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!("probe", Needs::NONE, probe),
        case!(
            "unsupported_cpu::pkey_mprotect",
            Needs::NO_PKU,
            unsupported_pkey_mprotect,
        ),
        case!(
            "unsupported_cpu::pkey_free",
            Needs::NO_PKU,
            unsupported_pkey_free,
        ),
    ]
}

/// `pkey_alloc(0, 0)` must agree with CPUID: with PKU and OSPKE it returns a key in 1..=15;
/// without PKU it fails with ENOSPC, as pkey_alloc(2) documents. (The team's DESIGN.md says x86
/// gives EINVAL there; measured with `-cpu Skylake-Client` guests, Debian's 5.10, 6.1, 6.12 and
/// 7.2 and a 6.18 host all give ENOSPC: the allocation map is full, no key is ever handed out.)
fn probe(ctx: &mut pkeys_harness::Ctx) -> pkeys_harness::Outcome {
    let c = cpu::probe();
    ctx.diag(format!(
        "cpu=\"{}\" pku={} ospke={} xsave_pkru_offset={} xsave_size={}",
        cpu::model_name(),
        c.pku as u8,
        c.ospke as u8,
        c.xsave_pkru_offset,
        c.xsave_size
    ));
    let r = sys::pkey_alloc_raw(0, 0);
    ctx.diag(format!("pkey_alloc(0, 0) = {r:?}"));
    match (c.pku && c.ospke, r) {
        (true, Ok(k)) => {
            pkeys_harness::check!(
                (1..16).contains(&k),
                "pkey_alloc returned key {k}, outside 1..=15"
            );
            check_eq!(
                c.xsave_pkru_size,
                8,
                "CPUID.(0xD,9).EAX: size of the PKRU XSAVE component (PKRU + 4 reserved bytes)"
            );
            check_eq!(sys::pkey_free(k), Ok(()), "pkey_free({k})");
            Ok(())
        }
        (true, Err(e)) => Err(Stop::Fail(format!(
            "CPU has PKU and OSPKE but pkey_alloc(0, 0) failed: {e}"
        ))),
        (false, Ok(k)) => Err(Stop::Fail(format!(
            "CPU lacks PKU/OSPKE but pkey_alloc(0, 0) returned key {k}"
        ))),
        (false, Err(e)) if c.pku => {
            // PKU present but the kernel did not enable it (`nopku` clears X86_FEATURE_PKU, so
            // CR4.PKE and CPUID OSPKE stay clear): arch_max_pkey() is 1, the allocation map is
            // full from the start, ENOSPC as on a CPU without PKU (measured: 6.12 with nopku).
            check_eq!(
                e,
                Errno::ENOSPC,
                "pkey_alloc(0, 0) errno with PKU disabled by the kernel"
            );
            Ok(())
        }
        (false, Err(e)) => {
            check_eq!(
                e,
                Errno::ENOSPC,
                "pkey_alloc(0, 0) errno on a CPU without PKU"
            );
            ctx.diag(format!("no PKU: pkey_alloc refused with {e}"));
            Ok(())
        }
    }
}

/// Without PKU (or with PKU the kernel did not enable), `pkey_mprotect` with any real key 1..=15
/// fails with EINVAL, and the mapping keeps
/// its protection. Upstream accepts any failure; the kernel returns EINVAL (key not allocated).
fn unsupported_pkey_mprotect(ctx: &mut pkeys_harness::Ctx) -> pkeys_harness::Outcome {
    let r = crate::util::mapped(pkeys_harness::mem::Region::rw(
        pkeys_harness::mem::Kind::Anon,
    ))?;
    for key in 1..sys::NR_PKEYS {
        check_eq!(
            r.pkey_mprotect(libc::PROT_READ, key),
            Err(Errno::EINVAL),
            "pkey_mprotect(PROT_READ, key {key})"
        );
    }
    check_eq!(
        crate::util::maps_perms(r.addr())?,
        "rw-p".to_string(),
        "protection after the refused calls"
    );
    sysfail("pkey_mprotect(-1)", r.pkey_mprotect(libc::PROT_READ, -1))?;
    check_eq!(
        crate::util::maps_perms(r.addr())?,
        "r--p".to_string(),
        "protection after pkey_mprotect(-1)"
    );
    ctx.diag("pkey_mprotect with keys 1..=15: EINVAL; with -1: ok");
    Ok(())
}

/// Without PKU (or with PKU the kernel did not enable), `pkey_alloc` refuses every valid rights
/// value with ENOSPC (see `support::probe`),
/// invalid flags or rights with EINVAL (checked first), and `pkey_free` refuses every key with
/// EINVAL.
fn unsupported_pkey_free(ctx: &mut pkeys_harness::Ctx) -> pkeys_harness::Outcome {
    let first = sys::pkey_alloc_raw(0, 0);
    ctx.diag(format!("pkey_alloc(0, 0) = {first:?}"));
    check_eq!(
        first,
        Err(Errno::ENOSPC),
        "pkey_alloc(0, 0) on a CPU without PKU"
    );
    for rights in [sys::PKEY_DISABLE_ACCESS, sys::PKEY_DISABLE_WRITE, 3] {
        check_eq!(
            sys::pkey_alloc_raw(0, rights),
            first,
            "pkey_alloc(0, {rights})"
        );
    }
    check_eq!(
        sys::pkey_alloc_raw(1, 0),
        Err(Errno::EINVAL),
        "pkey_alloc(flags 1, 0)"
    );
    check_eq!(
        sys::pkey_alloc_raw(0, 4),
        Err(Errno::EINVAL),
        "pkey_alloc(0, rights 4)"
    );
    for key in 1..sys::NR_PKEYS {
        check_eq!(sys::pkey_free(key), Err(Errno::EINVAL), "pkey_free({key})");
    }
    Ok(())
}
