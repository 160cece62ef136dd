//! The bare guest: the same kernel with a trivial `/init`, to measure the kernel's own
//! boot-to-init time next to the suite's run.
//!
//! The init is a 300-byte static x86-64 ELF assembled here (no compiler, no libc): as PID 1 it
//! writes `KTAP version 1` and the init's end marker to `/dev/ttyS1` (so the runner's own
//! watch loop, [`crate::guest::run`], times it exactly like a suite run) and `pkeys-bare: init
//! reached` to the console, then powers off with `reboot(RB_POWER_OFF)`. Run as any other PID
//! it only prints the console line and exits 0 (that is how the unit test runs it).
//!
//! ```text
//!     mov eax, 1; mov edi, 1; lea rsi, [rip+console]; mov edx, len; syscall   ; write(1, ...)
//!     mov eax, 39; syscall; cmp eax, 1; jne quit                              ; getpid() == 1?
//!     mov eax, 2; lea rdi, [rip+tty]; mov esi, O_WRONLY|O_NOCTTY; xor edx, edx; syscall
//!     mov edi, eax; mov eax, 1; lea rsi, [rip+stream]; mov edx, len; syscall   ; write(tty, ...)
//!     mov eax, 169; mov edi, MAGIC1; mov esi, MAGIC2; mov edx, POWER_OFF; xor r10d, r10d; syscall
//! idle: mov eax, 34; syscall; jmp idle                                        ; pause()
//! quit: mov eax, 60; xor edi, edi; syscall                                    ; exit(0)
//! ```

use anyhow::Result;

use crate::cpio;

/// What the bare init prints on the console.
pub const CONSOLE_LINE: &[u8] = b"pkeys-bare: init reached\n";
/// What it writes to the result UART: the suite's first line and the init's end marker (a
/// literal, as it is assembled into the image; a test holds it to `pkeys_common::protocol`).
pub const STREAM: &[u8] = b"KTAP version 1\n# pkeys-init: suite exit=0\n";
const TTY: &[u8] = b"/dev/ttyS1\0";
/// Load address of the single segment.
const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// A tiny assembler: bytes plus RIP-relative fix-ups resolved against the data labels.
struct Asm {
    code: Vec<u8>,
    /// (offset of a rel32 field, index of the data item it points to)
    fixups: Vec<(usize, usize)>,
}

impl Asm {
    fn bytes(&mut self, b: &[u8]) {
        self.code.extend_from_slice(b);
    }
    fn mov_eax(&mut self, v: u32) {
        self.bytes(&[0xb8]);
        self.bytes(&v.to_le_bytes());
    }
    fn mov_edi(&mut self, v: u32) {
        self.bytes(&[0xbf]);
        self.bytes(&v.to_le_bytes());
    }
    fn mov_esi(&mut self, v: u32) {
        self.bytes(&[0xbe]);
        self.bytes(&v.to_le_bytes());
    }
    fn mov_edx(&mut self, v: u32) {
        self.bytes(&[0xba]);
        self.bytes(&v.to_le_bytes());
    }
    fn syscall(&mut self) {
        self.bytes(&[0x0f, 0x05]);
    }
    /// `lea rdi, [rip+data]` (reg 7) or `lea rsi, [rip+data]` (reg 6).
    fn lea(&mut self, reg: u8, data: usize) {
        self.bytes(&[0x48, 0x8d, 0x05 | (reg << 3)]);
        self.fixups.push((self.code.len(), data));
        self.bytes(&[0; 4]);
    }
}

