//! Guest init: what `pkeys-suite` does when it runs as PID 1 (see docs/protocol.md).
//!
//! In a qemu guest the statically linked `pkeys-suite` is the initramfs's `/init`. As PID 1 it
//! prepares the few file systems the cases need, starts itself again as an ordinary process (the
//! suite proper, KTAP on the second UART), reaps every child until the suite is done, writes the
//! end marker and powers the machine off.
//!
//! PID 1 must never return or panic (the kernel panics when init exits), so every error is printed
//! on the console and followed by a power-off. The process is single-threaded; system calls go
//! through `libc`, and the suite is started with `std::process::Command`.

use pkeys_common::protocol;
use std::ffi::{CStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The serial line the KTAP stream goes to (qemu's second `-serial`).
const RESULT_TTY: &CStr = c"/dev/ttyS1";
/// Extra suite arguments, one per line, put into the initramfs by the runner.
const ARGS_FILE: &str = "/pkeys/args";
/// The path of this very binary inside the initramfs.
const SELF_PATH: &str = "/init";
/// Huge pages to reserve for the hugetlb cases.
const HUGEPAGES: &str = "16";

/// Becomes the guest's init when the process is PID 1; otherwise returns at once.
///
/// As PID 1 it mounts proc, sysfs, devtmpfs, debugfs, hugetlbfs and a tmpfs on `/tmp`, reserves
/// huge pages, opens `/dev/ttyS1` in raw mode, forks and execs `/init` as
/// `pkeys-suite --format ktap <args from /pkeys/args>` with stdout on ttyS1 and `PKEYS_GUEST=1`
/// in the environment, reaps children until the suite exits, writes
/// `# pkeys-init: suite exit=<code>` (or `signal=<n>`) to ttyS1 and powers off with
/// `reboot(RB_POWER_OFF)`. It never returns in that case.
///
/// # References
/// `init(1)`, `reboot(2)`, `mount(2)`, `termios(3)` (`cfmakeraw`).
pub fn run_if_pid1() {
    if std::process::id() != 1 {
        return;
    }
    let outcome = std::panic::catch_unwind(init_main);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => console(&format!("pkeys-init: error: {e}")),
        Err(_) => console("pkeys-init: error: init panicked"),
    }
    power_off();
}

/// Prints one line on the console (PID 1's stderr is `/dev/console`); errors are ignored.
fn console(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// The last `errno` as a readable error.
fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Makes sure fds 0, 1 and 2 are open on the console (the kernel opens `/dev/console` for init
/// only when the node exists in the initramfs).
fn ensure_console_fds() {
    // SAFETY: fcntl(F_GETFD) on a plain integer fd only queries the descriptor table.
    let stderr_open = unsafe { libc::fcntl(2, libc::F_GETFD) } != -1;
    if stderr_open {
        return;
    }
    // SAFETY: open with a valid NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return;
    }
    for target in 0..3 {
        if fd != target {
            // SAFETY: dup2 between descriptors owned by this process.
            unsafe { libc::dup2(fd, target) };
        }
    }
    if fd > 2 {
        // SAFETY: fd was opened above and is not one of 0..=2.
        unsafe { libc::close(fd) };
    }
}

/// Creates a directory (mode 0755); an existing one is fine.
fn mkdir(path: &CStr) -> Result<(), String> {
    // SAFETY: mkdir with a valid NUL-terminated path.
    if unsafe { libc::mkdir(path.as_ptr(), 0o755) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err(format!("mkdir {}: {err}", path.to_string_lossy()))
    }
}

/// `mount(source, target, fstype, flags, NULL)`; an already mounted target (`EBUSY`) is fine.
fn mount(fstype: &CStr, target: &CStr, flags: libc::c_ulong) -> Result<(), String> {
    mkdir(target)?;
    // SAFETY: all pointers are valid NUL-terminated strings (the source is the fs type name, as
    // mount(8) does for virtual file systems); data is NULL.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EBUSY) {
        Ok(())
    } else {
        Err(format!(
            "mount {} on {}: {err}",
            fstype.to_string_lossy(),
            target.to_string_lossy()
        ))
    }
}

/// Mounts what the cases need. Only `/dev` is essential (the result UART lives there); the
/// other failures are printed and the suite reports the missing capability itself.
fn mount_all() -> Result<(), String> {
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(c"devtmpfs", c"/dev", libc::MS_NOSUID)?;
    ensure_console_fds();
    let optional: [(&CStr, &CStr, libc::c_ulong); 5] = [
        (c"proc", c"/proc", nosuid_nodev_noexec),
        (c"sysfs", c"/sys", nosuid_nodev_noexec),
        (c"debugfs", c"/sys/kernel/debug", nosuid_nodev_noexec),
        (
            c"hugetlbfs",
            c"/dev/hugepages",
            libc::MS_NOSUID | libc::MS_NODEV,
        ),
        (c"tmpfs", c"/tmp", libc::MS_NOSUID | libc::MS_NODEV),
    ];
    for (fstype, target, flags) in optional {
        if let Err(e) = mount(fstype, target, flags) {
            console(&format!("pkeys-init: warning: {e}"));
        }
    }
    // Failure is fine: the hugetlb cases SKIP with the reason. 2 MiB pages by name, since the
    // default huge page size (what vm.nr_hugepages counts) may be 1 GiB.
    let _ = std::fs::write(pkeys_harness::probe::NR_HUGEPAGES_2M, HUGEPAGES);
    Ok(())
}

/// Opens the result UART read-write and puts it in raw mode (no CR/LF translation, no echo).
fn open_result_tty() -> Result<libc::c_int, String> {
    // SAFETY: open with a valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            RESULT_TTY.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_os_error("open /dev/ttyS1"));
    }
    // SAFETY: termios is plain old data; tcgetattr fills it completely before it is read.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open tty and tio points to a valid termios.
    if unsafe { libc::tcgetattr(fd, &mut tio) } != 0 {
        return Err(last_os_error("tcgetattr /dev/ttyS1"));
    }
    // SAFETY: tio is a valid termios obtained from tcgetattr.
    unsafe { libc::cfmakeraw(&mut tio) };
    // SAFETY: fd is an open tty and tio a valid termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &tio) } != 0 {
        return Err(last_os_error("tcsetattr /dev/ttyS1"));
    }
    Ok(fd)
}

