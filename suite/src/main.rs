//! `pkeys-suite` binary (placeholder until the front end lands).
fn main() {
    println!("KTAP version 1");
    println!("# pkeys-suite placeholder");
    println!("1..1");
    println!("ok 1 placeholder::boot");
    println!("# pkeys-suite: done pass=1 fail=0 skip=0 total=1");
}
