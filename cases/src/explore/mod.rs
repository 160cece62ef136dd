//! Model-based exploration: random sequences of pkeys, memory-map, access, kernel-access,
//! signal and process operations, run against the kernel one forked process per sequence, and
//! checked step by step against the reference model in `pkeys-model`. A disagreement is shrunk
//! by proptest to a minimal sequence and reported as FAIL with the seed, the shrunk steps and
//! the first step where the kernel and the model disagree.
//!
//! Each case is one family of operations, so a FAIL says where to look. With the suite's fixed
//! budget ([`sequences_per_run`] sequences of up to [`MAX_STEPS`] steps per family) the sequences are a
//! function of `--seed` and the iteration (`--seed S` replays them, and the failure message
//! prints the seed to replay); `--explore-time 10m` runs batch after batch for that long.
//!
//! References: pkeys(7), pkey_alloc(2), pkey_mprotect(2), mprotect(2), mmap(2), mremap(2),
//! madvise(2), process_vm_readv(2), proc(5), fork(2), clone(2), execve(2), sigaction(2), and
//! kernel `Documentation/core-api/protection-keys.rst`; `docs/model.md` lists every rule of the
//! model and its source. No upstream suite explores: the kernel's `protection_keys.c` runs fixed
//! tests in random order (`test_*` with `pkey_assert`), syzkaller generates sequences without an
//! oracle; this ports the former's checks into a model and the latter's idea into the suite.

mod exec;
mod sequences;

use crate::util::init_pkru;
use pkeys_harness::arena::Arena;
use pkeys_harness::isolate::{self, Options};
use pkeys_harness::{Case, Ctx, Feature, Needs, Outcome, Stop, Verdict};
use pkeys_harness::{case, case_id};
use pkeys_model::op::{FILE_PAGES, PAGES};
use pkeys_model::{Config, Model, Op, Step};
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use sequences::{Available, Kind};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sequences per family and run (the matrix budget).
pub const SEQUENCES: u32 = 12;
/// Sequences of `explore::thp` per run (each touches 2 MiB pages: slower under emulation).
pub const THP_SEQUENCES: u32 = 6;
/// Sequences of `explore::inherit` per run (its forks, threads and execs cost the most).
pub const INHERIT_SEQUENCES: u32 = 6;

/// Sequences per run of family `family` (an index of [`FAMILIES`], or past its end for
/// `explore::thp`), chosen so the explorer takes about 2 s of a guest under TCG.
pub fn sequences_per_run(family: usize) -> u32 {
    match FAMILIES.get(family) {
        None => THP_SEQUENCES,
        Some(("inherit", _)) => INHERIT_SEQUENCES,
        Some(_) => SEQUENCES,
    }
}
/// Longest sequence generated.
pub const MAX_STEPS: usize = 24;

/// The families: a name and its mix of step kinds (weights).
pub const FAMILIES: &[(&str, &[(u32, Kind)])] = &[
    (
        "keys",
        &[
            (3, Kind::Alloc),
            (2, Kind::Free),
            (4, Kind::PkeyMprotect),
            (2, Kind::Mprotect),
            (2, Kind::Wrpkru),
            (6, Kind::Access),
            (1, Kind::Mmap),
            (1, Kind::Smaps),
        ],
    ),
    (
        "vma",
        &[
            (3, Kind::Mmap),
            (2, Kind::Munmap),
            (3, Kind::Mprotect),
            (3, Kind::PkeyMprotect),
            (3, Kind::Mremap),
            (2, Kind::DontNeed),
            (4, Kind::Access),
            (2, Kind::Smaps),
            (1, Kind::Alloc),
        ],
    ),
    (
        "kernel_access",
        &[
            (4, Kind::KernelCopy),
            (2, Kind::ProcessVm),
            (2, Kind::ProcMem),
            (2, Kind::Alloc),
            (3, Kind::PkeyMprotect),
            (1, Kind::Mprotect),
            (1, Kind::Wrpkru),
            (2, Kind::Access),
            (1, Kind::Mmap),
            (1, Kind::Free),
        ],
    ),
    (
        "signals",
        &[
            (3, Kind::Signal),
            (2, Kind::Wrpkru),
            (2, Kind::Alloc),
            (2, Kind::PkeyMprotect),
            (3, Kind::Access),
            (1, Kind::Mprotect),
        ],
    ),
    (
        "inherit",
        &[
            (3, Kind::Child),
            (1, Kind::Execve),
            (2, Kind::Alloc),
            (1, Kind::Free),
            (1, Kind::Wrpkru),
            (1, Kind::Mprotect),
            (2, Kind::PkeyMprotect),
            (2, Kind::Access),
            (1, Kind::Signal),
            (1, Kind::Mmap),
        ],
    ),
    (
        "mixed",
        &[
            (2, Kind::Alloc),
            (1, Kind::Free),
            (3, Kind::PkeyMprotect),
            (2, Kind::Mprotect),
            (2, Kind::Mmap),
            (1, Kind::Munmap),
            (2, Kind::Mremap),
            (1, Kind::DontNeed),
            (1, Kind::Wrpkru),
            (4, Kind::Access),
            (1, Kind::KernelCopy),
            (1, Kind::ProcessVm),
            (1, Kind::ProcMem),
            (1, Kind::Signal),
            (1, Kind::Smaps),
            (1, Kind::Child),
        ],
    ),
];

