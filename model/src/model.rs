//! The state user space can observe, and the rule for each operation. Each rule names its
//! source: a man page, the kernel's `Documentation/core-api/protection-keys.rst`, the kernel
//! code it follows (the x86 `pkeys.h`/`pkeys.c`, `mm/mprotect.c`, `mm/mmap.c`, `mm/mremap.c`,
//! `mm/madvise.c`, `mm/gup.c`, `arch/x86/mm/fault.c`), or a measured fact in `shared/DESIGN.md`.
//! `docs/model.md` is the same list in prose.

use crate::obs::{Observed, Outcome, SEGV_ACCERR, SEGV_MAPERR, SEGV_PKUERR, Segv, errno};
use crate::op::{FILE_PAGES, Key, MapKind, Op, PAGES, R, RET, W, X};

/// What the model needs to know about the machine it predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The kernel's `init_pkru` (what a signal handler and an exec'd program start with).
    pub init_pkru: u32,
    /// Whether the temporary file may be mapped executable (false on a `noexec` mount).
    pub file_exec: bool,
    /// Whether `/proc/PID/mem` uses FOLL_FORCE for the process itself (the kernel's default,
    /// `CONFIG_PROC_MEM_ALWAYS_FORCE`; 6.12+ can be built or booted without it).
    pub proc_mem_force: bool,
}

/// Object index of the temporary file.
pub const FILE: usize = 0;
/// Object index of the memfd.
pub const MEMFD: usize = 1;

/// What backs one mapped page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A private anonymous page holding `val` in its first byte.
    Anon {
        /// First byte.
        val: u8,
    },
    /// Page `idx` of shared object `obj` (the file, the memfd or an anonymous shared object).
    Shared {
        /// The object.
        obj: usize,
        /// Page in the object.
        idx: usize,
        /// How it was mapped.
        kind: MapKind,
    },
    /// Page `idx` of the file mapped privately: the file's byte until written (`cow`).
    FilePrivate {
        /// Page in the file.
        idx: usize,
        /// The private copy's first byte, once the page was written.
        cow: Option<u8>,
    },
}

/// One mapped arena page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// `PROT_*` bits.
    pub prot: u8,
    /// Protection key of its VMA.
    pub key: i32,
    /// Which VMA the model knows it to be in. Pages with the same id are certainly in one kernel
    /// VMA; the model never merges, so the kernel's VMAs may be larger (mremap needs only the
    /// "certainly one VMA" direction).
    pub vma: u32,
    /// What backs it.
    pub backing: Backing,
}

impl Page {
    fn shared(&self) -> bool {
        matches!(self.backing, Backing::Shared { .. })
    }
}

/// The model of one process: its allocation map, the running thread's PKRU and its arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The machine.
    pub cfg: Config,
    /// PKRU of the thread the next step runs on.
    pub pkru: u32,
    /// Allocation map: bit k set when key k is allocated (key 0 always is).
    pub allocated: u16,
    /// The execute-only key, once a plain `PROT_EXEC` mapping asked for one.
    pub exec_only: Option<i32>,
    /// The arena, page by page (`None` is a hole).
    pub pages: [Option<Page>; PAGES],
    /// First byte of every page of every shared object: the file, the memfd, then one entry per
    /// anonymous shared mapping.
    pub objects: Vec<Vec<u8>>,
    next_vma: u32,
}

const fn ad(k: i32) -> u32 {
    1 << (2 * k)
}
const fn wd(k: i32) -> u32 {
    1 << (2 * k + 1)
}

/// Clear key 0's bits: the explorer never denies key 0 (its own code, stack and data use it).
pub fn keep_key0(v: u32) -> u32 {
    v & !3
}

/// A planned step: the resolved operation, its label and what the model expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `3` or, inside a fork or thread, `3.2`.
    pub label: String,
    /// The operation with every [`Key`] resolved to a number.
    pub op: Op,
    /// What the model expects.
    pub expect: Observed,
    /// The steps of a fork's child or a thread.
    pub sub: Vec<Step>,
}

