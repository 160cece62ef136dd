//! The explorer's arena: a window of adjacent pages that an [`Arena`] owns, and every operation
//! the explorer runs on it, each safe by contract because it can only name pages of the window.
//!
//! Accesses are probes that survive their fault: a load, store or call that faults is recorded
//! (`si_code`, `si_addr`, `si_pkey`, the handler's PKRU, the frame's saved PKRU) and resumed at
//! the probe's return, as the kernel's exception tables do for `copy_from_user`. So one
//! sequence can take any number of faults of any kind, and each is one observation.
//!
//! # References
//! mmap(2), mprotect(2), pkey_mprotect(2), mremap(2), madvise(2), munmap(2), read(2), write(2),
//! process_vm_readv(2), proc(5) (`/proc/PID/mem`, `/proc/PID/smaps`), sigaction(2).

use crate::mem::UserBuf;
use crate::sys::Errno;
use crate::{fault, maps, pkru, sys};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

std::arch::global_asm!(
    ".pushsection .text.pkeys_arena_probes,\"ax\",@progbits",
    ".globl pkeys_arena_load",
    "pkeys_arena_load:",
    "movzx eax, byte ptr [rdi]",
    "ret",
    ".globl pkeys_arena_store",
    "pkeys_arena_store:",
    "mov byte ptr [rdi], sil",
    "ret",
    ".popsection",
);

unsafe extern "C" {
    fn pkeys_arena_load(addr: usize) -> u32;
    fn pkeys_arena_store(addr: usize, val: u8);
}

/// What backs a mapping made by [`Arena::mmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous memory.
    Anon,
    /// The arena's temporary file, at the offset of the page mapped.
    File,
    /// The arena's memfd, at the offset of the page mapped.
    Memfd,
}

/// A fault taken by a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFault {
    /// `si_code`.
    pub code: i32,
    /// `si_addr`.
    pub addr: usize,
    /// `si_pkey`.
    pub pkey: u32,
    /// RDPKRU inside the handler.
    pub handler_pkru: u32,
    /// PKRU saved in the frame; 0 when XSTATE_BV says PKRU was in its init state.
    pub saved_pkru: u32,
}

/// What the SIGUSR1 handler of [`Arena::signal`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerSeen {
    /// RDPKRU inside the handler.
    pub handler_pkru: u32,
    /// PKRU saved in the frame (0 for the init state).
    pub saved_pkru: u32,
}

/// Where the window is placed (64 GiB).
pub const WINDOW_AT: usize = 0x10_0000_0000;

static PROBING: AtomicBool = AtomicBool::new(false);
static WINDOW: AtomicUsize = AtomicUsize::new(0);
static WINDOW_LEN: AtomicUsize = AtomicUsize::new(0);
static FAULTED: AtomicBool = AtomicBool::new(false);
static F_CODE: AtomicI32 = AtomicI32::new(0);
static F_ADDR: AtomicUsize = AtomicUsize::new(0);
static F_PKEY: AtomicU32 = AtomicU32::new(0);
static F_IN: AtomicU32 = AtomicU32::new(0);
static F_SAVED: AtomicU32 = AtomicU32::new(0);
static EDIT: AtomicBool = AtomicBool::new(false);
static EDIT_TO: AtomicU32 = AtomicU32::new(0);

/// The saved PKRU as sigreturn will load it: the value when XSTATE_BV bit 9 is set, else 0.
fn saved_value(saved: Option<u32>, bv: u64) -> u32 {
    match saved {
        Some(v) if bv & fault::XSTATE_PKRU != 0 => v,
        _ => 0,
    }
}

