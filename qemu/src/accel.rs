//! The accelerator: KVM when the host has a working one, TCG otherwise.
//!
//! Under KVM the guest runs on the host's CPU (`-cpu host`): it boots in about a second and its
//! pkeys behaviour comes from real hardware (the PKRU XINUSE optimisation the upstream
//! `pkru_preserved_after_sigusr1` test exists for only happens there). A `/dev/kvm` that exists
//! is not enough: on some hosts qemu aborts at once (`failed to set MSR 0x10a`). So `auto`
//! probes: it boots one tiny guest under KVM and uses KVM only when that guest reaches its
//! `/init`; otherwise every guest runs under TCG and one line says why.

use std::path::Path;

/// What `--accel` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM when the probe shows it works, else TCG (with the reason).
    Auto,
    /// KVM, or a clear refusal when it does not work.
    Kvm,
    /// Software emulation (any host, any CPU model).
    Tcg,
}

/// The accelerator one guest runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// qemu's software emulation.
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host CPU, as `/proc/cpuinfo` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCpu {
    /// `model name`.
    pub model: String,
    /// The `pku` flag.
    pub pku: bool,
    /// The `ospke` flag (the host kernel enabled PKU).
    pub ospke: bool,
}

impl HostCpu {
    /// Parse the first processor of `/proc/cpuinfo`.
    pub fn parse(cpuinfo: &str) -> HostCpu {
        let mut cpu = HostCpu::default();
        for line in cpuinfo.lines() {
            let Some((k, v)) = line.split_once(':') else {
                if line.trim().is_empty() && !cpu.model.is_empty() {
                    break;
                }
                continue;
            };
            match k.trim() {
                "model name" if cpu.model.is_empty() => cpu.model = v.trim().to_owned(),
                "flags" => {
                    let flags: Vec<&str> = v.split_whitespace().collect();
                    cpu.pku = flags.contains(&"pku");
                    cpu.ospke = flags.contains(&"ospke");
                }
                _ => {}
            }
        }
        cpu
    }

    /// This machine's CPU.
    pub fn probe() -> HostCpu {
        HostCpu::parse(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
    }
}

/// Why KVM cannot be used before any guest is tried: no device node, or one we cannot open.
pub fn device_problem(dev: &Path) -> Option<String> {
    match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(_) => None,
        Err(e) => Some(format!("{}: {e}", dev.display())),
    }
}

/// The CPU model and accelerator a guest asked to run on `cpu` gets when KVM works: `max` (and
/// `host`) become `host` under KVM; a named model stays under TCG, because KVM can only offer
/// the host's own CPU (an EPYC-Milan guest on an Intel host would not be that model).
pub fn placement(cpu: &str, kvm_usable: bool) -> (Accel, String) {
    if kvm_usable && (cpu == "max" || cpu == "host") {
        (Accel::Kvm, "host".to_owned())
    } else {
        (Accel::Tcg, cpu.to_owned())
    }
}

/// The decision for a run: whether KVM is used, and the line that says why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// KVM works (the probe guest reached its `/init`) and was asked for or allowed.
    pub kvm: bool,
    /// Why KVM is not used (`None` when it is, or when `--accel tcg` was given).
    pub why_not: Option<String>,
}

/// Decide from what was asked, whether the host CPU has protection keys (`host_pkeys`: PKU and
/// OSPKE; without them a guest on `-cpu host` could only SKIP every pkeys case, while TCG's
/// `max` emulates PKU, so `auto` keeps TCG even when KVM works) and what the probe found
/// (`probe`: `Ok` when a KVM guest reached its `/init`, else the reason). `--accel kvm` with a
/// failed probe is an error; on a host without PKU it is allowed, with a warning.
pub fn decide(
    choice: AccelChoice,
    host_pkeys: bool,
    probe: impl FnOnce() -> Result<(), String>,
) -> anyhow::Result<Decision> {
    match choice {
        AccelChoice::Tcg => Ok(Decision {
            kvm: false,
            why_not: None,
        }),
        AccelChoice::Auto => Ok(match probe() {
            Ok(()) if !host_pkeys => Decision {
                kvm: false,
                why_not: Some(
                    "KVM works, but the host CPU has no PKU (or its kernel did not enable it): \
                     using TCG, whose `max` CPU emulates PKU"
                        .into(),
                ),
            },
            Ok(()) => Decision {
                kvm: true,
                why_not: None,
            },
            Err(why) => Decision {
                kvm: false,
                why_not: Some(format!("KVM unusable: {why}; using TCG")),
            },
        }),
        AccelChoice::Kvm => match probe() {
            Ok(()) => Ok(Decision {
                kvm: true,
                why_not: (!host_pkeys).then(|| {
                    "warning: --accel kvm on a host CPU without PKU: the pkeys cases will SKIP"
                        .to_owned()
                }),
            }),
            Err(why) => anyhow::bail!("--accel kvm: KVM unusable: {why}"),
        },
    }
}

