//! The operations the explorer generates, as data: what a step does, in terms of arena pages.

use std::fmt;

/// Pages in the explorer's arena: a window of adjacent pages that every range operation works
/// inside, so ranges cover several mappings, parts of mappings and holes.
pub const PAGES: usize = 12;

/// Pages in each backing file (the temporary file and the memfd). Page `i` of the arena maps
/// file page `i` when it is first mapped; `mremap` can move and grow it, hence twice the arena.
pub const FILE_PAGES: usize = 2 * PAGES;

/// `PROT_READ`.
pub const R: u8 = 1;
/// `PROT_WRITE`.
pub const W: u8 = 2;
/// `PROT_EXEC`.
pub const X: u8 = 4;

/// The byte that makes a page executable by the explorer: `ret`.
pub const RET: u8 = 0xc3;

/// What backs a mapping made by [`Op::Mmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// `MAP_PRIVATE | MAP_ANONYMOUS`.
    AnonPrivate,
    /// `MAP_SHARED | MAP_ANONYMOUS`: each mmap is a new shared object.
    AnonShared,
    /// A temporary file, `MAP_PRIVATE` (copy on write over the file's pages).
    FilePrivate,
    /// The same temporary file, `MAP_SHARED`.
    FileShared,
    /// A memfd, `MAP_SHARED`.
    MemfdShared,
    /// A new SysV shared memory segment, attached with `shmat(SHM_REMAP | SHM_EXEC)`: always
    /// read-write-execute, whatever protection the step names.
    Shm,
}

impl MapKind {
    /// Every kind.
    pub const ALL: [MapKind; 6] = [
        MapKind::AnonPrivate,
        MapKind::AnonShared,
        MapKind::FilePrivate,
        MapKind::FileShared,
        MapKind::MemfdShared,
        MapKind::Shm,
    ];

    /// Short name used in printed steps.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::AnonPrivate => "anon",
            MapKind::AnonShared => "anon_shared",
            MapKind::FilePrivate => "file_private",
            MapKind::FileShared => "file_shared",
            MapKind::MemfdShared => "memfd",
            MapKind::Shm => "shm",
        }
    }

    /// Whether the mapping is `MAP_SHARED` (`s` in `/proc/PID/maps`).
    pub fn shared(self) -> bool {
        matches!(
            self,
            MapKind::AnonShared | MapKind::FileShared | MapKind::MemfdShared | MapKind::Shm
        )
    }

    /// Whether the mapping is backed by a file (the temporary file or the memfd).
    pub fn file_backed(self) -> bool {
        matches!(
            self,
            MapKind::FilePrivate | MapKind::FileShared | MapKind::MemfdShared
        )
    }
}

/// A protection key as a generated step names it; resolved to a number against the model's
/// allocation map before the step runs, so a shrunk sequence still names sensible keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The n-th allocated key (modulo how many there are; key 0 when none is).
    Nth(u8),
    /// The execute-only key (key 0 when there is none yet).
    ExecOnly,
    /// The lowest key that is not allocated (16 when all are).
    Unallocated,
    /// A literal key number (-1 is "keep the key", as `mprotect`).
    Num(i32),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Nth(n) => write!(f, "<allocated #{n}>"),
            Key::ExecOnly => f.write_str("<execute-only key>"),
            Key::Unallocated => f.write_str("<an unallocated key>"),
            Key::Num(k) => write!(f, "{k}"),
        }
    }
}

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `pkey_alloc(0, rights)`.
    Alloc {
        /// `PKEY_DISABLE_ACCESS` (1) and/or `PKEY_DISABLE_WRITE` (2).
        rights: u32,
    },
    /// `pkey_free(key)`.
    Free {
        /// The key.
        key: Key,
    },
    /// `pkey_mprotect(page first, n pages, prot, key)`.
    PkeyMprotect {
        /// First page.
        first: usize,
        /// Page count.
        n: usize,
        /// `PROT_*` bits.
        prot: u8,
        /// The key.
        key: Key,
    },
    /// `mprotect(page first, n pages, prot)`.
    Mprotect {
        /// First page.
        first: usize,
        /// Page count.
        n: usize,
        /// `PROT_*` bits.
        prot: u8,
    },
    /// `mmap(page first, n pages, prot, MAP_FIXED | kind)`.
    Mmap {
        /// First page.
        first: usize,
        /// Page count.
        n: usize,
        /// What backs it.
        kind: MapKind,
        /// `PROT_*` bits.
        prot: u8,
    },
    /// `munmap(page first, n pages)`.
    Munmap {
        /// First page.
        first: usize,
        /// Page count.
        n: usize,
    },
    /// `mremap(page src, n pages, new_n pages, MREMAP_MAYMOVE | MREMAP_FIXED, page dst)`.
    Mremap {
        /// Source page.
        src: usize,
        /// Source page count.
        n: usize,
        /// Destination page.
        dst: usize,
        /// New page count.
        new_n: usize,
    },
    /// `madvise(page first, n pages, MADV_DONTNEED)`.
    DontNeed {
        /// First page.
        first: usize,
        /// Page count.
        n: usize,
    },
    /// WRPKRU (key 0's bits are always cleared: the explorer's own code and data use key 0).
    Wrpkru {
        /// The value.
        value: u32,
    },
    /// A load of the page's first byte.
    Read {
        /// The page.
        page: usize,
    },
    /// A store to the page's first byte.
    Write {
        /// The page.
        page: usize,
        /// The byte stored.
        val: u8,
    },
    /// A call to the page's first byte (only when the model says it holds `ret`, or the call
    /// cannot execute it).
    Exec {
        /// The page.
        page: usize,
    },
    /// `read()` from a pipe holding `val` into the page: the kernel writes the page.
    KernelRead {
        /// The page.
        page: usize,
        /// The byte in the pipe.
        val: u8,
    },
    /// `write()` of the page's first byte into a pipe: the kernel reads the page.
    KernelWrite {
        /// The page.
        page: usize,
    },
    /// `process_vm_readv` of the page from this process into a local buffer.
    PvmRead {
        /// The page.
        page: usize,
    },
    /// `process_vm_writev` of `val` into the page of this process.
    PvmWrite {
        /// The page.
        page: usize,
        /// The byte written.
        val: u8,
    },
    /// `pread` of `/proc/self/mem` at the page.
    MemRead {
        /// The page.
        page: usize,
    },
    /// `pwrite` of `val` to `/proc/self/mem` at the page.
    MemWrite {
        /// The page.
        page: usize,
        /// The byte written.
        val: u8,
    },
    /// `raise(SIGUSR1)`; the handler reports its PKRU and the frame's saved PKRU, and replaces
    /// the saved PKRU with `edit` when given.
    Signal {
        /// The PKRU sigreturn is to restore instead of the saved one.
        edit: Option<u32>,
    },
    /// Read `/proc/self/smaps`: the permissions and `ProtectionKey` of every arena page.
    Smaps,
    /// `fork()`: the child runs `sub` and exits.
    Fork {
        /// The child's steps.
        sub: Vec<Op>,
    },
    /// A new thread runs `sub`; the creator waits for it.
    Thread {
        /// The thread's steps.
        sub: Vec<Op>,
    },
    /// `execve` of the suite itself, which reports its PKRU and the first key it allocates.
    Execve,
}

