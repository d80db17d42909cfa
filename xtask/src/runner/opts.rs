//! `cargo xtask reproduce`'s flags, parsed and checked.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use awt_runs::DeviceSpec;

use crate::workspace::root;

/// `cargo xtask reproduce` flags.
pub(crate) struct Opts {
    pub preset: String,
    pub only: Option<String>,
    /// Name patterns whose runs go first (`--first a,b`: every run matching `a`, then `b`, then the rest).
    pub first: Vec<String>,
    pub jobs: usize,
    pub force: bool,
    pub list: bool,
    /// Commit each new record with the regenerated study report (`--commit`, recorded presets).
    pub commit: bool,
    pub shard: Option<(usize, usize)>,
    pub out: Option<PathBuf>,
    /// Start only runs expected to finish this many seconds after the grid started (`--within 2h30m`).
    pub within: Option<f64>,
    /// Where every `awt` step computes (`--device`; the CPU unless told).
    pub device: DeviceSpec,
    /// Make recorded runs again in a scratch folder and compare them with their records
    /// (`--verify`; nothing is recorded).
    pub verify: bool,
}

impl Opts {
    /// Parses the flags of `reproduce`.
    pub(crate) fn parse(args: &[String]) -> Result<Opts> {
        // One run per core by default: on the 2-core machine the smoke grid took 27 s as 2 runs of 1 thread
        // against 47 s as 1 run of 2 threads (small batches parallelise worse across threads than runs do).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut o = Opts {
            preset: "quick".into(),
            only: None,
            first: Vec::new(),
            jobs: cores,
            force: false,
            list: false,
            commit: false,
            shard: None,
            out: None,
            within: None,
            device: DeviceSpec::Cpu,
            verify: false,
        };
        let mut jobs_given = false;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value"));
            match a.as_str() {
                "--preset" => o.preset = val("--preset")?,
                "--only" => o.only = Some(val("--only")?),
                "--first" => {
                    o.first =
                        val("--first")?.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
                    if o.first.is_empty() {
                        bail!("--first takes name patterns separated by commas");
                    }
                }
                "--jobs" => {
                    jobs_given = true;
                    o.jobs = val("--jobs")?.parse().context("--jobs: not a number")?;
                    if o.jobs == 0 {
                        bail!("--jobs must be ≥ 1");
                    }
                }
                "--force" => o.force = true,
                "--list" => o.list = true,
                "--commit" => o.commit = true,
                "--verify" => o.verify = true,
                "--out" => o.out = Some(PathBuf::from(val("--out")?)),
                "--device" => o.device = val("--device")?.parse().context("--device")?,
                "--within" => o.within = Some(duration("--within", &val("--within")?)?),
                "--shard" => {
                    let v = val("--shard")?;
                    let (i, n) = v.split_once('/').context("--shard takes i/n")?;
                    let whole = |s: &str| {
                        s.parse::<usize>().with_context(|| format!("--shard {v}: i and n must be whole numbers"))
                    };
                    let (i, n) = (whole(i)?, whole(n)?);
                    if n == 0 || i >= n {
                        bail!("--shard {v}: need 0 ≤ i < n");
                    }
                    o.shard = Some((i, n));
                }
                other => bail!("reproduce: unknown flag `{other}`"),
            }
        }
        if o.verify && o.commit {
            bail!("--verify records nothing, so it has nothing to --commit");
        }
        if o.verify && o.only.is_none() {
            bail!(
                "--verify makes recorded runs again, hours each: name them with --only (`cargo xtask reproduce \
                 --preset {} --list` lists the preset's runs)",
                o.preset
            );
        }
        if o.device != DeviceSpec::Cpu && !jobs_given {
            // One GPU: runs queue for it rather than split it (and the CPU's cores) between them.
            o.jobs = 1;
        }
        Ok(o)
    }

    /// Where the preset's run folders go: `--out`, else `runs/<preset>/`, or `runs/verify/<preset>/`
    /// with `--verify` (never the run folders the records were copied from).
    pub(crate) fn base(&self) -> PathBuf {
        let runs = root().join("runs");
        let default = if self.verify { runs.join("verify").join(&self.preset) } else { runs.join(&self.preset) };
        self.out.clone().unwrap_or(default)
    }
}

/// A duration written as hours, minutes and seconds (`2h30m`, `90m`, `45s`, `1h`), in seconds.
pub(super) fn duration(flag: &str, text: &str) -> Result<f64> {
    let bad = || anyhow::anyhow!("{flag} {text}: not a duration; write it like 2h30m, 90m or 45s");
    let (mut secs, mut number, mut any) = (0.0, String::new(), false);
    for c in text.trim().chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let v: f64 = number.parse().map_err(|_| bad())?;
                secs += v * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                number.clear();
                any = true;
            }
            _ => return Err(bad()),
        }
    }
    if !any || !number.is_empty() || secs <= 0.0 {
        return Err(bad());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--verify` names its runs, commits nothing and works in its own folder, never in the run
    /// folders the records came from.
    #[test]
    fn verify_names_its_runs_and_works_apart() {
        let parse = |a: &[&str]| Opts::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let e = parse(&["--preset", "final-mlp", "--verify"]).err().unwrap().to_string();
        assert!(e.contains("--only") && e.contains("--preset final-mlp --list"), "{e}");
        let e = parse(&["--preset", "final-mlp", "--verify", "--only", "r", "--commit"]).err().unwrap().to_string();
        assert!(e.contains("--verify records nothing"), "{e}");
        let o = parse(&["--preset", "final-mlp", "--verify", "--only", "r"]).unwrap();
        assert_eq!(o.base(), root().join("runs/verify/final-mlp"));
        assert_eq!(parse(&["--preset", "final-mlp"]).unwrap().base(), root().join("runs/final-mlp"));
    }
}
