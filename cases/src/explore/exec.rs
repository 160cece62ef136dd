//! Running planned steps against the kernel, in the sequence's own forked process: each step's
//! observation is sent to the parent at once (`O <label> <observation>`), so a step that kills
//! the process still leaves every earlier observation behind.

use pkeys_harness::arena::{Arena, Backing, ProbeFault};
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Ctx, pkru};
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

fn wait(pid: i32) -> i32 {
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
        Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        Ok(other) => {
            eprintln!("explore: child {pid}: {other:?}");
            -1
        }
        Err(e) => -(e as i32),
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

/// Run one step (and a fork's or thread's sub-steps) and report its observation.
fn run_step(ctx: &mut Ctx, arena: &Arena, step: &Step) {
    let outcome = match &step.op {
        Op::Alloc { rights } => ret(pkru::alloc(0, *rights)),
        Op::Free { key: k } => ret(sys::pkey_free(key(k)).map(|()| 0)),
        Op::PkeyMprotect {
            first,
            n,
            prot,
            key: k,
        } => ret(arena
            .pkey_mprotect(*first, *n, i32::from(*prot), key(k))
            .map(|()| 0)),
        Op::Mprotect { first, n, prot } => {
            ret(arena.mprotect(*first, *n, i32::from(*prot)).map(|()| 0))
        }
        Op::Mmap {
            first,
            n,
            kind: MapKind::Shm,
            ..
        } => ret(arena.shm_attach(*first, *n).map(|()| 0)),
        Op::Mmap {
            first,
            n,
            kind,
            prot,
        } => ret(arena
            .mmap(*first, *n, backing(*kind), kind.shared(), i32::from(*prot))
            .map(|()| 0)),
        Op::Munmap { first, n } => ret(arena.munmap(*first, *n).map(|()| 0)),
        Op::Mremap { src, n, dst, new_n } => ret(arena.mremap(*src, *n, *dst, *new_n).map(|()| 0)),
        Op::DontNeed { first, n } => ret(arena.dontneed(*first, *n).map(|()| 0)),
        Op::Wrpkru { value } => {
            pkru::write(*value);
            Ok(0)
        }
        _ => Err(0),
    };
    let outcome = match (&step.op, outcome) {
        (Op::Wrpkru { .. }, _) => Outcome::Done,
        (
            Op::Alloc { .. }
            | Op::Free { .. }
            | Op::PkeyMprotect { .. }
            | Op::Mprotect { .. }
            | Op::Mmap { .. }
            | Op::Munmap { .. }
            | Op::Mremap { .. }
            | Op::DontNeed { .. },
            r,
        ) => Outcome::Ret(r),
        (op, _) => other_step(ctx, arena, op, step),
    };
    // Every system call above may have changed PKRU (pkey_alloc, the execute-only key, a
    // signal's edited frame): the harness's shadow follows the hardware.
    let now = pkru::sync_shadow();
    let seen = Observed { outcome, pkru: now };
    ctx.diag(format!("O {} {seen}", step.label));
}

fn other_step(ctx: &mut Ctx, arena: &Arena, op: &Op, step: &Step) -> Outcome {
    match op {
        Op::Read { page } => match arena.load(*page) {
            Ok(b) => Outcome::Loaded(b),
            Err(f) => fault(arena, f),
        },
        Op::Write { page, val } => match arena.store(*page, *val) {
            Ok(()) => Outcome::Done,
            Err(f) => fault(arena, f),
        },
        Op::Exec { page } => match arena.call(*page) {
            Some(Ok(())) => Outcome::Done,
            Some(Err(f)) => fault(arena, f),
            None => Outcome::NotRun("the page's first byte is not ret (0xc3)".into()),
        },
        Op::KernelRead { page, val } => {
            let (r, left) = arena.kernel_read_into(*page, *val);
            Outcome::Copy {
                ret: len(r),
                byte: left,
            }
        }
        Op::KernelWrite { page } => {
            let (r, got) = arena.kernel_write_from(*page);
            Outcome::Copy {
                ret: len(r),
                byte: got,
            }
        }
        Op::PvmRead { page } => {
            let (r, b) = arena.pvm_read(*page);
            Outcome::Copy {
                ret: len(r),
                byte: b,
            }
        }
        Op::MemRead { page } => {
            let (r, b) = arena.mem_read(*page);
            Outcome::Copy {
                ret: len(r),
                byte: b,
            }
        }
        Op::PvmWrite { page, val } => Outcome::Copy {
            ret: len(arena.pvm_write(*page, *val)),
            byte: None,
        },
        Op::MemWrite { page, val } => Outcome::Copy {
            ret: len(arena.mem_write(*page, *val)),
            byte: None,
        },
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
        Op::Fork { .. } => match sys::fork_run(|| {
            run_steps(ctx, arena, &step.sub);
            0
        }) {
            Ok(pid) => Outcome::Ended(wait(pid)),
            Err(e) => Outcome::NotRun(format!("fork: {e}")),
        },
        Op::Thread { .. } => {
            let r =
                std::thread::scope(|s| s.spawn(|| run_steps(&mut *ctx, arena, &step.sub)).join());
            Outcome::Ended(if r.is_ok() { 0 } else { -1 })
        }
        Op::Execve => execve(),
        other => Outcome::NotRun(format!("not an access: {other}")),
    }
}

/// Run planned steps in order, reporting each.
pub fn run_steps(ctx: &mut Ctx, arena: &Arena, steps: &[Step]) {
    for s in steps {
        run_step(ctx, arena, s);
    }
}