impl Step {
    /// This step and its sub-steps in the order their observations are reported: a child's or
    /// thread's steps first, then the step that waited for it.
    pub fn flatten(&self) -> Vec<&Step> {
        let mut v: Vec<&Step> = self.sub.iter().flat_map(Step::flatten).collect();
        v.push(self);
        v
    }
}

enum Access {
    Read,
    Write,
    Exec,
}

impl Model {
    /// A fresh process: key 0 allocated, PKRU = `init_pkru`, the whole arena one private
    /// anonymous read-write mapping with key 0 (what the executor starts from).
    pub fn new(cfg: Config) -> Model {
        let page = Page {
            prot: R | W,
            key: 0,
            vma: 0,
            backing: Backing::Anon { val: 0 },
        };
        Model {
            cfg,
            pkru: cfg.init_pkru,
            allocated: 1,
            exec_only: None,
            pages: [Some(page); PAGES],
            objects: vec![vec![0; FILE_PAGES], vec![0; FILE_PAGES]],
            next_vma: 1,
        }
    }

    fn fresh_vma(&mut self) -> u32 {
        self.next_vma += 1;
        self.next_vma
    }

    /// `mm_pkey_is_allocated()` (arch/x86/include/asm/pkeys.h): in range, set in the map, and not
    /// the execute-only key, which "is set in the allocation map, but is not available to any of
    /// the user interfaces".
    pub fn is_allocated(&self, k: i32) -> bool {
        (0..16).contains(&k) && self.allocated & (1 << k) != 0 && self.exec_only != Some(k)
    }

    /// `mm_pkey_alloc()`: the lowest clear bit of the allocation map (`ffz`).
    fn lowest_free(&self) -> Option<i32> {
        (1..16).find(|k| self.allocated & (1 << k) == 0)
    }

    fn user_keys(&self) -> Vec<i32> {
        (1..16).filter(|&k| self.is_allocated(k)).collect()
    }

    fn resolve(&self, k: Key) -> i32 {
        match k {
            Key::Nth(n) => {
                let keys = self.user_keys();
                if keys.is_empty() {
                    0
                } else {
                    keys[n as usize % keys.len()]
                }
            }
            Key::ExecOnly => self.exec_only.unwrap_or(0),
            Key::Unallocated => (1..16).find(|&k| !self.is_allocated(k)).unwrap_or(16),
            Key::Num(v) => v,
        }
    }

    /// `__execute_only_pkey()` (arch/x86/mm/pkeys.c): allocate the key on first use; set the
    /// calling thread's rights for it to exactly `PKEY_DISABLE_ACCESS` unless PKRU already denies
    /// reads through it. -1 when no key is free.
    fn execute_only_pkey(&mut self) -> i32 {
        let (k, new) = match self.exec_only {
            Some(k) => (k, false),
            None => match self.lowest_free() {
                Some(k) => {
                    self.allocated |= 1 << k;
                    (k, true)
                }
                None => return -1,
            },
        };
        if !new && self.pkru & ad(k) != 0 {
            return k;
        }
        self.pkru = (self.pkru & !(ad(k) | wd(k))) | ad(k);
        if new {
            self.exec_only = Some(k);
        }
        k
    }

    /// The first byte of a page as a load would see it.
    pub fn content(&self, p: &Page) -> u8 {
        match p.backing {
            Backing::Anon { val } => val,
            Backing::Shared { obj, idx, .. } => self.objects[obj][idx],
            Backing::FilePrivate { idx, cow } => cow.unwrap_or(self.objects[FILE][idx]),
        }
    }

    fn store(&mut self, page: usize, v: u8) {
        let Some(p) = self.pages[page].as_mut() else {
            return;
        };
        match &mut p.backing {
            Backing::Anon { val } => *val = v,
            Backing::Shared { obj, idx, .. } => self.objects[*obj][*idx] = v,
            Backing::FilePrivate { cow, .. } => *cow = Some(v),
        }
    }

