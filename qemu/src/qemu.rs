//! The qemu command line, and starting qemu so that it cannot outlive the runner.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::cleanup::Registered;

/// The qemu binary's name.
pub const QEMU: &str = "qemu-system-x86_64";
/// Environment override for the qemu binary.
pub const QEMU_ENV: &str = "PKEYS_QEMU";
/// What every guest's kernel command line starts with: the console on the first UART (the
/// runner watches it for panics) and an immediate reboot on panic (with `-no-reboot`: qemu
/// exits).
pub const BASE_APPEND: &str = "console=ttyS0 panic=-1";

/// Finds qemu: `$PKEYS_QEMU`, else `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(QEMU_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{QEMU_ENV}={} does not exist", p.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(QEMU))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{QEMU} not found on PATH: install it with `apt-get install qemu-system-x86`")
        })
}

/// Parses `qemu-system-x86_64 -cpu help`: lines `x86 <model> <description>`.
pub fn parse_cpu_help(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "x86").then(|| w.next().map(str::to_owned))?
        })
        .collect()
}

/// The CPU models this qemu knows (asked once per process).
pub fn cpu_models(qemu: &Path) -> Result<&'static [String]> {
    static MODELS: OnceLock<Vec<String>> = OnceLock::new();
    if let Some(m) = MODELS.get() {
        return Ok(m);
    }
    let out = Command::new(qemu)
        .args(["-cpu", "help"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", qemu.display()))?;
    let models = parse_cpu_help(&String::from_utf8_lossy(&out.stdout));
    if models.is_empty() {
        bail!("`{} -cpu help` listed no CPU models", qemu.display());
    }
    Ok(MODELS.get_or_init(|| models))
}

/// Checks a `-cpu` value (`model[,+feature...]`) against the known models.
pub fn check_cpu(cpu: &str, models: &[String]) -> Result<()> {
    let model = cpu.split(',').next().unwrap_or("");
    if models.iter().any(|m| m == model) {
        return Ok(());
    }
    let close: Vec<&str> = models
        .iter()
        .filter(|m| {
            let (a, b) = (m.to_ascii_lowercase(), model.to_ascii_lowercase());
            !b.is_empty() && (a.contains(&b) || b.contains(&a))
        })
        .map(String::as_str)
        .take(6)
        .collect();
    if close.is_empty() {
        bail!(
            "unknown CPU model `{model}` (see `{QEMU} -cpu help`; with PKU under TCG: max, Skylake-Server, Icelake-Server, EPYC-Milan)"
        );
    }
    bail!(
        "unknown CPU model `{model}` (did you mean {}? see `{QEMU} -cpu help`)",
        close.join(", ")
    );
}

/// Everything one qemu invocation needs.
#[derive(Debug, Clone)]
pub struct QemuArgs {
    /// `-accel`.
    pub accel: crate::accel::Accel,
    /// `-kernel`.
    pub kernel: PathBuf,
    /// `-initrd`.
    pub initrd: PathBuf,
    /// `-cpu`.
    pub cpu: String,
    /// `-m`.
    pub memory: String,
    /// `-smp`.
    pub smp: u32,
    /// Extra kernel command line (after [`BASE_APPEND`]).
    pub append: String,
    /// File for the first UART (guest console, ttyS0).
    pub console_log: PathBuf,
    /// File for the second UART (guest ttyS1: the KTAP stream).
    pub ktap: PathBuf,
}

/// A path as a qemu option value (`,` is doubled).
fn opt_path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

impl QemuArgs {
    /// The full kernel command line.
    pub fn cmdline(&self) -> String {
        crate::config::join_append(BASE_APPEND, Some(&self.append))
    }

    /// The qemu arguments: the accelerator, no default devices, no display or monitor, two UARTs writing
    /// to files, no reboot (a reboot or panic ends qemu).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        for s in [
            "-accel",
            self.accel.as_str(),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ] {
            push(s);
        }
        push("-cpu");
        push(&self.cpu);
        push("-m");
        push(&self.memory);
        push("-smp");
        push(&self.smp.to_string());
        push("-serial");
        push(&format!("file:{}", opt_path(&self.console_log)));
        push("-serial");
        push(&format!("file:{}", opt_path(&self.ktap)));
        push("-kernel");
        a.push(self.kernel.clone().into());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into());
        a.push("-append".into());
        a.push(self.cmdline().into());
        a
    }
}

