//! The case model: a case is an id, its requirements, a time limit and a function.

use crate::fault::Fault;
use crate::features::{Feature, FeatureSet};
use crate::probe::Caps;
use std::sync::Arc;
use std::time::Duration;

/// Why a case stopped before the end of its function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// An assertion failed.
    Fail(String),
    /// A capability found missing at run time.
    Skip(String),
}

/// What a case function returns: `Ok(())` is PASS.
pub type Outcome = Result<(), Stop>;

/// The function of a case.
pub type CaseFn = Arc<dyn Fn(&mut Ctx) -> Outcome + Send + Sync>;

/// What a case needs from the machine; checked against [`Caps`] before the case is forked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Working protection keys (CPU PKU + OSPKE and `pkey_alloc` succeeding).
    pub pkeys: bool,
    /// Protection keys not enabled: a CPU without PKU, or with PKU the kernel did not enable
    /// (CPUID OSPKE clear, e.g. `nopku`): the unsupported-CPU checks.
    pub no_pku: bool,
    /// Root.
    pub root: bool,
    /// 2 MiB hugetlb pages that can be mapped.
    pub hugetlb: bool,
    /// Permission to ptrace a child.
    pub ptrace: bool,
    /// Optional kernel features (sockets, SysV shm, ...): SKIP naming the config option when the
    /// kernel was built without one.
    pub features: FeatureSet,
}

impl Needs {
    /// Nothing: runs on every machine.
    pub const NONE: Needs = Needs {
        pkeys: false,
        no_pku: false,
        root: false,
        hugetlb: false,
        ptrace: false,
        features: FeatureSet::EMPTY,
    };
    /// Working protection keys.
    pub const PKEYS: Needs = Needs {
        pkeys: true,
        ..Needs::NONE
    };
    /// A CPU without PKU.
    pub const NO_PKU: Needs = Needs {
        no_pku: true,
        ..Needs::NONE
    };

    /// Add hugetlb pages (and so the hugetlbfs feature).
    pub const fn hugetlb(self) -> Needs {
        Needs {
            hugetlb: true,
            features: self.features.with(Feature::Hugetlbfs),
            ..self
        }
    }
    /// Add an optional kernel feature.
    pub const fn feature(self, f: Feature) -> Needs {
        Needs {
            features: self.features.with(f),
            ..self
        }
    }
    /// Add ptrace permission.
    pub const fn ptrace(self) -> Needs {
        Needs {
            ptrace: true,
            ..self
        }
    }
    /// Add root.
    pub const fn root(self) -> Needs {
        Needs { root: true, ..self }
    }

    /// The SKIP reason if `caps` lacks something this case needs.
    pub fn missing(&self, caps: &Caps) -> Option<String> {
        if self.pkeys
            && let Err(r) = &caps.pkeys
        {
            return Some(r.clone());
        }
        if let Some(r) = caps.features.missing(self.features) {
            return Some(r);
        }
        // Upstream runs the unsupported-CPU checks whenever OSPKE is clear (`cpu_has_pkeys()`),
        // which includes a PKU CPU whose kernel did not enable it (`nopku`).
        if self.no_pku && caps.cpu.pku && caps.cpu.ospke {
            return Some("CPU has PKU (this check is for CPUs without it)".into());
        }
        if self.root && !caps.root {
            return Some("needs root".into());
        }
        if self.hugetlb
            && let Err(r) = &caps.hugetlb
        {
            return Some(r.clone());
        }
        if self.ptrace
            && let Err(r) = &caps.ptrace
        {
            return Some(r.clone());
        }
        None
    }
}

/// One case.
#[derive(Clone)]
pub struct Case {
    /// Id `area::name[::variant]`.
    pub id: String,
    /// Requirements.
    pub needs: Needs,
    /// Time limit; the case's process group is killed when it runs out.
    pub timeout: Duration,
    /// The function, run in a forked child.
    pub run: CaseFn,
    /// Fault injection: the case must use a deliberately wrong expected value (see
    /// [`Ctx::wrong`]), to prove it can fail.
    pub wrong: bool,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("needs", &self.needs)
            .finish()
    }
}

impl Case {
    /// Default time limit of a case.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

    /// A case with the default time limit.
    pub fn new(
        id: impl Into<String>,
        needs: Needs,
        run: impl Fn(&mut Ctx) -> Outcome + Send + Sync + 'static,
    ) -> Case {
        Case {
            id: id.into(),
            needs,
            timeout: Self::DEFAULT_TIMEOUT,
            run: Arc::new(run),
            wrong: false,
        }
    }

    /// Mark the case as a fault injection with a deliberately wrong expectation.
    pub fn with_wrong_expectation(mut self) -> Case {
        self.wrong = true;
        self
    }

    /// Change the time limit.
    pub fn with_timeout(mut self, t: Duration) -> Case {
        self.timeout = t;
        self
    }
}

