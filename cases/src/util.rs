//! Small helpers shared by the case modules.

use pkeys_harness::child::{self, ChildCtx, ChildResult, ForkError};
use pkeys_harness::fault::{Capture, Fault};
use pkeys_harness::mem::MapError;
use pkeys_harness::sys::{Errno, SEGV_PKUERR};
use pkeys_harness::{Ctx, Outcome, Pkey, Rights, Stop, maps};

/// Turn a harness error into a failed case.
pub fn sysfail<T>(what: &str, r: Result<T, Errno>) -> Result<T, Stop> {
    r.map_err(|e| Stop::Fail(format!("{what} failed: {e}")))
}

/// Turn a failed fork into a failed case.
pub fn forkfail<T>(r: Result<T, ForkError>) -> Result<T, Stop> {
    r.map_err(|e| Stop::Fail(e.to_string()))
}

/// Pass on a child's messages as the case's diagnostics, each after `what: `.
pub fn forward(ctx: &mut Ctx, what: &str, r: &ChildResult) {
    for m in &r.messages {
        ctx.diag(format!("{what}: {m}"));
    }
}

/// Let a stopped tracee run (`PTRACE_CONT`) to its end: its messages become diagnostics and its
/// verdict the outcome.
pub fn release_tracee(ctx: &mut Ctx, tracee: &mut child::Child) -> Outcome {
    sysfail("PTRACE_CONT", pkeys_harness::ptrace::cont(tracee.pid()))?;
    let end = tracee.finish();
    forward(ctx, "tracee", &end);
    end.outcome("tracee")
}

/// The end of a tracer's steps: on success the tracee was already released
/// ([`release_tracee`]); on a failure the tracee is killed and whatever it had sent (messages,
/// its verdict if it got that far) becomes diagnostics, so a FAIL of the tracee itself is not
/// hidden behind the tracer's "not stopped".
pub fn end_tracee(ctx: &mut Ctx, tracee: child::Child, res: Outcome) -> Outcome {
    if res.is_err()
        && let Some(end) = tracee.kill_and_collect()
    {
        forward(ctx, "tracee", &end);
        if let Some(v) = &end.verdict {
            ctx.diag(format!("tracee: its verdict: {v}; it {}", end.ended));
        }
    }
    res
}

/// Run `f` in a forked child ([`child::in_child`]): its messages become diagnostics and its
/// verdict the outcome (a FAIL, a crash or an exit without a verdict fails the case with `what`
/// first).
pub fn in_child(ctx: &mut Ctx, what: &str, f: impl FnOnce(&mut ChildCtx) -> Outcome) -> Outcome {
    let r = forkfail(child::in_child(f))?;
    forward(ctx, what, &r);
    r.outcome(what)
}

/// Turn a mapping error into a failed case (or SKIP for missing huge pages).
pub fn mapped<T>(r: Result<T, MapError>) -> Result<T, Stop> {
    r.map_err(|e| match e {
        MapError::NoHugePages(_) => Stop::Skip(e.to_string()),
        e => Stop::Fail(e.to_string()),
    })
}

/// Turn a mapping error into a failed case, missing huge pages included (for regions the case
/// cannot do without).
pub fn map_failed(e: MapError) -> Stop {
    Stop::Fail(e.to_string())
}

/// The PKRU a signal handler starts with and `exec` sets: the probing process's start value.
pub fn init_pkru(ctx: &Ctx) -> u32 {
    ctx.caps
        .start_pkru
        .unwrap_or(pkeys_harness::pkru::DEFAULT_INIT_PKRU)
}

/// Assert that `cap` holds exactly one protection-key fault for `pkey` at `addr` whose frame saved
/// `saved`, and whose handler ran with `handler_pkru`.
pub fn expect_one_pkey_fault(
    ctx: &mut Ctx,
    cap: &Capture,
    pkey: i32,
    addr: usize,
    saved: u32,
    handler_pkru: u32,
) -> Result<Fault, Stop> {
    for f in &cap.faults {
        ctx.diag_fault("fault", f);
    }
    if cap.faults.len() != 1 {
        return Err(Stop::Fail(format!(
            "fault count: expected 1, got {}",
            cap.faults.len()
        )));
    }
    let f = cap.faults[0];
    pkeys_harness::check_eq!(f.signo, libc::SIGSEGV, "si_signo");
    pkeys_harness::check_eq!(f.code, SEGV_PKUERR, "si_code (SEGV_PKUERR)");
    pkeys_harness::check_eq!(f.pkey, pkey as u32, "si_pkey");
    if f.addr != addr {
        return Err(Stop::Fail(format!(
            "si_addr: expected {addr:#x}, got {:#x}",
            f.addr
        )));
    }
    pkeys_harness::check_eq!(
        f.saved_pkru.map(pkeys_harness::pkru::fmt),
        Some(pkeys_harness::pkru::fmt(saved)),
        "PKRU saved in the signal frame"
    );
    if saved != 0 {
        pkeys_harness::check!(
            f.xstate_bv & pkeys_harness::fault::XSTATE_PKRU != 0,
            "XSTATE_BV bit 9 (PKRU) clear in the signal frame: {:#x}",
            f.xstate_bv
        );
    }
    pkeys_harness::check_pkru!(f.pkru_in_handler, handler_pkru, "PKRU inside the handler");
    Ok(f)
}

