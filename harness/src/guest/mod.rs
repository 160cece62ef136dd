//! What the suite binary does inside a qemu guest: the PID-1 init (mounts, the result UART,
//! starting the suite, power-off) and the benchmark hooks. Kept here so that every `unsafe`
//! block of the project lives in the harness.

pub mod bench;
pub mod init;