/// What a running case can use: diagnostics output and the run's parameters.
#[derive(Debug)]
pub struct Ctx {
    pub(crate) fd: i32,
    pub(crate) local: Vec<String>,
    /// The running case's id.
    pub id: String,
    /// Seed for cases that choose at random (printed by the suite, set by `--seed`).
    pub seed: u64,
    /// Iteration number (0-based) under `--iterations`.
    pub iteration: u32,
    /// How long each explorer case runs (`--explore-time`); `None`: its fixed step budget.
    pub explore_time: Option<Duration>,
    /// Capabilities probed by the parent.
    pub caps: Caps,
    /// Fault injection only: cases that support it expect a deliberately wrong value (their
    /// doc says which), so the run must report FAIL.
    pub wrong: bool,
}

impl Ctx {
    /// A context that keeps diagnostics in memory (for running a case function in-process).
    pub fn in_memory(caps: Caps, seed: u64) -> Ctx {
        Ctx {
            id: String::new(),
            fd: -1,
            local: Vec::new(),
            seed,
            iteration: 0,
            explore_time: None,
            caps,
            wrong: false,
        }
    }

    /// 1 when [`Ctx::wrong`] is set, else 0: added to an expected value to make it wrong.
    pub fn skew(&self) -> i32 {
        i32::from(self.wrong)
    }

    /// Print a diagnostic line (sent to the parent at once, so a crash keeps it).
    pub fn diag(&mut self, msg: impl AsRef<str>) {
        let line = msg.as_ref().replace('\n', " | ");
        if self.fd >= 0 {
            crate::child::send(self.fd, &format!("D {line}\n"));
        } else {
            self.local.push(line);
        }
    }

    /// Print a fault's fields as a diagnostic.
    pub fn diag_fault(&mut self, what: &str, f: &Fault) {
        self.diag(format!("{what}: {f}"));
    }

    /// Diagnostics kept in memory (in-process contexts only).
    pub fn diagnostics(&self) -> &[String] {
        &self.local
    }
}

/// Fail the case unless `cond` holds: `check!(cond, "format", args...)`.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Stop::Fail($crate::case::at(file!(), line!(), format!($($fmt)+))));
        }
    };
}

/// Fail the case unless `actual == expected`: `check_eq!(actual, expected, "what", args...)`.
/// The message reads `what: expected E, got A`.
#[macro_export]
macro_rules! check_eq {
    ($actual:expr, $expected:expr, $($fmt:tt)+) => {{
        let (a, e) = (&$actual, &$expected);
        if a != e {
            return Err($crate::Stop::Fail($crate::case::at(file!(), line!(), format!("{}: expected {:?}, got {:?}", format!($($fmt)+), e, a))));
        }
    }};
}

/// Like [`check_eq!`] for PKRU values, printed in hex.
#[macro_export]
macro_rules! check_pkru {
    ($actual:expr, $expected:expr, $($fmt:tt)+) => {{
        let (a, e): (u32, u32) = ($actual, $expected);
        if a != e {
            return Err($crate::Stop::Fail($crate::case::at(file!(), line!(), format!("{}: expected PKRU {:#010x}, got {:#010x}", format!($($fmt)+), e, a))));
        }
    }};
}

/// A FAIL message with the place of the failed check in front, as kselftest's `EXPECT_*` print
/// it: `cases/src/alloc.rs:40: pkey_free(1): expected Ok(()), got Err(EINVAL)`.
pub fn at(file: &str, line: u32, message: String) -> String {
    format!("{file}:{line}: {message}")
}

/// A case id in the calling module's area: `case_id!("exhaust")` in `pkeys_cases::alloc` (or any
/// module below it) is `alloc::exhaust`. Takes `format!` arguments.
#[macro_export]
macro_rules! case_id {
    ($($fmt:tt)+) => {
        $crate::case::area_id(module_path!(), &format!($($fmt)+))
    };
}

/// A case in the calling module's area: `case!("exhaust", Needs::PKEYS, run)` is
/// `Case::new("alloc::exhaust", Needs::PKEYS, run)` in `pkeys_cases::alloc`, as kselftest's
/// `TEST()` takes its name from the file.
#[macro_export]
macro_rules! case {
    ($name:expr, $needs:expr, $run:expr $(,)?) => {
        $crate::Case::new($crate::case_id!("{}", $name), $needs, $run)
    };
}

/// `area::name`, the area being the first module below the crate in `module_path`
/// (`pkeys_cases::remote::copy` → `remote`).
pub fn area_id(module_path: &str, name: &str) -> String {
    let area = module_path.split("::").nth(1).unwrap_or(module_path);
    format!("{area}::{name}")
}

/// Stop the case with SKIP and a reason.
#[macro_export]
macro_rules! skip {
    ($($fmt:tt)+) => {
        return Err($crate::Stop::Skip(format!($($fmt)+)))
    };
}
