//! ptrace POKEDATA into a page both tracer and tracee access-disable.

use super::{AD, RW, protected};
use crate::util::{end_tracee, forkfail, release_tracee, sysfail};
use pkeys_harness::child;
use pkeys_harness::ptrace as pt;
use pkeys_harness::sys;
use pkeys_harness::{Ctx, Outcome, check, check_eq, check_pkru, pkru};

const POKED: u64 = 0x0123_4567_89ab_cdef;

/// A stopped tracee whose page carries a key that both it and the tracer access-disable (and that
/// is read-only in the `readonly` variant): PTRACE_POKEDATA (get_user_pages with FOLL_REMOTE and
/// FOLL_FORCE) stores the word anyway. The tracee, resumed, finds its PKRU unchanged, allows the
/// key and reads the poked word itself; its verdict says what it saw.
pub(super) fn poke(ctx: &mut Ctx, prot: i32) -> Outcome {
    let (r, key) = protected(ctx, AD, 0)?;
    if prot != RW {
        sysfail("pkey_mprotect(prot)", r.pkey_mprotect(prot, key))?;
    }
    let pkru_child = pkru::read();
    let mut tracee = forkfail(child::spawn(|_| {
        sysfail("PTRACE_TRACEME", pt::traceme())?;
        sys::raise(libc::SIGSTOP);
        check_pkru!(pkru::rdpkru(), pkru_child, "tracee's PKRU after the poke");
        pkru::set_rights(key, 0);
        let v = (0..8).fold(0u64, |v, i| v | (u64::from(r.read(8 + i)) << (8 * i)));
        check_eq!(v, POKED, "the poked word, read by the tracee");
        Ok(())
    }))?;
    let child = tracee.pid();
    let res = (|| -> Outcome {
        let st = sysfail("waitpid", pt::wait(child))?;
        check!(
            libc::WIFSTOPPED(st) && libc::WSTOPSIG(st) == libc::SIGSTOP,
            "tracee not stopped by SIGSTOP: status {st:#x}"
        );
        check_eq!(
            pkru::rights_of(pkru::read(), key),
            AD,
            "tracer's rights on the key"
        );
        check_eq!(
            pt::poke(child, r.addr() + 8, POKED),
            Ok(()),
            "PTRACE_POKEDATA into the protected page"
        );
        release_tracee(ctx, &mut tracee)
    })();
    end_tracee(ctx, tracee, res)
}
