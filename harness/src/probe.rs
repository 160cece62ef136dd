//! Capability probing: what this machine can run, and the SKIP reason when it cannot.

use crate::cpu::{self, CpuPkeys};
use crate::features::Feature;
use crate::pkru;
use crate::sys::{self, Errno};

/// What the machine offers the cases. Each `Err` holds the SKIP reason.
#[derive(Debug, Clone)]
pub struct Caps {
    /// CPUID view of protection keys.
    pub cpu: CpuPkeys,
    /// Working protection keys, or why not.
    pub pkeys: Result<(), String>,
    /// The errno of the probing `pkey_alloc(0, 0)`, if it failed.
    pub alloc_errno: Option<Errno>,
    /// Effective uid 0.
    pub root: bool,
    /// 2 MiB hugetlb pages can be mapped, or why not.
    pub hugetlb: Result<(), String>,
    /// A child can be traced, or why not.
    pub ptrace: Result<(), String>,
    /// PKRU of the probing process at start (its `init_pkru` if nothing changed it).
    pub start_pkru: Option<u32>,
    /// The optional kernel features this kernel was built without.
    pub features: crate::features::Probed,
}

/// Turn a failed `pkey_alloc(0, 0)` into the reason the pkeys cases are skipped.
///
/// A CPU without PKU is named first whatever the errno (every kernel measured gives ENOSPC there,
/// pkey_alloc(2) agrees; EINVAL is kept for kernels said to differ); otherwise ENOSPC means every key is taken, ENOSYS a kernel without the system calls,
/// EPERM a seccomp filter.
pub fn classify_alloc_failure(errno: Errno, cpu: &CpuPkeys) -> String {
    match errno {
        Errno::EINVAL | Errno::ENOSPC if !cpu.pku => "CPU lacks PKU".into(),
        Errno::EINVAL | Errno::ENOSPC if !cpu.ospke => {
            "kernel did not enable PKU (CPUID OSPKE clear; nopku?)".into()
        }
        Errno::EINVAL => {
            "pkey_alloc(0, 0) failed with EINVAL although the CPU has PKU and OSPKE".into()
        }
        Errno::ENOSPC => "pkey_alloc(0, 0) failed with ENOSPC: no protection key left".into(),
        Errno::ENOSYS => "kernel has no pkey system calls (ENOSYS)".into(),
        Errno::EPERM => "pkey_alloc is blocked (EPERM: seccomp filter?)".into(),
        e => format!("pkey_alloc(0, 0) failed with {e}"),
    }
}

const HUGE_2M: usize = 2 << 20;

fn probe_hugetlb() -> Result<(), String> {
    // SAFETY: an anonymous hugetlb mapping owned here and unmapped right after.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            HUGE_2M,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_HUGETLB
                | libc::MAP_HUGE_2MB
                | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = Errno::last();
        let nr = std::fs::read_to_string(NR_HUGEPAGES_2M).unwrap_or_default();
        return Err(format!(
            "no 2 MiB huge pages could be reserved (mmap MAP_HUGETLB|MAP_HUGE_2MB: {e}; \
             hugepages-2048kB/nr_hugepages={})",
            nr.trim()
        ));
    }
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(p, HUGE_2M) };
    Ok(())
}

fn probe_ptrace() -> Result<(), String> {
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok();
    match scope.as_deref().map(str::trim) {
        Some("3") => Err("ptrace forbidden (kernel.yama.ptrace_scope=3)".into()),
        Some("2") if !sys::is_root() => {
            Err("ptrace needs CAP_SYS_PTRACE (kernel.yama.ptrace_scope=2)".into())
        }
        _ => Ok(()),
    }
}

impl Caps {
    /// Probe the machine. The probing `pkey_alloc` key is freed and PKRU restored afterwards, so
    /// the process is left as it was.
    pub fn probe() -> Caps {
        let cpu = cpu::probe();
        let start_pkru = cpu.ospke.then(pkru::rdpkru);
        let (pkeys, alloc_errno) = match sys::pkey_alloc_raw(0, 0) {
            Ok(k) => {
                let _ = sys::pkey_free(k);
                if let Some(p) = start_pkru {
                    pkru::wrpkru_raw(p);
                }
                (Ok(()), None)
            }
            Err(e) => (Err(classify_alloc_failure(e, &cpu)), Some(e)),
        };
        let features = crate::features::Probed::probe();
        let hugetlb = match features.absent(Feature::Hugetlbfs) {
            Some(e) => Err(Feature::Hugetlbfs.skip_reason(e)),
            None => probe_hugetlb(),
        };
        Caps {
            cpu,
            pkeys,
            alloc_errno,
            root: sys::is_root(),
            hugetlb,
            ptrace: probe_ptrace(),
            start_pkru,
            features,
        }
    }

