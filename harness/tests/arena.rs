//! The arena's probes on this machine (no protection keys needed): a load, store or call that
//! faults is recorded with the right `si_code` and page and the thread carries on; the system
//! calls work on page ranges; `/proc/self/smaps` is read page by page. One test, as the arena
//! installs process-wide signal handlers.

use pkeys_harness::arena::{Arena, Backing};

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

#[test]
fn probes_survive_their_faults_and_report_them_exactly() {
    let a = Arena::new(6, 12, false).expect("arena");
    // Loads and stores on the initial read-write mapping.
    assert_eq!(a.load(0), Ok(0));
    assert_eq!(a.store(0, 0x5a), Ok(()));
    assert_eq!(a.load(0), Ok(0x5a));
    // PROT_NONE: SEGV_ACCERR at the page, and the thread goes on.
    a.mprotect(1, 1, libc::PROT_NONE).expect("mprotect");
    let f = a.load(1).expect_err("load of PROT_NONE");
    assert_eq!((f.code, a.page_of(f.addr)), (2, Some((1, 0))));
    let f = a.store(1, 1).expect_err("store to PROT_NONE");
    assert_eq!((f.code, a.page_of(f.addr)), (2, Some((1, 0))));
    // Read-only: loads work, stores are SEGV_ACCERR.
    a.mprotect(2, 1, libc::PROT_READ).expect("mprotect");
    assert_eq!(a.load(2), Ok(0));
    assert_eq!(a.store(2, 1).map_err(|f| f.code), Err(2));
    // A hole: SEGV_MAPERR.
    a.munmap(3, 1).expect("munmap");
    assert_eq!(a.load(3).map_err(|f| f.code), Err(1));
    // Calls: a non-executable page faults on the fetch (SEGV_ACCERR at the page); a `ret` in an
    // executable page returns; an executable page without `ret` is refused; a hole is MAPERR.
    assert_eq!(a.store(4, 0xc3), Ok(()));
    assert_eq!(a.call(4).map(|r| r.map_err(|f| f.code)), Some(Err(2)));
    a.mprotect(4, 1, libc::PROT_READ | libc::PROT_EXEC)
        .expect("mprotect");
    assert_eq!(a.call(4), Some(Ok(())));
    a.mprotect(0, 1, libc::PROT_READ | libc::PROT_EXEC)
        .expect("mprotect");
    assert_eq!(a.call(0), None, "first byte 0x5a is not ret");
    assert_eq!(a.call(3).map(|r| r.map_err(|f| f.code)), Some(Err(1)));
    // Kernel copies: read() into a read-only page is EFAULT and leaves the byte in the pipe.
    let (r, left) = a.kernel_read_into(2, 7);
    assert_eq!(
        (r.map_err(|e| e as i32), left),
        (Err(libc::EFAULT), Some(7))
    );
    let (r, got) = a.kernel_write_from(0);
    assert_eq!((r, got), (Ok(1), Some(0x5a)));
    // /proc/self/mem writes a read-only private page (copy on write) and reads it back.
    assert_eq!(a.mem_write(2, 9), Ok(1));
    assert_eq!(a.mem_read(2), (Ok(1), Some(9)));
    assert_eq!(a.mem_read(3).0.map_err(|e| e as i32), Err(libc::EIO));
    // mremap moves the contents; mmap(MAP_FIXED) of the file fills the hole.
    a.mremap(0, 1, 5, 1).expect("mremap");
    assert_eq!(a.load(5), Ok(0x5a));
    a.mmap(3, 1, Backing::File, true, RW).expect("mmap file");
    assert_eq!(a.store(3, 4), Ok(()));
    a.dontneed(3, 1).expect("madvise");
    assert_eq!(a.load(3), Ok(4), "a shared file page keeps its contents");
    if let Ok(s) = a.smaps() {
        let words: Vec<&str> = s.split(' ').collect();
        assert_eq!(words[0], "-", "page 0 moved away: {s}");
        assert!(words[1].starts_with("---p"), "{s}");
        assert!(words[3].starts_with("rw-s"), "{s}");
        assert!(words[5].starts_with("r-xp"), "{s}");
    }
}
