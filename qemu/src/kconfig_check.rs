//! Say what a kernel under test lacks before booting it: its configuration against the
//! `# required` options of `ci/pkeys.config`.
//!
//! A build tree's `.config` is read directly. A bare image is searched for the configuration
//! `CONFIG_IKCONFIG` embeds (`IKCFG_ST`, a gzip stream, `IKCFG_ED`, as `scripts/extract-ikconfig`
//! finds it), inside the image's gzip, xz or zstd payload. Without either the check says it could
//! not be made. A missing option is a warning, never a refusal: the cases that need the feature
//! report SKIP naming the option (see `pkeys_harness::features`).

use crate::kbuild::{Fragment, Missing};
use std::io::Read;
use std::path::Path;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigCheck {
    /// The configuration was read (`from` says where) and lacks `missing`.
    Checked {
        /// Where the configuration came from.
        from: String,
        /// The required options it does not have as asked.
        missing: Vec<Missing>,
    },
    /// No configuration could be found (the reason).
    Unknown(String),
}

impl ConfigCheck {
    /// The line the runner prints before booting.
    pub fn line(&self, fragment_name: &str) -> String {
        match self {
            ConfigCheck::Checked { from, missing } if missing.is_empty() => {
                format!("kernel config ({from}): has every option {fragment_name} requires")
            }
            ConfigCheck::Checked { from, missing } => {
                let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
                format!(
                    "warning: kernel config ({from}) lacks {} option(s) {fragment_name} requires: \
                     {}; the cases that need them will SKIP naming the option",
                    missing.len(),
                    list.join(", ")
                )
            }
            ConfigCheck::Unknown(why) => {
                format!("kernel config: could not check it against {fragment_name}: {why}")
            }
        }
    }
}

const IKCFG_ST: &[u8] = b"IKCFG_ST";
const IKCFG_ED: &[u8] = b"IKCFG_ED";
const GZIP: &[u8] = &[0x1f, 0x8b, 0x08];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// A decompressed kernel is tens of MiB; stop well above that.
const MAX_PAYLOAD: u64 = 512 << 20;

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The configuration text between `IKCFG_ST` and `IKCFG_ED` in `bytes`, if there is one.
fn ikconfig_in(bytes: &[u8]) -> Option<String> {
    let st = find(bytes, IKCFG_ST, 0)? + IKCFG_ST.len();
    let ed = find(bytes, IKCFG_ED, st)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[st..ed])
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Decompress the stream starting at `at` with `magic`'s format (as much as decodes).
fn decompress(bytes: &[u8], at: usize, magic: &[u8]) -> Option<Vec<u8>> {
    let input = &bytes[at..];
    let mut out = Vec::new();
    match magic {
        GZIP => {
            let _ = flate2::read::GzDecoder::new(input)
                .take(MAX_PAYLOAD)
                .read_to_end(&mut out);
        }
        // The kernel's xz streams use the x86 BCJ filter, which only xz itself decodes here;
        // `--single-stream` stops at the stream's end and ignores what follows it.
        XZ => out = xz_decompress(input)?,
        ZSTD => {
            let d = ruzstd::decoding::StreamingDecoder::new(input).ok()?;
            let _ = d.take(MAX_PAYLOAD).read_to_end(&mut out);
        }
        _ => return None,
    }
    (!out.is_empty()).then_some(out)
}

/// `xz -dc --single-stream` of `input` (None when xz is not installed or decodes nothing).
fn xz_decompress(input: &[u8]) -> Option<Vec<u8>> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut stdin, &data);
    });
    let mut out = Vec::new();
    let _ = child.stdout.take()?.take(MAX_PAYLOAD).read_to_end(&mut out);
    let _ = child.kill();
    let _ = child.wait();
    let _ = feeder.join();
    (!out.is_empty()).then_some(out)
}

