//! Many guests at once: the matrix of `kernels.toml`, run concurrently, reported by
//! `pkeys_report`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pkeys_report::{Expectations, GuestRun, KernelInfo, Results, RunStatus};

use crate::config::{Config, GuestPlan};
use crate::guest::{self, Env, Event, GuestSpec};
use crate::kernel::{ResolvedKernel, Resolver};
use pkeys_common::glob::glob_match;

/// Parses `K/N` (1 ≤ K ≤ N).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s.split_once('/').and_then(|(k, n)| {
        Some((
            k.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((k, n)) if n >= 1 && (1..=n).contains(&k) => Ok((k, n)),
        _ => bail!("--shard {s}: expected K/N with 1 <= K <= N (e.g. 2/4)"),
    }
}

/// The guests to run: those matching any `--only` glob (guest name or kernel name; all when
/// none given), then the K-th of N round-robin slices.
pub fn select(
    guests: Vec<GuestPlan>,
    only: &[String],
    shard: Option<(usize, usize)>,
) -> Result<Vec<GuestPlan>> {
    let all: Vec<String> = guests.iter().map(|g| g.name.clone()).collect();
    let mut chosen: Vec<GuestPlan> = guests
        .into_iter()
        .filter(|g| {
            only.is_empty()
                || only
                    .iter()
                    .any(|p| glob_match(p, &g.name) || glob_match(p, &g.kernel))
        })
        .collect();
    if chosen.is_empty() {
        bail!(
            "--only {}: matches no guest (guests: {})",
            only.join(" "),
            all.join(", ")
        );
    }
    if let Some((k, n)) = shard {
        chosen = chosen
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, g)| g)
            .collect();
    }
    Ok(chosen)
}

/// What `pkeys-qemu matrix` was asked to do.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    /// `kernels.toml`.
    pub config: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Guests at once.
    pub jobs: usize,
    /// `K/N` slice.
    pub shard: Option<(usize, usize)>,
    /// Name globs.
    pub only: Vec<String>,
    /// A prebuilt static suite instead of building one.
    pub suite: Option<PathBuf>,
    /// Expectations file (`None`: `ci/expectations.toml` when it exists).
    pub expectations: Option<PathBuf>,
    /// Update the apt lists even when fresh.
    pub refresh: bool,
    /// Cache root.
    pub cache: PathBuf,
    /// `--accel` (a guest's `accel` in kernels.toml wins, except over `tcg`).
    pub accel: crate::accel::AccelChoice,
    /// Suite arguments added to every guest's (after `--` on the command line).
    pub suite_args: Vec<String>,
}

/// A run that never booted (its kernel could not be resolved, ...).
fn error_run(plan: &GuestPlan, kernel: KernelInfo, message: String) -> GuestRun {
    let mut run = GuestRun::new(&plan.name, kernel, &plan.cpu, &plan.append);
    run.status = RunStatus::Error {
        message,
        console_tail: Vec::new(),
    };
    run
}

/// Loads the expectations: the given file, else `ci/expectations.toml` when present, else none.
pub fn load_expectations(path: Option<&Path>) -> Result<Expectations> {
    match path {
        Some(p) => Ok(Expectations::load(p)?),
        None => {
            let default = crate::paths::default_expectations();
            if default.is_file() {
                Ok(Expectations::load(&default)?)
            } else {
                Ok(Expectations::empty())
            }
        }
    }
}

/// The static suite: `--suite`, else built with cargo; checked to be static.
pub fn suite_binary(suite: Option<&Path>) -> Result<PathBuf> {
    match suite {
        Some(p) => {
            crate::suite::check_static(p)?;
            Ok(p.to_path_buf())
        }
        None => crate::suite::build(&crate::paths::workspace_root()),
    }
}

