//! Mappings of every kind the cases run across, with bounds-checked volatile access.
//!
//! A [`Region`] owns its mapping and unmaps it on drop. Accesses are volatile so the compiler
//! neither removes nor merges them: a case that expects one fault per access gets one.

use crate::sys::{self, Errno};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// The kinds of memory the access cases run across.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Anonymous private 4 KiB pages.
    Anon,
    /// Anonymous shared pages.
    AnonShared,
    /// Transparent huge page: 2 MiB aligned anonymous memory with MADV_HUGEPAGE.
    Thp,
    /// hugetlb 2 MiB page (MAP_HUGETLB).
    Hugetlb,
    /// hugetlb 2 MiB page, MAP_SHARED.
    HugetlbShared,
    /// A file mapped MAP_PRIVATE.
    FilePrivate,
    /// A file mapped MAP_SHARED.
    FileShared,
    /// A memfd mapped MAP_SHARED.
    Memfd,
    /// A SysV shared memory segment.
    Shm,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::Anon,
        Kind::AnonShared,
        Kind::Thp,
        Kind::Hugetlb,
        Kind::HugetlbShared,
        Kind::FilePrivate,
        Kind::FileShared,
        Kind::Memfd,
        Kind::Shm,
    ];

    /// Variant name used in case ids.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Anon => "anon",
            Kind::AnonShared => "anon_shared",
            Kind::Thp => "thp",
            Kind::Hugetlb => "hugetlb",
            Kind::HugetlbShared => "hugetlb_shared",
            Kind::FilePrivate => "file_private",
            Kind::FileShared => "file_shared",
            Kind::Memfd => "memfd",
            Kind::Shm => "shm",
        }
    }

    /// The optional kernel feature mapping this kind uses, if any.
    pub fn feature(self) -> Option<crate::features::Feature> {
        use crate::features::Feature;
        match self {
            Kind::Thp => Some(Feature::Thp),
            Kind::Hugetlb | Kind::HugetlbShared => Some(Feature::Hugetlbfs),
            Kind::Memfd => Some(Feature::Memfd),
            Kind::Shm => Some(Feature::SysvShm),
            Kind::Anon | Kind::AnonShared | Kind::FilePrivate | Kind::FileShared => None,
        }
    }

    /// Whether the kind needs hugetlb pages.
    pub fn is_hugetlb(self) -> bool {
        matches!(self, Kind::Hugetlb | Kind::HugetlbShared)
    }

    /// The natural length of one region of this kind.
    pub fn default_len(self) -> usize {
        match self {
            Kind::Thp | Kind::Hugetlb | Kind::HugetlbShared => HUGE,
            _ => sys::page_size(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// 2 MiB.
pub const HUGE: usize = 2 << 20;

/// An owned mapping.
#[derive(Debug)]
pub struct Region {
    ptr: *mut u8,
    len: usize,
    kind: Kind,
    shm: bool,
    /// Extra mapping to unmap on drop (THP alignment slack is trimmed at map time).
    map_len: usize,
    /// Byte 0 holds a `ret` written by [`Region::write_ret_stub`] (what [`Region::call`] needs).
    ret_stub: AtomicBool,
}

pub(crate) fn map_raw(len: usize, prot: i32, flags: i32, fd: i32) -> Result<*mut u8, Errno> {
    // SAFETY: a fresh mapping chosen by the kernel; no existing memory is touched.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        Err(Errno::last())
    } else {
        Ok(p.cast())
    }
}

/// Why a mapping (or the file or memfd behind it) could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// No 2 MiB huge page could be mapped (none reserved, or all in use): a case SKIPs.
    #[error("no 2 MiB huge pages could be mapped (MAP_HUGETLB: {0})")]
    NoHugePages(Errno),
    /// A system call failed.
    #[error("{call}: {errno}")]
    Sys {
        /// The call, as the message names it (e.g. `mmap anon`, `shmget`).
        call: String,
        /// Its errno.
        errno: Errno,
    },
    /// The temporary file could not be made.
    #[error("temporary file in {dir}: {source}")]
    TempFile {
        /// The directory (`$TMPDIR` or `/tmp`).
        dir: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The operation does not apply to a SysV shared memory region.
    #[error("{0}: not for SysV shm")]
    NotForShm(&'static str),
}

impl MapError {
    fn sys(call: impl Into<String>, errno: Errno) -> MapError {
        MapError::Sys {
            call: call.into(),
            errno,
        }
    }
}

impl From<MapError> for String {
    fn from(e: MapError) -> String {
        e.to_string()
    }
}

fn temp_file(len: usize) -> Result<i32, MapError> {
    use std::os::fd::IntoRawFd;
    let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
    let file = tempfile::tempfile_in(&dir).map_err(|source| MapError::TempFile {
        dir: dir.clone(),
        source,
    })?;
    file.set_len(len as u64)
        .map_err(|e| MapError::sys("ftruncate", Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    Ok(file.into_raw_fd())
}

impl Region {
    /// Map `len` bytes (rounded to the kind's page size) of `kind` with `prot`.
    ///
    /// For hugetlb kinds with no pages available the error is [`MapError::NoHugePages`], and the
    /// case should SKIP with it.
    pub fn map(kind: Kind, len: usize, prot: i32) -> Result<Region, MapError> {
        crate::pkru::follow_execute_only_key(prot, || Region::map_kind(kind, len, prot))
    }

    fn map_kind(kind: Kind, len: usize, prot: i32) -> Result<Region, MapError> {
        let page = if matches!(kind, Kind::Hugetlb | Kind::HugetlbShared | Kind::Thp) {
            HUGE
        } else {
            sys::page_size()
        };
        let len = len.max(1).div_ceil(page) * page;
        let anon = libc::MAP_ANONYMOUS;
        if let Some(f) = kind.feature() {
            crate::features::touch(f);
        }
        let (ptr, map_len, shm) = match kind {
            Kind::Anon => (map_raw(len, prot, libc::MAP_PRIVATE | anon, -1), len, false),
            Kind::AnonShared => (map_raw(len, prot, libc::MAP_SHARED | anon, -1), len, false),
            Kind::Hugetlb | Kind::HugetlbShared => {
                let share = if kind == Kind::Hugetlb {
                    libc::MAP_PRIVATE
                } else {
                    libc::MAP_SHARED
                };
                // 2 MiB pages asked for explicitly: the default huge page size may be 1 GiB
                // (`default_hugepagesz=1G`), and a plain MAP_HUGETLB would then take 1 GiB pages.
                let r = map_raw(
                    len,
                    prot,
                    share | anon | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB,
                    -1,
                );
                if let Err(e) = r {
                    return Err(MapError::NoHugePages(e));
                }
                (r, len, false)
            }
            Kind::Thp => {
                let big = map_raw(len + HUGE, prot, libc::MAP_PRIVATE | anon, -1)
                    .map_err(|e| MapError::sys("mmap", e))?;
                let start = (big as usize).next_multiple_of(HUGE);
                let head = start - big as usize;
                let tail = HUGE - head;
                // SAFETY: trimming the unaligned slack of the mapping made just above.
                unsafe {
                    if head > 0 {
                        libc::munmap(big.cast(), head);
                    }
                    if tail > 0 {
                        libc::munmap((start + len) as *mut libc::c_void, tail);
                    }
                    crate::features::touch(crate::features::Feature::Madvise);
                    libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
                }
                (Ok(start as *mut u8), len, false)
            }
            Kind::FilePrivate | Kind::FileShared => {
                let fd = temp_file(len)?;
                let share = if kind == Kind::FilePrivate {
                    libc::MAP_PRIVATE
                } else {
                    libc::MAP_SHARED
                };
                let r = map_raw(len, prot, share, fd);
                // SAFETY: the mapping keeps its own reference to the file.
                unsafe { libc::close(fd) };
                (r, len, false)
            }
            Kind::Memfd => {
                let fd = memfd(len)?;
                let r = map_raw(len, prot, libc::MAP_SHARED, fd);
                // SAFETY: the mapping keeps its own reference to the memfd.
                unsafe { libc::close(fd) };
                (r, len, false)
            }
            Kind::Shm => {
                // SAFETY: a private segment, attached once and marked for removal at once so it
                // disappears with the last detach.
                let p = unsafe {
                    let id = libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600);
                    if id < 0 {
                        return Err(MapError::sys("shmget", Errno::last()));
                    }
                    let p = libc::shmat(id, std::ptr::null(), 0);
                    libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
                    if p as isize == -1 {
                        return Err(MapError::sys("shmat", Errno::last()));
                    }
                    p.cast::<u8>()
                };
                let r = Region {
                    ptr: p,
                    len,
                    kind,
                    shm: true,
                    map_len: len,
                    ret_stub: AtomicBool::new(false),
                };
                if prot != libc::PROT_READ | libc::PROT_WRITE {
                    // SAFETY: the segment attached just above, owned by `r`.
                    unsafe { sys::mprotect(r.addr(), len, prot) }
                        .map_err(|e| MapError::sys("mprotect(shm)", e))?;
                }
                return Ok(r);
            }
        };
        let ptr = ptr.map_err(|e| MapError::sys(format!("mmap {kind}"), e))?;
        Ok(Region {
            ptr,
            len,
            kind,
            shm,
            map_len,
            ret_stub: AtomicBool::new(false),
        })
    }

    /// Map one natural-size region of `kind`, readable and writable, every page present.
    pub fn rw(kind: Kind) -> Result<Region, MapError> {
        let r = Region::map(kind, kind.default_len(), libc::PROT_READ | libc::PROT_WRITE)?;
        r.populate();
        Ok(r)
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Address of byte `off`.
    pub fn at(&self, off: usize) -> usize {
        assert!(
            off < self.len,
            "offset {off} outside region of {} bytes",
            self.len
        );
        self.addr() + off
    }

    /// Volatile read of byte `off`. Faults if the rights deny it (capture with [`crate::fault`]).
    pub fn read(&self, off: usize) -> u8 {
        let p = self.at(off) as *const u8;
        // SAFETY: `p` is inside this live mapping (checked by `at`); a denied access faults and is
        // handled by the capture handler or kills the forked case.
        unsafe { p.read_volatile() }
    }

    /// Volatile write of byte `off`.
    pub fn write(&self, off: usize, v: u8) {
        let p = self.at(off) as *mut u8;
        if off == 0 && v != 0xc3 {
            self.ret_stub.store(false, Ordering::SeqCst);
        }
        // SAFETY: as in `read`.
        unsafe { p.write_volatile(v) }
    }

    /// Touch every page (write where writable), so it is present.
    pub fn populate(&self) {
        let step = sys::page_size();
        let mut off = 0;
        while off < self.len {
            let v = self.read(off);
            self.write(off, v);
            off += step;
        }
    }

    /// `pkey_mprotect` the whole region.
    pub fn pkey_mprotect(&self, prot: i32, pkey: i32) -> Result<(), Errno> {
        // SAFETY: the whole of this region's own mapping; its bytes are only reached through the
        // volatile accessors, so a change of rights makes an access fault, which is reported.
        unsafe { sys::pkey_mprotect(self.addr(), self.len, prot, pkey) }
    }

    /// `mprotect` the whole region.
    pub fn mprotect(&self, prot: i32) -> Result<(), Errno> {
        crate::pkru::follow_execute_only_key(prot, || {
            // SAFETY: as in `pkey_mprotect`.
            unsafe { sys::mprotect(self.addr(), self.len, prot) }
        })
    }

    /// The address of `[off, off + len)`, which must lie in the region (`len` 0 allowed; `off`
    /// need not be aligned: the kernel refuses an unaligned start and changes nothing). The
    /// region is whole pages, so rounding the end up to a page stays inside it.
    fn span(&self, off: usize, len: usize) -> usize {
        assert!(
            off <= self.len && len <= self.len - off,
            "range {off:#x}+{len:#x} outside region of {:#x} bytes",
            self.len
        );
        self.addr() + off
    }

    /// `pkey_mprotect(addr + off, len, prot, pkey)` of a range of the region (panics outside
    /// it). Exactly one system call, with these arguments, whatever they are (unaligned, zero
    /// length, spanning a hole made with [`Region::munmap_range`]).
    pub fn pkey_mprotect_range(
        &self,
        off: usize,
        len: usize,
        prot: i32,
        pkey: i32,
    ) -> Result<(), Errno> {
        let addr = self.span(off, len);
        // SAFETY: a range of this region's own mapping (see `pkey_mprotect`); where the range
        // spans a hole the region punched, the kernel stops there (ENOMEM).
        unsafe { sys::pkey_mprotect(addr, len, prot, pkey) }
    }

    /// `mprotect(addr + off, len, prot)` of a range of the region, as a raw system call (the
    /// execute-only key is not followed; see [`Region::mprotect`]).
    pub fn mprotect_range(&self, off: usize, len: usize, prot: i32) -> Result<(), Errno> {
        let addr = self.span(off, len);
        // SAFETY: as in `pkey_mprotect_range`.
        unsafe { sys::mprotect(addr, len, prot) }
    }

    /// `munmap` of a range of the region: punches a hole the region keeps owning (it is unmapped
    /// again with the rest on drop; an access to it faults, which is reported). The cases that
    /// punch holes are single-threaded and map nothing small enough to land in the hole while it
    /// lives.
    pub fn munmap_range(&self, off: usize, len: usize) -> Result<(), Errno> {
        assert!(!self.shm, "munmap_range: not for SysV shm");
        let addr = self.span(off, len);
        // SAFETY: a range of this region's own mapping, whose bytes are only reached through the
        // volatile accessors (a fault on the hole is reported).
        unsafe { sys::munmap(addr, len) }
    }

    /// `madvise` of the whole region. Advice that drops the contents (MADV_DONTNEED) is fine:
    /// the bytes are only reached through the volatile accessors.
    pub fn madvise(&self, advice: i32) -> Result<(), Errno> {
        self.madvise_range(0, self.len, advice)
    }

    /// `madvise(addr + off, len, advice)` of a range of the region.
    pub fn madvise_range(&self, off: usize, len: usize, advice: i32) -> Result<(), Errno> {
        let addr = self.span(off, len);
        if off == 0 {
            self.forget_ret_stub_unless_shared(advice);
        }
        // SAFETY: a range of this region's own mapping (see `madvise`).
        unsafe { sys::madvise(addr, len, advice) }
    }

    /// `mlock(addr + off, len)` of a range of the region.
    pub fn mlock_range(&self, off: usize, len: usize) -> Result<(), Errno> {
        let addr = self.span(off, len);
        // SAFETY: a range of this region's own mapping; locking changes no contents.
        unsafe { sys::mlock(addr, len) }
    }

    /// `mlock2(addr + off, len, flags)` of a range of the region.
    pub fn mlock2_range(&self, off: usize, len: usize, flags: u32) -> Result<(), Errno> {
        let addr = self.span(off, len);
        // SAFETY: as in `mlock_range`.
        unsafe { sys::mlock2(addr, len, flags) }
    }

    /// `mseal` the whole region. A sealed region can no longer be unmapped: dropping it then
    /// leaves the mapping in place (the `munmap` fails), which is safe.
    pub fn mseal(&self) -> Result<(), Errno> {
        // SAFETY: this region's own mapping; sealing only refuses later changes.
        unsafe { sys::mseal(self.addr(), self.len) }
    }

    /// A raw pointer to byte `off`, for system calls that take a buffer (the kernel checks it).
    /// A buffer at offset 0 may be written by the kernel, so it forgets the `ret` stub.
    pub fn ptr(&self, off: usize) -> *mut u8 {
        if off == 0 {
            self.ret_stub.store(false, Ordering::SeqCst);
        }
        self.at(off) as *mut u8
    }

    /// Write `ret` (0xC3) at offset 0 so the region can be executed with [`Region::call`].
    pub fn write_ret_stub(&self) {
        self.write(0, 0xc3);
        self.ret_stub.store(true, Ordering::SeqCst);
    }

    fn forget_ret_stub_unless_shared(&self, advice: i32) {
        // MADV_DONTNEED on shared or file-backed memory keeps the contents (the page cache or the
        // shared object holds them); anything else may drop or change them.
        let keeps = advice == libc::MADV_DONTNEED
            && matches!(
                self.kind,
                Kind::AnonShared | Kind::HugetlbShared | Kind::FileShared | Kind::Memfd | Kind::Shm
            );
        if !keeps {
            self.ret_stub.store(false, Ordering::SeqCst);
        }
    }

    /// Call the code at offset 0, which [`Region::write_ret_stub`] made a single `ret`. The
    /// region must be executable, or the call faults (and the forked case reports it).
    ///
    /// Panics if no `ret` stub was written, or if a method of the region that may have changed
    /// byte 0 since ran ([`Region::write`] of another value there, [`Region::madvise`] dropping
    /// private contents, [`Region::map_fixed_over`]).
    pub fn call(&self) {
        assert!(
            self.ret_stub.load(Ordering::SeqCst),
            "Region::call without a ret stub at offset 0"
        );
        // SAFETY: byte 0 holds a single `ret` (checked above: every safe path that writes byte 0
        // clears the flag), so the call returns at once. If the page is not executable the CPU
        // faults on the fetch, which the harness reports.
        unsafe {
            let f: extern "C" fn() = std::mem::transmute(self.ptr);
            f();
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping (or detaching) the mapping this region owns.
        unsafe {
            if self.shm {
                libc::shmdt(self.ptr.cast());
            } else {
                libc::munmap(self.ptr.cast(), self.map_len);
            }
        }
    }
}

impl Region {
    /// Volatile read of the little-endian u32 at `off` (4-byte aligned).
    pub fn read_u32(&self, off: usize) -> u32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "bad u32 offset {off}"
        );
        // SAFETY: aligned and inside this live mapping (checked above).
        unsafe { (self.ptr.add(off) as *const u32).read_volatile() }
    }

    /// A `stack_t` describing this region, for `sigaltstack`.
    pub fn as_stack(&self) -> libc::stack_t {
        libc::stack_t {
            ss_sp: self.ptr.cast(),
            ss_flags: 0,
            ss_size: self.len,
        }
    }
}

/// Memory a system call may write into (`read`, `pread`, `readv`, `recv`, `process_vm_*`): a
/// range of a [`Region`] ([`Region::buf`]) or a Rust byte buffer, borrowed for `'a`. Made only
/// from memory the caller owns, so a kernel write through it reaches nothing else.
#[derive(Debug, Clone, Copy)]
pub struct UserBuf<'a> {
    addr: usize,
    len: usize,
    _owner: std::marker::PhantomData<&'a mut [u8]>,
}

impl<'a> UserBuf<'a> {
    /// A buffer at `addr` of `len` bytes.
    ///
    /// # Safety
    /// The range must be memory the caller owns for `'a` that no Rust reference covers (e.g.
    /// pages of an [`crate::arena::Arena`]), or that is not mapped at all.
    pub unsafe fn from_raw(addr: usize, len: usize) -> UserBuf<'a> {
        UserBuf {
            addr,
            len,
            _owner: std::marker::PhantomData,
        }
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(address, length)`, for the side of a call that only reads.
    pub fn raw(&self) -> (usize, usize) {
        (self.addr, self.len)
    }
}

impl<'a> From<&'a mut [u8]> for UserBuf<'a> {
    fn from(s: &'a mut [u8]) -> UserBuf<'a> {
        UserBuf {
            addr: s.as_mut_ptr() as usize,
            len: s.len(),
            _owner: std::marker::PhantomData,
        }
    }
}

impl Region {
    /// `[off, off + len)` of the region as a buffer the kernel may write into (panics outside
    /// the region). A buffer at offset 0 forgets the `ret` stub.
    pub fn buf(&self, off: usize, len: usize) -> UserBuf<'_> {
        let addr = self.span(off, len);
        if off == 0 {
            self.ret_stub.store(false, Ordering::SeqCst);
        }
        UserBuf {
            addr,
            len,
            _owner: std::marker::PhantomData,
        }
    }
}

/// Volatile read of the byte at `addr`. Safe callers read through a [`Region`] (shared with
/// another thread by `Arc` or a scoped borrow).
///
/// # Safety
/// `addr` must lie in a live mapping owned by the caller that no Rust reference covers. A denied
/// access faults and is handled by [`crate::fault`] or kills the forked case.
pub unsafe fn read_byte_at(addr: usize) -> u8 {
    // SAFETY: the caller upholds the contract above.
    unsafe { (addr as *const u8).read_volatile() }
}

// SAFETY: a Region is an owned mapping addressed by a raw pointer; the mapping is valid in every
// thread of the process, and all access through it is volatile single-byte or aligned-word I/O
// whose worst outcome under a race is a fault the harness reports.
unsafe impl Send for Region {}
// SAFETY: as above; no method takes `&self` and mutates Rust-visible state.
unsafe impl Sync for Region {}

/// A memfd of `len` bytes (close-on-exec). The caller owns the returned fd.
pub fn memfd(len: usize) -> Result<i32, MapError> {
    use std::os::fd::IntoRawFd;
    let fd = nix::sys::memfd::memfd_create(c"pkeys", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| MapError::sys("memfd_create", e))?;
    // On failure the descriptor is closed when `fd` drops.
    nix::unistd::ftruncate(&fd, len as i64).map_err(|e| MapError::sys("ftruncate(memfd)", e))?;
    Ok(fd.into_raw_fd())
}

/// A temporary file of `len` bytes, already unlinked (made with `tempfile` in `$TMPDIR` or
/// `/tmp`). The caller owns the returned fd.
pub fn temp_fd(len: usize) -> Result<i32, MapError> {
    temp_file(len)
}

impl Region {
    /// Map `len` bytes (rounded up to pages) of anonymous private memory with `prot` and extra
    /// `mmap` flags (e.g. `MAP_POPULATE`, `MAP_LOCKED`).
    pub fn map_anon_with(len: usize, prot: i32, extra_flags: i32) -> Result<Region, MapError> {
        let len = len.max(1).div_ceil(sys::page_size()) * sys::page_size();
        let ptr = map_raw(
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
            -1,
        )
        .map_err(|e| MapError::sys(format!("mmap anon (flags {extra_flags:#x})"), e))?;
        Ok(Region {
            ptr,
            len,
            kind: Kind::Anon,
            shm: false,
            map_len: len,
            ret_stub: AtomicBool::new(false),
        })
    }

    /// Move the mapping with `mremap(MREMAP_MAYMOVE | MREMAP_FIXED)` to a fresh address (reserved
    /// first with a PROT_NONE mapping of `new_len` bytes), growing or shrinking it to `new_len`.
    /// On failure the region is handed back unchanged with the errno.
    pub fn mremap_to(self, new_len: usize) -> Result<Region, (Region, Errno)> {
        if self.shm || self.map_len != self.len {
            return Err((self, Errno::EINVAL));
        }
        let dest = match map_raw(
            new_len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
        ) {
            Ok(p) => p,
            Err(e) => return Err((self, e)),
        };
        // SAFETY: moves this region's own mapping onto the reservation made just above; the old
        // range is no longer used (the region is consumed) and the new one is owned by the result.
        let p = unsafe {
            libc::mremap(
                self.ptr.cast(),
                self.len,
                new_len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                dest.cast::<libc::c_void>(),
            )
        };
        if p == libc::MAP_FAILED {
            let e = Errno::last();
            // SAFETY: unmapping the reservation made above.
            unsafe { libc::munmap(dest.cast(), new_len) };
            return Err((self, e));
        }
        let moved = Region {
            ptr: p.cast(),
            len: new_len,
            kind: self.kind,
            shm: false,
            map_len: new_len,
            ret_stub: AtomicBool::new(self.ret_stub.load(Ordering::SeqCst)),
        };
        std::mem::forget(self);
        Ok(moved)
    }

    /// `munmap` the region, then `mmap(MAP_FIXED)` fresh anonymous private memory (read-write) at
    /// the same address and length. The result owns the new mapping.
    pub fn unmap_then_map_fixed(self) -> Result<Region, MapError> {
        if self.shm {
            return Err(MapError::NotForShm("unmap_then_map_fixed"));
        }
        let (addr, len) = (self.ptr, self.map_len);
        drop(self);
        // SAFETY: the range was this region's mapping, unmapped just above; the case process is
        // single-threaded, so nothing else took the range in between. MAP_FIXED replaces at most
        // that range.
        let p = unsafe {
            libc::mmap(
                addr.cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(MapError::sys("mmap(MAP_FIXED)", Errno::last()));
        }
        Ok(Region {
            ptr: p.cast(),
            len,
            kind: Kind::Anon,
            shm: false,
            map_len: len,
            ret_stub: AtomicBool::new(false),
        })
    }

    /// `mmap(MAP_FIXED)` fresh anonymous private memory (read-write) over the whole region without
    /// unmapping it first (the kernel replaces the old mapping). The region keeps owning the range.
    pub fn map_fixed_over(&mut self) -> Result<(), Errno> {
        if self.shm {
            return Err(Errno::EINVAL);
        }
        // SAFETY: replaces exactly this region's own mapping, which stays owned by `self`; any
        // reference into the old contents is through `self`'s volatile accessors only.
        let p = unsafe {
            libc::mmap(
                self.ptr.cast(),
                self.map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        self.kind = Kind::Anon;
        self.ret_stub.store(false, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

    #[test]
    #[should_panic(expected = "without a ret stub")]
    fn call_refuses_a_region_without_ret_stub() {
        let r = Region::map(Kind::Anon, 1, RW).unwrap();
        r.call();
    }

    #[test]
    #[should_panic(expected = "without a ret stub")]
    fn call_refuses_after_byte_0_is_overwritten() {
        let r = Region::map(Kind::Anon, 1, RW).unwrap();
        r.write_ret_stub();
        r.write(0, 0x90);
        r.call();
    }

    #[test]
    #[should_panic(expected = "without a ret stub")]
    fn call_refuses_after_private_contents_are_dropped() {
        let r = Region::map(Kind::Anon, 1, RW).unwrap();
        r.write_ret_stub();
        r.madvise(libc::MADV_DONTNEED).unwrap();
        r.call();
    }

    #[test]
    fn call_runs_the_stub() {
        let r = Region::map(Kind::Anon, 1, RW).unwrap();
        r.write_ret_stub();
        r.mprotect(libc::PROT_READ | libc::PROT_EXEC).unwrap();
        r.call();
    }

    #[test]
    #[should_panic(expected = "outside region")]
    fn range_past_the_region_is_refused() {
        let r = Region::map(Kind::Anon, 1, RW).unwrap();
        let _ = r.mprotect_range(1, r.len(), RW);
    }

    #[test]
    fn ranges_inside_the_region_reach_the_kernel() {
        let pg = sys::page_size();
        let r = Region::map(Kind::Anon, 3 * pg, RW).unwrap();
        assert_eq!(r.mprotect_range(1, pg, RW), Err(Errno::EINVAL));
        assert_eq!(r.mprotect_range(0, 0, RW), Ok(()));
        r.munmap_range(pg, pg).unwrap();
        assert_eq!(r.mprotect_range(0, 3 * pg, RW), Err(Errno::ENOMEM));
        assert_eq!(sys::mprotect_top(pg, RW), Err(Errno::ENOMEM));
    }

    #[test]
    #[should_panic(expected = "outside region")]
    fn buffer_past_the_region_is_refused() {
        let r = Region::map(Kind::Anon, 1, RW).unwrap();
        let _ = r.buf(r.len() - 1, 2);
    }

    #[test]
    fn kernel_reads_into_a_region_buffer() {
        let r = Region::map(Kind::Anon, 1, RW).unwrap();
        let (rd, wr) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&wr, &[7, 8, 9]).unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(sys::read_into(rd.as_raw_fd(), r.buf(1, 3)), Ok(3));
        assert_eq!((r.read(0), r.read(1), r.read(3)), (0, 7, 9));
    }
}
