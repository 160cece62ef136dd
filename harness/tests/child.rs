//! The one fork primitive, from a single-threaded process (this test has its own `main`: under
//! libtest every test runs on a second thread, and a fork refuses a multi-threaded caller).
//! Each check can fail: a child that fails, crashes, or is killed must be reported as such.

use pkeys_harness::Verdict;
use pkeys_harness::child::{self, Ended};
use pkeys_harness::{Stop, check_eq};

fn main() {
    // A verdict and messages come back through the pipe.
    let r = child::in_child(|c| {
        c.msg("first\nline");
        check_eq!(1 + 1, 3, "sum");
        Ok(())
    })
    .expect("fork");
    assert_eq!(r.messages, ["first | line"]);
    assert!(
        matches!(&r.verdict, Some(Verdict::Fail(m)) if m.ends_with("sum: expected 3, got 2")),
        "{:?}",
        r.verdict
    );
    assert!(matches!(r.ended, Ended::Exited(0)), "{}", r.ended);
    assert!(r.outcome("child").is_err());

    // A crash is reported with its signal, not as a verdict.
    let r = child::in_child(|_| {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGABRT).unwrap();
        Ok(())
    })
    .expect("fork");
    assert_eq!(r.verdict, None);
    assert_eq!(r.killed_by().map(|(sig, _)| sig), Some(libc::SIGABRT));
    assert!(matches!(r.outcome("child"), Err(Stop::Fail(_))));

    // A child killed while it waits: what it had sent before is kept.
    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    let waiting = child::spawn(move |c| {
        c.msg("before the kill");
        // Tell the parent the message is out, then wait forever.
        nix::unistd::write(&wr, b"x").unwrap();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    })
    .expect("fork");
    let mut b = [0u8; 1];
    assert_eq!(nix::unistd::read(&rd, &mut b), Ok(1));
    let r = waiting.kill_and_collect().expect("not finished yet");
    assert_eq!(r.messages, ["before the kill"]);
    assert_eq!(r.verdict, None);
    assert!(
        matches!(r.ended, Ended::Killed { signo, .. } if signo == libc::SIGKILL),
        "{}",
        r.ended
    );

    // A child that finished is not killed again.
    let mut done = child::spawn(|_| Ok(())).expect("fork");
    let r = done.finish();
    assert_eq!(r.verdict, Some(Verdict::Pass));
    assert!(done.kill_and_collect().is_none());
    println!("child: ok");
}
