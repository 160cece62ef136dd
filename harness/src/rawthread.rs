//! Threads that run with key 0 denied: raw `clone` and raw `syscall` instructions only.
//!
//! libc's PLT, TLS and rseq area, and a normal thread's stack, live in key-0 memory; code that
//! runs with key 0 access-disabled must touch none of it. These threads are started with a raw
//! `clone` on a stack the case chooses, and run a fixed instruction sequence written in assembly
//! (registers only): optionally `sigaltstack`, then WRPKRU, then one [`Action`]. This is how the
//! kernel's `pkey_sighandler_tests.c` builds its threads.

use crate::sys::Errno;

/// What the raw thread does after writing PKRU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Action {
    /// Write to address 0 (a SEGV_MAPERR fault whose handler must still run).
    WriteNull = 0,
    /// Push to its own stack (a SEGV_PKUERR fault on the stack when the stack's key is denied).
    TouchStack = 1,
    /// `tkill(self, SIGUSR2)`; after the handler returns, store [`RESUMED_MARK`] at the flag
    /// address and exit.
    RaiseUsr2ThenMark = 2,
    /// Save its stack pointer and a resume address at flag+8 / flag+16, then `tkill(self,
    /// SIGUSR2)`. A handler that jumps back there ([`crate::fault::install_longjmp`]) leaves the
    /// signal without sigreturn, as `siglongjmp` does; the thread then stores its PKRU at flag+4
    /// and [`LONGJMP_MARK`] at flag. If the handler returns normally it stores [`RESUMED_MARK`].
    RaiseUsr2ThenLongjmp = 3,
}

/// The value [`Action::RaiseUsr2ThenLongjmp`] stores when the handler jumped back.
pub const LONGJMP_MARK: u32 = 0x10d9_10d9;

/// The value [`Action::RaiseUsr2ThenMark`] stores once the thread resumed after sigreturn.
pub const RESUMED_MARK: u32 = 0x600d_600d;

/// Start a raw thread.
///
/// - `stack_top`: the initial stack pointer (top of a mapping the caller owns, 16-byte aligned);
/// - `pkru`: the value the thread writes to PKRU before its action;
/// - `altstack`: a `stack_t` to install with `sigaltstack` first (read before PKRU changes);
/// - `flag`: address the thread writes [`RESUMED_MARK`] to (for [`Action::RaiseUsr2ThenMark`]).
///
/// Returns the thread id. The thread ends with a raw `exit` (or in a signal handler that calls
/// [`exit_thread`]); wait for it with [`wait_exit`].
///
/// # Safety
/// `stack_top` must be the top of a writable mapping (of at least a few KiB) that outlives the
/// thread and is used by nothing else; `altstack`, if given, must point to a valid `stack_t`
/// whose memory outlives the thread; `flag` must be writable memory for `RaiseUsr2ThenMark`.
pub unsafe fn spawn(
    stack_top: usize,
    pkru: u32,
    altstack: Option<*const libc::stack_t>,
    action: Action,
    flag: usize,
) -> Result<i32, Errno> {
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64;
    let ret: i64;
    // SAFETY: the caller guarantees the stack, altstack and flag memory (see # Safety). The child
    // path never returns into Rust: it runs register-only instructions and ends in exit(2) or a
    // fault whose handler exits the thread.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 9f",
            // child
            "test r13, r13",
            "jz 2f",
            "mov eax, 131",          // sigaltstack(r13, NULL)
            "mov rdi, r13",
            "xor esi, esi",
            "syscall",
            "2:",
            "mov eax, r12d",         // wrpkru(r12d)
            "xor ecx, ecx",
            "xor edx, edx",
            "wrpkru",
            "cmp r14, 1",
            "je 4f",
            "cmp r14, 2",
            "je 5f",
            "cmp r14, 3",
            "je 6f",
            "xor eax, eax",          // WriteNull
            "mov dword ptr [rax], 1",
            "ud2",
            "4:",                    // TouchStack
            "push rax",
            "ud2",
            "6:",                    // RaiseUsr2ThenLongjmp: save a resume point, then raise
            "mov [r15 + 8], rsp",    // where a handler may jump back to ...
            "lea rax, [rip + 7f]",
            "mov [r15 + 16], rax",   // ... and to which instruction
            "5:",                    // RaiseUsr2ThenMark
            "mov eax, 186",          // gettid
            "syscall",
            "mov edi, eax",
            "mov esi, 12",           // SIGUSR2
            "mov eax, 200",          // tkill
            "syscall",
            "mov dword ptr [r15], 0x600d600d", // the handler returned normally
            "8:",
            "mov eax, 60",           // exit(0): this thread only
            "xor edi, edi",
            "syscall",
            "ud2",
            "7:",                    // a handler jumped here, bypassing sigreturn
            "xor ecx, ecx",
            "rdpkru",
            "mov [r15 + 4], eax",
            "mov dword ptr [r15], 0x10d910d9",
            "jmp 8b",
            "9:",
            inlateout("rax") libc::SYS_clone => ret,
            in("rdi") flags,
            in("rsi") stack_top,
            in("rdx") 0u64,
            in("r10") 0u64,
            in("r8") 0u64,
            in("r12") pkru as u64,
            in("r13") altstack.map_or(0, |p| p as u64),
            in("r14") action as u64,
            in("r15") flag as u64,
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        Err(Errno::from_raw(-ret as i32))
    } else {
        Ok(ret as i32)
    }
}

