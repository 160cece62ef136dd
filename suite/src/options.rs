//! The suite's own options, taken out of the command line before libtest's are parsed.

/// Options libtest does not know.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// `--format ktap`.
    pub ktap: bool,
    /// `--selftest`: run the fault-injection cases.
    pub selftest: bool,
    /// `--seed N`.
    pub seed: u64,
    /// `--timeout-scale F`.
    pub timeout_scale: f64,
    /// `--iterations N`.
    pub iterations: u32,
    /// `--inject-panic`: after the selected cases, crash the kernel (guests only; fault injection
    /// for the runner's tests).
    pub inject_panic: bool,
    /// `--user UID`: as root, drop to this uid (and gid, no supplementary groups) before
    /// probing, to see what an unprivileged user gets (guests: `pkeys-qemu run ... -- --user 65534`).
    pub user: Option<u32>,
    /// `--explore-time DUR` (`90s`, `10m`, `2h`): each explorer case runs batches of sequences
    /// for this long instead of its fixed budget (soak mode).
    pub explore_time: Option<std::time::Duration>,
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, name: &str) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{name} needs a value"))
}

/// Split argv into the suite's options and the rest (for libtest-mimic, argv[0] kept).
pub fn split(argv: &[String]) -> Result<(Extra, Vec<String>), String> {
    let mut extra = Extra {
        timeout_scale: 1.0,
        iterations: 1,
        ..Extra::default()
    };
    if let Ok(s) = std::env::var("PKEYS_TIMEOUT_SCALE") {
        extra.timeout_scale = s
            .parse()
            .map_err(|_| format!("PKEYS_TIMEOUT_SCALE={s}: not a number"))?;
    }
    let mut rest = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--format" => {
                let v = value(&mut it, "--format")?;
                if v == "ktap" {
                    extra.ktap = true;
                } else {
                    rest.push(a.clone());
                    rest.push(v.clone());
                }
            }
            "--format=ktap" => extra.ktap = true,
            "--selftest" => extra.selftest = true,
            "--inject-panic" => extra.inject_panic = true,
            "--user" => {
                let v = value(&mut it, "--user")?;
                extra.user = Some(v.parse().map_err(|_| format!("--user {v}: not a uid"))?);
            }
            "--seed" => {
                let v = value(&mut it, "--seed")?;
                extra.seed = v.parse().map_err(|_| format!("--seed {v}: not a number"))?;
            }
            "--explore-time" => {
                let v = value(&mut it, "--explore-time")?;
                extra.explore_time =
                    Some(pkeys_common::suite_args::parse_duration(v).ok_or_else(|| {
                        format!("--explore-time {v}: not a duration (e.g. 90s, 10m, 2h)")
                    })?);
            }
            "--iterations" => {
                let v = value(&mut it, "--iterations")?;
                extra.iterations = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("--iterations {v}: not a positive number"))?;
            }
            "--timeout-scale" => {
                let v = value(&mut it, "--timeout-scale")?;
                extra.timeout_scale = v
                    .parse()
                    .map_err(|_| format!("--timeout-scale {v}: not a number"))?;
            }
            _ => rest.push(a.clone()),
        }
    }
    if extra.seed == 0 {
        extra.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 & 0xffff_ffff);
    }
    Ok((extra, rest))
}
