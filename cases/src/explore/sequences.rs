//! Random operation sequences, generated and shrunk by proptest. Generation does not look at
//! the state: the model resolves each step's keys and drops steps that may not run, so a shrunk
//! sequence (proptest removes and simplifies steps) is always a valid sequence too.

use pkeys_model::op::{PAGES, R, RET, W, X};
use pkeys_model::{Key, MapKind, Op};
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};

/// What a family may generate beyond the basics, given what the kernel was built with.
#[derive(Debug, Clone, Copy)]
pub struct Available {
    /// memfd_create works (CONFIG_MEMFD_CREATE).
    pub memfd: bool,
    /// process_vm_readv/writev work (CONFIG_CROSS_MEMORY_ATTACH).
    pub process_vm: bool,
    /// `/proc/PID/smaps` exists (CONFIG_PROC_PAGE_MONITOR).
    pub smaps: bool,
    /// madvise(2) exists (CONFIG_ADVISE_SYSCALLS).
    pub madvise: bool,
    /// SysV shared memory works (CONFIG_SYSVIPC, CONFIG_SHMEM).
    pub shm: bool,
    /// futex(2) works (CONFIG_FUTEX): threads need it (std joins a thread with a futex).
    pub futex: bool,
}

/// The kinds of step, each with a weight in a family's mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// pkey_alloc.
    Alloc,
    /// pkey_free.
    Free,
    /// pkey_mprotect.
    PkeyMprotect,
    /// mprotect.
    Mprotect,
    /// mmap(MAP_FIXED).
    Mmap,
    /// munmap.
    Munmap,
    /// mremap.
    Mremap,
    /// madvise(MADV_DONTNEED).
    DontNeed,
    /// WRPKRU.
    Wrpkru,
    /// load / store / call.
    Access,
    /// read()/write() through a pipe.
    KernelCopy,
    /// process_vm_readv/writev on itself.
    ProcessVm,
    /// /proc/self/mem.
    ProcMem,
    /// raise(SIGUSR1).
    Signal,
    /// /proc/self/smaps.
    Smaps,
    /// fork, thread.
    Child,
    /// execve.
    Execve,
}

impl Available {
    /// The features a sequence that may use all of these declares (`Needs`, so the harness
    /// allows their use).
    pub fn needs(&self) -> pkeys_harness::Needs {
        use pkeys_harness::Feature;
        [
            (Feature::Memfd, self.memfd),
            (Feature::ProcessVm, self.process_vm),
            (Feature::Smaps, self.smaps),
            (Feature::Madvise, self.madvise),
            (Feature::SysvShm, self.shm),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .fold(pkeys_harness::Needs::NONE, |n, (f, _)| n.feature(f))
    }
}

fn range() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        3 => (0..PAGES, 1..=3usize),
        1 => (0..PAGES, 1..=PAGES),
    ]
    .prop_map(|(first, n)| (first, n.min(PAGES - first)))
}

fn prot() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(R | W),
        2 => Just(R),
        2 => Just(X),
        1 => Just(0),
        1 => Just(W),
        1 => Just(R | X),
        1 => Just(R | W | X),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    prop_oneof![
        6 => (0u8..4).prop_map(Key::Nth),
        1 => Just(Key::ExecOnly),
        1 => Just(Key::Unallocated),
        1 => Just(Key::Num(0)),
        1 => Just(Key::Num(-1)),
        1 => Just(Key::Num(16)),
    ]
}

fn val() -> impl Strategy<Value = u8> {
    prop_oneof![Just(RET), Just(0x11u8), Just(0x5au8)]
}

fn page() -> impl Strategy<Value = usize> {
    0..PAGES
}

fn pkru_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => any::<u32>(),
        1 => Just(0u32),
        1 => Just(0x5555_5554u32),
        // Only one key's bits set.
        1 => (1i32..16, 1u32..4).prop_map(|(k, r)| r << (2 * k)),
    ]
}

fn kinds(avail: Available) -> Vec<MapKind> {
    MapKind::ALL
        .into_iter()
        .filter(|k| avail.memfd || *k != MapKind::MemfdShared)
        .filter(|k| avail.shm || *k != MapKind::Shm)
        .collect()
}