/// Read `ProtectionKey:` of the smaps entry containing `addr` (None if the field is absent). The
/// case must declare [`Feature::Smaps`](pkeys_harness::Feature::Smaps).
pub fn smaps_pkey(addr: usize) -> Result<Option<i32>, Stop> {
    pkeys_harness::features::touch(pkeys_harness::Feature::Smaps);
    read_smaps_pkey(addr)
}

/// [`smaps_pkey`] for a case whose smaps check is a side check: on a kernel without
/// `/proc/<pid>/smaps` (as the probe found) it says so in a diagnostic and returns `Ok(None)`,
/// and the case goes on with its main assertions.
pub fn smaps_pkey_side_check(ctx: &mut Ctx, addr: usize) -> Result<Option<i32>, Stop> {
    if let Some(e) = ctx.caps.features.absent(pkeys_harness::Feature::Smaps) {
        ctx.diag(format!(
            "smaps side check not done: {}",
            pkeys_harness::Feature::Smaps.skip_reason(e)
        ));
        return Ok(None);
    }
    read_smaps_pkey(addr)
}

fn read_smaps_pkey(addr: usize) -> Result<Option<i32>, Stop> {
    let text = std::fs::read_to_string(maps::SELF_SMAPS)
        .map_err(|e| Stop::Fail(format!("read smaps: {e}")))?;
    match maps::find(&text, addr) {
        Some(v) => v.pkey().map_err(Stop::Fail),
        None => Ok(None),
    }
}

/// The permissions column (`rwxp`) of the maps entry containing `addr`.
pub fn maps_perms(addr: usize) -> Result<String, Stop> {
    let text = std::fs::read_to_string(maps::SELF_MAPS)
        .map_err(|e| Stop::Fail(format!("read maps: {e}")))?;
    maps::find(&text, addr)
        .map(|v| v.perms.to_string())
        .ok_or_else(|| Stop::Fail(format!("no mapping contains {addr:#x}")))
}

/// The `/proc/self/smaps` entries intersecting `[start, end)`: `(start, end, ProtectionKey)`.
/// Entries may reach beyond the range (a neighbouring mapping with equal attributes merges).
pub fn smaps_entries(start: usize, end: usize) -> Result<Vec<(usize, usize, Option<i32>)>, Stop> {
    pkeys_harness::features::touch(pkeys_harness::Feature::Smaps);
    let text = std::fs::read_to_string(maps::SELF_SMAPS)
        .map_err(|e| Stop::Fail(format!("read smaps: {e}")))?;
    maps::parse(&text)
        .iter()
        .filter(|v| v.overlaps(start, end))
        .map(|v| Ok((v.start, v.end, v.pkey().map_err(Stop::Fail)?)))
        .collect()
}

