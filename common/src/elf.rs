//! A minimal reader for ELF64 little-endian files: the header, the program headers and the notes
//! of `PT_NOTE` segments. Used to check that the guest payload is static (`PT_INTERP`) and to read
//! the PKRU note of a core dump.

use thiserror::Error;

/// `PT_INTERP`: the program asks for a dynamic loader.
pub const PT_INTERP: u32 = 3;
/// `PT_NOTE`: a segment of notes.
pub const PT_NOTE: u32 = 4;
/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;

/// Why bytes could not be read as ELF.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElfError {
    /// No ELF magic, or too short for a header.
    #[error("not an ELF file")]
    NotElf,
    /// ELF, but not 64-bit little-endian.
    #[error("not a 64-bit little-endian ELF file")]
    NotElf64Le,
    /// A header, program header or note runs past the end of the data.
    #[error("truncated ELF {0}")]
    Truncated(&'static str),
}

/// One program header: type, file offset and size in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// `p_type`.
    pub kind: u32,
    /// `p_offset`.
    pub offset: usize,
    /// `p_filesz`.
    pub file_size: usize,
}

/// One note: name without its NUL, type, descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'a> {
    /// The owner's name (`CORE`, `LINUX`, ...).
    pub name: &'a [u8],
    /// `n_type` (e.g. `NT_X86_XSTATE` 0x202).
    pub kind: u32,
    /// The descriptor bytes.
    pub desc: &'a [u8],
}

/// An ELF64 little-endian file in memory.
#[derive(Debug, Clone, Copy)]
pub struct Elf64<'a> {
    bytes: &'a [u8],
}

impl<'a> Elf64<'a> {
    /// Checks the identification bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        if bytes[4] != 2 || bytes[5] != 1 {
            return Err(ElfError::NotElf64Le);
        }
        Ok(Elf64 { bytes })
    }

    fn u16_at(&self, o: usize, what: &'static str) -> Result<u16, ElfError> {
        let s = self.bytes.get(o..o + 2).ok_or(ElfError::Truncated(what))?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32_at(&self, o: usize, what: &'static str) -> Result<u32, ElfError> {
        let s = self.bytes.get(o..o + 4).ok_or(ElfError::Truncated(what))?;
        Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
    }

    fn usize_at(&self, o: usize, what: &'static str) -> Result<usize, ElfError> {
        let s = self.bytes.get(o..o + 8).ok_or(ElfError::Truncated(what))?;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")) as usize)
    }

    /// `e_machine`.
    pub fn machine(&self) -> u16 {
        // The header is at least 64 bytes (checked by `parse`).
        u16::from_le_bytes([self.bytes[18], self.bytes[19]])
    }

    /// Every program header.
    pub fn program_headers(&self) -> Result<Vec<ProgramHeader>, ElfError> {
        let what = "program headers";
        let phoff = self.usize_at(0x20, what)?;
        let phentsize = usize::from(self.u16_at(0x36, what)?);
        let phnum = usize::from(self.u16_at(0x38, what)?);
        (0..phnum)
            .map(|i| {
                let ph = phoff + i * phentsize;
                Ok(ProgramHeader {
                    kind: self.u32_at(ph, what)?,
                    offset: self.usize_at(ph + 8, what)?,
                    file_size: self.usize_at(ph + 0x20, what)?,
                })
            })
            .collect()
    }

    /// Whether a `PT_INTERP` asks for a dynamic loader.
    pub fn has_interp(&self) -> Result<bool, ElfError> {
        Ok(self.program_headers()?.iter().any(|p| p.kind == PT_INTERP))
    }

    /// The notes of every `PT_NOTE` segment, in file order.
    pub fn notes(&self) -> Result<Vec<Note<'a>>, ElfError> {
        let what = "note";
        let mut out = Vec::new();
        for ph in self.program_headers()? {
            if ph.kind != PT_NOTE {
                continue;
            }
            let (off, size) = (ph.offset, ph.file_size);
            let mut p = off;
            while p + 12 <= off + size {
                let namesz = self.u32_at(p, what)? as usize;
                let descsz = self.u32_at(p + 4, what)? as usize;
                let kind = self.u32_at(p + 8, what)?;
                let name_at = p + 12;
                let desc_at = name_at + namesz.next_multiple_of(4);
                let name = self
                    .bytes
                    .get(name_at..name_at + namesz)
                    .ok_or(ElfError::Truncated(what))?;
                let desc = self
                    .bytes
                    .get(desc_at..desc_at + descsz)
                    .ok_or(ElfError::Truncated(what))?;
                out.push(Note {
                    name: name.strip_suffix(b"\0").unwrap_or(name),
                    kind,
                    desc,
                });
                p = desc_at + descsz.next_multiple_of(4);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with `types.len()` program headers of 56 bytes right after it.
    fn with_headers(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * types.len()];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[18] = EM_X86_64 as u8;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            b[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn interp_decides_linkage() {
        let e = with_headers(&[6, 1]);
        assert!(!Elf64::parse(&e).unwrap().has_interp().unwrap());
        let d = with_headers(&[6, PT_INTERP]);
        assert!(Elf64::parse(&d).unwrap().has_interp().unwrap());
        assert_eq!(Elf64::parse(&d).unwrap().machine(), EM_X86_64);
    }

    #[test]
    fn refuses_what_is_not_elf64_le() {
        assert_eq!(Elf64::parse(b"#!/bin/sh\n").unwrap_err(), ElfError::NotElf);
        let mut e = with_headers(&[]);
        e[4] = 1;
        assert_eq!(Elf64::parse(&e).unwrap_err(), ElfError::NotElf64Le);
        let mut t = with_headers(&[1]);
        t.truncate(80);
        assert_eq!(
            Elf64::parse(&t).unwrap().program_headers().unwrap_err(),
            ElfError::Truncated("program headers")
        );
    }

    #[test]
    fn parses_one_note() {
        let mut b = with_headers(&[PT_NOTE]);
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
        let n = Elf64::parse(&b).unwrap().notes().unwrap();
        assert_eq!(
            n,
            vec![Note {
                name: b"LINUX",
                kind: 0x202,
                desc: &[1, 2, 3, 4, 5]
            }]
        );
        // A note that claims more descriptor than there is.
        b.truncate(b.len() - 4);
        assert!(Elf64::parse(&b).unwrap().notes().is_err());
    }

    #[test]
    fn reads_this_test_binary() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = Elf64::parse(&exe).unwrap();
        assert_eq!(elf.machine(), EM_X86_64);
        assert!(!elf.program_headers().unwrap().is_empty());
    }
}
