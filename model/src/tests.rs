//! The model's rules on small sequences whose outcome is known from the kernel code and from the
//! hand-written cases.

use crate::obs::{SEGV_ACCERR, SEGV_MAPERR, SEGV_PKUERR, errno};
use crate::op::{R, W, X};
use crate::{Config, Key, MapKind, Model, Op, Outcome};

const INIT: u32 = 0x5555_5554;

fn model() -> Model {
    Model::new(Config {
        init_pkru: INIT,
        file_exec: true,
        proc_mem_force: true,
    })
}

fn outcomes(ops: &[Op]) -> Vec<Outcome> {
    model()
        .plan(ops)
        .into_iter()
        .map(|s| s.expect.outcome)
        .collect()
}

fn fault_code(o: &Outcome) -> (i32, u32) {
    match o {
        Outcome::Fault(s) => (s.code, s.pkey),
        other => panic!("expected a fault, got {other}"),
    }
}

#[test]
fn alloc_hands_out_the_lowest_free_key_and_sets_only_its_rights() {
    let mut m = model();
    let s = m.plan(&[
        Op::Alloc { rights: 0 },
        Op::Alloc { rights: 1 },
        Op::Free { key: Key::Num(1) },
        Op::Alloc { rights: 2 },
    ]);
    let rets: Vec<_> = s.iter().map(|s| s.expect.outcome.clone()).collect();
    assert_eq!(
        rets,
        [
            Outcome::Ret(Ok(1)),
            Outcome::Ret(Ok(2)),
            Outcome::Ret(Ok(0)),
            Outcome::Ret(Ok(1))
        ]
    );
    // Key 1: WD only (0b10 at bits 2-3); key 2: AD (0b01 at bits 4-5); the rest as init_pkru.
    assert_eq!(m.pkru, (INIT & !0b11_1100) | 0b01_1000);
}

#[test]
fn sixteen_allocations_run_out_after_fifteen() {
    let ops: Vec<Op> = (0..16).map(|_| Op::Alloc { rights: 0 }).collect();
    let o = outcomes(&ops);
    assert_eq!(o[14], Outcome::Ret(Ok(15)));
    assert_eq!(o[15], Outcome::Ret(Err(errno::ENOSPC)));
}

#[test]
fn plain_prot_exec_takes_the_execute_only_key_and_denies_reads() {
    let mut m = model();
    let s = m.plan(&[
        Op::Write { page: 0, val: 0xc3 },
        Op::Mprotect {
            first: 0,
            n: 1,
            prot: X,
        },
        Op::Read { page: 0 },
        Op::Exec { page: 0 },
        Op::Free { key: Key::ExecOnly },
        Op::Mprotect {
            first: 0,
            n: 1,
            prot: R | X,
        },
        Op::Read { page: 0 },
    ]);
    assert_eq!(m.exec_only, Some(1));
    assert_eq!(fault_code(&s[2].expect.outcome), (SEGV_PKUERR, 1));
    assert_eq!(s[3].expect.outcome, Outcome::Done);
    assert_eq!(s[4].expect.outcome, Outcome::Ret(Err(errno::EINVAL)));
    // Leaving PROT_EXEC-only moves the page back to key 0 (the 4.17 fix).
    assert_eq!(s[6].expect.outcome, Outcome::Loaded(0xc3));
    assert_eq!(m.pages[0].unwrap().key, 0);
}

#[test]
fn execute_only_rights_are_restored_only_when_reads_are_allowed() {
    let mut m = model();
    m.plan(&[
        Op::Mprotect {
            first: 0,
            n: 1,
            prot: X,
        },
        Op::Wrpkru { value: 0 },
        Op::Mprotect {
            first: 1,
            n: 1,
            prot: X,
        },
    ]);
    assert_eq!(m.pkru, 0b0100, "exec-only key 1 back to AD, WD clear");
    m.plan(&[
        Op::Wrpkru { value: 0b1100 },
        Op::Mprotect {
            first: 2,
            n: 1,
            prot: X,
        },
    ]);
    assert_eq!(m.pkru, 0b1100, "AD already set: left alone");
}

#[test]
fn the_key_is_checked_before_the_protection_and_not_for_fetches() {
    let mut m = model();
    let s = m.plan(&[
        Op::Alloc { rights: 1 },
        Op::PkeyMprotect {
            first: 0,
            n: 1,
            prot: 0,
            key: Key::Num(1),
        },
        Op::Read { page: 0 },
        Op::Wrpkru { value: 0 },
        Op::Read { page: 0 },
        Op::Write { page: 1, val: 0xc3 },
        Op::PkeyMprotect {
            first: 1,
            n: 1,
            prot: R | X,
            key: Key::Num(1),
        },
        Op::Wrpkru { value: 0b1100 },
        Op::Exec { page: 1 },
        Op::Write { page: 1, val: 1 },
        Op::Munmap { first: 2, n: 1 },
        Op::Read { page: 2 },
    ]);
    assert_eq!(fault_code(&s[2].expect.outcome), (SEGV_PKUERR, 1));
    assert_eq!(fault_code(&s[4].expect.outcome), (SEGV_ACCERR, 0));
    assert_eq!(s[8].expect.outcome, Outcome::Done);
    assert_eq!(fault_code(&s[9].expect.outcome), (SEGV_PKUERR, 1));
    assert_eq!(fault_code(&s[11].expect.outcome), (SEGV_MAPERR, 0));
}