/// The mix of `explore::thp`, whose arena is made of 2 MiB pages (see [`Arena::new_huge`]).
pub const THP_MIX: &[(u32, Kind)] = &[
    (3, Kind::Mmap),
    (1, Kind::Munmap),
    (3, Kind::Mprotect),
    (3, Kind::PkeyMprotect),
    (2, Kind::Mremap),
    (2, Kind::DontNeed),
    (5, Kind::Access),
    (1, Kind::KernelCopy),
    (1, Kind::Smaps),
    (2, Kind::Alloc),
    (1, Kind::Wrpkru),
];

/// The cases of this module: `explore::<family>`, and `explore::thp`.
pub fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = FAMILIES
        .iter()
        .enumerate()
        .map(|(i, (name, mix))| {
            Case::new(case_id!("{name}"), Needs::PKEYS, move |c| {
                explore(c, i, mix, false)
            })
            .with_timeout(Duration::from_secs(120))
        })
        .collect();
    v.push(
        case!(
            "thp",
            Needs::PKEYS.feature(Feature::Thp).feature(Feature::Madvise),
            |c| explore(c, FAMILIES.len(), THP_MIX, true),
        )
        .with_timeout(Duration::from_secs(120)),
    );
    v
}

/// `explore::keys` (for the fault injection `selftest::wrong::explore_model`: with
/// [`Ctx::wrong`] the model is given a wrong `init_pkru`, so the first step disagrees).
pub fn keys_family(ctx: &mut Ctx) -> Outcome {
    explore(ctx, 0, FAMILIES[0].1, false)
}

/// Where the kernel and the model first disagreed in one sequence.
#[derive(Debug, Clone)]
struct Mismatch {
    label: String,
    op: String,
    expected: String,
    got: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {} `{}`: expected {}; got {}",
            self.label, self.op, self.expected, self.got
        )
    }
}

/// The fixed part of one run: the machine, the model's configuration, what may be generated.
struct Explorer {
    caps: pkeys_harness::probe::Caps,
    cfg: Config,
    avail: Available,
    /// The arena is made of 2 MiB pages with MADV_HUGEPAGE.
    huge: bool,
    /// What a sequence's process declares it uses: the features of [`Explorer::avail`].
    needs: Needs,
    /// How many steps predicted each kind of outcome, over every sequence that ran.
    tally: std::cell::RefCell<std::collections::BTreeMap<String, u64>>,
}