/// The bare init executable.
pub fn init_elf() -> Vec<u8> {
    let data: [&[u8]; 3] = [CONSOLE_LINE, TTY, STREAM];
    let mut a = Asm {
        code: Vec::new(),
        fixups: Vec::new(),
    };
    // write(1, CONSOLE_LINE)
    a.mov_eax(1);
    a.mov_edi(1);
    a.lea(6, 0);
    a.mov_edx(CONSOLE_LINE.len() as u32);
    a.syscall();
    // if getpid() != 1 goto quit
    a.mov_eax(39);
    a.syscall();
    a.bytes(&[0x83, 0xf8, 0x01]); // cmp eax, 1
    a.bytes(&[0x75, 0x00]); // jne rel8 (patched below)
    let jne_at = a.code.len();
    // fd = open("/dev/ttyS1", O_WRONLY | O_NOCTTY)
    a.mov_eax(2);
    a.lea(7, 1);
    a.mov_esi((libc::O_WRONLY | libc::O_NOCTTY) as u32);
    a.bytes(&[0x31, 0xd2]); // xor edx, edx
    a.syscall();
    // write(fd, STREAM)
    a.bytes(&[0x89, 0xc7]); // mov edi, eax
    a.mov_eax(1);
    a.lea(6, 2);
    a.mov_edx(STREAM.len() as u32);
    a.syscall();
    // reboot(MAGIC1, MAGIC2, RB_POWER_OFF, NULL)
    a.mov_eax(169);
    a.mov_edi(0xfee1_dead);
    a.mov_esi(0x2812_1969);
    a.mov_edx(libc::RB_POWER_OFF as u32);
    a.bytes(&[0x45, 0x31, 0xd2]); // xor r10d, r10d
    a.syscall();
    // idle: pause(); jmp idle
    let idle = a.code.len();
    a.mov_eax(34);
    a.syscall();
    let back = idle as isize - (a.code.len() as isize + 2);
    a.bytes(&[0xeb, back as i8 as u8]);
    // quit: exit(0)
    let quit = a.code.len();
    a.code[jne_at - 1] = (quit - jne_at) as u8;
    a.mov_eax(60);
    a.bytes(&[0x31, 0xff]); // xor edi, edi
    a.syscall();

    let code_off = EHDR + PHDR;
    let mut data_off = Vec::new();
    let mut tail = Vec::new();
    let data_start = code_off + a.code.len();
    for d in data {
        data_off.push(data_start + tail.len());
        tail.extend_from_slice(d);
    }
    for &(at, idx) in &a.fixups {
        // rel32 is relative to the end of the 4-byte field.
        let rel = data_off[idx] as i64 - (code_off + at + 4) as i64;
        a.code[at..at + 4].copy_from_slice(&(rel as i32).to_le_bytes());
    }
    let size = (data_start + tail.len()) as u64;

    let mut elf = Vec::with_capacity(size as usize);
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(BASE + code_off as u64).to_le_bytes()); // e_entry
    elf.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&(EHDR as u16).to_le_bytes());
    elf.extend_from_slice(&(PHDR as u16).to_le_bytes());
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&size.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&size.to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(&a.code);
    elf.extend_from_slice(&tail);
    elf
}

/// The bare guest's initramfs (uncompressed cpio newc): `/dev/console`, `/dev/ttyS1` and the
/// bare `/init`. The per-guest archive the runner appends (`/pkeys/args`) is ignored.
pub fn archive() -> Result<Vec<u8>> {
    let mut w = cpio::Writer::new(Vec::new(), 1);
    w.dir("dev", 0o755)?;
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.char_dev("dev/ttyS1", 0o600, 4, 65)?;
    w.file("init", 0o755, &init_elf())?;
    Ok(w.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stream_is_the_protocol_s_first_line_and_end_marker() {
        use pkeys_common::protocol::{VERSION_LINE, end_marker_exit};
        let want = format!("{VERSION_LINE}\n{}\n", end_marker_exit(0));
        assert_eq!(String::from_utf8_lossy(STREAM), want);
    }

    #[test]
    fn is_a_static_elf() {
        let elf = init_elf();
        assert!(elf.len() < 400, "{} bytes", elf.len());
        assert_eq!(
            crate::suite::elf_linkage(&elf).unwrap(),
            crate::suite::Linkage::Static
        );
    }

    #[test]
    fn runs_natively_as_an_ordinary_process() {
        // Not PID 1: it prints the console line and exits 0 (it never touches a tty or reboots).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bare-init");
        std::fs::write(&path, init_elf()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&path).output().unwrap();
        assert!(out.status.success(), "{:?}", out.status);
        assert_eq!(out.stdout, CONSOLE_LINE);
    }

    #[test]
    fn archive_layout() {
        let entries = cpio::read(&archive().unwrap()).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "dev/ttyS1", "init"]);
        assert_eq!(entries[2].rdev, (4, 65));
    }
}
