//! `pkeys-qemu`: run the pkeys conformance suite in scripted qemu guests.
//!
//! The pieces, in the order a run uses them:
//! - [`config`] reads `ci/kernels.toml` (kernels and the guest matrix);
//! - [`kernel`] resolves a kernel spec (a bzImage path or `debian:<name>`), with [`apt`]
//!   fetching Debian kernel packages into the cache through a private apt configuration;
//! - [`suite`] builds (or takes) the statically linked `pkeys-suite`, and [`initramfs`] packs it
//!   as `/init` into a cpio newc + gzip initramfs ([`cpio`]);
//! - [`qemu`] builds the qemu command line and [`guest`] boots one guest, watches its console
//!   and result UART, and turns what it saw into a [`pkeys_report::GuestRun`];
//! - [`matrix`] runs many guests concurrently and hands the results to `pkeys_report`;
//! - [`cleanup`] makes sure no qemu outlives the command (SIGINT/SIGTERM included), and
//!   [`pdeathsig`] that none outlives it killed with SIGKILL (the crate's one `unsafe` block);
//! - [`kbuild`] builds a kernel under test from a source tree (patch validation).
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
pub mod qemu;
pub mod suite;