    /// A user access (arch/x86/mm/fault.c, `access_error()` then `bad_area_access_error()`):
    /// nothing mapped is SEGV_MAPERR; otherwise the key is checked first, in software, even for
    /// a page that is not present (`arch_vma_access_permitted()`), so a denied key is
    /// SEGV_PKUERR with the VMA's key whatever the protection; then the protection (SEGV_ACCERR).
    /// Instruction fetches are never checked against PKRU. Any of PROT_READ, PROT_WRITE or
    /// PROT_EXEC makes a page readable on x86 (`vma_is_accessible()`).
    fn access(&self, page: usize, how: Access) -> Result<(), Segv> {
        let segv = |code, pkey| Segv {
            code,
            at: Some((page, 0)),
            pkey,
            handler_pkru: self.cfg.init_pkru,
            saved_pkru: self.pkru,
        };
        let Some(p) = self.pages[page] else {
            return Err(segv(SEGV_MAPERR, 0));
        };
        let k = p.key;
        match how {
            Access::Exec if p.prot & X == 0 => Err(segv(SEGV_ACCERR, 0)),
            Access::Exec => Ok(()),
            Access::Read if self.pkru & ad(k) != 0 => Err(segv(SEGV_PKUERR, k as u32)),
            Access::Read if p.prot == 0 => Err(segv(SEGV_ACCERR, 0)),
            Access::Read => Ok(()),
            Access::Write if self.pkru & (ad(k) | wd(k)) != 0 => Err(segv(SEGV_PKUERR, k as u32)),
            Access::Write if p.prot & W == 0 => Err(segv(SEGV_ACCERR, 0)),
            Access::Write => Ok(()),
        }
    }

    /// Whether the next step may run: steps the executor could not run safely, or whose result
    /// depends on what the model does not track, are left out of the sequence.
    fn runnable(&self, op: &Op) -> bool {
        let in_arena = |first: usize, n: usize| n > 0 && first + n <= PAGES;
        match op {
            Op::PkeyMprotect { first, n, prot, .. } | Op::Mprotect { first, n, prot } => {
                in_arena(*first, *n)
                    && (self.cfg.file_exec || !self.touches_file_exec(*first, *n, *prot))
            }
            Op::Mmap {
                first,
                n,
                kind,
                prot,
            } => {
                in_arena(*first, *n)
                    && (self.cfg.file_exec || !(kind.file_backed() && prot & X != 0))
            }
            Op::Munmap { first, n } | Op::DontNeed { first, n } => in_arena(*first, *n),
            Op::Mremap { src, n, dst, new_n } => {
                if !in_arena(*src, *n) || !in_arena(*dst, *new_n) {
                    return false;
                }
                // Only a source the model knows is one VMA: the kernel refuses (EFAULT) a
                // source across VMA boundaries, and the model does not track merges.
                let Some(first) = self.pages[*src] else {
                    return false;
                };
                let one_vma =
                    (*src..src + n).all(|i| self.pages[i].is_some_and(|p| p.vma == first.vma));
                // Growing an anonymous shared object past its size would SIGBUS: not generated.
                let grows_shm = new_n > n
                    && matches!(
                        first.backing,
                        Backing::Shared {
                            kind: MapKind::AnonShared | MapKind::Shm,
                            ..
                        }
                    );
                one_vma && !grows_shm
            }
            Op::Exec { page } => match self.pages.get(*page) {
                None => false,
                // Calling a page that can execute is safe only when it holds `ret`.
                Some(Some(p)) => p.prot & X == 0 || self.content(p) == RET,
                Some(None) => true,
            },
            Op::Read { page }
            | Op::Write { page, .. }
            | Op::KernelRead { page, .. }
            | Op::KernelWrite { page }
            | Op::PvmRead { page }
            | Op::PvmWrite { page, .. }
            | Op::MemRead { page }
            | Op::MemWrite { page, .. } => *page < PAGES,
            Op::Fork { sub } | Op::Thread { sub } => sub
                .iter()
                .all(|o| !matches!(o, Op::Fork { .. } | Op::Thread { .. } | Op::Execve)),
            _ => true,
        }
    }

    fn touches_file_exec(&self, first: usize, n: usize, prot: u8) -> bool {
        prot & X != 0
            && self.pages[first..first + n]
                .iter()
                .flatten()
                .any(|p| match p.backing {
                    Backing::FilePrivate { .. } => true,
                    Backing::Shared { obj, .. } => obj == FILE,
                    Backing::Anon { .. } => false,
                })
    }