    /// One line describing the capabilities, for the KTAP header and `--list` users.
    pub fn summary(&self) -> String {
        format!(
            "pku={} ospke={} pkeys={} hugetlb={} ptrace={} root={} pkru={} absent={}",
            self.cpu.pku as u8,
            self.cpu.ospke as u8,
            if self.pkeys.is_ok() { "yes" } else { "no" },
            if self.hugetlb.is_ok() { "yes" } else { "no" },
            if self.ptrace.is_ok() { "yes" } else { "no" },
            self.root as u8,
            self.start_pkru.map_or("none".into(), pkru::fmt),
            self.features.absent_list(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(pku: bool, ospke: bool) -> CpuPkeys {
        CpuPkeys {
            pku,
            ospke,
            xsave_pkru_offset: 2688,
            xsave_pkru_size: 4,
            xsave_size: 2696,
            xsave_max_size: 2696,
        }
    }

    #[test]
    fn no_hugepage_reservation_without_pkeys_or_when_available() {
        let mut caps = Caps::probe();
        caps.pkeys = Err("CPU lacks PKU".into());
        caps.hugetlb = Err("none".into());
        assert!(!HugetlbReservation::ensure(&mut caps, 8).changed());
        caps.pkeys = Ok(());
        caps.hugetlb = Ok(());
        assert!(!HugetlbReservation::ensure(&mut caps, 8).changed());
    }

    #[rstest::rstest]
    #[case(Errno::EINVAL, false, false, "CPU lacks PKU")]
    #[case(Errno::ENOSPC, false, false, "CPU lacks PKU")]
    #[case(
        Errno::EINVAL,
        true,
        false,
        "kernel did not enable PKU (CPUID OSPKE clear; nopku?)"
    )]
    #[case(
        Errno::ENOSPC,
        true,
        true,
        "pkey_alloc(0, 0) failed with ENOSPC: no protection key left"
    )]
    #[case(Errno::ENOSYS, true, true, "kernel has no pkey system calls (ENOSYS)")]
    #[case(
        Errno::EPERM,
        true,
        true,
        "pkey_alloc is blocked (EPERM: seccomp filter?)"
    )]
    fn classifies_alloc_failures(
        #[case] e: Errno,
        #[case] pku: bool,
        #[case] ospke: bool,
        #[case] want: &str,
    ) {
        assert_eq!(classify_alloc_failure(e, &cpu(pku, ospke)), want);
    }
}

/// Huge pages reserved for a native run, given back when dropped.
///
/// On a machine with protection keys, running as root, with no 2 MiB huge page available, the
/// suite reserves a few (`hugepages-2048kB/nr_hugepages += N`) so the hugetlb variants run, and restores the
/// previous value at the end. Inside a guest the init has already reserved them.
#[derive(Debug)]
pub struct HugetlbReservation {
    previous: Option<String>,
}

/// The 2 MiB huge page pool (`vm.nr_hugepages` counts the default size, which may be 1 GiB).
pub const NR_HUGEPAGES_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

impl HugetlbReservation {
    /// Reserve `pages` more huge pages if `caps` says the pkeys cases can run but hugetlb cannot
    /// and we are root; otherwise do nothing. Re-probes `caps.hugetlb` after reserving.
    pub fn ensure(caps: &mut Caps, pages: u32) -> HugetlbReservation {
        let mut r = HugetlbReservation { previous: None };
        if caps.pkeys.is_err() || caps.hugetlb.is_ok() || !caps.root {
            return r;
        }
        let Ok(prev) = std::fs::read_to_string(NR_HUGEPAGES_2M) else {
            return r;
        };
        let n: u64 = prev.trim().parse().unwrap_or(0);
        if std::fs::write(NR_HUGEPAGES_2M, (n + u64::from(pages)).to_string()).is_ok() {
            r.previous = Some(prev.trim().to_string());
            caps.hugetlb = probe_hugetlb();
        }
        r
    }

    /// Whether this run changed `vm.nr_hugepages`.
    pub fn changed(&self) -> bool {
        self.previous.is_some()
    }
}

impl Drop for HugetlbReservation {
    fn drop(&mut self) {
        if let Some(prev) = self.previous.take() {
            let _ = std::fs::write(NR_HUGEPAGES_2M, prev);
        }
    }
}
