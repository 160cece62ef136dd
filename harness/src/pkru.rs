//! The PKRU register: RDPKRU/WRPKRU, bit helpers, and a shadow copy checked on every read.
//!
//! Every change the harness makes (WRPKRU, `pkey_alloc` with rights) updates a per-thread shadow;
//! every [`read`] compares the hardware against the shadow, so a kernel that clobbers PKRU (on a
//! context switch, a signal return, a system call) is caught wherever it happens. A mismatch is
//! recorded and the case fails at its end even if it never looked again.

use crate::pkey::{Pkey, Rights};
use crate::sys::{self, Errno};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The default `init_pkru`: every key but 0 access-disabled.
pub const DEFAULT_INIT_PKRU: u32 = 0x5555_5554;

thread_local! {
    static SHADOW: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Last shadow mismatch seen by [`read`]: `expected << 32 | found`, or `u64::MAX` if none.
static MISMATCH: AtomicU64 = AtomicU64::new(u64::MAX);

/// RDPKRU without touching the shadow.
///
/// Only valid when CR4.PKE is set (CPUID OSPKE); otherwise the instruction raises #UD (SIGILL).
pub fn rdpkru() -> u32 {
    let eax: u32;
    // SAFETY: RDPKRU reads a register; ecx must be 0; it clobbers edx. The caller has checked
    // OSPKE (without it the CPU raises #UD, which the harness reports as a signal).
    unsafe {
        std::arch::asm!("rdpkru", in("ecx") 0u32, out("eax") eax, out("edx") _,
                        options(nomem, nostack, preserves_flags));
    }
    eax
}

/// WRPKRU without touching the shadow (for cases that need a raw write).
pub fn wrpkru_raw(value: u32) {
    // SAFETY: WRPKRU writes the register; ecx and edx must be 0. Changing rights cannot break
    // memory safety by itself: a denied access faults, and the fault is handled or reported.
    unsafe {
        std::arch::asm!("wrpkru", in("eax") value, in("ecx") 0u32, in("edx") 0u32,
                        options(nostack, preserves_flags));
    }
}

/// Write PKRU and record the value in the shadow.
pub fn write(value: u32) {
    wrpkru_raw(value);
    SHADOW.with(|s| s.set(Some(value)));
}

/// Forget the shadow (e.g. after a deliberate raw change the case checks itself).
pub fn reset_shadow() {
    SHADOW.with(|s| s.set(None));
}

/// Set the shadow to what the hardware holds now.
pub fn sync_shadow() -> u32 {
    let v = rdpkru();
    SHADOW.with(|s| s.set(Some(v)));
    v
}

/// Run `op`, an `mmap` or `mprotect` with protection `prot`, following the one PKRU change the
/// kernel makes on its own: with `PROT_EXEC` alone it gives the mapping the execute-only key and
/// access-disables that key in the calling thread's PKRU (`execute_only_pkey()`). PKRU is read
/// first (an earlier difference is reported, not taken for the kernel's change); afterwards, if
/// hardware and shadow differ by exactly one key's AD bit, newly set, the shadow takes it; any
/// other difference stays a mismatch that the next [`read`] reports.
pub fn follow_execute_only_key<T>(prot: i32, op: impl FnOnce() -> T) -> T {
    if prot != libc::PROT_EXEC || !crate::cpu::probe().ospke {
        return op();
    }
    read();
    let r = op();
    accept_execute_only_key();
    r
}

fn accept_execute_only_key() {
    let Some(shadow) = SHADOW.with(|s| s.get()) else {
        return;
    };
    let hw = rdpkru();
    let diff = hw ^ shadow;
    let one_ad_bit_set = (1..crate::sys::NR_PKEYS).any(|k| diff == ad_bit(k) && hw & diff != 0);
    if one_ad_bit_set {
        SHADOW.with(|s| s.set(Some(hw)));
    }
}

/// Read PKRU, checking it against the shadow. A mismatch is recorded (see [`take_mismatch`]) and
/// the shadow is re-synchronised so that one clobber is reported once.
pub fn read() -> u32 {
    let hw = rdpkru();
    SHADOW.with(|s| {
        if let Some(expected) = s.get()
            && expected != hw
        {
            MISMATCH.store(((expected as u64) << 32) | hw as u64, Ordering::SeqCst);
        }
        s.set(Some(hw));
    });
    hw
}

/// The last shadow mismatch as `(expected, found)`, clearing it.
pub fn take_mismatch() -> Option<(u32, u32)> {
    let v = MISMATCH.swap(u64::MAX, Ordering::SeqCst);
    (v != u64::MAX).then_some(((v >> 32) as u32, v as u32))
}

/// Access-disable bit of `key`.
pub const fn ad_bit(key: i32) -> u32 {
    1 << (2 * key)
}

/// Write-disable bit of `key`.
pub const fn wd_bit(key: i32) -> u32 {
    1 << (2 * key + 1)
}

/// The two rights bits of `key` in `pkru` (`PKEY_DISABLE_ACCESS` | `PKEY_DISABLE_WRITE`).
pub const fn rights_of(pkru: u32, key: i32) -> u32 {
    (pkru >> (2 * key)) & 3
}

/// `pkru` with `key`'s rights replaced by `rights`.
pub const fn with_rights(pkru: u32, key: i32, rights: u32) -> u32 {
    (pkru & !(3 << (2 * key))) | ((rights & 3) << (2 * key))
}

/// Set `key`'s rights in the current thread's PKRU (through the shadow).
pub fn set_rights(key: i32, rights: impl Into<Rights>) {
    write(with_rights(read(), key, rights.into().bits()));
}

/// `pkey_alloc(flags, rights)` that keeps the shadow in step: the kernel writes the new key's
/// rights into this thread's PKRU. The key is freed when the [`Pkey`] drops; see
/// [`Pkey::into_raw`] to keep it.
pub fn alloc(flags: u32, rights: impl Into<Rights>) -> Result<Pkey, Errno> {
    let rights = rights.into().bits();
    let before = SHADOW.with(|s| s.get());
    let key = sys::pkey_alloc_raw(flags, rights)?;
    if let Some(b) = before
        && (0..sys::NR_PKEYS).contains(&key)
    {
        SHADOW.with(|s| s.set(Some(with_rights(b, key, rights))));
    }
    Ok(Pkey::from_raw(key))
}

/// Format a PKRU value as the cases print it.
pub fn fmt(v: u32) -> String {
    format!("{v:#010x}")
}

/// The shadow value, if the harness has written or synchronised PKRU on this thread.
pub fn shadow() -> Option<u32> {
    SHADOW.with(|s| s.get())
}

/// Put PKRU into its XSAVE init state: XSAVE the PKRU component, clear XSTATE_BV bit 9, XRSTOR
/// (the technique of `protection_keys.c`'s `arch_force_pkey_reg_init`). PKRU reads 0 afterwards.
/// The shadow is set to 0.
pub fn force_init_state() {
    let size = crate::cpu::probe().xsave_size.max(4096) as usize;
    let mut buf = vec![0u8; size + 64];
    let off = buf.as_ptr().align_offset(64);
    let area = buf[off..].as_mut_ptr();
    // SAFETY: `area` is a 64-byte aligned, zeroed buffer of at least the XSAVE size for the
    // enabled features; XSAVE/XRSTOR with mask = PKRU (bit 9) touch only the legacy area, the
    // header and the PKRU component. The header's reserved bytes stay zero, as XRSTOR requires.
    unsafe {
        std::arch::asm!("xsave64 [{0}]", in(reg) area, in("eax") 0x200u32, in("edx") 0u32, options(nostack));
        let bv = area.add(512).cast::<u64>();
        bv.write(bv.read() & !(1 << 9));
        std::arch::asm!("xrstor64 [{0}]", in(reg) area, in("eax") 0x200u32, in("edx") 0u32, options(nostack));
    }
    SHADOW.with(|s| s.set(Some(0)));
}