/// A small deterministic generator (xorshift64*) for the seeded random choices.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the run's seed, the iteration and a per-use salt.
    pub fn new(ctx: &Ctx, salt: u64) -> Rng {
        let id = ctx.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Rng((ctx.seed
            ^ id
            ^ (u64::from(ctx.iteration) << 32)
            ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            | 1)
    }

    /// The next value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Allocate a key with `rights` the way the C selftest's `alloc_random_pkey()` does: allocate
/// every free key (each with `rights`, checking after each `pkey_alloc` that PKRU holds exactly
/// those rights for the new key, as upstream compares PKRU with its shadow), keep one chosen
/// uniformly at random, free the others, and put their PKRU bits back as they were. So every key
/// 1-15 is used across seeds and iterations (upstream's point: bugs that touch only the high keys,
/// PTE bit 3 or PKRU bits 18-31, would otherwise pass unseen). The choice depends on `--seed`, the
/// iteration, the case id and `salt`, and is printed so a failing run can be reproduced.
pub fn alloc_random_key(ctx: &mut Ctx, rights: impl Into<Rights>, salt: u64) -> Result<i32, Stop> {
    let rights = rights.into();
    use pkeys_harness::pkru;
    let mut rng = Rng::new(ctx, salt);
    let before = pkru::read();
    let mut free = Vec::new();
    loop {
        match alloc_checked(rights)? {
            Ok(k) => free.push(k),
            Err(pkeys_harness::sys::Errno::ENOSPC) if !free.is_empty() => break,
            Err(e) => return Err(Stop::Fail(format!("pkey_alloc: {e}"))),
        }
    }
    let key = free[rng.below(free.len() as u64) as usize];
    let mut restored = pkru::read();
    for &k in free.iter().filter(|&&k| k != key) {
        sysfail(
            "pkey_free (the keys not chosen)",
            pkeys_harness::sys::pkey_free(k),
        )?;
        restored = pkru::with_rights(restored, k, pkru::rights_of(before, k));
    }
    pkru::write(restored);
    ctx.diag(format!(
        "seed {} iteration {}: key {key} chosen among {} free keys {free:?}",
        ctx.seed,
        ctx.iteration,
        free.len()
    ));
    Ok(key)
}

/// `pkey_free` each key in order with its result checked; on the first failure the keys not yet
/// freed stay allocated (as a loop over raw numbers that stopped there would leave them).
pub fn free_all(keys: Vec<Pkey>) -> Result<(), Stop> {
    let mut keys = keys.into_iter();
    for k in keys.by_ref() {
        if let Err(e) = k.free() {
            keys.for_each(|k| {
                k.into_raw();
            });
            return sysfail("pkey_free", Err(e));
        }
    }
    Ok(())
}

/// `pkey_alloc(0, rights)` that then checks PKRU the way upstream compares it with its shadow
/// after every allocation: the new key's two bits hold exactly `rights` and no other key's bits
/// changed. `Ok(Err(errno))` when the allocation itself failed (ENOSPC once every key is taken).
pub fn alloc_checked(
    rights: impl Into<Rights>,
) -> Result<Result<i32, pkeys_harness::sys::Errno>, Stop> {
    let rights = rights.into();
    use pkeys_harness::pkru;
    let before = pkru::read();
    // Kept allocated: the caller owns the number (and a failed check leaves it allocated).
    let key = match pkru::alloc(0, rights) {
        Ok(k) => k.into_raw(),
        Err(e) => return Ok(Err(e)),
    };
    if (1..16).contains(&key) {
        pkeys_harness::check_pkru!(
            pkru::rdpkru(),
            pkru::with_rights(before, key, rights.bits()),
            "PKRU after pkey_alloc(0, {rights}) returned key {key}"
        );
    }
    Ok(Ok(key))
}

/// What a case over mapping kind `kind` needs: protection keys, plus huge pages for hugetlb and
/// the kernel feature the kind is made with (THP, memfd, SysV shm).
pub fn needs_for(kind: pkeys_harness::mem::Kind) -> pkeys_harness::Needs {
    needs_with_kind(pkeys_harness::Needs::PKEYS, kind)
}

/// `needs` plus what mapping `kind` needs (see [`needs_for`]).
pub fn needs_with_kind(
    needs: pkeys_harness::Needs,
    kind: pkeys_harness::mem::Kind,
) -> pkeys_harness::Needs {
    let n = if kind.is_hugetlb() {
        needs.hugetlb()
    } else {
        needs
    };
    let n = match kind.feature() {
        Some(f) => n.feature(f),
        None => n,
    };
    // A THP region is made huge with madvise(MADV_HUGEPAGE).
    if kind == pkeys_harness::mem::Kind::Thp {
        n.feature(pkeys_harness::Feature::Madvise)
    } else {
        n
    }
}

/// `std::thread::spawn` for cases that declare [`Feature::Futex`](pkeys_harness::Feature::Futex):
/// joining a standard-library thread waits on a futex.
pub fn spawn_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    pkeys_harness::features::touch(pkeys_harness::Feature::Futex);
    std::thread::spawn(f)
}

/// One region of `kind` (every page present) carrying a fresh key, chosen at random among the free
/// keys (see [`alloc_random_key`]) and allocated with `rights`.
pub fn keyed_region(
    ctx: &mut Ctx,
    kind: pkeys_harness::mem::Kind,
    rights: impl Into<Rights>,
) -> Result<(pkeys_harness::mem::Region, i32), Stop> {
    let r = mapped(pkeys_harness::mem::Region::rw(kind))?;
    let key = alloc_random_key(ctx, rights, 0x6b65_7965)?;
    sysfail(
        "pkey_mprotect",
        r.pkey_mprotect(libc::PROT_READ | libc::PROT_WRITE, key),
    )?;
    Ok((r, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_skips_only_for_missing_huge_pages() {
        let skip = mapped::<()>(Err(MapError::NoHugePages(Errno::ENOMEM)));
        assert_eq!(
            skip,
            Err(Stop::Skip(format!(
                "no 2 MiB huge pages could be mapped (MAP_HUGETLB: {})",
                Errno::ENOMEM
            )))
        );
        let fail = mapped::<()>(Err(MapError::Sys {
            call: "mmap anon".into(),
            errno: Errno::ENOMEM,
        }));
        assert_eq!(
            fail,
            Err(Stop::Fail(format!("mmap anon: {}", Errno::ENOMEM)))
        );
    }

    #[test]
    fn free_all_stops_at_the_first_refusal() {
        // Negative numbers are never keys: the kernel refuses them (EINVAL, or ENOSYS without
        // pkeys), so the first free fails and the second key is left alone.
        let r = free_all(vec![Pkey::from_raw(-5), Pkey::from_raw(-6)]);
        assert!(
            matches!(&r, Err(Stop::Fail(m)) if m.starts_with("pkey_free failed: ")),
            "{r:?}"
        );
        assert_eq!(free_all(Vec::new()), Ok(()));
    }
}