    /// `do_mprotect_pkey()` (mm/mprotect.c): an unallocated key is EINVAL before anything
    /// changes; a range that starts in a hole is ENOMEM; otherwise VMAs are changed in address
    /// order up to the first hole, which ends the call with ENOMEM and leaves the earlier changes
    /// in place. The key of each VMA: the caller's, or for `mprotect` (`pkey` -1)
    /// `arch_override_mprotect_pkey()`: plain PROT_EXEC takes the execute-only key (if one can be
    /// had), leaving PROT_EXEC-only on the execute-only key goes back to key 0 (the 4.17 fix),
    /// anything else keeps the VMA's key.
    fn mprotect(&mut self, first: usize, n: usize, prot: u8, pkey: i32) -> Result<i64, i32> {
        if pkey != -1 && !self.is_allocated(pkey) {
            return Err(errno::EINVAL);
        }
        let mut renamed: Vec<(u32, u32)> = Vec::new();
        for i in first..first + n {
            let Some(p) = self.pages[i] else {
                return Err(errno::ENOMEM);
            };
            let key = if pkey != -1 {
                pkey
            } else if prot == X {
                let e = self.execute_only_pkey();
                if e > 0 { e } else { p.key }
            } else if p.prot == X && Some(p.key) == self.exec_only {
                0
            } else {
                p.key
            };
            if key != p.key || prot != p.prot {
                let vma = match renamed.iter().find(|(old, _)| *old == p.vma) {
                    Some((_, new)) => *new,
                    None => {
                        let new = self.fresh_vma();
                        renamed.push((p.vma, new));
                        new
                    }
                };
                self.pages[i] = Some(Page {
                    prot,
                    key,
                    vma,
                    ..p
                });
            }
        }
        Ok(0)
    }

    /// `do_mmap()` (mm/mmap.c) with MAP_FIXED: whatever was in the range is unmapped; the new
    /// VMA has key 0, except a plain PROT_EXEC mapping, which takes the execute-only key
    /// (`execute_only_pkey()`, 0 when none can be had).
    fn mmap(&mut self, first: usize, n: usize, kind: MapKind, prot: u8) -> Result<i64, i32> {
        // shmat(2) maps the segment with PROT_READ, plus PROT_WRITE without SHM_RDONLY and
        // PROT_EXEC with SHM_EXEC (`do_shmat()`): the explorer attaches read-write-execute.
        let prot = if kind == MapKind::Shm {
            R | W | X
        } else {
            prot
        };
        let key = if prot == X {
            self.execute_only_pkey().max(0)
        } else {
            0
        };
        let vma = self.fresh_vma();
        let obj = if matches!(kind, MapKind::AnonShared | MapKind::Shm) {
            self.objects.push(vec![0; n]);
            self.objects.len() - 1
        } else {
            0
        };
        for i in 0..n {
            let backing = match kind {
                MapKind::AnonPrivate => Backing::Anon { val: 0 },
                MapKind::AnonShared | MapKind::Shm => Backing::Shared { obj, idx: i, kind },
                MapKind::FilePrivate => Backing::FilePrivate {
                    idx: first + i,
                    cow: None,
                },
                MapKind::FileShared => Backing::Shared {
                    obj: FILE,
                    idx: first + i,
                    kind,
                },
                MapKind::MemfdShared => Backing::Shared {
                    obj: MEMFD,
                    idx: first + i,
                    kind,
                },
            };
            self.pages[first + i] = Some(Page {
                prot,
                key,
                vma,
                backing,
            });
        }
        Ok(0)
    }

