//! ptrace and protection keys: remote access ignores the tracer's PKRU; the tracer reads and
//! writes the tracee's PKRU through `NT_X86_XSTATE`.
//!
//! References: ptrace(2) (PTRACE_PEEKDATA, PTRACE_POKEDATA, PTRACE_GETREGSET/SETREGSET), pkeys(7).
//! Ports `test_ptrace_of_child` and `test_ptrace_modifies_pkru` of `protection_keys.c`. Kernel
//! history: Kyle Huey's series (6.2, stable 6.1.y / 5.15.88): ptrace can write PKRU, and clearing
//! XSTATE_BV bit 9 sets it to 0.

use crate::util::{
    end_tracee, expect_one_pkey_fault, forkfail, init_pkru, mapped, release_tracee, sysfail,
};
use pkeys_harness::case;
use pkeys_harness::child;
use pkeys_harness::fault::{self, Fix, XSTATE_BV_OFFSET, XSTATE_PKRU};
use pkeys_harness::mem::{Kind, Region};
use pkeys_harness::ptrace as pt;
use pkeys_harness::sys::{PKEY_DISABLE_ACCESS as AD, PKEY_DISABLE_WRITE as WD, raise};
use pkeys_harness::{Case, Ctx, Needs, Outcome, Stop, check, check_eq, check_pkru, cpu, pkru};

/// The cases of this module.
pub fn cases() -> Vec<Case> {
    vec![
        case!("peek_poke_protected_page", Needs::PKEYS.ptrace(), peek_poke),
        case!("modifies_pkru", Needs::PKEYS.ptrace(), modifies_pkru),
    ]
}

fn stopped(st: i32) -> bool {
    libc::WIFSTOPPED(st) && libc::WSTOPSIG(st) == libc::SIGSTOP
}

/// The tracer denies a key (AD|WD) whose page it shares with a stopped child: PTRACE_PEEKDATA of
/// the child's copy still returns the data, PTRACE_POKEDATA stores into it, while the tracer's own
/// read faults once with the key; a plain page reads without a fault.
fn peek_poke(ctx: &mut Ctx) -> Outcome {
    let r = mapped(Region::rw(Kind::Anon))?;
    let plain = mapped(Region::rw(Kind::Anon))?;
    let key = crate::util::alloc_random_key(ctx, 0, 34)?;
    sysfail(
        "pkey_mprotect",
        r.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, key),
    )?;
    r.write(0, 0x11);
    plain.write(0, 0x22);
    let sleeper = forkfail(child::spawn(|_| {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }))?;
    let child = sleeper.pid();
    let res = (|| -> Outcome {
        sysfail("PTRACE_ATTACH", pt::attach(child))?;
        let st = sysfail("waitpid", pt::wait(child))?;
        check!(
            libc::WIFSTOPPED(st),
            "child not stopped after PTRACE_ATTACH: status {st:#x}"
        );
        pkru::set_rights(key, AD | WD);
        let v = sysfail("PTRACE_PEEKDATA (protected)", pt::peek(child, r.addr()))?;
        check_eq!(
            v & 0xff,
            0x11,
            "byte read by PTRACE_PEEKDATA from the protected page"
        );
        sysfail(
            "PTRACE_POKEDATA (protected)",
            pt::poke(child, r.addr() + 8, 0x5555),
        )?;
        check_eq!(
            sysfail("PTRACE_PEEKDATA", pt::peek(child, r.addr() + 8))?,
            0x5555,
            "word written by POKEDATA"
        );
        let before = pkru::read();
        let cap = fault::capture(Fix::AllowKey, || {
            std::hint::black_box(r.read(0));
        });
        expect_one_pkey_fault(ctx, &cap, key, r.at(0), before, init_pkru(ctx))?;
        let v = sysfail("PTRACE_PEEKDATA (plain)", pt::peek(child, plain.addr()))?;
        check_eq!(
            v & 0xff,
            0x22,
            "byte read by PTRACE_PEEKDATA from the plain page"
        );
        let cap = fault::capture(Fix::AllowKey, || {
            std::hint::black_box(plain.read(0));
        });
        check_eq!(cap.faults.len(), 0, "faults reading the plain page");
        sysfail("PTRACE_DETACH", pt::detach(child))?;
        Ok(())
    })();
    sleeper.kill();
    res
}

