//! Optional kernel features: what a case needs beyond protection keys, how the suite finds out
//! whether the running kernel was built with it, and the SKIP reason naming the config option.
//!
//! A kernel developer's own kernel is often built from `tinyconfig`: no sockets, no SysV IPC, no
//! core dumps. The suite judges the kernel's pkeys behaviour, not its configuration, so a case
//! that needs such a feature declares it in its [`Needs`](crate::Needs); the suite probes every
//! feature once before the first case and reports the case as SKIP, naming the option, when the
//! feature is absent.
//!
//! A feature counts as absent only by the kernel's documented "not built in" answer: `ENOSYS`
//! from its system call, `EAFNOSUPPORT` from `socket(2)`, a `/proc` or `/sys` file that only
//! exists with the option. Any other answer (a wrong result, `EPERM`, ...) leaves the feature
//! present, so the case runs and a real defect is still a FAIL.
//!
//! Declarations are checked as the cases run: the harness functions that use an optional feature
//! call [`touch`], and a case that uses a feature it did not declare fails at once, naming it. So
//! on every kernel that has the feature, a normal run proves the declarations complete.

use crate::sys::Errno;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// An optional kernel feature some case uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// `socketpair(AF_UNIX, ...)`.
    UnixSockets,
    /// `shmget`/`shmat`.
    SysvShm,
    /// `memfd_create`.
    Memfd,
    /// `process_vm_readv`/`process_vm_writev`.
    ProcessVm,
    /// ELF core dumps.
    CoreDump,
    /// Transparent huge pages (`MADV_HUGEPAGE`).
    Thp,
    /// hugetlbfs (`MAP_HUGETLB`).
    Hugetlbfs,
    /// Kernel same-page merging (`MADV_MERGEABLE`).
    Ksm,
    /// `userfaultfd`.
    Userfaultfd,
    /// `mseal`.
    Mseal,
    /// debugfs (`/sys/kernel/debug/x86/init_pkru`).
    Debugfs,
    /// `/proc/<pid>/smaps` (the `ProtectionKey:` field).
    Smaps,
    /// `futex` (also what threads of the Rust standard library wait with).
    Futex,
    /// `madvise`.
    Madvise,
}

impl Feature {
    /// Every feature, in probe-line order.
    pub const ALL: [Feature; 14] = [
        Feature::UnixSockets,
        Feature::SysvShm,
        Feature::Memfd,
        Feature::ProcessVm,
        Feature::CoreDump,
        Feature::Thp,
        Feature::Hugetlbfs,
        Feature::Ksm,
        Feature::Userfaultfd,
        Feature::Mseal,
        Feature::Debugfs,
        Feature::Smaps,
        Feature::Futex,
        Feature::Madvise,
    ];