/// Boot `kernel` once under KVM with `-cpu host`, running only the suite's probe case: `Ok` when
/// the guest reached its `/init` (the suite's first line came back), else why not (the device,
/// or what qemu said, e.g. `failed to set MSR 0x10a`). About a second where KVM works; qemu
/// aborts at once where it does not.
pub fn probe_kvm(
    kernel: &crate::kernel::ResolvedKernel,
    env: &crate::guest::Env,
) -> Result<(), String> {
    if let Some(p) = device_problem(Path::new("/dev/kvm")) {
        return Err(p);
    }
    let tmp = tempfile::Builder::new()
        .prefix("pkeys-kvm-probe")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
    let spec = crate::guest::GuestSpec {
        name: "kvm-probe".into(),
        kernel: kernel.clone(),
        accel: Accel::Kvm,
        cpu: "host".into(),
        append: String::new(),
        args: vec!["--exact".into(), "support::probe".into()],
        memory: "256M".into(),
        smp: 1,
        timeout: std::time::Duration::from_secs(60),
        boot_timeout: std::time::Duration::from_secs(60),
    };
    let env = crate::guest::Env {
        out: tmp.path(),
        ..*env
    };
    let run = crate::guest::run(&spec, &env, &|_, _| {}).map_err(|e| format!("{e:#}"))?;
    if run.timings.boot_to_first_line_s.is_some() {
        return Ok(());
    }
    Err(match &run.status {
        pkeys_report::RunStatus::Error { message, .. } => {
            // "qemu exited (...) without the suite's end marker; qemu: <what it said>"
            match message.split_once("; qemu: ") {
                Some((_, said)) => format!("qemu aborted: {said}"),
                None => message.clone(),
            }
        }
        pkeys_report::RunStatus::Completed => "the probe guest never reached its /init".into(),
    })
}

/// Whether the host CPU has PKU and its kernel enabled it.
pub fn host_has_pkeys() -> bool {
    let c = HostCpu::probe();
    c.pku && c.ospke
}

/// What a run line and `results.json` say of the host: its CPU and whether it has PKU.
pub fn host_record() -> pkeys_report::HostCpuInfo {
    let c = HostCpu::probe();
    pkeys_report::HostCpuInfo {
        model: c.model,
        pku: c.pku,
        ospke: c.ospke,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_host_cpu() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\nflags\t\t: fpu vme pku ospke avx512f\n\nprocessor\t: 1\nmodel name\t: other\n";
        let c = HostCpu::parse(info);
        assert_eq!(c.model, "Intel(R) Xeon(R) Gold 6338");
        assert!(c.pku && c.ospke);
        let c = HostCpu::parse("model name : AMD EPYC\nflags : fpu sse\n");
        assert!(!c.pku && !c.ospke);
    }

    #[test]
    fn max_becomes_host_under_kvm_and_named_models_stay_on_tcg() {
        assert_eq!(placement("max", true), (Accel::Kvm, "host".into()));
        assert_eq!(placement("host", true), (Accel::Kvm, "host".into()));
        assert_eq!(
            placement("EPYC-Milan", true),
            (Accel::Tcg, "EPYC-Milan".into())
        );
        assert_eq!(placement("max", false), (Accel::Tcg, "max".into()));
    }

    #[test]
    fn decisions() {
        let broken = || Err::<(), _>("qemu aborted: failed to set MSR 0x10a".to_owned());
        let d = decide(AccelChoice::Auto, true, broken).unwrap();
        assert!(!d.kvm);
        assert_eq!(
            d.why_not.as_deref(),
            Some("KVM unusable: qemu aborted: failed to set MSR 0x10a; using TCG")
        );
        let e = decide(AccelChoice::Kvm, true, broken)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--accel kvm: KVM unusable: qemu aborted: failed to set MSR 0x10a"
        );
        assert!(decide(AccelChoice::Kvm, true, || Ok(())).unwrap().kvm);
        assert!(decide(AccelChoice::Auto, true, || Ok(())).unwrap().kvm);
        let mut probed = false;
        let d = decide(AccelChoice::Tcg, true, || {
            probed = true;
            Ok(())
        })
        .unwrap();
        assert!(!d.kvm && !probed, "--accel tcg never probes");
        let d = decide(AccelChoice::Auto, false, || Ok(())).unwrap();
        assert!(!d.kvm, "no KVM for a host without PKU");
        assert!(
            d.why_not
                .unwrap()
                .starts_with("KVM works, but the host CPU has no PKU")
        );
        let d = decide(AccelChoice::Auto, false, broken).unwrap();
        assert!(d.why_not.unwrap().starts_with("KVM unusable: qemu aborted"));
    }
}