extern "C" fn on_probe_fault(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr, pkey) = unsafe { fault::siginfo_fields(info) };
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: ctx is this handler's ucontext; gregs is plain data in it.
    let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
    let rip = gregs[libc::REG_RIP as usize] as usize;
    let (base, len) = (
        WINDOW.load(Ordering::SeqCst),
        WINDOW_LEN.load(Ordering::SeqCst),
    );
    let in_window = (base..base + len).contains(&addr);
    let probe = rip == pkeys_arena_load as *const () as usize
        || rip == pkeys_arena_store as *const () as usize
        || rip == addr;
    if !(PROBING.load(Ordering::SeqCst) && in_window && probe) {
        fault::die_from_handler(sig, code, addr, pkey);
        return;
    }
    let handler_pkru = fault::pkru_if_enabled();
    // SAFETY: ctx is this handler's ucontext.
    let (_, saved, bv) = unsafe { fault::frame_pkru(ctx) };
    F_CODE.store(code, Ordering::SeqCst);
    F_ADDR.store(addr, Ordering::SeqCst);
    F_PKEY.store(pkey, Ordering::SeqCst);
    F_IN.store(handler_pkru, Ordering::SeqCst);
    F_SAVED.store(saved_value(saved, bv), Ordering::SeqCst);
    FAULTED.store(true, Ordering::SeqCst);
    // Resume as if the probe had returned: every probe is entered by a `call` whose return
    // address is on top of the stack (the load and store routines fault on their first
    // instruction; a call into the arena faults fetching the target).
    let rsp = gregs[libc::REG_RSP as usize] as usize;
    // SAFETY: rsp points at the return address the probe's call pushed, on this thread's stack.
    let ret = unsafe { (rsp as *const u64).read() };
    gregs[libc::REG_RIP as usize] = ret as i64;
    gregs[libc::REG_RSP as usize] = (rsp + 8) as i64;
    gregs[libc::REG_RAX as usize] = 0;
}

extern "C" fn on_usr1(_sig: i32, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let handler_pkru = fault::pkru_if_enabled();
    // SAFETY: ctx is this handler's ucontext.
    let (fp, saved, bv) = unsafe { fault::frame_pkru(ctx) };
    F_IN.store(handler_pkru, Ordering::SeqCst);
    F_SAVED.store(saved_value(saved, bv), Ordering::SeqCst);
    if EDIT.load(Ordering::SeqCst) && saved.is_some() {
        let off = crate::cpu::probe().xsave_pkru_offset as usize;
        // SAFETY: fp is the frame's XSAVE area, which holds the PKRU component at `off` (its
        // presence was checked by frame_pkru); setting XSTATE_BV bit 9 makes XRSTOR load it.
        unsafe {
            fp.add(off)
                .cast::<u32>()
                .write_unaligned(EDIT_TO.load(Ordering::SeqCst));
            let bvp = fp.add(fault::XSTATE_BV_OFFSET).cast::<u64>();
            bvp.write_unaligned(bvp.read_unaligned() | fault::XSTATE_PKRU);
        }
    }
}

/// A window of `pages` adjacent pages, first mapped private, anonymous and read-write with key
/// 0, plus a temporary file and (optionally) a memfd of `file_pages` pages each to map from.
/// While it lives, SIGSEGV goes to the probe handler (any fault that is not a probe's is still
/// reported as a crash) and SIGUSR1 to the handler of [`Arena::signal`].
#[derive(Debug)]
pub struct Arena {
    base: usize,
    pages: usize,
    page: usize,
    file: i32,
    memfd: Option<i32>,
    thp: bool,
}