    /// Short name, as the KTAP probe line lists it.
    pub fn name(self) -> &'static str {
        match self {
            Feature::UnixSockets => "unix_sockets",
            Feature::SysvShm => "sysv_shm",
            Feature::Memfd => "memfd",
            Feature::ProcessVm => "process_vm",
            Feature::CoreDump => "core_dump",
            Feature::Thp => "thp",
            Feature::Hugetlbfs => "hugetlbfs",
            Feature::Ksm => "ksm",
            Feature::Userfaultfd => "userfaultfd",
            Feature::Mseal => "mseal",
            Feature::Debugfs => "debugfs",
            Feature::Smaps => "smaps",
            Feature::Futex => "futex",
            Feature::Madvise => "madvise",
        }
    }

    /// What a person calls it.
    pub fn describe(self) -> &'static str {
        match self {
            Feature::UnixSockets => "AF_UNIX sockets",
            Feature::SysvShm => "SysV shared memory",
            Feature::Memfd => "memfd_create",
            Feature::ProcessVm => "process_vm_readv/process_vm_writev",
            Feature::CoreDump => "ELF core dumps",
            Feature::Thp => "transparent huge pages",
            Feature::Hugetlbfs => "hugetlbfs",
            Feature::Ksm => "KSM (same-page merging)",
            Feature::Userfaultfd => "userfaultfd",
            Feature::Mseal => "mseal",
            Feature::Debugfs => "debugfs",
            Feature::Smaps => "/proc/<pid>/smaps",
            Feature::Futex => "futex",
            Feature::Madvise => "madvise",
        }
    }

    /// The kernel config options that provide it.
    pub fn config(self) -> &'static str {
        match self {
            Feature::UnixSockets => "CONFIG_NET, CONFIG_UNIX",
            Feature::SysvShm => "CONFIG_SYSVIPC",
            Feature::Memfd => "CONFIG_MEMFD_CREATE, via CONFIG_TMPFS",
            Feature::ProcessVm => "CONFIG_CROSS_MEMORY_ATTACH",
            Feature::CoreDump => "CONFIG_COREDUMP, CONFIG_ELF_CORE",
            Feature::Thp => "CONFIG_TRANSPARENT_HUGEPAGE",
            Feature::Hugetlbfs => "CONFIG_HUGETLBFS, CONFIG_HUGETLB_PAGE",
            Feature::Ksm => "CONFIG_KSM",
            Feature::Userfaultfd => "CONFIG_USERFAULTFD",
            Feature::Mseal => "Linux 6.10+, CONFIG_64BIT",
            Feature::Debugfs => "CONFIG_DEBUG_FS",
            Feature::Smaps => "CONFIG_PROC_PAGE_MONITOR",
            Feature::Futex => "CONFIG_FUTEX",
            Feature::Madvise => "CONFIG_ADVISE_SYSCALLS",
        }
    }

    /// The SKIP reason of a case that needs this feature on a kernel without it.
    pub fn skip_reason(self, evidence: &str) -> String {
        format!(
            "kernel has no {} ({}): {evidence}",
            self.describe(),
            self.config()
        )
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }

    /// Probe the running kernel: `Some(evidence)` when the feature is absent.
    pub fn probe(self) -> Option<String> {
        match self {
            Feature::UnixSockets => {
                unix_socket_absent(crate::sys::probe_unix_socket().err()).map(String::from)
            }
            Feature::SysvShm => {
                enosys_absent("shmget(IPC_PRIVATE)", crate::sys::probe_shmget().err())
            }
            Feature::Memfd => enosys_absent("memfd_create", crate::sys::probe_memfd().err()),
            Feature::ProcessVm => enosys_absent(
                "process_vm_readv of nothing",
                crate::sys::probe_process_vm().err(),
            ),
            Feature::CoreDump => file_absent("/proc/sys/kernel/core_pattern", "/proc/sys/kernel"),
            Feature::Thp => file_absent("/sys/kernel/mm/transparent_hugepage", "/sys/kernel"),
            Feature::Hugetlbfs => filesystem_absent("hugetlbfs"),
            Feature::Ksm => file_absent("/sys/kernel/mm/ksm", "/sys/kernel"),
            Feature::Userfaultfd => {
                enosys_absent("userfaultfd", crate::sys::probe_userfaultfd().err())
            }
            Feature::Mseal => enosys_absent("mseal(0, 0, 0)", crate::sys::probe_mseal().err()),
            Feature::Debugfs => filesystem_absent("debugfs"),
            Feature::Smaps => file_absent("/proc/self/smaps", "/proc/self"),
            Feature::Futex => enosys_absent("futex(FUTEX_WAKE)", crate::sys::probe_futex().err()),
            Feature::Madvise => enosys_absent(
                "madvise(MADV_NORMAL, 0 bytes)",
                crate::sys::probe_madvise().err(),
            ),
        }
    }
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A system call's answer counts as "not built in" only when it is ENOSYS.
pub fn enosys_absent(call: &str, err: Option<Errno>) -> Option<String> {
    (err == Some(Errno::ENOSYS)).then(|| format!("{call}: ENOSYS"))
}

