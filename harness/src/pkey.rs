//! Typed protection keys and access rights: [`Pkey`], an allocated key freed on drop, and
//! [`Rights`], the `PKEY_DISABLE_*` bits.
//!
//! The raw paths stay: [`crate::sys::pkey_alloc_raw`] and [`crate::sys::pkey_free`] take and
//! return plain integers, for the cases that free a key twice, use a freed key, or pass invalid
//! keys and rights on purpose.
//!
//! # References
//! pkey_alloc(2), pkey_free(2), pkeys(7).

use crate::sys::{self, Errno};
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// Access rights of a key, as `pkey_alloc` takes them and PKRU holds them (two bits a key).
/// Any `u32` converts (the kernel refuses bits above the two known ones: cases pass them on
/// purpose).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(u32);

impl Rights {
    /// No restriction (`PKEY_UNRESTRICTED`, 0).
    pub const NONE: Rights = Rights(sys::PKEY_UNRESTRICTED);
    /// `PKEY_DISABLE_ACCESS`: the key's AD bit.
    pub const DISABLE_ACCESS: Rights = Rights(sys::PKEY_DISABLE_ACCESS);
    /// `PKEY_DISABLE_WRITE`: the key's WD bit.
    pub const DISABLE_WRITE: Rights = Rights(sys::PKEY_DISABLE_WRITE);

    /// The bits as the kernel takes them.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Rights with exactly `bits`, known or not.
    pub const fn from_bits_retain(bits: u32) -> Rights {
        Rights(bits)
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
}

impl From<u32> for Rights {
    fn from(bits: u32) -> Rights {
        Rights(bits)
    }
}

impl BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        Rights(self.0 | rhs.0)
    }
}

impl BitOrAssign for Rights {
    fn bitor_assign(&mut self, rhs: Rights) {
        self.0 |= rhs.0;
    }
}

/// Printed as the number the cases always printed.
impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// An allocated protection key, freed (`pkey_free`) on drop. [`Pkey::into_raw`] keeps it
/// allocated for good (the cases that rely on a key staying allocated: exhaustion, inheritance
/// by fork, keys used after a helper returns); [`Pkey::free`] frees it and reports the errno.
pub struct Pkey(i32);

impl Pkey {
    /// Allocate a key with `rights` through [`crate::pkru::alloc`] (the shadow PKRU follows).
    pub fn alloc(flags: u32, rights: impl Into<Rights>) -> Result<Pkey, Errno> {
        crate::pkru::alloc(flags, rights)
    }

    /// Take ownership of key number `raw`, which the caller allocated and nothing else frees.
    pub fn from_raw(raw: i32) -> Pkey {
        Pkey(raw)
    }

    /// The key number.
    pub fn as_raw(&self) -> i32 {
        self.0
    }

    /// The key number, the key staying allocated (nothing frees it any more).
    pub fn into_raw(self) -> i32 {
        let k = self.0;
        std::mem::forget(self);
        k
    }

    /// `pkey_free` now, with its result.
    pub fn free(self) -> Result<(), Errno> {
        sys::pkey_free(self.into_raw())
    }
}

impl Drop for Pkey {
    fn drop(&mut self) {
        let _ = sys::pkey_free(self.0);
    }
}

/// Printed as the number.
impl fmt::Display for Pkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Printed as the number (what the cases' messages always showed).
impl fmt::Debug for Pkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl PartialEq<i32> for Pkey {
    fn eq(&self, other: &i32) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_bits_and_or() {
        let both = Rights::DISABLE_ACCESS | Rights::DISABLE_WRITE;
        assert_eq!(both.bits(), 3);
        assert!(both.contains(Rights::DISABLE_WRITE));
        assert!(!Rights::DISABLE_ACCESS.contains(Rights::DISABLE_WRITE));
        assert_eq!(Rights::from(4u32).bits(), 4);
        assert_eq!(format!("{both} {both:?}"), "3 3");
        let mut r = Rights::NONE;
        r |= Rights::DISABLE_WRITE;
        assert_eq!(r, Rights::DISABLE_WRITE);
    }

    #[test]
    fn pkey_prints_as_its_number_and_into_raw_keeps_it() {
        let k = Pkey::from_raw(7);
        assert_eq!(format!("{k} {k:?}"), "7 7");
        assert!(k == 7);
        // into_raw: no pkey_free of key 7 (which this process never allocated) is made.
        assert_eq!(k.into_raw(), 7);
    }
}