#[test]
fn mprotect_stops_at_the_first_hole_keeping_earlier_changes() {
    let mut m = model();
    let s = m.plan(&[
        Op::Alloc { rights: 0 },
        Op::Munmap { first: 3, n: 1 },
        Op::PkeyMprotect {
            first: 1,
            n: 4,
            prot: R,
            key: Key::Num(1),
        },
        Op::PkeyMprotect {
            first: 3,
            n: 2,
            prot: R,
            key: Key::Num(1),
        },
    ]);
    assert_eq!(s[2].expect.outcome, Outcome::Ret(Err(errno::ENOMEM)));
    assert_eq!(s[3].expect.outcome, Outcome::Ret(Err(errno::ENOMEM)));
    assert_eq!(
        m.smaps(),
        "rw-pk0 r--pk1 r--pk1 - rw-pk0 rw-pk0 rw-pk0 rw-pk0 rw-pk0 rw-pk0 rw-pk0 rw-pk0"
    );
}

#[test]
fn mremap_carries_key_and_contents_and_fork_shares_only_shared_pages() {
    let mut m = model();
    let s = m.plan(&[
        Op::Alloc { rights: 0 },
        Op::Mmap {
            first: 0,
            n: 2,
            kind: MapKind::MemfdShared,
            prot: R | W,
        },
        Op::PkeyMprotect {
            first: 0,
            n: 2,
            prot: R | W,
            key: Key::Num(1),
        },
        Op::Write { page: 1, val: 7 },
        Op::Mremap {
            src: 0,
            n: 2,
            dst: 5,
            new_n: 3,
        },
        Op::Fork {
            sub: vec![Op::Write { page: 5, val: 9 }, Op::Write { page: 8, val: 4 }],
        },
        Op::Read { page: 6 },
        Op::Read { page: 5 },
        Op::Read { page: 8 },
    ]);
    assert_eq!(m.smaps().split(' ').nth(7), Some("rw-sk1"));
    let last: Vec<_> = s[s.len() - 3..]
        .iter()
        .map(|s| s.expect.outcome.clone())
        .collect();
    assert_eq!(
        last,
        [Outcome::Loaded(7), Outcome::Loaded(9), Outcome::Loaded(0)]
    );
}

#[test]
fn remote_access_ignores_pkru_but_not_the_protection() {
    let o = outcomes(&[
        Op::Alloc { rights: 3 },
        Op::PkeyMprotect {
            first: 0,
            n: 1,
            prot: R,
            key: Key::Num(1),
        },
        Op::PvmRead { page: 0 },
        Op::PvmWrite { page: 0, val: 1 },
        Op::MemWrite { page: 0, val: 2 },
        Op::KernelWrite { page: 0 },
        Op::Mmap {
            first: 1,
            n: 1,
            kind: MapKind::AnonShared,
            prot: R,
        },
        Op::MemWrite { page: 1, val: 2 },
    ]);
    let copy = |r: Result<i64, i32>, b: Option<u8>| Outcome::Copy { ret: r, byte: b };
    assert_eq!(o[2], copy(Ok(1), Some(0)));
    assert_eq!(o[3], copy(Err(errno::EFAULT), None));
    assert_eq!(o[4], copy(Ok(1), None));
    assert_eq!(o[5], copy(Err(errno::EFAULT), None));
    assert_eq!(o[7], copy(Err(errno::EIO), None));
}

#[test]
fn steps_that_may_not_run_are_left_out() {
    // A call into a page without `ret`, and a mremap across two VMAs.
    let o = outcomes(&[
        Op::Mprotect {
            first: 0,
            n: 1,
            prot: R | X,
        },
        Op::Exec { page: 0 },
        Op::Mprotect {
            first: 2,
            n: 1,
            prot: R,
        },
        Op::Mremap {
            src: 1,
            n: 2,
            dst: 6,
            new_n: 2,
        },
    ]);
    assert_eq!(o.len(), 2);
}

#[test]
fn without_forced_proc_mem_access_it_checks_the_protection_as_process_vm_does() {
    let mut m = Model::new(Config {
        init_pkru: INIT,
        file_exec: true,
        proc_mem_force: false,
    });
    let o: Vec<_> = m
        .plan(&[
            Op::Mprotect {
                first: 0,
                n: 1,
                prot: R,
            },
            Op::MemWrite { page: 0, val: 1 },
            Op::MemRead { page: 0 },
            Op::Mprotect {
                first: 1,
                n: 1,
                prot: X,
            },
            Op::MemRead { page: 1 },
        ])
        .into_iter()
        .map(|s| s.expect.outcome)
        .collect();
    let copy = |r: Result<i64, i32>, b: Option<u8>| Outcome::Copy { ret: r, byte: b };
    assert_eq!(o[1], copy(Err(errno::EIO), None));
    assert_eq!(o[2], copy(Ok(1), Some(0)));
    assert_eq!(o[4], copy(Err(errno::EIO), None));
}
