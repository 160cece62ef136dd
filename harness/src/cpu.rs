//! CPUID probing: PKU, OSPKE and the XSAVE layout of PKRU.

use std::arch::x86_64::{__cpuid, __cpuid_count};

/// What CPUID says about protection keys on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuPkeys {
    /// CPUID.(7,0):ECX bit 3: the CPU implements PKU.
    pub pku: bool,
    /// CPUID.(7,0):ECX bit 4: the OS has set CR4.PKE (RDPKRU/WRPKRU usable).
    pub ospke: bool,
    /// Offset of XSAVE component 9 (PKRU) in the standard-format XSAVE area: CPUID.(0xD,9).EBX.
    pub xsave_pkru_offset: u32,
    /// Size of XSAVE component 9: CPUID.(0xD,9).EAX (4 when present).
    pub xsave_pkru_size: u32,
    /// Size of the XSAVE area for the enabled features: CPUID.(0xD,0).EBX.
    pub xsave_size: u32,
    /// Size of the XSAVE area for every supported feature: CPUID.(0xD,0).ECX (the size of an
    /// `NT_X86_XSTATE` regset buffer).
    pub xsave_max_size: u32,
}

/// Read the pkeys-related CPUID leaves.
pub fn probe() -> CpuPkeys {
    let max_leaf = __cpuid(0).eax;
    let (pku, ospke) = if max_leaf >= 7 {
        let l7 = __cpuid_count(7, 0);
        (l7.ecx & (1 << 3) != 0, l7.ecx & (1 << 4) != 0)
    } else {
        (false, false)
    };
    let (off, size, xsave_size, xsave_max_size) = if max_leaf >= 0xd {
        let c9 = __cpuid_count(0xd, 9);
        let c0 = __cpuid_count(0xd, 0);
        (c9.ebx, c9.eax, c0.ebx, c0.ecx)
    } else {
        (0, 0, 0, 0)
    };
    CpuPkeys {
        pku,
        ospke,
        xsave_pkru_offset: off,
        xsave_pkru_size: size,
        xsave_size,
        xsave_max_size,
    }
}

/// The CPU's brand string (CPUID 0x80000002..4), trimmed.
pub fn model_name() -> String {
    let max_ext = __cpuid(0x8000_0000).eax;
    if max_ext < 0x8000_0004 {
        return String::from("unknown");
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in 0x8000_0002u32..=0x8000_0004 {
        let r = __cpuid(leaf);
        for reg in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&reg.to_le_bytes());
        }
    }
    String::from_utf8_lossy(&bytes)
        .trim_matches(['\0', ' '])
        .to_string()
}
