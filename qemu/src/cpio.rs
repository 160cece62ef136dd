//! The cpio "newc" format (`070701`), as the kernel's initramfs unpacker reads it.
//!
//! # References
//! Documentation/driver-api/early-userspace/buffer-format.rst; `cpio(5)` (New ASCII Format).

use std::io::{self, Write};

use anyhow::{Result, bail};

/// File type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// The name of the last entry of an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// Writes a cpio newc archive, entry by entry.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    offset: u64,
}

/// One archive entry, as [`read`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path without leading `/`.
    pub name: String,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Device number of a device node (`major`, `minor`).
    pub rdev: (u32, u32),
    /// File content.
    pub data: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Starts an archive on `out`. Inode numbers start at `first_ino` (give concatenated
    /// archives distinct ranges: the kernel links entries with equal inode numbers and
    /// `nlink` > 1 as hard links).
    pub fn new(out: W, first_ino: u32) -> Self {
        Writer {
            out,
            ino: first_ino,
            offset: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.offset % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad cpio entry name",
            ));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio entry over 4 GiB"))?;
        let ino = if name == TRAILER { 0 } else { self.ino };
        self.ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: reproducible images
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    /// A directory (`mode` holds the permission bits).
    pub fn dir(&mut self, name: &str, mode: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | (mode & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (mode & 0o7777), 1, (0, 0), data)
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(TRAILER, 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }
}

fn hex_field(h: &[u8], i: usize) -> Result<u32> {
    let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i])?;
    Ok(u32::from_str_radix(s, 16)?)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Reads every entry of one or more concatenated (uncompressed) newc archives; trailers are
/// not returned, zero padding between archives is skipped.
pub fn read(mut bytes: &[u8]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut pos_total = 0usize;
    loop {
        let zeros = bytes.iter().take_while(|&&b| b == 0).count();
        bytes = &bytes[zeros..];
        pos_total += zeros;
        if bytes.is_empty() {
            return Ok(out);
        }
        if bytes.len() < 110 || &bytes[..6] != b"070701" {
            bail!("no cpio newc header at offset {pos_total}");
        }
        let h = &bytes[..110];
        let mode = hex_field(h, 1)?;
        let size = hex_field(h, 6)? as usize;
        let rdev = (hex_field(h, 9)?, hex_field(h, 10)?);
        let namesize = hex_field(h, 11)? as usize;
        if namesize == 0 || bytes.len() < 110 + namesize {
            bail!("truncated cpio name at offset {pos_total}");
        }
        let name = std::str::from_utf8(&bytes[110..110 + namesize - 1])?.to_owned();
        let data_start = align4(110 + namesize);
        let data_end = data_start + size;
        if bytes.len() < data_end {
            bail!("truncated cpio data of `{name}` at offset {pos_total}");
        }
        let data = bytes[data_start..data_end].to_vec();
        let next = align4(data_end).min(bytes.len());
        bytes = &bytes[next..];
        pos_total += next;
        if name != TRAILER {
            out.push(Entry {
                name,
                mode,
                rdev,
                data,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::empty(b"")]
    #[case::one(b"x")]
    #[case::three(b"abc")]
    #[case::four(b"abcd")]
    #[case::five(b"abcde")]
    fn roundtrip(#[case] content: &[u8]) {
        let mut w = Writer::new(Vec::new(), 1);
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("/init", 0o755, content).unwrap();
        w.dir("a-longer-dir-name", 0o700).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = read(&bytes).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init", "a-longer-dir-name"]);
        assert_eq!(entries[0].mode, S_IFDIR | 0o755);
        assert_eq!(entries[1].mode, S_IFCHR | 0o600);
        assert_eq!(entries[1].rdev, (5, 1));
        assert_eq!(entries[2].mode, S_IFREG | 0o755);
        assert_eq!(entries[2].data, content);
    }

    #[test]
    fn header_layout() {
        let mut w = Writer::new(Vec::new(), 7);
        w.file("ab", 0o644, b"xyz").unwrap();
        let bytes = w.finish().unwrap();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert!(header.starts_with("070701"));
        assert_eq!(&header[6..14], "00000007", "ino");
        assert_eq!(&header[14..22], "000081A4", "mode");
        assert_eq!(&header[54..62], "00000003", "filesize");
        assert_eq!(&header[94..102], "00000003", "namesize");
        assert_eq!(&bytes[110..113], b"ab\0");
        assert_eq!(&bytes[113..116], b"\0\0\0", "name padding");
        assert_eq!(&bytes[116..119], b"xyz");
    }

    #[test]
    fn concatenated_with_padding() {
        let mut a = Writer::new(Vec::new(), 1);
        a.file("a", 0o644, b"1").unwrap();
        let mut bytes = a.finish().unwrap();
        bytes.extend_from_slice(&[0; 512]);
        let mut b = Writer::new(Vec::new(), 100);
        b.file("b", 0o644, b"2").unwrap();
        bytes.extend(b.finish().unwrap());
        let names: Vec<_> = read(&bytes).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn truncated_is_an_error() {
        let mut w = Writer::new(Vec::new(), 1);
        w.file("a", 0o644, &[7u8; 100]).unwrap();
        let bytes = w.finish().unwrap();
        assert!(
            read(&bytes[..150])
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        assert!(read(b"garbage").is_err());
    }
}