/// End the calling thread only (raw `exit`, for signal handlers of raw threads).
pub fn exit_thread() -> ! {
    // SAFETY: exit(2) ends this thread; nothing after it runs.
    unsafe {
        std::arch::asm!("syscall", in("rax") libc::SYS_exit, in("rdi") 0u64, options(noreturn, nostack));
    }
}

/// Whether thread `tid` of this process still exists.
pub fn alive(tid: i32) -> bool {
    // SAFETY: tgkill with signal 0 only checks for existence.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) == 0 }
}

/// Wait until thread `tid` has exited, up to `timeout`. True if it did.
pub fn wait_exit(tid: i32, timeout: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + timeout;
    while alive(tid) {
        if std::time::Instant::now() > end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

/// A raw thread that owns its stack (and altstack) mappings, so that safe code can start one.
///
/// The mappings are unmapped on drop only once the thread has exited; a thread still running
/// then (it hung) keeps them for the rest of the process's life, which ends with the case.
#[derive(Debug)]
pub struct RawThread {
    tid: i32,
    stack: Option<crate::mem::Region>,
    alt: Option<crate::mem::Region>,
    _ss: Box<libc::stack_t>,
}

impl RawThread {
    /// Start a raw thread on `stack` (its top is the initial stack pointer) with `pkru`, after
    /// installing `alt` as its signal altstack when given, then doing `action`.
    /// [`Action::RaiseUsr2ThenMark`] stores [`RESUMED_MARK`] at the first word of `stack`.
    pub fn spawn(
        stack: crate::mem::Region,
        pkru: u32,
        alt: Option<crate::mem::Region>,
        action: Action,
    ) -> Result<RawThread, Errno> {
        let flag = stack.addr();
        Self::spawn_with_flag(stack, pkru, alt, action, flag)
    }

    /// Like [`RawThread::spawn`], with the flag words at the start of `stack` + `flag_off`.
    /// `flag_off` must leave 24 bytes inside the stack mapping, below the stack's top.
    pub fn spawn_with_flag_at(
        stack: crate::mem::Region,
        pkru: u32,
        alt: Option<crate::mem::Region>,
        action: Action,
        flag_off: usize,
    ) -> Result<RawThread, Errno> {
        assert!(
            flag_off + 24 <= stack.len() / 2,
            "flag words must stay clear of the stack in use"
        );
        let flag = stack.addr() + flag_off;
        Self::spawn_with_flag(stack, pkru, alt, action, flag)
    }

    /// [`RawThread::spawn`] with [`Action::RaiseUsr2ThenLongjmp`] after installing the `sig`
    /// handler that jumps back into this thread ([`crate::fault::install_longjmp`], not on the
    /// altstack), using the thread's own flag words at the start of `stack`.
    pub fn spawn_longjmp_target(
        sig: i32,
        stack: crate::mem::Region,
        pkru: u32,
    ) -> Result<RawThread, Errno> {
        let flag = stack.addr();
        // SAFETY: `flag` is the flag words of the raw thread spawned next with
        // RaiseUsr2ThenLongjmp; its stack region moves into the RawThread, which keeps it mapped
        // until the thread has ended.
        unsafe { crate::fault::install_longjmp(sig, flag, false) };
        Self::spawn_with_flag(stack, pkru, None, Action::RaiseUsr2ThenLongjmp, flag)
    }

    fn spawn_with_flag(
        stack: crate::mem::Region,
        pkru: u32,
        alt: Option<crate::mem::Region>,
        action: Action,
        flag: usize,
    ) -> Result<RawThread, Errno> {
        let ss = Box::new(alt.as_ref().map_or(
            libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: 0,
                ss_size: 0,
            },
            crate::mem::Region::as_stack,
        ));
        let top = (stack.addr() + stack.len()) & !15;
        let alt_ptr = alt.as_ref().map(|_| &*ss as *const libc::stack_t);
        // SAFETY: the stack, the altstack description and the flag word (the stack's first word)
        // are owned by the returned RawThread, which never unmaps them while the thread lives.
        let tid = unsafe { spawn(top, pkru, alt_ptr, action, flag)? };
        Ok(RawThread {
            tid,
            stack: Some(stack),
            alt,
            _ss: ss,
        })
    }

    /// The thread id.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// The thread's stack mapping.
    pub fn stack(&self) -> &crate::mem::Region {
        self.stack.as_ref().expect("stack is held until drop")
    }

    /// Wait up to `timeout` for the thread to exit. True if it did.
    pub fn wait_exit(&self, timeout: std::time::Duration) -> bool {
        wait_exit(self.tid, timeout)
    }
}

impl Drop for RawThread {
    fn drop(&mut self) {
        if alive(self.tid) {
            std::mem::forget(self.stack.take());
            std::mem::forget(self.alt.take());
        }
    }
}