/// A running qemu: its own process group, registered for clean-up, killed on drop.
#[derive(Debug)]
pub struct Running {
    /// The child.
    pub child: Child,
    group: Registered,
}

impl Running {
    /// Kills qemu's process group (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.group.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts qemu with `args`: stdin and stdout on /dev/null, stderr to `stderr_log`, in a new
/// process group, with `PR_SET_PDEATHSIG(SIGKILL)` so it dies with the runner.
pub fn spawn(qemu: &Path, args: &QemuArgs, stderr_log: &Path) -> Result<Running> {
    let stderr = std::fs::File::create(stderr_log)
        .with_context(|| format!("cannot create {}", stderr_log.display()))?;
    let mut cmd = Command::new(qemu);
    cmd.args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0);
    crate::pdeathsig::die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
    let group = Registered::new(child.id());
    Ok(Running { child, group })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HELP: &str = "Available CPUs:\nx86 486                   (alias configured by machine type)\nx86 EPYC-Milan            AMD EPYC-Milan Processor\nx86 Skylake-Server        Intel Xeon Processor (Skylake)\nx86 Skylake-Server-v1     Intel Xeon Processor (Skylake)\nx86 max                   Enables all features supported by the accelerator in the current host\n\nRecognized CPUID flags:\n  pku ospke\n";

    #[test]
    fn cpu_help() {
        assert_eq!(
            parse_cpu_help(HELP),
            [
                "486",
                "EPYC-Milan",
                "Skylake-Server",
                "Skylake-Server-v1",
                "max"
            ]
        );
    }

    #[rstest]
    #[case("max", None)]
    #[case("Skylake-Server", None)]
    #[case("EPYC-Milan,+pku", None)]
    #[case("skylake", Some("did you mean Skylake-Server, Skylake-Server-v1"))]
    #[case("Pentium-X", Some("unknown CPU model `Pentium-X`"))]
    fn cpus(#[case] cpu: &str, #[case] err: Option<&str>) {
        let models = parse_cpu_help(HELP);
        match (check_cpu(cpu, &models), err) {
            (Ok(()), None) => {}
            (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{e}"),
            (r, want) => panic!("{cpu}: {r:?} vs {want:?}"),
        }
    }

    #[test]
    fn args() {
        let a = QemuArgs {
            accel: crate::accel::Accel::Tcg,
            kernel: "/k/vmlinuz".into(),
            initrd: "/t/initrd.img".into(),
            cpu: "Skylake-Server".into(),
            memory: "512M".into(),
            smp: 1,
            append: "init_pkru=0x55555550".into(),
            console_log: "/out/a,b.console.log".into(),
            ktap: "/out/a.ktap".into(),
        };
        let v: Vec<String> = a
            .to_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = v.join(" ");
        assert!(joined.starts_with("-accel tcg -nodefaults"), "{joined}");
        let kvm = QemuArgs {
            accel: crate::accel::Accel::Kvm,
            cpu: "host".into(),
            ..a.clone()
        };
        let joined_kvm: Vec<String> = kvm
            .to_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert!(
            joined_kvm.join(" ").starts_with("-accel kvm -nodefaults"),
            "{joined_kvm:?}"
        );
        assert!(
            joined.contains("-cpu Skylake-Server -m 512M -smp 1"),
            "{joined}"
        );
        assert!(
            joined.contains("-serial file:/out/a,,b.console.log -serial file:/out/a.ktap"),
            "{joined}"
        );
        assert!(joined.contains("-no-reboot"));
        assert!(joined.contains("-display none -monitor none"));
        assert_eq!(
            v.last().unwrap(),
            "console=ttyS0 panic=-1 init_pkru=0x55555550"
        );
        assert_eq!(v[v.len() - 2], "-append");
        let i = v.iter().position(|s| s == "-kernel").unwrap();
        assert_eq!(v[i + 1], "/k/vmlinuz");
        assert_eq!(v[i + 3], "/t/initrd.img");
    }
}