/// The kind of an outcome, for the tally that shows what a run exercised.
fn outcome_kind(o: &pkeys_model::Outcome) -> String {
    use pkeys_model::Outcome as O;
    match o {
        O::Ret(Ok(_)) | O::Copy { ret: Ok(_), .. } => "success".into(),
        O::Ret(Err(e)) | O::Copy { ret: Err(e), .. } => pkeys_model::obs::errno::name(*e),
        O::Loaded(_) | O::Done => "access".into(),
        O::Fault(s) => match s.code {
            pkeys_model::obs::SEGV_PKUERR => "SEGV_PKUERR".into(),
            pkeys_model::obs::SEGV_ACCERR => "SEGV_ACCERR".into(),
            _ => "SEGV_MAPERR".into(),
        },
        O::Handler { .. } => "signal".into(),
        O::Smaps(_) => "smaps".into(),
        O::Ended(_) => "fork/thread".into(),
        O::Exec { .. } => "execve".into(),
        O::NotRun(_) => "not run".into(),
    }
}

impl Explorer {
    /// Plan `ops` with the model, run the plan in a forked process, compare.
    fn check(&self, ops: &[Op]) -> Result<Vec<Step>, (Vec<Step>, Mismatch)> {
        let steps = Model::new(self.cfg).plan(ops);
        {
            let mut t = self.tally.borrow_mut();
            for s in steps.iter().flat_map(Step::flatten) {
                *t.entry(outcome_kind(&s.expect.outcome)).or_default() += 1;
            }
        }
        let shared = Arc::new(steps.clone());
        let memfd = self.avail.memfd;
        let huge = self.huge;
        let case = Case::new("explore-sequence", self.needs, move |c| {
            let arena = if huge {
                Arena::new_huge(PAGES, FILE_PAGES, memfd)
            } else {
                Arena::new(PAGES, FILE_PAGES, memfd)
            }
            .map_err(Stop::Fail)?;
            exec::run_steps(c, &arena, &shared);
            Ok(())
        })
        .with_timeout(Duration::from_secs(30));
        let report = isolate::run(&case, &self.caps, &Options::default());
        let got: Vec<(&str, &str)> = report
            .diagnostics
            .iter()
            .filter_map(|d| d.strip_prefix("O "))
            .filter_map(|d| d.split_once(' '))
            .collect();
        for s in steps.iter().flat_map(Step::flatten) {
            let expected = s.expect.to_string();
            let seen = got.iter().find(|(l, _)| *l == s.label).map(|(_, g)| *g);
            if seen == Some(expected.as_str()) {
                continue;
            }
            let got = match seen {
                Some(g) => g.to_string(),
                None => {
                    let why: Vec<&String> = report
                        .diagnostics
                        .iter()
                        .filter(|d| !d.starts_with("O ") && !d.starts_with("left behind"))
                        .collect();
                    format!(
                        "no observation: the sequence's process ended {}{}",
                        report.verdict,
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " ({})",
                                why.iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            )
                        }
                    )
                }
            };
            let m = Mismatch {
                label: s.label.clone(),
                op: s.op.to_string(),
                expected,
                got,
            };
            return Err((steps, m));
        }
        match report.verdict {
            Verdict::Pass => Ok(steps),
            v => {
                let m = Mismatch {
                    label: "end".into(),
                    op: "the sequence's process exits".into(),
                    expected: "PASS".into(),
                    got: v.to_string(),
                };
                Err((steps, m))
            }
        }
    }
}

const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// While it lives, transparent huge pages are on for MADV_HUGEPAGE regions (`madvise`) where
/// they were `never` (Debian's cloud kernels boot so); the old setting is written back on drop.
/// Needs root; without it the family runs on small pages and says so.
struct ThpMadvise(String);

impl ThpMadvise {
    fn enable(ctx: &mut Ctx) -> Option<ThpMadvise> {
        let now = std::fs::read_to_string(THP_ENABLED).ok()?;
        let current = now.split_whitespace().find(|w| w.starts_with('['))?;
        let current = current.trim_matches(|c| c == '[' || c == ']').to_string();
        if current != "never" {
            return None;
        }
        match std::fs::write(THP_ENABLED, "madvise") {
            Ok(()) => {
                ctx.diag("transparent huge pages were `never`: set to `madvise` for this case");
                Some(ThpMadvise(current))
            }
            Err(e) => {
                ctx.diag(format!(
                    "transparent huge pages are `never` and stay so ({THP_ENABLED}: {e})"
                ));
                None
            }
        }
    }
}