fn xz_installed() -> bool {
    std::process::Command::new("xz")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The configuration embedded in a kernel image (bzImage or vmlinux), if it has one.
pub fn embedded_config(image: &[u8]) -> Option<String> {
    if let Some(c) = ikconfig_in(image) {
        return Some(c);
    }
    for magic in [XZ, ZSTD, GZIP] {
        let mut from = 0;
        while let Some(at) = find(image, magic, from) {
            if let Some(c) = decompress(image, at, magic).and_then(|p| ikconfig_in(&p)) {
                return Some(c);
            }
            from = at + 1;
        }
    }
    None
}

/// Check the kernel `--kernel` names (a build tree or an image) against `fragment`.
pub fn check(kernel: &Path, fragment: &Fragment) -> ConfigCheck {
    let (from, text) = if kernel.is_dir() {
        let objtree = match crate::kbuild::detect_tree(kernel) {
            Ok(t) => t.objtree().to_path_buf(),
            Err(e) => return ConfigCheck::Unknown(format!("{e:#}")),
        };
        let config = objtree.join(".config");
        match std::fs::read_to_string(&config) {
            Ok(t) => (config.display().to_string(), t),
            Err(e) => return ConfigCheck::Unknown(format!("{}: {e}", config.display())),
        }
    } else {
        let bytes = match std::fs::read(kernel) {
            Ok(b) => b,
            Err(e) => return ConfigCheck::Unknown(format!("{}: {e}", kernel.display())),
        };
        match embedded_config(&bytes) {
            Some(t) => ("embedded in the image, CONFIG_IKCONFIG".to_owned(), t),
            None if find(&bytes, XZ, 0).is_some() && !xz_installed() => {
                return ConfigCheck::Unknown(
                    "the image is xz-compressed and `xz` is not installed (Debian package \
                     xz-utils): its embedded configuration, if any, cannot be read"
                        .to_owned(),
                );
            }
            None => {
                return ConfigCheck::Unknown(
                    "the image has no embedded configuration (CONFIG_IKCONFIG is not set); \
                     point --kernel at the build tree to have its .config checked"
                        .to_owned(),
                );
            }
        }
    };
    ConfigCheck::Checked {
        from,
        missing: fragment.missing(&text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn vmlinux_with(config: &str) -> Vec<u8> {
        let mut v = b"\x7fELF some kernel text ".to_vec();
        v.extend_from_slice(IKCFG_ST);
        v.extend(gz(config.as_bytes()));
        v.extend_from_slice(IKCFG_ED);
        v.extend_from_slice(b" more kernel");
        v
    }

    const FRAG: &str = "CONFIG_NET=y # required\nCONFIG_UNIX=y # required\nCONFIG_KSM=y\n";

    #[test]
    fn finds_the_config_in_a_plain_and_a_compressed_image() {
        let config = "CONFIG_NET=y\n# CONFIG_UNIX is not set\n";
        let plain = vmlinux_with(config);
        assert_eq!(embedded_config(&plain).as_deref(), Some(config));
        // A bzImage: setup code, then the compressed vmlinux.
        let mut gz_image = b"MZ setup code HdrS".to_vec();
        gz_image.extend(gz(&plain));
        assert_eq!(embedded_config(&gz_image).as_deref(), Some(config));
        // xz with the x86 BCJ filter, as the kernel's scripts/xz_wrap.sh compresses, followed
        // by trailing bytes as in a bzImage.
        let xz = std::process::Command::new("xz")
            .args(["-c", "--check=crc32", "--x86", "--lzma2=dict=1MiB"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&plain)?;
                c.wait_with_output()
            });
        match xz {
            Ok(o) if o.status.success() => {
                let mut xz_image = b"MZ setup code HdrS".to_vec();
                xz_image.extend(o.stdout);
                xz_image.extend_from_slice(b"trailing setup data");
                assert_eq!(embedded_config(&xz_image).as_deref(), Some(config));
            }
            other => eprintln!("xz not usable here, xz payload not checked: {other:?}"),
        }
        assert_eq!(embedded_config(b"MZ no config here"), None);
    }

    #[test]
    fn names_the_missing_required_options() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("bzImage");
        std::fs::write(&image, vmlinux_with("CONFIG_NET=y\nCONFIG_KSM=y\n")).unwrap();
        let frag = Fragment::parse(FRAG, "ci/pkeys.config").unwrap();
        let c = check(&image, &frag);
        let ConfigCheck::Checked { missing, .. } = &c else {
            panic!("{c:?}")
        };
        assert_eq!(
            missing.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["CONFIG_UNIX"]
        );
        let line = c.line("ci/pkeys.config");
        assert!(
            line.starts_with("warning: kernel config (embedded"),
            "{line}"
        );
        assert!(
            line.contains("CONFIG_UNIX=y (absent from the .config)"),
            "{line}"
        );
        std::fs::write(&image, b"MZ nothing").unwrap();
        let c = check(&image, &frag);
        assert!(
            c.line("ci/pkeys.config")
                .contains("CONFIG_IKCONFIG is not set"),
            "{c:?}"
        );
    }
}