/// The tracer reads the stopped tracee's PKRU from `NT_X86_XSTATE` (equal to the tracee's value),
/// writes a new value (visible through the regset before and after the tracee runs, and seen by
/// the tracee itself), then clears XSTATE_BV bit 9: PKRU reads 0 through the regset and in the
/// tracee. The tracee's verdict says what it saw.
fn modifies_pkru(ctx: &mut Ctx) -> Outcome {
    let c = cpu::probe();
    let off = c.xsave_pkru_offset as usize;
    let mine = pkru::read();
    let new = !mine & !3;
    ctx.diag(format!(
        "tracee PKRU {}, new value {}",
        pkru::fmt(mine),
        pkru::fmt(new)
    ));
    let mut tracee = forkfail(child::spawn(|c| {
        sysfail("PTRACE_TRACEME", pt::traceme())?;
        raise(libc::SIGSTOP);
        let seen = pkru::rdpkru();
        c.msg(format!("PKRU after SETREGSET: {}", pkru::fmt(seen)));
        check_pkru!(seen, new, "tracee's PKRU after SETREGSET");
        raise(libc::SIGSTOP);
        let seen = pkru::rdpkru();
        c.msg(format!(
            "PKRU after clearing XSTATE_BV[9]: {}",
            pkru::fmt(seen)
        ));
        check_pkru!(seen, 0, "tracee's PKRU after clearing XSTATE_BV[9]");
        raise(libc::SIGSTOP);
        Ok(())
    }))?;
    let child = tracee.pid();
    let mut buf = vec![0u8; c.xsave_max_size.max(c.xsave_size) as usize];
    let res = (|| -> Outcome {
        let pkru_at = |b: &[u8]| u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
        let step = |what: &str| -> Result<(), Stop> {
            let st = sysfail("waitpid", pt::wait(child))?;
            check!(
                stopped(st),
                "tracee not stopped by SIGSTOP {what}: status {st:#x}"
            );
            Ok(())
        };
        step("at start")?;
        sysfail("PTRACE_GETREGSET", pt::get_xstate(child, &mut buf))?;
        check_eq!(
            pkru::fmt(pkru_at(&buf)),
            pkru::fmt(mine),
            "tracee PKRU read through NT_X86_XSTATE"
        );
        buf[off..off + 4].copy_from_slice(&new.to_le_bytes());
        sysfail("PTRACE_SETREGSET", pt::set_xstate(child, &mut buf))?;
        buf.fill(0xcc);
        sysfail("PTRACE_GETREGSET", pt::get_xstate(child, &mut buf))?;
        check_eq!(
            pkru::fmt(pkru_at(&buf)),
            pkru::fmt(new),
            "PKRU through the regset after SETREGSET, before the tracee ran"
        );
        sysfail("PTRACE_CONT", pt::cont(child))?;
        step("after the new PKRU")?;
        buf.fill(0xcc);
        sysfail("PTRACE_GETREGSET", pt::get_xstate(child, &mut buf))?;
        check_eq!(
            pkru::fmt(pkru_at(&buf)),
            pkru::fmt(new),
            "PKRU through the regset after the tracee ran"
        );
        let bv = u64::from_le_bytes(
            buf[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8]
                .try_into()
                .unwrap(),
        );
        buf[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8]
            .copy_from_slice(&(bv & !XSTATE_PKRU).to_le_bytes());
        sysfail(
            "PTRACE_SETREGSET (XSTATE_BV bit 9 clear)",
            pt::set_xstate(child, &mut buf),
        )?;
        buf.fill(0xcc);
        sysfail("PTRACE_GETREGSET", pt::get_xstate(child, &mut buf))?;
        check_eq!(
            pkru::fmt(pkru_at(&buf)),
            pkru::fmt(0),
            "PKRU through the regset after clearing XSTATE_BV[9]"
        );
        sysfail("PTRACE_CONT", pt::cont(child))?;
        step("after clearing XSTATE_BV[9]")?;
        // Upstream's last step (1653-1655): after the tracee ran, the regset still says 0.
        buf.fill(0xcc);
        sysfail("PTRACE_GETREGSET", pt::get_xstate(child, &mut buf))?;
        check_eq!(
            pkru::fmt(pkru_at(&buf)),
            pkru::fmt(0),
            "PKRU through the regset after the tracee ran with XSTATE_BV[9] cleared"
        );
        release_tracee(ctx, &mut tracee)
    })();
    end_tracee(ctx, tracee, res)
}