/// Runs the matrix and writes the report; returns the classified results.
pub fn run(opts: &MatrixOptions) -> Result<Results> {
    let started = Instant::now();
    let config = Config::load(&opts.config)?;
    let mut plans = select(config.guests(), &opts.only, opts.shard)?;
    for p in &mut plans {
        p.args.extend(opts.suite_args.iter().cloned());
    }
    let expectations = load_expectations(opts.expectations.as_deref())?;
    crate::outdir::check(&opts.out)?;
    if let Some(suite) = &opts.suite {
        crate::suite::check_static(suite)?;
    }
    let qemu = crate::qemu::find_qemu()?;
    let models = crate::qemu::cpu_models(&qemu)?;
    for plan in &plans {
        crate::qemu::check_cpu(&plan.cpu, models)
            .with_context(|| format!("guest {}", plan.name))?;
    }
    if plans.is_empty() {
        eprintln!("pkeys-qemu: this shard has no guests");
    }

    // Kernels, once each, in matrix order.
    let mut resolver = Resolver::new(&opts.cache, opts.refresh);
    let mut kernels: BTreeMap<String, Result<ResolvedKernel, String>> = BTreeMap::new();
    for plan in &plans {
        if !kernels.contains_key(&plan.kernel) {
            let spec = format!("debian:{}", plan.kernel);
            let k = resolver
                .resolve_named(&plan.kernel, &config, &spec)
                .map_err(|e| format!("{e:#}"));
            match &k {
                Ok(k) => eprintln!(
                    "pkeys-qemu: kernel {}: {} {}",
                    plan.kernel,
                    if k.info.package.is_empty() {
                        k.path.display().to_string()
                    } else {
                        k.info.package.clone()
                    },
                    k.info.version
                ),
                Err(e) => eprintln!("pkeys-qemu: kernel {}: {e}", plan.kernel),
            }
            kernels.insert(plan.kernel.clone(), k);
            if crate::cleanup::interrupted() {
                bail!("interrupted");
            }
        }
    }

    let suite = suite_binary(opts.suite.as_deref())?;
    let base = crate::initramfs::base_image(&suite, &opts.cache)?;
    crate::outdir::prepare_announced(&opts.out)?;
    let env = Env {
        qemu: &qemu,
        base_image: &base,
        out: &opts.out,
    };

    // One KVM probe for the whole matrix, with the first kernel that resolved, only when some
    // guest could use KVM.
    use crate::accel::{self, Accel, AccelChoice};
    let wants = |p: &GuestPlan| match (opts.accel, p.accel) {
        (AccelChoice::Tcg, _) | (_, Some(AccelChoice::Tcg)) => None,
        (cli, guest) => Some(guest.unwrap_or(cli)),
    };
    let kvm_capable = |p: &GuestPlan| accel::placement(&p.cpu, true).0 == Accel::Kvm;
    let could_use_kvm = plans.iter().any(|p| wants(p).is_some() && kvm_capable(p));
    if opts.accel == AccelChoice::Kvm && !could_use_kvm {
        bail!(
            "--accel kvm: no selected guest can run under KVM (guests with a named CPU model run \
             under TCG; KVM offers only the host's CPU, which `max` guests get)"
        );
    }
    // A guest's own `accel = "kvm"` is checked per guest below (an ERROR run when KVM does not
    // work); only `--accel kvm` refuses the whole matrix.
    let choice = opts.accel;
    let probe_kernel = kernels.values().find_map(|k| k.as_ref().ok());
    let decision = if could_use_kvm {
        accel::decide(choice, accel::host_has_pkeys(), || match probe_kernel {
            Some(k) => accel::probe_kvm(k, &env),
            None => Err("no kernel to probe KVM with".into()),
        })?
    } else {
        accel::Decision {
            kvm: false,
            why_not: None,
        }
    };
    match &decision.why_not {
        Some(why) => eprintln!("pkeys-qemu: {why}"),
        None if decision.kvm => {
            eprintln!("pkeys-qemu: KVM works: guests on `max` run on `-cpu host` under KVM")
        }
        None => {}
    }
    let kvm_ok = decision.kvm;

    let total = plans.len();
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..total).collect());
    let slots: Mutex<Vec<Option<GuestRun>>> = Mutex::new(vec![None; total]);
    let finished = Mutex::new(0usize);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let jobs = opts.jobs.clamp(1, total.max(1));
    eprintln!(
        "pkeys-qemu: running {total} guest(s), {jobs} at a time; output in {}",
        opts.out.display()
    );
    let reporter = crate::live::Reporter::for_stderr(total);
    let progress = |name: &str, event: Event| reporter.event(name, event);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    if crate::cleanup::interrupted() {
                        return;
                    }
                    let Some(i) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let plan = &plans[i];
                    let run = match &kernels[&plan.kernel] {
                        Err(e) => Ok(error_run(
                            plan,
                            KernelInfo {
                                spec: format!("debian:{}", plan.kernel),
                                ..KernelInfo::default()
                            },
                            format!("kernel not available: {e}"),
                        )),
                        Ok(_) if wants(plan) == Some(AccelChoice::Kvm) && !kvm_capable(plan) => {
                            Ok(error_run(
                                plan,
                                KernelInfo::default(),
                                format!(
                                    "accel = \"kvm\" but CPU model {} cannot run under KVM \
                                     (KVM offers only the host's CPU; use max)",
                                    plan.cpu
                                ),
                            ))
                        }
                        Ok(_) if wants(plan) == Some(AccelChoice::Kvm) && !kvm_ok => Ok(error_run(
                            plan,
                            KernelInfo::default(),
                            format!(
                                "accel = \"kvm\" but KVM is not used: {}",
                                decision.why_not.as_deref().unwrap_or("no probe was made")
                            ),
                        )),
                        Ok(kernel) => {
                            let (acc, cpu) = match wants(plan) {
                                Some(_) => accel::placement(&plan.cpu, kvm_ok),
                                None => (Accel::Tcg, plan.cpu.clone()),
                            };
                            let spec = GuestSpec {
                                name: plan.name.clone(),
                                kernel: kernel.clone(),
                                accel: acc,
                                cpu,
                                append: plan.append.clone(),
                                args: plan.args.clone(),
                                memory: plan.memory.clone(),
                                smp: plan.smp,
                                // --explore-time: the explorer's soak adds to the limit.
                                timeout: Duration::from_secs(plan.timeout)
                                    + pkeys_common::suite_args::explore_budget(&plan.args)
                                        .unwrap_or_default(),
                                boot_timeout: Duration::from_secs(plan.boot_timeout),
                            };
                            guest::run(&spec, &env, &progress)
                        }
                    };
                    match run {
                        Ok(mut run) => {
                            // Classified before it is printed: a known kernel failure is an
                            // expected failure on the progress line too, not a FAIL.
                            pkeys_report::classify(&mut run, &expectations);
                            let mut n = finished.lock().unwrap_or_else(|e| e.into_inner());
                            *n += 1;
                            reporter.finished(
                                &run.name,
                                format!(
                                    "pkeys-qemu: [{:>2}/{total}] {}",
                                    *n,
                                    guest::summary_line(&run)
                                ),
                            );
                            drop(n);
                            slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(run);
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    reporter.clear();
    if crate::cleanup::interrupted() {
        bail!("interrupted");
    }
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let runs: Vec<GuestRun> = slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect();
    let mut results = Results::new(runs);
    pkeys_report::classify_all(&mut results, &expectations);
    let written = pkeys_report::write_all(&results, &opts.out)?;
    for run in &results.runs {
        eprintln!("pkeys-qemu: {}", guest::summary_line(run));
    }
    for run in &results.runs {
        for line in pkeys_report::problem_lines(run) {
            eprintln!("pkeys-qemu: {}: {line}", run.name);
        }
    }
    let names: Vec<String> = written
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    eprintln!(
        "pkeys-qemu: matrix: {total} guest(s) in {:.1} s; wrote {} to {}",
        started.elapsed().as_secs_f64(),
        names.join(", "),
        opts.out.display()
    );
    println!("{}", closing_line(&results));
    Ok(results)
}

/// The plain closing line CI systems read:
/// `matrix: N passed, N expected failures, N failed, N skipped`. Expected failures (XFAIL, the
/// kernel bugs the expectations explain) are counted apart from both passes and failures;
/// failed counts FAIL, XPASS, TIMEOUT and ERROR, broken down when it mixes them.
pub fn closing_line(results: &Results) -> String {
    format!(
        "matrix: {}",
        pkeys_report::Tally::of_results(results).sentence()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn closing_line_counts_every_verdict() {
        use pkeys_report::{CaseResult, GuestRun, KernelInfo, Verdict};
        let mut run = GuestRun::new("g", KernelInfo::default(), "max", "");
        for (i, v) in [
            Verdict::Pass,
            Verdict::XFail,
            Verdict::Skip,
            Verdict::Fail,
            Verdict::XPass,
            Verdict::Timeout,
            Verdict::Error,
        ]
        .into_iter()
        .enumerate()
        {
            run.cases.push(CaseResult::new(format!("a::{i}"), v));
        }
        assert_eq!(
            closing_line(&Results::new(vec![run])),
            "matrix: 1 passed, 1 expected failure, 4 failed (1 FAIL, 1 XPASS, 1 TIMEOUT, 1 ERROR), 1 skipped"
        );
    }

    fn plans() -> Vec<GuestPlan> {
        let c = Config::parse(
            Path::new("k.toml"),
            "[defaults]\ncpus = [\"max\", \"EPYC-Milan\"]\n[kernels.a]\npath = \"x\"\n[kernels.b]\npath = \"y\"\n[[guest]]\nkernel = \"a\"\n[[guest]]\nkernel = \"b\"\n",
        )
        .unwrap();
        c.guests()
    }

    fn names(p: &[GuestPlan]) -> Vec<&str> {
        p.iter().map(|g| g.name.as_str()).collect()
    }

    #[rstest]
    #[case("1/1", Some((1, 1)))]
    #[case("2/4", Some((2, 4)))]
    #[case("0/4", None)]
    #[case("5/4", None)]
    #[case("1/0", None)]
    #[case("x", None)]
    fn shards(#[case] s: &str, #[case] want: Option<(usize, usize)>) {
        assert_eq!(parse_shard(s).ok(), want);
    }

    #[test]
    fn selection() {
        assert_eq!(
            names(&select(plans(), &[], None).unwrap()),
            ["a-max", "a-EPYC-Milan", "b-max", "b-EPYC-Milan"]
        );
        assert_eq!(
            names(&select(plans(), &["b".into()], None).unwrap()),
            ["b-max", "b-EPYC-Milan"]
        );
        assert_eq!(
            names(&select(plans(), &["*-max".into()], None).unwrap()),
            ["a-max", "b-max"]
        );
        assert_eq!(
            names(&select(plans(), &[], Some((1, 2))).unwrap()),
            ["a-max", "b-max"]
        );
        assert_eq!(
            names(&select(plans(), &[], Some((2, 2))).unwrap()),
            ["a-EPYC-Milan", "b-EPYC-Milan"]
        );
        assert!(select(plans(), &[], Some((5, 5))).unwrap().is_empty());
        let err = select(plans(), &["zz".into()], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("matches no guest"), "{err}");
    }
}