fn check(r: libc::c_int) -> Result<(), Errno> {
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

impl Arena {
    /// Map the window and create the files (`memfd` false on a kernel without memfd_create).
    pub fn new(pages: usize, file_pages: usize, memfd: bool) -> Result<Arena, String> {
        Self::create(pages, file_pages, memfd, false)
    }

    /// The same with 2 MiB "pages": every range is whole PMDs, and every private anonymous
    /// mapping (the window's first one included) is advised MADV_HUGEPAGE, so its first touch can
    /// map a transparent huge page and protection changes act on huge PMDs.
    pub fn new_huge(pages: usize, file_pages: usize, memfd: bool) -> Result<Arena, String> {
        Self::create(pages, file_pages, memfd, true)
    }

    fn create(pages: usize, file_pages: usize, memfd: bool, thp: bool) -> Result<Arena, String> {
        let page = if thp {
            crate::mem::HUGE
        } else {
            sys::page_size()
        };
        let len = pages * page;
        // The window sits far below where the kernel places mappings nobody asked a place for
        // (top-down from below the stack), so a hole the explorer punches in it is never
        // filled by someone else's mmap (a new thread's stack or signal stack, say).
        let want = WINDOW_AT;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; nothing refers to it.
        let p = unsafe {
            libc::mmap(
                want as *mut _,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap of the arena at {want:#x}: {}", Errno::last()));
        }
        if p as usize != want {
            // A kernel older than 4.17 takes MAP_FIXED_NOREPLACE as a hint.
            // SAFETY: unmapping the mapping just made.
            unsafe { libc::munmap(p, len) };
            return Err(format!(
                "the arena could not be placed at {want:#x} (got {p:?})"
            ));
        }
        let file = crate::mem::temp_fd(file_pages * page)?;
        let memfd = if memfd {
            Some(crate::mem::memfd(file_pages * page)?)
        } else {
            None
        };
        if thp {
            // SAFETY: the window mapped just above, owned by the arena being made.
            unsafe { sys::madvise(p as usize, len, libc::MADV_HUGEPAGE) }
                .map_err(|e| format!("madvise(MADV_HUGEPAGE) of the arena: {e}"))?;
        }
        fault::init_layout();
        WINDOW.store(p as usize, Ordering::SeqCst);
        WINDOW_LEN.store(len, Ordering::SeqCst);
        fault::install(libc::SIGSEGV, on_probe_fault, libc::SA_ONSTACK);
        fault::install(libc::SIGUSR1, on_usr1, 0);
        Ok(Arena {
            base: p as usize,
            pages,
            page,
            file,
            memfd,
            thp,
        })
    }

    /// Address of the window.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.page
    }

    /// The arena page of `addr` and the offset in it, if `addr` is in the window.
    pub fn page_of(&self, addr: usize) -> Option<(usize, usize)> {
        (addr >= self.base && addr < self.base + self.pages * self.page).then(|| {
            (
                (addr - self.base) / self.page,
                (addr - self.base) % self.page,
            )
        })
    }

    fn range(&self, first: usize, n: usize) -> (usize, usize) {
        assert!(
            n > 0 && first + n <= self.pages,
            "pages {first}..{} outside the arena of {}",
            first + n,
            self.pages
        );
        (self.base + first * self.page, n * self.page)
    }

    fn at(&self, page: usize) -> usize {
        self.range(page, 1).0
    }

    /// `mmap(MAP_FIXED)` of `n` pages at page `first`: `shared` picks MAP_SHARED; a file or
    /// memfd is mapped at the offset of page `first`.
    pub fn mmap(
        &self,
        first: usize,
        n: usize,
        backing: Backing,
        shared: bool,
        prot: i32,
    ) -> Result<(), Errno> {
        let (addr, len) = self.range(first, n);
        let mut flags = libc::MAP_FIXED
            | if shared {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            };
        let fd = match backing {
            Backing::Anon => {
                flags |= libc::MAP_ANONYMOUS;
                -1
            }
            Backing::File => self.file,
            Backing::Memfd => self.memfd.ok_or(Errno::ENOSYS)?,
        };
        let off = if fd < 0 {
            0
        } else {
            (first * self.page) as i64
        };
        // SAFETY: MAP_FIXED inside the window this arena owns; nothing outside it changes and no
        // Rust reference points into it.
        let p = unsafe { libc::mmap(addr as *mut _, len, prot, flags, fd, off) };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        if self.thp && backing == Backing::Anon && !shared {
            // Advice only: the mapping exists whatever the answer.
            // SAFETY: pages of the window this arena owns; advice only.
            let _ = unsafe { sys::madvise(addr, len, libc::MADV_HUGEPAGE) };
        }
        Ok(())
    }

    /// Attach a new SysV shared memory segment of `n` pages at page `first` with
    /// `shmat(SHM_REMAP | SHM_EXEC)` (read-write-execute, replacing what was there); the segment
    /// is marked for removal at once, so it goes with its last detach.
    pub fn shm_attach(&self, first: usize, n: usize) -> Result<(), Errno> {
        crate::features::touch(crate::features::Feature::SysvShm);
        let (addr, len) = self.range(first, n);
        // SAFETY: shmget creates a private segment; shmat with SHM_REMAP replaces pages of the
        // window this arena owns only; IPC_RMID marks the segment for removal.
        unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o700);
            if id < 0 {
                return Err(Errno::last());
            }
            let p = libc::shmat(id, addr as *const _, libc::SHM_REMAP | libc::SHM_EXEC);
            let e = Errno::last();
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            if p as isize == -1 {
                return Err(e);
            }
        }
        Ok(())
    }

    /// `munmap` of pages of the window.
    pub fn munmap(&self, first: usize, n: usize) -> Result<(), Errno> {
        let (addr, len) = self.range(first, n);
        // SAFETY: unmaps pages of the window this arena owns (the window stays reserved for it).
        check(unsafe { libc::munmap(addr as *mut _, len) })
    }

    /// `pkey_mprotect` of pages of the window (`key` -1 is `mprotect`).
    pub fn pkey_mprotect(&self, first: usize, n: usize, prot: i32, key: i32) -> Result<(), Errno> {
        let (addr, len) = self.range(first, n);
        // SAFETY: pages of the window this arena owns; no Rust reference points into it.
        unsafe { sys::pkey_mprotect(addr, len, prot, key) }
    }

    /// `mprotect` of pages of the window.
    pub fn mprotect(&self, first: usize, n: usize, prot: i32) -> Result<(), Errno> {
        let (addr, len) = self.range(first, n);
        // SAFETY: as in `pkey_mprotect`.
        unsafe { sys::mprotect(addr, len, prot) }
    }

    /// `mremap(MREMAP_MAYMOVE | MREMAP_FIXED)` from pages of the window to pages of the window.
    pub fn mremap(&self, src: usize, n: usize, dst: usize, new_n: usize) -> Result<(), Errno> {
        let (from, old_len) = self.range(src, n);
        let (to, new_len) = self.range(dst, new_n);
        // SAFETY: both ranges lie in the window this arena owns.
        let p = unsafe {
            libc::mremap(
                from as *mut _,
                old_len,
                new_len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                to as *mut libc::c_void,
            )
        };
        if p == libc::MAP_FAILED {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }

    /// `madvise(MADV_DONTNEED)` of pages of the window.
    pub fn dontneed(&self, first: usize, n: usize) -> Result<(), Errno> {
        let (addr, len) = self.range(first, n);
        // SAFETY: pages of the window this arena owns, which holds no Rust-visible data.
        unsafe { sys::madvise(addr, len, libc::MADV_DONTNEED) }
    }

    fn probe<T>(f: impl FnOnce() -> T) -> Result<T, ProbeFault> {
        FAULTED.store(false, Ordering::SeqCst);
        PROBING.store(true, Ordering::SeqCst);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        let v = f();
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        PROBING.store(false, Ordering::SeqCst);
        if FAULTED.load(Ordering::SeqCst) {
            Err(ProbeFault {
                code: F_CODE.load(Ordering::SeqCst),
                addr: F_ADDR.load(Ordering::SeqCst),
                pkey: F_PKEY.load(Ordering::SeqCst),
                handler_pkru: F_IN.load(Ordering::SeqCst),
                saved_pkru: F_SAVED.load(Ordering::SeqCst),
            })
        } else {
            Ok(v)
        }
    }

    /// Load the first byte of a page.
    pub fn load(&self, page: usize) -> Result<u8, ProbeFault> {
        let a = self.at(page);
        // SAFETY: the load routine reads one byte at an address of the window; if the access
        // faults, the probe handler resumes at its return with the fault recorded.
        Self::probe(|| unsafe { pkeys_arena_load(a) } as u8)
    }

    /// Store a byte at the start of a page.
    pub fn store(&self, page: usize, val: u8) -> Result<(), ProbeFault> {
        let a = self.at(page);
        // SAFETY: as in `load`; the window holds no Rust-visible data.
        Self::probe(|| unsafe { pkeys_arena_store(a, val) })
    }

    /// Call the start of a page. Refused (`None`) when the page is executable (`/proc/self/maps`)
    /// and its first byte is not `ret` (0xC3): such a call could run anything. The byte is
    /// loaded with every key allowed (an execute-only page is readable to the CPU then), and
    /// PKRU is put back before the call. A page that is unmapped or not executable faults on the
    /// fetch.
    pub fn call(&self, page: usize) -> Option<Result<(), ProbeFault>> {
        let a = self.at(page);
        if executable(a) {
            let keys = fault::HAS_PKRU.load(Ordering::Relaxed);
            let before = fault::pkru_if_enabled();
            if keys {
                pkru::wrpkru_raw(0);
            }
            // SAFETY: as in `load`.
            let first = Self::probe(|| unsafe { pkeys_arena_load(a) } as u8);
            if keys {
                pkru::wrpkru_raw(before);
            }
            if first != Ok(0xc3) {
                return None;
            }
        }
        // SAFETY: the target is either unmapped, not executable (the fetch faults and the probe
        // handler returns to the caller) or holds a single `ret`.
        Some(Self::probe(|| unsafe {
            let f: extern "C" fn() = std::mem::transmute(a);
            f()
        }))
    }

    /// `read()` into the page from a pipe holding `val`: the call's result and what the pipe
    /// still holds afterwards.
    pub fn kernel_read_into(&self, page: usize, val: u8) -> (Result<usize, Errno>, Option<u8>) {
        let a = self.at(page);
        let Ok((rd, wr)) = pipe() else {
            return (Err(Errno::last()), None);
        };
        let _ = sys::write_from(wr, &val, 1);
        // SAFETY: a page of the window this arena owns, which holds no Rust-visible data.
        let r = sys::read_into(rd, unsafe { UserBuf::from_raw(a, 1) });
        let left = drain_one(rd);
        sys::close(rd);
        sys::close(wr);
        (r, left)
    }

    /// `write()` of the page's first byte into a pipe: the result and the byte the pipe got.
    pub fn kernel_write_from(&self, page: usize) -> (Result<usize, Errno>, Option<u8>) {
        let a = self.at(page);
        let Ok((rd, wr)) = pipe() else {
            return (Err(Errno::last()), None);
        };
        let r = sys::write_from(wr, a as *const u8, 1);
        let got = drain_one(rd);
        sys::close(rd);
        sys::close(wr);
        (r, got)
    }

    /// `process_vm_readv` of the page's first byte from this very process.
    pub fn pvm_read(&self, page: usize) -> (Result<usize, Errno>, Option<u8>) {
        let mut b = 0u8;
        let local = [UserBuf::from(std::slice::from_mut(&mut b))];
        let r = sys::process_vm_readv(sys::getpid(), &local, &[(self.at(page), 1)]);
        let byte = r.is_ok().then_some(b);
        (r, byte)
    }

    /// `process_vm_writev` of `val` into the page of this very process.
    pub fn pvm_write(&self, page: usize, val: u8) -> Result<usize, Errno> {
        let local = [(&val as *const u8 as usize, 1)];
        // SAFETY: as in `kernel_read_into`.
        let remote = [unsafe { UserBuf::from_raw(self.at(page), 1) }];
        sys::process_vm_writev(sys::getpid(), &local, &remote)
    }

    fn proc_mem() -> Result<i32, Errno> {
        use nix::fcntl::{OFlag, open};
        use std::os::fd::IntoRawFd;
        // Opened per access: the file is bound to the mm of the process that opens it, and a
        // forked child must reach its own.
        open(
            c"/proc/self/mem",
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(IntoRawFd::into_raw_fd)
    }

    /// `pread` of `/proc/self/mem` at the page: the result and the byte read.
    pub fn mem_read(&self, page: usize) -> (Result<usize, Errno>, Option<u8>) {
        let fd = match Self::proc_mem() {
            Ok(fd) => fd,
            Err(e) => return (Err(e), None),
        };
        let mut b = 0u8;
        let r = sys::pread_into(
            fd,
            std::slice::from_mut(&mut b).into(),
            self.at(page) as i64,
        );
        sys::close(fd);
        let byte = r.is_ok().then_some(b);
        (r, byte)
    }

    /// `pwrite` of `val` to `/proc/self/mem` at the page.
    pub fn mem_write(&self, page: usize, val: u8) -> Result<usize, Errno> {
        let fd = Self::proc_mem()?;
        let r = sys::pwrite_from(fd, &val, 1, self.at(page) as i64);
        sys::close(fd);
        r
    }

    /// Raise SIGUSR1 on the calling thread; the handler records its PKRU and the saved one and,
    /// with `edit`, replaces the saved PKRU (sigreturn then loads it). The shadow PKRU follows.
    pub fn signal(&self, edit: Option<u32>) -> HandlerSeen {
        EDIT.store(edit.is_some(), Ordering::SeqCst);
        EDIT_TO.store(edit.unwrap_or(0), Ordering::SeqCst);
        sys::raise(libc::SIGUSR1);
        EDIT.store(false, Ordering::SeqCst);
        if fault::HAS_PKRU.load(Ordering::Relaxed) {
            pkru::sync_shadow();
        }
        HandlerSeen {
            handler_pkru: F_IN.load(Ordering::SeqCst),
            saved_pkru: F_SAVED.load(Ordering::SeqCst),
        }
    }

    /// `AnonHugePages:` summed over the window's smaps entries, in kB (how much of it is mapped
    /// by transparent huge pages).
    pub fn anon_huge_kb(&self) -> Result<u64, String> {
        let text = read_proc(maps::SELF_SMAPS)?;
        let (lo, hi) = (self.base, self.base + self.pages * self.page);
        Ok(maps::parse(&text)
            .into_iter()
            .filter(|v| v.overlaps(lo, hi))
            .filter_map(|v| v.field("AnonHugePages:"))
            .map(|kb| kb.trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0))
            .sum())
    }

    /// Each page of the window as `/proc/self/smaps` describes it: `-` where nothing is mapped,
    /// else the permissions column and `k` with `ProtectionKey:` (`k?` when the field is absent).
    pub fn smaps(&self) -> Result<String, String> {
        let text = read_proc(maps::SELF_SMAPS)?;
        let all = maps::parse(&text);
        let words: Vec<String> = (0..self.pages)
            .map(|i| {
                let p = self.base + i * self.page;
                match all.iter().find(|v| v.contains(p)) {
                    Some(v) => format!("{}k{}", v.perms, v.field("ProtectionKey:").unwrap_or("?")),
                    None => "-".into(),
                }
            })
            .collect();
        Ok(words.join(" "))
    }
}

fn read_proc(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))
}