    /// mremap(2) with MREMAP_MAYMOVE | MREMAP_FIXED (`mremap_to()`, mm/mremap.c): overlapping
    /// ranges are EINVAL; the destination is unmapped; the source's pages move with their
    /// protection, key and contents; growing adds pages of the same VMA (zero-filled anonymous
    /// memory, or the next pages of the file); shrinking unmaps the rest of the source.
    fn mremap(&mut self, src: usize, n: usize, dst: usize, new_n: usize) -> Result<i64, i32> {
        if src + n > dst && dst + new_n > src {
            return Err(errno::EINVAL);
        }
        let moved: Vec<Page> = (src..src + n).filter_map(|i| self.pages[i]).collect();
        for i in src..src + n {
            self.pages[i] = None;
        }
        for i in dst..dst + new_n {
            self.pages[i] = None;
        }
        let vma = self.fresh_vma();
        let base = moved[0];
        for i in 0..new_n {
            let page = if let Some(m) = moved.get(i) {
                Page { vma, ..*m }
            } else {
                let backing = match base.backing {
                    Backing::Anon { .. } => Backing::Anon { val: 0 },
                    Backing::Shared { obj, idx, kind } => Backing::Shared {
                        obj,
                        idx: idx + i,
                        kind,
                    },
                    Backing::FilePrivate { idx, .. } => Backing::FilePrivate {
                        idx: idx + i,
                        cow: None,
                    },
                };
                Page {
                    backing,
                    vma,
                    ..base
                }
            };
            self.pages[dst + i] = Some(page);
        }
        Ok(0)
    }

    /// madvise(2) MADV_DONTNEED: private pages are dropped (anonymous ones read back as zero, a
    /// private file page as the file's again), shared pages keep their contents; protection keys
    /// are not checked. A hole anywhere in the range makes it ENOMEM, after every mapped part was
    /// advised (`madvise_walk_vmas()`).
    fn dontneed(&mut self, first: usize, n: usize) -> Result<i64, i32> {
        let mut hole = false;
        for i in first..first + n {
            match self.pages[i].as_mut() {
                None => hole = true,
                Some(p) => match &mut p.backing {
                    Backing::Anon { val } => *val = 0,
                    Backing::FilePrivate { cow, .. } => *cow = None,
                    Backing::Shared { .. } => {}
                },
            }
        }
        if hole { Err(errno::ENOMEM) } else { Ok(0) }
    }

    /// The kernel writing the page on the thread's behalf (`copy_to_user`): a user access under
    /// the thread's PKRU that fails with EFAULT and raises no signal (DESIGN.md: the kernel doc's
    /// SIGSEGV is wrong); a refused `read()` from a pipe consumes nothing.
    fn kernel_write_ok(&self, page: usize) -> bool {
        self.access(page, Access::Write).is_ok()
    }

    /// The kernel reading the page on the thread's behalf (`copy_from_user`).
    fn kernel_read_ok(&self, page: usize) -> bool {
        self.access(page, Access::Read).is_ok()
    }

    /// Access through get_user_pages with FOLL_REMOTE (process_vm_*, /proc/PID/mem) is
    /// "foreign" for `arch_vma_access_permitted()` and ignores PKRU (DESIGN.md). `check_vma_flags()`
    /// (mm/gup.c) then needs VM_READ to read and VM_WRITE to write; with FOLL_FORCE
    /// (/proc/PID/mem) any VMA may be read, and a VMA without VM_WRITE may be written only when it
    /// is a private (copy-on-write) mapping. A kernel whose /proc/PID/mem does not force
    /// ([`Config::proc_mem_force`] false) checks it as process_vm_* does.
    fn remote_ok(&self, page: usize, write: bool, force: bool) -> bool {
        let force = force && self.cfg.proc_mem_force;
        let Some(p) = self.pages[page] else {
            return false;
        };
        match (write, force) {
            (false, false) => p.prot & R != 0,
            (false, true) => true,
            (true, false) => p.prot & W != 0,
            (true, true) => p.prot & W != 0 || !p.shared(),
        }
    }