impl Drop for ThpMadvise {
    fn drop(&mut self) {
        let _ = std::fs::write(THP_ENABLED, &self.0);
    }
}

fn rng_for(seed: u64, family: usize) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(family as u64).to_le_bytes());
    bytes[16..24].copy_from_slice(b"pkeysexp");
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

fn explore(ctx: &mut Ctx, family: usize, mix: &'static [(u32, Kind)], huge: bool) -> Outcome {
    let absent = |f| ctx.caps.features.absent(f).is_none();
    let avail = Available {
        memfd: absent(Feature::Memfd),
        process_vm: absent(Feature::ProcessVm),
        smaps: absent(Feature::Smaps),
        madvise: absent(Feature::Madvise),
        shm: absent(Feature::SysvShm),
        futex: absent(Feature::Futex),
    };
    let file_exec = pkeys_harness::arena::files_executable();
    let _thp = if huge { ThpMadvise::enable(ctx) } else { None };
    if huge {
        // Say whether the kernel backs the arena with huge pages at all (THP "never" leaves
        // the family running on small pages, which the model does not mind).
        let a = Arena::new_huge(1, 1, false).map_err(|e| Stop::Fail(format!("arena: {e}")))?;
        let _ = a.store(0, 1);
        let kb = a.anon_huge_kb().unwrap_or(0);
        drop(a);
        ctx.diag(format!(
            "a first touch of the 2 MiB arena page mapped {kb} kB of AnonHugePages{}",
            if kb == 0 {
                format!(
                    " (transparent_hugepage/enabled: {})",
                    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                        .unwrap_or_else(|e| e.to_string())
                        .trim()
                )
            } else {
                String::new()
            }
        ));
    }
    let proc_mem_force = pkeys_harness::arena::proc_mem_forces();
    if !proc_mem_force {
        ctx.diag(
            "/proc/self/mem does not force past the protection (CONFIG_PROC_MEM_NO_FORCE, CONFIG_PROC_MEM_FORCE_PTRACE or proc_mem.force_override=never): the model expects it to check as process_vm_* does",
        );
    }
    let ex = Explorer {
        caps: ctx.caps.clone(),
        cfg: Config {
            // Fault injection: a model that believes key 15 starts with other rights.
            init_pkru: init_pkru(ctx) ^ if ctx.wrong { 3 << 30 } else { 0 },
            file_exec,
            proc_mem_force,
        },
        avail,
        huge,
        needs: avail.needs(),
        tally: Default::default(),
    };
    if !file_exec {
        ctx.diag("the temporary file's filesystem is noexec: no PROT_EXEC file mappings");
    }
    let strategy = sequences::sequences(mix, avail, MAX_STEPS);
    let run_seed = ctx.seed.wrapping_add(u64::from(ctx.iteration));
    let until = ctx.explore_time.map(|t| Instant::now() + t);
    let (mut batch, mut total) = (0u64, 0u64);
    loop {
        let seed = run_seed.wrapping_add(batch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let per_batch = sequences_per_run(family);
        let config = RunnerConfig {
            cases: per_batch,
            max_shrink_iters: 400,
            failure_persistence: None,
            ..RunnerConfig::default()
        };
        let mut runner = TestRunner::new_with_rng(config, rng_for(seed, family));
        let calls = Cell::new(0u64);
        let first_fail = Cell::new(None::<u64>);
        let result = runner.run(&strategy, |ops| {
            calls.set(calls.get() + 1);
            match ex.check(&ops) {
                Ok(_) => Ok(()),
                Err((_, m)) => {
                    if first_fail.get().is_none() {
                        first_fail.set(Some(calls.get()));
                    }
                    Err(TestCaseError::fail(m.to_string()))
                }
            }
        });
        match result {
            Ok(()) => {
                total += u64::from(per_batch);
            }
            Err(TestError::Fail(_, minimal)) => {
                return Err(report_failure(
                    ctx,
                    &ex,
                    seed,
                    total + first_fail.get().unwrap_or(0),
                    calls.get(),
                    &minimal,
                ));
            }
            Err(TestError::Abort(why)) => {
                return Err(Stop::Fail(format!("explorer aborted: {why}")));
            }
        }
        batch += 1;
        if until.is_none_or(|u| Instant::now() >= u) {
            break;
        }
    }
    let tally: Vec<String> = ex
        .tally
        .borrow()
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    ctx.diag(format!(
        "{total} sequence(s) of up to {MAX_STEPS} steps agreed with the model (seed {run_seed}, {batch} batch(es)); steps checked by outcome: {}",
        tally.join(", ")
    ));
    Ok(())
}

fn report_failure(
    ctx: &mut Ctx,
    ex: &Explorer,
    seed: u64,
    at: u64,
    runs: u64,
    minimal: &[Op],
) -> Stop {
    ctx.diag(format!(
        "seed {seed}: sequence {at} disagreed with the model; shrunk to {} step(s) in {} run(s). Replay: pkeys-suite --exact {} --seed {seed}",
        minimal.len(),
        runs.saturating_sub(at),
        // Under --iterations the id is `ID@N` and the seed already includes the iteration: the
        // replay is the plain id with that seed.
        ctx.id.split('@').next().unwrap_or(&ctx.id)
    ));
    match ex.check(minimal) {
        Ok(steps) => {
            print_steps(ctx, &steps);
            Stop::Fail(format!(
                "seed {seed}: a sequence disagreed with the model, but its shrunk form ran clean when repeated (not reproducible)"
            ))
        }
        Err((steps, m)) => {
            print_steps(ctx, &steps);
            Stop::Fail(format!("seed {seed}, shrunk sequence: {m}"))
        }
    }
}

fn print_steps(ctx: &mut Ctx, steps: &[Step]) {
    for s in steps {
        ctx.diag(format!("  {}. {}  =>  {}", s.label, s.op, s.expect));
        for sub in &s.sub {
            ctx.diag(format!("    {}. {}  =>  {}", sub.label, sub.op, sub.expect));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::{Strategy, ValueTree};

    const ALL: Available = Available {
        memfd: true,
        process_vm: true,
        smaps: true,
        madvise: true,
        shm: true,
        futex: true,
    };

    fn draw(family: usize, seed: u64, n: usize) -> Vec<Vec<Op>> {
        let mix = FAMILIES.get(family).map_or(THP_MIX, |f| f.1);
        let strategy = sequences::sequences(mix, ALL, MAX_STEPS);
        let mut runner = TestRunner::new_with_rng(RunnerConfig::default(), rng_for(seed, family));
        (0..n)
            .map(|_| strategy.new_tree(&mut runner).expect("tree").current())
            .collect()
    }

    #[test]
    fn the_runners_count_of_explorer_cases_is_right() {
        // The host sizes a guest's time limit with this count (pkeys_common::suite_args).
        assert_eq!(
            cases().len() as u32,
            pkeys_common::suite_args::EXPLORE_CASES
        );
    }

    #[test]
    fn a_seed_replays_the_same_sequences_and_another_does_not() {
        for (f, (name, _)) in FAMILIES.iter().enumerate() {
            assert_eq!(draw(f, 7, 20), draw(f, 7, 20), "family {name}");
            assert_ne!(draw(f, 7, 20), draw(f, 8, 20), "family {name}");
        }
    }

    #[test]
    fn the_model_plans_every_generated_sequence_with_unique_labels() {
        let cfg = Config {
            init_pkru: 0x5555_5554,
            file_exec: true,
            proc_mem_force: true,
        };
        let mut planned = 0;
        for f in 0..=FAMILIES.len() {
            for ops in draw(f, 1, 300) {
                let steps = Model::new(cfg).plan(&ops);
                let labels: Vec<&str> = steps
                    .iter()
                    .flat_map(Step::flatten)
                    .map(|s| s.label.as_str())
                    .collect();
                let mut unique = labels.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), labels.len(), "{labels:?}");
                planned += labels.len();
            }
        }
        // Most generated steps may run (the rest are dropped before they do).
        assert!(
            planned > FAMILIES.len() * 300 * 5,
            "only {planned} steps planned"
        );
    }
}