/// Whether `/proc/PID/mem` forces its way past the protection (FOLL_FORCE): a write to a
/// read-only private page succeeds. Kernels built with `CONFIG_PROC_MEM_NO_FORCE` or
/// `CONFIG_PROC_MEM_FORCE_PTRACE` (6.12+), or booted with `proc_mem.force_override=never`, refuse
/// it (EIO) unless the writer is the page's tracer.
pub fn proc_mem_forces() -> bool {
    let Ok(r) = crate::mem::Region::map(crate::mem::Kind::Anon, sys::page_size(), libc::PROT_READ)
    else {
        return false;
    };
    Arena::proc_mem().is_ok_and(|fd| {
        let w = sys::pwrite_from(fd, &1u8, 1, r.addr() as i64);
        sys::close(fd);
        w == Ok(1)
    })
}

/// Whether a temporary file (where [`Arena`] makes its file) can be mapped executable: false on
/// a `noexec` mount. The probe maps PROT_READ | PROT_EXEC: a plain PROT_EXEC mapping would
/// allocate the execute-only key.
pub fn files_executable() -> bool {
    let page = sys::page_size();
    let Ok(fd) = crate::mem::temp_fd(page) else {
        return false;
    };
    let ok = crate::mem::map_raw(
        page,
        libc::PROT_READ | libc::PROT_EXEC,
        libc::MAP_SHARED,
        fd,
    )
    // SAFETY: unmapping the probe's own mapping.
    .is_ok_and(|q| unsafe { libc::munmap(q.cast(), page) } == 0);
    sys::close(fd);
    ok
}

/// Whether `/proc/self/maps` shows `addr` in an executable mapping (true when it cannot be
/// read: the caller then refuses to call what it cannot check).
fn executable(addr: usize) -> bool {
    let Ok(text) = read_proc(maps::SELF_MAPS) else {
        return true;
    };
    maps::find(&text, addr).is_some_and(|v| v.executable())
}

fn pipe() -> Result<(i32, i32), Errno> {
    use nix::fcntl::OFlag;
    use std::os::fd::IntoRawFd;
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    Ok((rd.into_raw_fd(), wr.into_raw_fd()))
}

fn drain_one(fd: i32) -> Option<u8> {
    let mut b = 0u8;
    matches!(
        sys::read_into(fd, std::slice::from_mut(&mut b).into()),
        Ok(1)
    )
    .then_some(b)
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmaps the window this arena owns and closes its files.
        unsafe {
            libc::munmap(self.base as *mut _, self.pages * self.page);
            libc::close(self.file);
            if let Some(fd) = self.memfd {
                libc::close(fd);
            }
        }
        PROBING.store(false, Ordering::SeqCst);
        WINDOW_LEN.store(0, Ordering::SeqCst);
        fault::install_crash_handlers();
    }
}