/// `socket(AF_UNIX)`: ENOSYS without `CONFIG_NET`, EAFNOSUPPORT without `CONFIG_UNIX`.
pub fn unix_socket_absent(err: Option<Errno>) -> Option<&'static str> {
    match err {
        Some(Errno::ENOSYS) => Some("socket(AF_UNIX): ENOSYS (no CONFIG_NET)"),
        Some(Errno::EAFNOSUPPORT) => Some("socket(AF_UNIX): EAFNOSUPPORT (no CONFIG_UNIX)"),
        _ => None,
    }
}

/// `path` missing while `witness` (a file of the same file system) exists: the option is off. If
/// the witness is missing too (`/proc` or `/sys` not mounted), nothing can be said: present.
fn file_absent(path: &str, witness: &str) -> Option<String> {
    let p = std::path::Path::new(path);
    (!p.exists() && std::path::Path::new(witness).exists()).then(|| format!("no {path}"))
}

/// A file system type missing from `/proc/filesystems` (when that file can be read).
fn filesystem_absent(fs: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/filesystems").ok()?;
    filesystem_missing(&text, fs).then(|| format!("{fs} not in /proc/filesystems"))
}

/// Whether `/proc/filesystems` text lacks `fs`.
pub fn filesystem_missing(proc_filesystems: &str, fs: &str) -> bool {
    !proc_filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs))
}

/// A set of features (what a case needs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureSet(u32);

impl FeatureSet {
    /// No feature.
    pub const EMPTY: FeatureSet = FeatureSet(0);

    /// This set plus `f`.
    pub const fn with(self, f: Feature) -> FeatureSet {
        FeatureSet(self.0 | f.bit())
    }

    /// Whether `f` is in the set.
    pub const fn contains(self, f: Feature) -> bool {
        self.0 & f.bit() != 0
    }

    /// The features in the set, in [`Feature::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

/// What the probe found: the evidence for each absent feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probed {
    absent: Vec<(Feature, String)>,
}

impl Probed {
    /// Probe every feature of [`Feature::ALL`].
    pub fn probe() -> Probed {
        Probed {
            absent: Feature::ALL
                .into_iter()
                .filter_map(|f| f.probe().map(|e| (f, e)))
                .collect(),
        }
    }

    /// A probe result with exactly these features absent (tests, fault injection).
    pub fn with_absent(absent: Vec<(Feature, String)>) -> Probed {
        Probed { absent }
    }

    /// The evidence that `f` is absent, if it is.
    pub fn absent(&self, f: Feature) -> Option<&str> {
        self.absent
            .iter()
            .find(|(g, _)| *g == f)
            .map(|(_, e)| e.as_str())
    }

    /// The SKIP reason for the first feature of `needed` that is absent.
    pub fn missing(&self, needed: FeatureSet) -> Option<String> {
        needed
            .iter()
            .find_map(|f| self.absent(f).map(|e| f.skip_reason(e)))
    }

    /// The absent features' names, comma-separated, or `none`.
    pub fn absent_list(&self) -> String {
        if self.absent.is_empty() {
            return "none".into();
        }
        let names: Vec<&str> = self.absent.iter().map(|(f, _)| f.name()).collect();
        names.join(",")
    }

    /// One line per absent feature: name, config options and evidence.
    pub fn details(&self) -> Vec<String> {
        self.absent
            .iter()
            .map(|(f, e)| format!("{}: {} ({}): {e}", f.name(), f.describe(), f.config()))
            .collect()
    }
}

static IN_CASE: AtomicBool = AtomicBool::new(false);
static DECLARED: AtomicU32 = AtomicU32::new(0);

/// Called by the isolation layer in a case's child before its function runs: from now on
/// [`touch`] checks uses against `declared`.
pub fn enter_case(declared: FeatureSet) {
    DECLARED.store(declared.0, Ordering::SeqCst);
    IN_CASE.store(true, Ordering::SeqCst);
}