/// `PROT_*` bits as `rwx` letters (`---` for `PROT_NONE`).
pub fn prot_name(p: u8) -> String {
    let mut s = String::new();
    s.push(if p & R != 0 { 'r' } else { '-' });
    s.push(if p & W != 0 { 'w' } else { '-' });
    s.push(if p & X != 0 { 'x' } else { '-' });
    s
}

fn rights_name(r: u32) -> &'static str {
    match r & 3 {
        0 => "0",
        1 => "PKEY_DISABLE_ACCESS",
        2 => "PKEY_DISABLE_WRITE",
        _ => "PKEY_DISABLE_ACCESS|PKEY_DISABLE_WRITE",
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |first: usize, n: usize| format!("pages {first}..{}", first + n);
        match self {
            Op::Alloc { rights } => write!(f, "pkey_alloc(0, {})", rights_name(*rights)),
            Op::Free { key } => write!(f, "pkey_free({key})"),
            Op::PkeyMprotect {
                first,
                n,
                prot,
                key,
            } => write!(
                f,
                "pkey_mprotect({}, {}, {key})",
                range(*first, *n),
                prot_name(*prot)
            ),
            Op::Mprotect { first, n, prot } => {
                write!(f, "mprotect({}, {})", range(*first, *n), prot_name(*prot))
            }
            Op::Mmap {
                first,
                n,
                kind,
                prot,
            } if *kind == MapKind::Shm => write!(
                f,
                "shmat({}, SHM_REMAP|SHM_EXEC) of a new segment",
                range(*first, *n)
            ),
            Op::Mmap {
                first,
                n,
                kind,
                prot,
            } => write!(
                f,
                "mmap({}, {}, MAP_FIXED {})",
                range(*first, *n),
                prot_name(*prot),
                kind.name()
            ),
            Op::Munmap { first, n } => write!(f, "munmap({})", range(*first, *n)),
            Op::Mremap { src, n, dst, new_n } => write!(
                f,
                "mremap({} -> {}, MREMAP_MAYMOVE|MREMAP_FIXED)",
                range(*src, *n),
                range(*dst, *new_n)
            ),
            Op::DontNeed { first, n } => {
                write!(f, "madvise({}, MADV_DONTNEED)", range(*first, *n))
            }
            Op::Wrpkru { value } => write!(f, "WRPKRU {value:#010x}"),
            Op::Read { page } => write!(f, "read page {page}"),
            Op::Write { page, val } => write!(f, "write {val:#04x} to page {page}"),
            Op::Exec { page } => write!(f, "call page {page}"),
            Op::KernelRead { page, val } => {
                write!(f, "read(pipe holding {val:#04x}) into page {page}")
            }
            Op::KernelWrite { page } => write!(f, "write(pipe) from page {page}"),
            Op::PvmRead { page } => write!(f, "process_vm_readv(self) of page {page}"),
            Op::PvmWrite { page, val } => {
                write!(f, "process_vm_writev(self) of {val:#04x} to page {page}")
            }
            Op::MemRead { page } => write!(f, "pread(/proc/self/mem) of page {page}"),
            Op::MemWrite { page, val } => {
                write!(f, "pwrite(/proc/self/mem) of {val:#04x} to page {page}")
            }
            Op::Signal { edit: None } => f.write_str("raise(SIGUSR1)"),
            Op::Signal { edit: Some(v) } => {
                write!(
                    f,
                    "raise(SIGUSR1), handler sets the saved PKRU to {v:#010x}"
                )
            }
            Op::Smaps => f.write_str("read /proc/self/smaps"),
            Op::Fork { sub } => write!(f, "fork, the child runs {} step(s)", sub.len()),
            Op::Thread { sub } => write!(f, "new thread runs {} step(s)", sub.len()),
            Op::Execve => f.write_str("execve(the suite itself)"),
        }
    }
}
