//! pkeys-guest: what the suite binary does inside a qemu guest.
//!
//! - [`init`]: the PID-1 init (mounts, the result UART, starting the suite, the end marker,
//!   power-off);
//! - [`bench`]: the benchmark hooks `pkeys-qemu bench` drives (per-case fork overhead, the
//!   kernel's C selftests timed in the same guest).
//!
//! This crate may contain `unsafe`: PID 1 and the benchmark loops make raw system calls (mount,
//! termios, fork/exec/waitpid, reboot) with no allocation between fork and exec. Each block has a
//! `// SAFETY:` line. The cases never depend on it; only the suite binary does.
#![warn(missing_docs)]
#![cfg(target_arch = "x86_64")]

pub mod bench;
pub mod init;
