//! pkeys-model: a reference model of the Linux protection-keys ABI on x86-64, as user space can
//! observe it: the allocation map, the running thread's PKRU, and an arena of adjacent pages with
//! their protection, key and contents. [`Model::plan`] turns a sequence of [`Op`]s into the
//! [`Observed`] each step should produce; the explorer (`pkeys-cases`' `explore` module) runs
//! the same steps against the kernel and compares. Pure Rust, no `unsafe`, no I/O.
//!
//! Every rule cites its source; `docs/model.md` lists them, with where the documentation and the
//! kernel disagree.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod model;
pub mod obs;
pub mod op;

pub use model::{Config, Model, Step};
pub use obs::{Observed, Outcome, Segv};
pub use op::{Key, MapKind, Op};

#[cfg(test)]
mod tests;