/// The text of the panic [`touch`] raises for an undeclared use.
pub fn undeclared_message(f: Feature) -> String {
    format!(
        "case uses {} ({}) without declaring Feature::{f:?} in its Needs",
        f.describe(),
        f.config()
    )
}

/// Record that the running case uses `f`. Outside a case (the probe, the suite parent) this does
/// nothing; inside a case that did not declare `f` it panics, which the harness reports as FAIL
/// naming the feature: the declaration is what lets a kernel without `f` report SKIP.
pub fn touch(f: Feature) {
    if IN_CASE.load(Ordering::SeqCst) && DECLARED.load(Ordering::SeqCst) & f.bit() == 0 {
        panic!("{}", undeclared_message(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_answers_mean_absent() {
        assert!(enosys_absent("x", Some(Errno::ENOSYS)).is_some());
        for e in [Errno::EPERM, Errno::EINVAL, Errno::EFAULT, Errno::ENOMEM] {
            assert_eq!(enosys_absent("x", Some(e)), None, "{e}");
        }
        assert_eq!(enosys_absent("x", None), None);
        assert!(
            unix_socket_absent(Some(Errno::ENOSYS))
                .unwrap()
                .contains("CONFIG_NET")
        );
        assert!(
            unix_socket_absent(Some(Errno::EAFNOSUPPORT))
                .unwrap()
                .contains("CONFIG_UNIX")
        );
        assert_eq!(unix_socket_absent(Some(Errno::EACCES)), None);
        assert_eq!(unix_socket_absent(None), None);
    }

    #[test]
    fn filesystems_are_matched_by_whole_name() {
        let text = "nodev\tsysfs\nnodev\tproc\nnodev\thugetlbfs\n\text4\n";
        assert!(!filesystem_missing(text, "hugetlbfs"));
        assert!(!filesystem_missing(text, "ext4"));
        assert!(filesystem_missing(text, "debugfs"));
        assert!(filesystem_missing(text, "fs"));
    }

    #[test]
    fn the_skip_reason_names_the_option_and_the_evidence() {
        let p = Probed::with_absent(vec![(
            Feature::UnixSockets,
            "socket(AF_UNIX): ENOSYS (no CONFIG_NET)".into(),
        )]);
        let needs = FeatureSet::EMPTY
            .with(Feature::Memfd)
            .with(Feature::UnixSockets);
        assert_eq!(
            p.missing(needs).unwrap(),
            "kernel has no AF_UNIX sockets (CONFIG_NET, CONFIG_UNIX): socket(AF_UNIX): ENOSYS (no CONFIG_NET)"
        );
        assert_eq!(p.missing(FeatureSet::EMPTY.with(Feature::Memfd)), None);
        assert_eq!(p.absent_list(), "unix_sockets");
        assert_eq!(Probed::default().absent_list(), "none");
    }

    #[test]
    fn sets_hold_what_was_added() {
        let s = FeatureSet::EMPTY.with(Feature::Smaps).with(Feature::Futex);
        assert!(s.contains(Feature::Smaps) && s.contains(Feature::Futex));
        assert!(!s.contains(Feature::Memfd));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [Feature::Smaps, Feature::Futex]
        );
        let names: std::collections::HashSet<_> = Feature::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Feature::ALL.len());
    }

    #[test]
    fn this_machine_has_the_features_debian_builds_in() {
        // The development and CI machines run Debian's kernel, which builds every feature in.
        let p = Probed::probe();
        for f in [
            Feature::UnixSockets,
            Feature::SysvShm,
            Feature::Memfd,
            Feature::ProcessVm,
            Feature::Futex,
            Feature::Madvise,
            Feature::Smaps,
        ] {
            assert_eq!(p.absent(f), None, "{f}");
        }
    }
}
