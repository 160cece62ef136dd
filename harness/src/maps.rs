//! The one parser of `/proc/PID/maps` and `/proc/PID/smaps`: entries with their range,
//! permissions and (in smaps) the field lines that follow each header.
//!
//! # References
//! proc(5) (`/proc/PID/maps`, `/proc/PID/smaps`, `ProtectionKey:`).

/// `/proc/self/maps`.
pub const SELF_MAPS: &str = "/proc/self/maps";
/// `/proc/self/smaps`.
pub const SELF_SMAPS: &str = "/proc/self/smaps";

/// One entry of `/proc/PID/maps` or `/proc/PID/smaps`: its range, permissions and the field
/// lines that follow its header (none in `maps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma<'a> {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// The permissions column (`rwxp`).
    pub perms: &'a str,
    fields: Vec<&'a str>,
}

impl<'a> Vma<'a> {
    /// The value of field `name` (e.g. `ProtectionKey:`), trimmed.
    pub fn field(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    }

    /// `ProtectionKey:` (None where the field is absent); the error names the unparsable value.
    pub fn pkey(&self) -> Result<Option<i32>, String> {
        let Some(v) = self
            .fields
            .iter()
            .find_map(|l| l.strip_prefix("ProtectionKey:"))
        else {
            return Ok(None);
        };
        v.trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("smaps ProtectionKey {v:?}: {e}"))
    }

    /// Whether `addr` lies in the entry.
    pub fn contains(&self, addr: usize) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// Whether the entry intersects `[lo, hi)`.
    pub fn overlaps(&self, lo: usize, hi: usize) -> bool {
        self.start < hi && lo < self.end
    }

    /// Whether the entry is executable (`x` in the permissions).
    pub fn executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
}

/// The entries of a maps or smaps text, in order.
pub fn parse(text: &str) -> Vec<Vma<'_>> {
    let mut out: Vec<Vma<'_>> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(range), Some(perms)) = (it.next(), it.next())
            && let Some((a, b)) = range.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            out.push(Vma {
                start,
                end,
                perms,
                fields: Vec::new(),
            });
        } else if let Some(v) = out.last_mut() {
            v.fields.push(line);
        }
    }
    out
}

/// The entry of `text` containing `addr`, if any.
pub fn find(text: &str, addr: usize) -> Option<Vma<'_>> {
    parse(text).into_iter().find(|v| v.contains(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f0000000000-7f0000002000 rw-p 00000000 00:00 0 
Size:                  8 kB
ProtectionKey:         3
VmFlags: rd wr mr mw me ac
7f0000002000-7f0000003000 r-xp 00000000 00:00 0                          /bin/x
Size:                  4 kB
AnonHugePages:      2048 kB
ProtectionKey:         0
";

    #[test]
    fn entries_ranges_perms_and_fields() {
        let v = parse(SMAPS);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].start, v[0].end, v[0].perms),
            (0x7f00_0000_0000, 0x7f00_0000_2000, "rw-p")
        );
        assert_eq!(v[0].pkey(), Ok(Some(3)));
        assert_eq!(v[1].pkey(), Ok(Some(0)));
        assert_eq!(v[1].field("AnonHugePages:"), Some("2048 kB"));
        assert_eq!(v[0].field("AnonHugePages:"), None);
        assert!(!v[0].executable() && v[1].executable());
        assert!(v[0].overlaps(0x7f00_0000_1fff, 0x7f00_0000_2001));
        assert!(!v[0].overlaps(0x7f00_0000_2000, 0x7f00_0000_3000));
    }

    #[test]
    fn find_contains_and_misses() {
        assert_eq!(find(SMAPS, 0x7f00_0000_2fff).map(|v| v.perms), Some("r-xp"));
        assert_eq!(find(SMAPS, 0x7f00_0000_3000), None);
    }

    #[test]
    fn maps_without_fields_and_bad_key() {
        let v = parse("1000-2000 r--p 0 0:0 0\n");
        assert_eq!(v[0].pkey(), Ok(None));
        let bad = parse("1000-2000 r--p 0 0:0 0\nProtectionKey: x\n");
        assert!(bad[0].pkey().unwrap_err().contains("smaps ProtectionKey"));
    }
}