fn one(kind: Kind, avail: Available, nested: bool) -> Option<BoxedStrategy<Op>> {
    Some(match kind {
        Kind::Alloc => (0u32..4).prop_map(|rights| Op::Alloc { rights }).boxed(),
        Kind::Free => key().prop_map(|key| Op::Free { key }).boxed(),
        Kind::PkeyMprotect => (range(), prot(), key())
            .prop_map(|((first, n), prot, key)| Op::PkeyMprotect {
                first,
                n,
                prot,
                key,
            })
            .boxed(),
        Kind::Mprotect => (range(), prot())
            .prop_map(|((first, n), prot)| Op::Mprotect { first, n, prot })
            .boxed(),
        Kind::Mmap => (range(), proptest::sample::select(kinds(avail)), prot())
            .prop_map(|((first, n), kind, prot)| Op::Mmap {
                first,
                n,
                kind,
                prot,
            })
            .boxed(),
        Kind::Munmap => range()
            .prop_map(|(first, n)| Op::Munmap { first, n })
            .boxed(),
        Kind::Mremap => (range(), page(), 0usize..3)
            .prop_map(|((src, n), dst, grow)| {
                let new_n = (n + grow).saturating_sub(1).max(1).min(PAGES - dst);
                Op::Mremap { src, n, dst, new_n }
            })
            .boxed(),
        Kind::DontNeed if avail.madvise => range()
            .prop_map(|(first, n)| Op::DontNeed { first, n })
            .boxed(),
        Kind::Wrpkru => pkru_value().prop_map(|value| Op::Wrpkru { value }).boxed(),
        Kind::Access => prop_oneof![
            3 => page().prop_map(|page| Op::Read { page }),
            3 => (page(), val()).prop_map(|(page, val)| Op::Write { page, val }),
            1 => page().prop_map(|page| Op::Exec { page }),
        ]
        .boxed(),
        Kind::KernelCopy => prop_oneof![
            (page(), val()).prop_map(|(page, val)| Op::KernelRead { page, val }),
            page().prop_map(|page| Op::KernelWrite { page }),
        ]
        .boxed(),
        Kind::ProcessVm if avail.process_vm => prop_oneof![
            page().prop_map(|page| Op::PvmRead { page }),
            (page(), val()).prop_map(|(page, val)| Op::PvmWrite { page, val }),
        ]
        .boxed(),
        Kind::ProcMem => prop_oneof![
            page().prop_map(|page| Op::MemRead { page }),
            (page(), val()).prop_map(|(page, val)| Op::MemWrite { page, val }),
        ]
        .boxed(),
        Kind::Signal => proptest::option::of(pkru_value())
            .prop_map(|edit| Op::Signal { edit })
            .boxed(),
        Kind::Smaps if avail.smaps => Just(Op::Smaps).boxed(),
        Kind::Child if !nested => {
            let sub = || {
                proptest::collection::vec(
                    ops_union(
                        &[
                            (2, Kind::Alloc),
                            (1, Kind::Free),
                            (2, Kind::PkeyMprotect),
                            (1, Kind::Mprotect),
                            (1, Kind::Wrpkru),
                            (3, Kind::Access),
                            (1, Kind::KernelCopy),
                            (1, Kind::Signal),
                            (1, Kind::Smaps),
                        ],
                        avail,
                        true,
                    ),
                    1..=5,
                )
            };
            if avail.futex {
                prop_oneof![
                    sub().prop_map(|sub| Op::Fork { sub }),
                    sub().prop_map(|sub| Op::Thread { sub }),
                ]
                .boxed()
            } else {
                sub().prop_map(|sub| Op::Fork { sub }).boxed()
            }
        }
        Kind::Execve if !nested => Just(Op::Execve).boxed(),
        _ => return None,
    })
}

fn ops_union(mix: &[(u32, Kind)], avail: Available, nested: bool) -> BoxedStrategy<Op> {
    let parts: Vec<(u32, BoxedStrategy<Op>)> = mix
        .iter()
        .filter_map(|(w, k)| one(*k, avail, nested).map(|s| (*w, s)))
        .collect();
    Union::new_weighted(parts).boxed()
}

/// Sequences of 1..=`max_len` steps drawn from `mix`.
pub fn sequences(mix: &[(u32, Kind)], avail: Available, max_len: usize) -> BoxedStrategy<Vec<Op>> {
    proptest::collection::vec(ops_union(mix, avail, false), 1..=max_len).boxed()
}
