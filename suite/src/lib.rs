//! The `pkeys-suite` front end: the libtest-mimic runner over the cases, and the guest init.
#![warn(missing_docs)]

pub mod init;
