//! `case!` derives ids from the module, and failed checks say where they are.

use pkeys_harness::{Ctx, Needs, Outcome, Stop, case, case_id, check, check_eq, check_pkru};

mod alloc {
    pub mod deeper {
        use super::super::*;
        pub fn made_here() -> pkeys_harness::Case {
            case!("exhaust", Needs::NONE, |_| Ok(()))
        }
    }
}

#[test]
fn ids_take_the_first_module_below_the_crate() {
    assert_eq!(alloc::deeper::made_here().id, "alloc::exhaust");
    let round = 3;
    assert_eq!(case_id!("x::y@{round}"), "case_macros::x::y@3");
    assert_eq!(
        pkeys_harness::case::area_id("pkeys_cases::remote::copy", "a"),
        "remote::a"
    );
}

fn fails_check(_: &mut Ctx) -> Outcome {
    check!(1 + 1 == 3, "arithmetic");
    Ok(())
}

fn fails_eq(_: &mut Ctx) -> Outcome {
    check_eq!(2, 3, "two");
    Ok(())
}

fn fails_pkru(_: &mut Ctx) -> Outcome {
    check_pkru!(0x55555554, 0x55555550, "PKRU");
    Ok(())
}

fn fail_text(f: fn(&mut Ctx) -> Outcome) -> String {
    let caps = pkeys_harness::probe::Caps::probe();
    match f(&mut Ctx::in_memory(caps, 0)) {
        Err(Stop::Fail(m)) => m,
        other => panic!("expected a FAIL, got {other:?}"),
    }
}

/// The line of this file that contains `needle` (so formatting cannot break the test).
fn line_of(needle: &str) -> usize {
    let src = include_str!("case_macros.rs");
    1 + src
        .lines()
        .position(|l| l.contains(needle) && !l.contains("line_of"))
        .expect("needle in this file")
}

#[test]
fn failed_checks_name_file_and_line() {
    let here = file!();
    let l = line_of("check!(1 + 1 == 3");
    assert_eq!(fail_text(fails_check), format!("{here}:{l}: arithmetic"));
    let l = line_of("check_eq!(2, 3");
    assert_eq!(
        fail_text(fails_eq),
        format!("{here}:{l}: two: expected 3, got 2")
    );
    let l = line_of("check_pkru!(0x55555554");
    assert_eq!(
        fail_text(fails_pkru),
        format!("{here}:{l}: PKRU: expected PKRU 0x55555550, got 0x55555554")
    );
}
