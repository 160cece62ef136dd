//! What one step lets user space observe. The model predicts an [`Observed`]; the executor
//! builds one from what the kernel did; both print through the same `Display`, and the two
//! strings are compared, so a disagreement reads as "expected X, got Y" in one vocabulary.

use std::fmt;

/// `si_code` of a SIGSEGV for an unmapped address.
pub const SEGV_MAPERR: i32 = 1;
/// `si_code` of a SIGSEGV for a protection (PROT_*) violation.
pub const SEGV_ACCERR: i32 = 2;
/// `si_code` of a SIGSEGV for a protection-key violation.
pub const SEGV_PKUERR: i32 = 4;

/// The errno values the model predicts.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// I/O error (`/proc/PID/mem` of an address nothing can reach).
    pub const EIO: i32 = 5;
    /// Out of memory / range not mapped.
    pub const ENOMEM: i32 = 12;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Bad address.
    pub const EFAULT: i32 = 14;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left (no free key).
    pub const ENOSPC: i32 = 28;

    /// The symbolic name of `e`.
    pub fn name(e: i32) -> String {
        match e {
            EPERM => "EPERM".into(),
            EIO => "EIO".into(),
            ENOMEM => "ENOMEM".into(),
            EACCES => "EACCES".into(),
            EFAULT => "EFAULT".into(),
            EINVAL => "EINVAL".into(),
            ENOSPC => "ENOSPC".into(),
            other => format!("errno {other}"),
        }
    }
}

/// A SIGSEGV taken by an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segv {
    /// `si_code`.
    pub code: i32,
    /// The arena page of `si_addr` and its offset in the page (`None` when outside the arena).
    pub at: Option<(usize, usize)>,
    /// `si_pkey` (compared for `SEGV_PKUERR` only).
    pub pkey: u32,
    /// PKRU inside the handler.
    pub handler_pkru: u32,
    /// PKRU saved in the signal frame (0 when the frame holds PKRU in its init state).
    pub saved_pkru: u32,
}

/// What a step returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A system call's result (`Ok(value)` or `Err(errno)`).
    Ret(Result<i64, i32>),
    /// A load that completed with this byte.
    Loaded(u8),
    /// A store or call that completed.
    Done,
    /// An access that faulted.
    Fault(Segv),
    /// A system call that moves a byte: its result and the byte moved (what the pipe held
    /// afterwards, or the byte read).
    Copy {
        /// The call's result.
        ret: Result<i64, i32>,
        /// The byte observed, if any.
        byte: Option<u8>,
    },
    /// A signal handler ran.
    Handler {
        /// PKRU inside the handler.
        handler_pkru: u32,
        /// PKRU saved in the frame (0 for the init state).
        saved_pkru: u32,
    },
    /// `/proc/self/smaps` of the arena, one word per page.
    Smaps(String),
    /// A forked child or thread ended with this status (0 = ran every step).
    Ended(i32),
    /// The executor could not run the step (never predicted by the model).
    NotRun(String),
    /// The exec'd program's PKRU and the key its first `pkey_alloc` returned.
    Exec {
        /// PKRU at start.
        pkru: u32,
        /// First key allocated.
        first_key: i64,
    },
}

/// One step's observation: the outcome and the thread's PKRU right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The outcome.
    pub outcome: Outcome,
    /// RDPKRU after the step.
    pub pkru: u32,
}

fn ret(f: &mut fmt::Formatter<'_>, r: &Result<i64, i32>) -> fmt::Result {
    match r {
        Ok(v) => write!(f, "returned {v}"),
        Err(e) => write!(f, "failed with {}", errno::name(*e)),
    }
}

impl fmt::Display for Segv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self.code {
            SEGV_MAPERR => "SEGV_MAPERR".to_string(),
            SEGV_ACCERR => "SEGV_ACCERR".to_string(),
            SEGV_PKUERR => "SEGV_PKUERR".to_string(),
            c => format!("si_code {c}"),
        };
        write!(f, "SIGSEGV {code}")?;
        match self.at {
            Some((p, 0)) => write!(f, " at page {p}")?,
            Some((p, o)) => write!(f, " at page {p} + {o:#x}")?,
            None => write!(f, " outside the arena")?,
        }
        if self.code == SEGV_PKUERR {
            write!(f, " si_pkey={}", self.pkey)?;
        }
        write!(
            f,
            ", handler PKRU {:#010x}, saved PKRU {:#010x}",
            self.handler_pkru, self.saved_pkru
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ret(r) => ret(f, r),
            Outcome::Loaded(b) => write!(f, "loaded {b:#04x}"),
            Outcome::Done => f.write_str("completed"),
            Outcome::Fault(s) => write!(f, "{s}"),
            Outcome::Copy { ret: r, byte } => {
                ret(f, r)?;
                match byte {
                    Some(b) => write!(f, ", byte {b:#04x}"),
                    None => f.write_str(", no byte"),
                }
            }
            Outcome::Handler {
                handler_pkru,
                saved_pkru,
            } => write!(
                f,
                "handler ran with PKRU {handler_pkru:#010x}, saved PKRU {saved_pkru:#010x}"
            ),
            Outcome::Smaps(s) => write!(f, "smaps [{s}]"),
            Outcome::NotRun(why) => write!(f, "not run: {why}"),
            Outcome::Ended(0) => f.write_str("ran every step and exited 0"),
            Outcome::Ended(s) => write!(f, "ended with status {s}"),
            Outcome::Exec { pkru, first_key } => {
                write!(
                    f,
                    "exec'd program: PKRU {pkru:#010x}, first key {first_key}"
                )
            }
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; PKRU after {:#010x}", self.outcome, self.pkru)
    }
}