    /// Apply one operation (already resolved) and return what it should look like.
    fn apply(&mut self, op: &Op) -> Outcome {
        let fault_or = |r: Result<(), Segv>, ok: Outcome| match r {
            Ok(()) => ok,
            Err(s) => Outcome::Fault(s),
        };
        match op {
            // pkey_alloc(2): the lowest free key; the calling thread's rights for it are set to
            // `rights` (`arch_set_user_pkey_access()`), other threads' are not touched.
            Op::Alloc { rights } => Outcome::Ret(match self.lowest_free() {
                Some(k) => {
                    self.allocated |= 1 << k;
                    self.pkru = (self.pkru & !(ad(k) | wd(k))) | (rights << (2 * k));
                    Ok(k.into())
                }
                None => Err(errno::ENOSPC),
            }),
            // pkey_free(2): EINVAL unless allocated (the execute-only key never is, to the
            // user); PKRU is not touched; pages keep the number (use after free is the caller's
            // problem, protection-keys.rst).
            Op::Free { key: Key::Num(k) } => Outcome::Ret(if self.is_allocated(*k) {
                self.allocated &= !(1 << k);
                Ok(0)
            } else {
                Err(errno::EINVAL)
            }),
            Op::PkeyMprotect {
                first,
                n,
                prot,
                key: Key::Num(k),
            } => Outcome::Ret(self.mprotect(*first, *n, *prot, *k)),
            Op::Mprotect { first, n, prot } => Outcome::Ret(self.mprotect(*first, *n, *prot, -1)),
            Op::Mmap {
                first,
                n,
                kind,
                prot,
            } => Outcome::Ret(self.mmap(*first, *n, *kind, *prot)),
            Op::Munmap { first, n } => {
                for i in *first..first + n {
                    self.pages[i] = None;
                }
                Outcome::Ret(Ok(0))
            }
            Op::Mremap { src, n, dst, new_n } => Outcome::Ret(self.mremap(*src, *n, *dst, *new_n)),
            Op::DontNeed { first, n } => Outcome::Ret(self.dontneed(*first, *n)),
            Op::Wrpkru { value } => {
                self.pkru = keep_key0(*value);
                Outcome::Done
            }
            Op::Read { page } => match self.access(*page, Access::Read) {
                Ok(()) => Outcome::Loaded(self.content(&self.pages[*page].unwrap())),
                Err(s) => Outcome::Fault(s),
            },
            Op::Write { page, val } => {
                let r = self.access(*page, Access::Write);
                if r.is_ok() {
                    self.store(*page, *val);
                }
                fault_or(r, Outcome::Done)
            }
            Op::Exec { page } => fault_or(self.access(*page, Access::Exec), Outcome::Done),
            Op::KernelRead { page, val } => {
                if self.kernel_write_ok(*page) {
                    self.store(*page, *val);
                    Outcome::Copy {
                        ret: Ok(1),
                        byte: None,
                    }
                } else {
                    Outcome::Copy {
                        ret: Err(errno::EFAULT),
                        byte: Some(*val),
                    }
                }
            }
            Op::KernelWrite { page } => {
                if self.kernel_read_ok(*page) {
                    let b = self.content(&self.pages[*page].unwrap());
                    Outcome::Copy {
                        ret: Ok(1),
                        byte: Some(b),
                    }
                } else {
                    Outcome::Copy {
                        ret: Err(errno::EFAULT),
                        byte: None,
                    }
                }
            }
            Op::PvmRead { page } | Op::MemRead { page } => {
                let force = matches!(op, Op::MemRead { .. });
                if self.remote_ok(*page, false, force) {
                    let b = self.content(&self.pages[*page].unwrap());
                    Outcome::Copy {
                        ret: Ok(1),
                        byte: Some(b),
                    }
                } else {
                    // /proc/PID/mem turns "nothing copied" into EIO (`mem_rw()`).
                    let e = if force { errno::EIO } else { errno::EFAULT };
                    Outcome::Copy {
                        ret: Err(e),
                        byte: None,
                    }
                }
            }
            Op::PvmWrite { page, val } | Op::MemWrite { page, val } => {
                let force = matches!(op, Op::MemWrite { .. });
                if self.remote_ok(*page, true, force) {
                    self.store(*page, *val);
                    Outcome::Copy {
                        ret: Ok(1),
                        byte: None,
                    }
                } else {
                    let e = if force { errno::EIO } else { errno::EFAULT };
                    Outcome::Copy {
                        ret: Err(e),
                        byte: None,
                    }
                }
            }
            // DESIGN.md: a handler starts with `init_pkru`; the frame saves the interrupted
            // PKRU; sigreturn restores the saved value, edited or not.
            Op::Signal { edit } => {
                let saved = self.pkru;
                if let Some(v) = edit {
                    self.pkru = keep_key0(*v);
                }
                Outcome::Handler {
                    handler_pkru: self.cfg.init_pkru,
                    saved_pkru: saved,
                }
            }
            Op::Smaps => Outcome::Smaps(self.smaps()),
            // execve(2) builds a new mm: PKRU = init_pkru, only key 0 allocated.
            Op::Execve => Outcome::Exec {
                pkru: self.cfg.init_pkru,
                first_key: 1,
            },
            Op::Fork { .. } | Op::Thread { .. } => Outcome::Ended(0),
            Op::Free { .. } | Op::PkeyMprotect { .. } => unreachable!("unresolved key in {op}"),
        }
    }