/// Reads `/pkeys/args`: one argument per line, empty lines ignored; an absent file means none.
fn read_args() -> Result<Vec<OsString>, String> {
    let bytes = match std::fs::read(ARGS_FILE) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("read {ARGS_FILE}: {e}")),
    };
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            if line.contains(&0) {
                Err(format!("{ARGS_FILE}: NUL byte in argument"))
            } else {
                Ok(OsString::from_vec(line.to_vec()))
            }
        })
        .collect()
}

/// A new open file of the device behind `fd` (through `/proc/self/fd`), owned by std so it can
/// be a child's stdout. `O_NOCTTY`: PID 1 must not acquire a controlling terminal.
pub(crate) fn reopen(fd: libc::c_int) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{fd}"))
}

/// Writes all of `bytes` to `fd`, retrying on `EINTR` and short writes.
fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live byte slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(format!("write: {err}"));
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// How the suite process ended.
enum SuiteEnd {
    Exit(i32),
    Signal(i32),
}

/// The whole init sequence up to (not including) the power-off.
fn init_main() -> Result<(), String> {
    ensure_console_fds();
    mount_all()?;
    let tty = open_result_tty()?;
    let args = read_args()?;
    console("pkeys-init: starting suite");
    let suite_start = crate::bench::now_ns();
    // This very binary again, as an ordinary process: argv[0] `pkeys-suite`, the kernel-provided
    // environment plus PKEYS_GUEST=1, stdout on the result tty, stderr on the console.
    let child = Command::new(SELF_PATH)
        .arg0("pkeys-suite")
        .args(["--format", "ktap"])
        .args(args)
        .env("PKEYS_GUEST", "1")
        .stdout(reopen(tty).map_err(|e| format!("reopen the result tty: {e}"))?)
        .spawn()
        .map_err(|e| format!("cannot start the suite ({SELF_PATH}): {e}"))?;
    // Not waited for through `Child`: reap_until collects it with every orphan.
    let child = child.id() as libc::pid_t;

    let end = reap_until(child)?;
    let suite_ns = crate::bench::now_ns() - suite_start;
    let line = match end {
        SuiteEnd::Exit(code) => format!("\n{}\n", protocol::end_marker_exit(code)),
        SuiteEnd::Signal(sig) => format!("\n{}\n", protocol::end_marker_signal(sig)),
    };
    console(line.trim());
    // Orphans of the suite must not keep writing after the end marker.
    // SAFETY: kill(-1) as PID 1 signals every other process; nothing of ours is harmed.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    // Benchmarks only (`pkeys-qemu bench`): the programs of /pkeys/bench, when present.
    crate::bench::run_guest_bench(tty, suite_ns);
    write_all(tty, line.as_bytes())?;
    // SAFETY: tty is an open tty; tcdrain waits until the UART has sent everything, fsync
    // flushes whatever the driver still buffers.
    unsafe {
        libc::tcdrain(tty);
        libc::fsync(tty);
    }
    Ok(())
}

/// Reaps every child (orphans are re-parented to PID 1) until `suite` ends.
fn reap_until(suite: libc::pid_t) -> Result<SuiteEnd, String> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with a valid pointer to an int.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(format!("waitpid: {err}"));
        }
        if pid != suite {
            continue;
        }
        if libc::WIFEXITED(status) {
            return Ok(SuiteEnd::Exit(libc::WEXITSTATUS(status)));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(SuiteEnd::Signal(libc::WTERMSIG(status)));
        }
    }
}

/// Flushes file systems and powers the machine off; never returns.
fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; as PID 1 with CAP_SYS_BOOT, RB_POWER_OFF stops
    // the machine (qemu exits).
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot failed (not permitted?): PID 1 must not exit, so wait for the runner's timeout.
    console(&last_os_error("pkeys-init: reboot(RB_POWER_OFF) failed"));
    loop {
        // SAFETY: pause has no arguments and no preconditions.
        unsafe { libc::pause() };
    }
}
