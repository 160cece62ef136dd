//! System calls that copy into or out of a protected buffer: -1/EFAULT, no signal, nothing
//! consumed or produced.

use super::{AD, N, no_signal, protected};
use crate::util::sysfail;
use pkeys_harness::fault::{self, Fix};
use pkeys_harness::mem::{UserBuf, temp_fd};
use pkeys_harness::sys::{self, Errno};
use pkeys_harness::{Ctx, Outcome, Stop, check_eq, pkru};

/// A pipe `(read, write)` holding `n` bytes 0x42.
fn pipe_with(n: usize) -> Result<(i32, i32), Stop> {
    let (r, w) = nix::unistd::pipe().map_err(|e| Stop::Fail(format!("pipe: {e}")))?;
    if n > 0 {
        nix::unistd::write(&w, &vec![0x42u8; n]).map_err(|e| Stop::Fail(format!("write: {e}")))?;
    }
    use std::os::fd::IntoRawFd;
    Ok((r.into_raw_fd(), w.into_raw_fd()))
}

/// Read what is left in `fd` (up to 4 KiB) into a plain buffer.
fn drain(fd: i32) -> Result<Vec<u8>, Stop> {
    let n = sysfail("FIONREAD", sys::fionread(fd))? as usize;
    let mut buf = vec![0u8; n];
    if n > 0 {
        let got = sysfail(
            "read (plain buffer)",
            sys::read_into(fd, buf.as_mut_slice().into()),
        )?;
        buf.truncate(got);
    }
    Ok(buf)
}

/// `write(pipe, buf, 64)` from an access-disabled buffer: -1/EFAULT, no signal, nothing written
/// into the pipe. Fault injection: expects one signal.
pub(crate) fn write_from_ad(ctx: &mut Ctx) -> Outcome {
    let (r, key) = protected(ctx, AD, 0x11)?;
    let (rd, wr) = pipe_with(0)?;
    let mut ret = Ok(0);
    let cap = fault::capture(Fix::AllowKey, || ret = sys::write_from(wr, r.ptr(0), N));
    ctx.diag(format!("key {key}: write(pipe, AD buffer, {N}) = {ret:?}"));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(
        cap.faults.len(),
        ctx.skew() as usize,
        "signals raised by write() from the AD buffer"
    );
    check_eq!(ret, Err(Errno::EFAULT), "write() from the AD buffer");
    check_eq!(left?.len(), 0, "bytes in the pipe after the refused write");
    Ok(())
}

/// `read(pipe, buf, 64)` into a buffer whose key denies writing (AD or WD): -1/EFAULT, no signal,
/// the buffer unchanged, and the 64 bytes still in the pipe (a plain read gets them).
pub(super) fn pipe_read_into(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0)?;
    let (rd, wr) = pipe_with(N)?;
    let ret = no_signal("read() into the protected buffer", || {
        sys::read_into(rd, r.buf(0, N))
    });
    ctx.diag(format!("key {key} rights {rights}: read = {ret:?}"));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(ret?, Err(Errno::EFAULT), "read() into the protected buffer");
    check_eq!(left?, vec![0x42u8; N], "data left in the pipe");
    pkru::set_rights(key, 0);
    check_eq!(r.read(0), 0, "first byte of the buffer");
    Ok(())
}

/// A temporary file holding `N` bytes 0x5a.
fn file_with_data() -> Result<i32, Stop> {
    let fd = temp_fd(0).map_err(crate::util::map_failed)?;
    let data = [0x5au8; N];
    let n = sysfail("pwrite", sys::pwrite_from(fd, data.as_ptr(), N, 0))?;
    check_eq!(n, N, "bytes written to the temporary file");
    Ok(fd)
}

/// `pread(file, buf, 64, 0)` into an AD or WD buffer: -1/EFAULT, no signal, buffer unchanged.
pub(super) fn pread_into(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0)?;
    let fd = file_with_data()?;
    let ret = no_signal("pread() into the protected buffer", || {
        sys::pread_into(fd, r.buf(0, N), 0)
    });
    ctx.diag(format!("key {key} rights {rights}: pread = {ret:?}"));
    sys::close(fd);
    check_eq!(
        ret?,
        Err(Errno::EFAULT),
        "pread() into the protected buffer"
    );
    pkru::set_rights(key, 0);
    check_eq!(r.read(0), 0, "first byte of the buffer");
    Ok(())
}

/// `pwrite(file, buf, 64, 64)` (appending past the end) from an AD buffer: -1/EFAULT, no signal,
/// the file keeps its size. From a WD buffer (reading is allowed) it writes the 64 bytes.
pub(super) fn pwrite_from(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0x33)?;
    let fd = file_with_data()?;
    let ret = no_signal("pwrite() from the protected buffer", || {
        sys::pwrite_from(fd, r.ptr(0), N, N as i64)
    });
    ctx.diag(format!("key {key} rights {rights}: pwrite = {ret:?}"));
    let size = sys::fstat_size(fd);
    let mut back = [0u8; N];
    let read_back = sys::pread_into(fd, back.as_mut_slice().into(), N as i64);
    sys::close(fd);
    let ret = ret?;
    if rights == AD {
        check_eq!(ret, Err(Errno::EFAULT), "pwrite() from the AD buffer");
        check_eq!(size, Ok(N as i64), "file size after the refused pwrite");
    } else {
        check_eq!(ret, Ok(N), "pwrite() from the WD buffer");
        check_eq!(size, Ok(2 * N as i64), "file size after the pwrite");
        check_eq!(read_back, Ok(N), "pread of the written bytes");
        check_eq!(back, [0x33u8; N], "bytes written from the WD buffer");
    }
    Ok(())
}

