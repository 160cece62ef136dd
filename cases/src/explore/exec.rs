//! Running planned steps against the kernel, in the sequence's own forked process: each step's
//! observation is sent to the parent at once (`O <label> <observation>`), so a step that kills
//! the process still leaves every earlier observation behind.

use pkeys_harness::arena::{Arena, Backing, ProbeFault};
use pkeys_harness::child::{self, ChildResult, Ended, Handlers};
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Ctx, Pkey, pkru};
use pkeys_model::obs::Segv;
use pkeys_model::{Key, MapKind, Observed, Op, Outcome, Step};

fn ret<T: Into<i64>>(r: Result<T, Errno>) -> Result<i64, i32> {
    r.map(Into::into).map_err(|e| e as i32)
}

fn len(r: Result<usize, Errno>) -> Result<i64, i32> {
    ret(r.map(|n| n as i64))
}

fn fault(arena: &Arena, f: ProbeFault) -> Outcome {
    Outcome::Fault(Segv {
        code: f.code,
        at: arena.page_of(f.addr),
        pkey: f.pkey,
        handler_pkru: f.handler_pkru,
        saved_pkru: f.saved_pkru,
    })
}

fn backing(kind: MapKind) -> Backing {
    match kind {
        MapKind::AnonPrivate | MapKind::AnonShared | MapKind::Shm => Backing::Anon,
        MapKind::FilePrivate | MapKind::FileShared => Backing::File,
        MapKind::MemfdShared => Backing::Memfd,
    }
}

fn key(k: &Key) -> i32 {
    match k {
        Key::Num(n) => *n,
        other => unreachable!("unresolved key {other}"),
    }
}

/// The child's exit status, 128 + the signal that killed it, or -1.
fn ended(r: &ChildResult) -> i32 {
    match r.ended {
        Ended::Exited(code) => code,
        Ended::Killed { signo, .. } => 128 + signo,
        Ended::Stopped(_) => {
            eprintln!("explore: child {}: {}", r.pid, r.ended);
            -1
        }
    }
}

fn execve() -> Outcome {
    let exe = match std::fs::read_link("/proc/self/exe") {
        Ok(p) => p,
        Err(e) => return Outcome::NotRun(format!("/proc/self/exe: {e}")),
    };
    let out = match std::process::Command::new(&exe)
        .env(sys::PRINT_EXEC_STATE_ENV, "1")
        .output()
    {
        Ok(o) => o,
        Err(e) => return Outcome::NotRun(format!("exec {}: {e}", exe.display())),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
    };
    let pkru = field("pkru=0x").and_then(|v| u32::from_str_radix(&v, 16).ok());
    let key = field("first_key=").and_then(|v| v.parse().ok());
    match (pkru, key) {
        (Some(pkru), Some(first_key)) => Outcome::Exec { pkru, first_key },
        _ => Outcome::NotRun(format!("exec'd program printed {:?}", text.trim())),
    }
}

/// A system call's result as the model states it: the value, or the errno.
fn done(r: Result<(), Errno>) -> Outcome {
    Outcome::Ret(ret(r.map(|()| 0)))
}

/// A call that moves one byte: its result and the byte observed.
fn copied((r, byte): (Result<usize, Errno>, Option<u8>)) -> Outcome {
    Outcome::Copy { ret: len(r), byte }
}

/// A probe's result: `ok` when it completed, else the fault.
fn probed<T>(arena: &Arena, r: Result<T, ProbeFault>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => ok(v),
        Err(f) => fault(arena, f),
    }
}

/// Run one step (and a fork's or thread's sub-steps) and report its observation.
fn run_step(ctx: &mut Ctx, arena: &Arena, step: &Step) {
    let outcome = match &step.op {
        Op::Alloc { rights } => Outcome::Ret(ret(pkru::alloc(0, *rights).map(Pkey::into_raw))),
        Op::Free { key: k } => done(sys::pkey_free(key(k))),
        Op::PkeyMprotect {
            first,
            n,
            prot,
            key: k,
        } => done(arena.pkey_mprotect(*first, *n, i32::from(*prot), key(k))),
        Op::Mprotect { first, n, prot } => done(arena.mprotect(*first, *n, i32::from(*prot))),
        Op::Mmap {
            first,
            n,
            kind: MapKind::Shm,
            ..
        } => done(arena.shm_attach(*first, *n)),
        Op::Mmap {
            first,
            n,
            kind,
            prot,
        } => done(arena.mmap(*first, *n, backing(*kind), kind.shared(), i32::from(*prot))),
        Op::Munmap { first, n } => done(arena.munmap(*first, *n)),
        Op::Mremap { src, n, dst, new_n } => done(arena.mremap(*src, *n, *dst, *new_n)),
        Op::DontNeed { first, n } => done(arena.dontneed(*first, *n)),
        Op::Wrpkru { value } => {
            pkru::write(*value);
            Outcome::Done
        }
        Op::Read { page } => probed(arena, arena.load(*page), Outcome::Loaded),
        Op::Write { page, val } => probed(arena, arena.store(*page, *val), |()| Outcome::Done),
        Op::Exec { page } => match arena.call(*page) {
            Some(r) => probed(arena, r, |()| Outcome::Done),
            None => Outcome::NotRun("the page's first byte is not ret (0xc3)".into()),
        },
        Op::KernelRead { page, val } => copied(arena.kernel_read_into(*page, *val)),
        Op::KernelWrite { page } => copied(arena.kernel_write_from(*page)),
        Op::PvmRead { page } => copied(arena.pvm_read(*page)),
        Op::MemRead { page } => copied(arena.mem_read(*page)),
        Op::PvmWrite { page, val } => copied((arena.pvm_write(*page, *val), None)),
        Op::MemWrite { page, val } => copied((arena.mem_write(*page, *val), None)),
        Op::Signal { edit } => {
            let seen = arena.signal(*edit);
            Outcome::Handler {
                handler_pkru: seen.handler_pkru,
                saved_pkru: seen.saved_pkru,
            }
        }
        Op::Smaps => match arena.smaps() {
            Ok(s) => Outcome::Smaps(s),
            Err(e) => Outcome::NotRun(e),
        },
        // The child reports its steps through the case's own pipe (`ctx`) and probes faults with
        // the arena's handlers, which it keeps.
        Op::Fork { .. } => match child::in_child_with(Handlers::Inherited, |_| {
            run_steps(ctx, arena, &step.sub);
            Ok(())
        }) {
            Ok(r) => {
                // A crash report of the child (its own pipe) is kept as a diagnostic.
                for m in &r.messages {
                    ctx.diag(format!("fork child: {m}"));
                }
                Outcome::Ended(ended(&r))
            }
            Err(e) => Outcome::NotRun(e.to_string()),
        },
        Op::Thread { .. } => {
            let r =
                std::thread::scope(|s| s.spawn(|| run_steps(&mut *ctx, arena, &step.sub)).join());
            Outcome::Ended(if r.is_ok() { 0 } else { -1 })
        }
        Op::Execve => execve(),
    };
    // Every system call above may have changed PKRU (pkey_alloc, the execute-only key, a
    // signal's edited frame): the harness's shadow follows the hardware.
    let now = pkru::sync_shadow();
    let seen = Observed { outcome, pkru: now };
    ctx.diag(format!("O {} {seen}", step.label));
}

/// Run planned steps in order, reporting each.
pub fn run_steps(ctx: &mut Ctx, arena: &Arena, steps: &[Step]) {
    for s in steps {
        run_step(ctx, arena, s);
    }
}
