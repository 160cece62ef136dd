//! `pkeys-qemu`: run the pkeys conformance suite in scripted qemu guests.
//!
//! The pieces, in the order a run uses them:
//! - [`runner`] is the engine of `pkeys-qemu run`: [`runner::run_one`] and
//!   [`runner::run_baseline`] return typed outcomes, which the command line (`main.rs`, a thin
//!   clap layer) prints and maps to an exit status;
//! - [`config`] reads `ci/kernels.toml` (kernels and the guest matrix);
//! - [`kernel`] resolves a kernel spec (a bzImage path or `debian:<name>`), with [`apt`]
//!   fetching Debian kernel packages into the cache through a private apt configuration;
//! - [`suite`] builds (or takes) the statically linked `pkeys-suite`, and [`initramfs`] packs it
//!   as `/init` into a cpio newc + gzip initramfs ([`cpio`]);
//! - [`accel`] decides between KVM and TCG;
//! - [`qemu`] builds the qemu command line and [`guest`] boots one guest, watches its console
//!   and result UART (each read once, the result stream through
//!   [`pkeys_report::ktap::StreamParser`]), and turns what it saw into a
//!   [`pkeys_report::GuestRun`];
//! - [`matrix`] runs many guests concurrently ([`live`] shows their progress) and hands the
//!   results to `pkeys_report`; [`outdir`] guards the output folders;
//! - [`cleanup`] makes sure no qemu outlives the command (SIGINT/SIGTERM included), and
//!   [`pdeathsig`] that none outlives it killed with SIGKILL (the crate's one `unsafe` block);
//! - [`kbuild`] builds a kernel under test from a source tree (patch validation), split into
//!   fragments, tree detection, tool checks, the make driver and source fetching;
//!   [`kconfig_check`] checks a kernel's embedded configuration;
//! - [`bench`](mod@bench) measures the runner (`pkeys-qemu bench`): measuring, the table, printing and
//!   the typed `bench.json` in separate modules.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod accel;
pub mod apt;
pub mod bench;
pub mod cleanup;
pub mod config;
pub mod cpio;
pub mod debver;
pub mod guest;
pub mod initramfs;
pub mod kbuild;
pub mod kconfig_check;
pub mod kernel;
pub mod live;
pub mod matrix;
pub mod outdir;
pub mod paths;
pub mod pdeathsig;
pub mod progress;
pub mod qemu;
pub mod runner;
pub mod suite;