/// `readv(pipe, [protected 64])`: -1/EFAULT, no signal, the data left in the pipe.
pub(super) fn readv_into(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0)?;
    let (rd, wr) = pipe_with(N)?;
    let ret = no_signal("readv() into the protected buffer", || {
        sys::readv_into(rd, &[r.buf(0, N)])
    });
    ctx.diag(format!("key {key} rights {rights}: readv = {ret:?}"));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(
        ret?,
        Err(Errno::EFAULT),
        "readv() into the protected buffer"
    );
    check_eq!(left?, vec![0x42u8; N], "data left in the pipe");
    Ok(())
}

/// `readv(pipe, [plain 32, AD 32])` with 64 bytes in one pipe buffer: -1/EFAULT, no signal — not
/// a short read of 32 (readv(2) would allow one). The pipe copies a buffer's bytes to the iovecs
/// and consumes the buffer only if all of them arrived; the copy stops at the protected iovec, so
/// nothing is consumed and the call fails, yet the plain iovec has already received its 32 bytes.
/// All 64 bytes stay in the pipe. Measured on 7.2 and consistent with `pipe_read()`.
pub(super) fn readv_partial(ctx: &mut Ctx) -> Outcome {
    let (r, key) = protected(ctx, AD, 0)?;
    let (rd, wr) = pipe_with(N)?;
    let mut plain = vec![0u8; N / 2];
    let pa = UserBuf::from(plain.as_mut_slice());
    let ret = no_signal("readv() with a protected second iovec", || {
        sys::readv_into(rd, &[pa, r.buf(0, N / 2)])
    });
    ctx.diag(format!("key {key}: readv([plain 32, AD 32]) = {ret:?}"));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(
        ret?,
        Err(Errno::EFAULT),
        "readv() with a protected second iovec"
    );
    check_eq!(
        plain,
        vec![0x42u8; N / 2],
        "plain iovec contents after the failed readv"
    );
    check_eq!(left?, vec![0x42u8; N], "data left in the pipe");
    Ok(())
}

/// `readv(file, [plain 32, AD 32])` on a regular file holding 64 bytes: a short read of 32 (the
/// page-cache copy counts what arrived before the protected iovec and advances the file position
/// by it), no signal; the next plain read returns the other 32 bytes. Contrast with the pipe.
pub(super) fn readv_partial_file(ctx: &mut Ctx) -> Outcome {
    let (r, key) = protected(ctx, AD, 0)?;
    let fd = file_with_data()?;
    let mut plain = vec![0u8; N / 2];
    let pa = UserBuf::from(plain.as_mut_slice());
    let ret = no_signal("readv() with a protected second iovec", || {
        sys::readv_into(fd, &[pa, r.buf(0, N / 2)])
    });
    ctx.diag(format!(
        "key {key}: readv(file, [plain 32, AD 32]) = {ret:?}"
    ));
    let mut rest = vec![0u8; N];
    let next = sys::read_into(fd, rest.as_mut_slice().into());
    sys::close(fd);
    check_eq!(ret?, Ok(N / 2), "readv() with a protected second iovec");
    check_eq!(plain, vec![0x5au8; N / 2], "plain iovec contents");
    check_eq!(next, Ok(N / 2), "next read() from the file position");
    check_eq!(rest[..N / 2], [0x5au8; N / 2], "bytes of the next read()");
    Ok(())
}

/// `writev(pipe, [AD 64])`, or with `partial` `writev(pipe, [plain 32, AD 32])`: -1/EFAULT, no
/// signal, nothing in the pipe. A pipe write copies a whole chunk into a fresh pipe buffer and
/// discards it when the copy comes up short, so even the plain first iovec is not written (the
/// mirror image of `readv_partial_ad::pipe`).
pub(super) fn writev_from(ctx: &mut Ctx, partial: bool) -> Outcome {
    let (r, key) = protected(ctx, AD, 0x44)?;
    let (rd, wr) = pipe_with(0)?;
    let plain = [0x55u8; N / 2];
    let parts: Vec<(usize, usize)> = if partial {
        vec![(plain.as_ptr() as usize, N / 2), (r.addr(), N / 2)]
    } else {
        vec![(r.addr(), N)]
    };
    let ret = no_signal("writev() from the AD buffer", || {
        sys::writev_from(wr, &parts)
    });
    ctx.diag(format!(
        "key {key}: writev({} iovecs) = {ret:?}",
        parts.len()
    ));
    let left = drain(rd);
    sys::close(rd);
    sys::close(wr);
    check_eq!(ret?, Err(Errno::EFAULT), "writev() from the AD buffer");
    check_eq!(left?.len(), 0, "bytes in the pipe after the refused writev");
    Ok(())
}

/// `recv(socket, buf, 64, 0)` on an AF_UNIX stream socket into an AD or WD buffer: -1/EFAULT, no
/// signal, the data stays queued (a plain recv gets all of it).
pub(super) fn recv_into(ctx: &mut Ctx, rights: u32) -> Outcome {
    let (r, key) = protected(ctx, rights, 0)?;
    let (a, b) = sysfail("socketpair", sys::socketpair_stream())?;
    let data = [0x66u8; N];
    let sent = sys::write_from(b, data.as_ptr(), N);
    let ret = no_signal("recv() into the protected buffer", || {
        sys::recv_into(a, r.buf(0, N), 0)
    });
    ctx.diag(format!("key {key} rights {rights}: recv = {ret:?}"));
    let left = drain(a);
    sys::close(a);
    sys::close(b);
    check_eq!(sent, Ok(N), "bytes sent");
    check_eq!(ret?, Err(Errno::EFAULT), "recv() into the protected buffer");
    check_eq!(left?, vec![0x66u8; N], "data still queued on the socket");
    Ok(())
}