    /// `/proc/self/smaps` of the arena as the model sees it: per page `-` for a hole, else the
    /// permissions column (`rwxp`/`rwxs`) and `k` with the `ProtectionKey:` value (proc(5)).
    pub fn smaps(&self) -> String {
        let words: Vec<String> = self
            .pages
            .iter()
            .map(|p| match p {
                None => "-".into(),
                Some(p) => format!(
                    "{}{}k{}",
                    crate::op::prot_name(p.prot),
                    if p.shared() { 's' } else { 'p' },
                    p.key
                ),
            })
            .collect();
        words.join(" ")
    }

    fn resolved(&self, op: &Op) -> Op {
        match op {
            Op::Free { key } => Op::Free {
                key: Key::Num(self.resolve(*key)),
            },
            Op::PkeyMprotect {
                first,
                n,
                prot,
                key,
            } => Op::PkeyMprotect {
                first: *first,
                n: *n,
                prot: *prot,
                key: Key::Num(self.resolve(*key)),
            },
            Op::Wrpkru { value } => Op::Wrpkru {
                value: keep_key0(*value),
            },
            Op::Signal { edit } => Op::Signal {
                edit: edit.map(keep_key0),
            },
            other => other.clone(),
        }
    }

    /// Plan a sequence: resolve each operation against the state so far, drop those that may
    /// not run ([`Model::runnable`]), and predict each observation. Key 0 is never freed (a
    /// free key 0 could be handed out and then denied, killing the explorer's own code).
    pub fn plan(&mut self, ops: &[Op]) -> Vec<Step> {
        self.plan_labelled(ops, "")
    }

    fn plan_labelled(&mut self, ops: &[Op], prefix: &str) -> Vec<Step> {
        let mut steps = Vec::new();
        for op in ops {
            let op = self.resolved(op);
            if !self.runnable(&op) || matches!(op, Op::Free { key: Key::Num(0) }) {
                continue;
            }
            let label = format!("{prefix}{}", steps.len() + 1);
            let sub = match &op {
                Op::Fork { sub } => {
                    let mut child = self.clone();
                    let steps = child.plan_labelled(sub, &format!("{label}."));
                    // The child's writes through shared mappings are the parent's too.
                    let n = self.objects.len();
                    self.objects[..n].clone_from_slice(&child.objects[..n]);
                    steps
                }
                Op::Thread { sub } => {
                    // clone(2) copies the creator's PKRU; the mm is shared.
                    let own = self.pkru;
                    let steps = self.plan_labelled(sub, &format!("{label}."));
                    self.pkru = own;
                    steps
                }
                _ => Vec::new(),
            };
            let op = match (op, &sub) {
                (Op::Fork { .. }, s) => Op::Fork {
                    sub: s.iter().map(|s| s.op.clone()).collect(),
                },
                (Op::Thread { .. }, s) => Op::Thread {
                    sub: s.iter().map(|s| s.op.clone()).collect(),
                },
                (op, _) => op,
            };
            let outcome = self.apply(&op);
            steps.push(Step {
                label,
                op,
                expect: Observed {
                    outcome,
                    pkru: self.pkru,
                },
                sub,
            });
        }
        steps
    }
}
