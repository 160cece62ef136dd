//! The notes of an ELF64 core file.

/// One ELF note: name (without the NUL), type, descriptor.
pub(super) type Note<'a> = (Vec<u8>, u32, &'a [u8]);

/// The notes `(name, type, descriptor)` of every PT_NOTE segment of an ELF64 little-endian core.
pub(super) fn elf_notes(b: &[u8]) -> Result<Vec<Note<'_>>, String> {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes(s.try_into().unwrap()))
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap()) as usize)
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return Err("not an ELF64 little-endian file".into());
    }
    let bad = || "truncated".to_string();
    let phoff = u64_at(0x20).ok_or_else(bad)?;
    let phentsize = u16_at(0x36).ok_or_else(bad)? as usize;
    let phnum = u16_at(0x38).ok_or_else(bad)? as usize;
    let mut out = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph).ok_or_else(bad)? != libc::PT_NOTE {
            continue;
        }
        let off = u64_at(ph + 8).ok_or_else(bad)?;
        let size = u64_at(ph + 0x20).ok_or_else(bad)?;
        let mut p = off;
        while p + 12 <= off + size {
            let namesz = u32_at(p).ok_or_else(bad)? as usize;
            let descsz = u32_at(p + 4).ok_or_else(bad)? as usize;
            let ty = u32_at(p + 8).ok_or_else(bad)?;
            let name_at = p + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let name = b.get(name_at..name_at + namesz).ok_or_else(bad)?;
            let name = name.strip_suffix(b"\0").unwrap_or(name).to_vec();
            let desc = b.get(desc_at..desc_at + descsz).ok_or_else(bad)?;
            out.push((name, ty, desc));
            p = desc_at + descsz.next_multiple_of(4);
        }
    }
    Ok(out)
}

/// The ELF note parser on a hand-built core.
#[cfg(test)]
mod tests {
    use super::elf_notes;

    #[test]
    fn parses_one_note() {
        let mut b = vec![0u8; 64 + 56];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&libc::PT_NOTE.to_le_bytes());
        let note_off = b.len();
        let mut note = Vec::new();
        note.extend_from_slice(&6u32.to_le_bytes());
        note.extend_from_slice(&5u32.to_le_bytes());
        note.extend_from_slice(&0x202u32.to_le_bytes());
        note.extend_from_slice(b"LINUX\0\0\0");
        note.extend_from_slice(&[1, 2, 3, 4, 5, 0, 0, 0]);
        b[64 + 8..64 + 16].copy_from_slice(&(note_off as u64).to_le_bytes());
        b[64 + 0x20..64 + 0x28].copy_from_slice(&(note.len() as u64).to_le_bytes());
        b.extend_from_slice(&note);
        let n = elf_notes(&b).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].0, b"LINUX".to_vec());
        assert_eq!(n[0].1, 0x202);
        assert_eq!(n[0].2, &[1, 2, 3, 4, 5]);
    }
}
