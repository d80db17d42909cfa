//! The files a run leaves, read into the run contract's records (`awt_runs::records`): reading
//! them, and the manifest's invariants checked before anything believes it.

use std::path::Path;

use anyhow::{Context, Result};

pub(crate) use awt_runs::records::{
    Crates, Cumulative, EpochLine as EpochRecord, Eval as EvalRecord, EvalCounts, Manifest, SearchLine as SearchRecord,
};

/// Reads a run's `manifest.json` and checks it before anything believes it.
pub(crate) fn read_manifest(file: &Path) -> Result<Manifest> {
    let m: Manifest = read_json(file)?;
    check(&m, file)?;
    Ok(m)
}

/// The inline TOML table `key={ ... }` of a run's canonical settings, if present.
fn setting_table(config: &str, key: &str) -> Option<toml::Table> {
    let start = config.find(&format!(" {key}={{"))? + key.len() + 2;
    let end = start + config[start..].find('}')? + 1;
    format!("t = {}", &config[start..end]).parse::<toml::Table>().ok()?.get("t")?.as_table().cloned()
}

/// The record's invariants, each failure an error naming the file and the field: the name
/// agrees with the folder, architecture, method, density and seed; the configuration with its
/// hash; the counts with each other (robust ≤ clean ≤ n, each attack ≤ the one before, the
/// final count = the last attack's less what noise broke); the attack settings with the
/// configuration's `[eval]` and `[train]` tables; the data with the configuration's.
pub(crate) fn check(m: &Manifest, file: &Path) -> Result<()> {
    let bad = |field: &str, why: String| anyhow::anyhow!("{}: `{field}` {why}", file.display());
    let folder = file.parent().and_then(Path::file_name).map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    let hash = awt_runs::fnv(&m.config);
    if folder != m.name && folder != format!("{}-{}", m.name, &hash[..10]) {
        return Err(bad("name", format!("is {} but the record lies in folder {folder}", m.name)));
    }
    if m.config_hash != hash {
        return Err(bad("config_hash", format!("is {} but the configuration hashes to {hash}", m.config_hash)));
    }
    let head = format!("arch={} method={} density={} seed={} ", m.arch, m.method, m.density, m.seed);
    if !m.config.starts_with(&head) {
        return Err(bad("config", format!("does not begin with `{head}` (the record's arch, method, density, seed)")));
    }
    let tail = format!("-d{}-s{}", m.density, m.seed);
    if !m.name.starts_with(&format!("{}-", m.arch)) || !m.name.ends_with(&tail) {
        return Err(bad("name", format!("{} does not read `{}-<method>{tail}`", m.name, m.arch)));
    }
    if m.method.is_dense() && m.density != awt_runs::Density::ONE {
        return Err(bad("density", format!("{} is not a density of method {}", m.density, m.method)));
    }
    if !m.config.contains(&format!(" data={} ", m.data)) {
        return Err(bad("data", format!("{} is not the configuration's data set", m.data)));
    }
    if !m.dataset_verified {
        return Err(bad(
            "dataset_verified",
            "is false: the run read files not verified against pinned checksums".into(),
        ));
    }
    let e = &m.eval;
    if e.n == 0 || e.clean_correct > e.n {
        return Err(bad("eval.clean_correct", format!("{} of n = {}", e.clean_correct, e.n)));
    }
    if e.robust_correct > e.clean_correct {
        return Err(bad(
            "eval.robust_correct",
            format!("{} is above clean_correct {}", e.robust_correct, e.clean_correct),
        ));
    }
    let mut before = e.clean_correct;
    for c in &e.cumulative {
        if c.robust_correct > before {
            return Err(bad(
                "eval.cumulative",
                format!("{} leaves {} robust, more than the {before} before it", c.attack, c.robust_correct),
            ));
        }
        before = c.robust_correct;
    }
    let want = if e.cumulative.is_empty() { e.clean_correct } else { before - e.noise_broken.unwrap_or(0).min(before) };
    if e.robust_correct != want {
        return Err(bad(
            "eval.robust_correct",
            format!("{} disagrees with the per-attack counts ({want})", e.robust_correct),
        ));
    }
    if let Some(t) = setting_table(&m.config, "eval") {
        let int = |k: &str| t.get(k).and_then(toml::Value::as_integer).map(|v| v as u64);
        let checks = [
            ("n", int("n"), e.n),
            ("steps", int("steps"), m.attack.steps),
            ("apgd_steps", int("apgd_steps"), m.attack.apgd_steps),
        ];
        for (k, conf, rec) in checks {
            if let Some(c) = conf.filter(|c| *c != rec) {
                return Err(bad(
                    &format!("eval/attack {k}"),
                    format!("is {rec} but the configuration's [eval] says {c}"),
                ));
            }
        }
        let attack = t.get("attack").and_then(toml::Value::as_str).unwrap_or("worst");
        if !e.cumulative.is_empty() && m.attack.attack != attack {
            return Err(bad(
                "attack.attack",
                format!("is {} but the configuration's [eval] says {attack}", m.attack.attack),
            ));
        }
    }
    if let Some(eps) = setting_table(&m.config, "train").and_then(|t| t.get("eps").and_then(toml::Value::as_float))
        && (eps - m.attack.eps).abs() > 1e-12
    {
        return Err(bad("attack.eps", format!("is {} but the configuration's [train] eps is {eps}", m.attack.eps)));
    }
    Ok(())
}

/// The middle value (the mean of the middle two for an even count; NaN for none).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The records whose times an estimate goes by: those timed in full, and of them only the
/// pause-free ones where there are any (older records may count a paused grid's hours as compute).
pub(crate) fn timed<'a>(recorded: impl IntoIterator<Item = &'a Manifest>) -> Vec<&'a Manifest> {
    let whole: Vec<&Manifest> = recorded.into_iter().filter(|m| m.timed_in_full()).collect();
    if whole.iter().any(|m| m.pause_free()) { whole.into_iter().filter(|m| m.pause_free()).collect() } else { whole }
}

/// Hours of running the `left` runs (their variants) need at the recorded median wall time per run
/// of the same variant, else of its plain method, else of every recorded run; only the runs
/// [`timed`] gives count. `None` when nothing is left or nothing is timed in full.
pub(crate) fn hours_left<'a>(recorded: impl IntoIterator<Item = &'a Manifest>, left: &[String]) -> Option<f64> {
    let whole = timed(recorded);
    if left.is_empty() || whole.is_empty() {
        return None;
    }
    let of = |v: &str| {
        let m = median(whole.iter().filter(|m| m.variant() == v).map(|m| m.wall_seconds).collect());
        m.is_finite().then_some(m)
    };
    let all = median(whole.iter().map(|m| m.wall_seconds).collect());
    let secs: f64 = left.iter().map(|v| of(v).or_else(|| crate::spec::plain_of(v).and_then(of)).unwrap_or(all)).sum();
    Some(secs / 3600.0)
}

/// Reads a JSON file into `T`, naming the file on error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not the expected JSON", p.display()))
}

/// Reads a JSON-lines file (missing: empty), naming the file and line on error.
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(p: &Path) -> Result<Vec<T>> {
    let Ok(text) = std::fs::read_to_string(p) else { return Ok(Vec::new()) };
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}: not the expected JSON", p.display(), i + 1))
        })
        .collect()
}

/// An `eval.json` for tests (one line): `n` points, `clean` correct, `robust` after one PGD attack.
#[cfg(test)]
pub(crate) fn test_eval(n: u64, clean: u64, robust: u64) -> String {
    let settings = awt_runs::records::EvalSettings {
        apgd_steps: 100,
        attack: "pgd".into(),
        batch: 250,
        eps: 0.1,
        fab_steps: None,
        loss: "ce".into(),
        noise_samples: 4,
        norm: "linf".into(),
        restarts: 1,
        seed: 0,
        square_queries: None,
        step_size: 0.0125,
        steps: 20,
        targets: None,
    };
    let acc = |c: u64| c as f64 / n as f64;
    let e = EvalRecord {
        arch: "lenet-300-100".into(),
        clean_accuracy: acc(clean),
        clean_correct: clean,
        cumulative: vec![awt_runs::records::EvalStep {
            attack: "pgd-20".into(),
            robust_accuracy: acc(robust),
            robust_correct: robust,
        }],
        data: "fashion-mnist".into(),
        dataset_files: Vec::new(),
        dataset_location: String::new(),
        dataset_unverified: None,
        dataset_verified: None,
        device: None,
        git_commit: "0".into(),
        gradient_free_only: None,
        gradient_masking_suspected: None,
        model: String::new(),
        n,
        noise_broken: None,
        offset: 0,
        robust_accuracy: Some(acc(robust)),
        robust_correct: Some(robust),
        settings,
        split: None,
        train_examples_after_hold_out: None,
        validation_held_out: None,
        wall_seconds: 1.0,
        warnings: Vec::new(),
    };
    serde_json::to_string(&e).expect("serialisable")
}

/// A manifest for tests: `acc` = (clean, PGD, worst) accuracy on 10,000 images.
#[cfg(test)]
pub(crate) fn test_manifest(
    preset: &str,
    method: &str,
    density: f64,
    seed: u64,
    acc: (f64, f64, f64),
) -> serde_json::Value {
    let n = 10_000u64;
    let c = |a: f64| (a * n as f64).round() as u64;
    // `method` may be a variant (`awt-ker10`): the name keeps it, the method field is its method.
    let name = format!("lenet-300-100-{method}-d{density}-s{seed}");
    let method = method.parse::<awt_runs::Variant>().expect("a method or variant").method;
    let config = format!(
        "arch=lenet-300-100 method={method} density={density} seed={seed} data=fashion-mnist train={{ eps = 0.1 }} eval={{ apgd_steps = 100, n = 10000, steps = 20 }}"
    );
    serde_json::json!({
        "preset": preset, "name": name, "arch": "lenet-300-100", "method": method.name(), "density": density,
        "seed": seed, "config_hash": awt_runs::fnv(&config), "config": config, "git_commit": "0", "rustc": "",
        "data": "fashion-mnist",
        "crates": {"candle-core": "0", "awt": "0"}, "dataset_files": [], "dataset_location": "", "threads": "2",
        "attack": {"attack": "worst", "eps": 0.1, "steps": 20, "apgd_steps": 100, "batch": 250, "loss": "ce",
                   "noise_samples": 4, "norm": "linf", "restarts": 1, "seed": seed, "step_size": 0.0125},
        "eval": {"n": n, "clean_correct": c(acc.0), "robust_correct": c(acc.2),
                 "cumulative": [{"attack": "pgd", "robust_correct": c(acc.1)}, {"attack": "apgd-ce", "robust_correct": c(acc.2)}]},
        "timings_seconds": {}, "wall_seconds": 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every invariant of a record is checked before it is used, and a broken one is an error
    /// naming the file and the field: counts above n or above clean, a final count that disagrees
    /// with the per-attack ones, a seed or density the folder's name contradicts, attack settings the
    /// configuration does not give, unverified data, a hash that is not the configuration's.
    #[test]
    fn a_record_is_checked_before_it_is_believed() {
        let dir = std::env::temp_dir().join(format!("awt-records-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let good = test_manifest("study", "awt", 0.05, 1, (0.8, 0.6, 0.55));
        let write = |v: &serde_json::Value, folder: &str| -> std::path::PathBuf {
            let p = dir.join(folder);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("manifest.json"), v.to_string()).unwrap();
            p.join("manifest.json")
        };
        let name = "lenet-300-100-awt-d0.05-s1";
        read_manifest(&write(&good, name)).unwrap();
        let broken = |edit: &dyn Fn(&mut serde_json::Value), folder: &str, field: &str| {
            let mut v = good.clone();
            edit(&mut v);
            let e = format!("{:#}", read_manifest(&write(&v, folder)).unwrap_err());
            assert!(e.contains(folder) && e.contains(&format!("`{field}`")), "{field}: {e}");
        };
        broken(&|v| v["eval"]["robust_correct"] = 10_001.into(), name, "eval.robust_correct");
        broken(&|v| v["eval"]["clean_correct"] = 10_001.into(), name, "eval.clean_correct");
        broken(&|v| v["eval"]["robust_correct"] = 5400.into(), name, "eval.robust_correct");
        broken(&|v| v["eval"]["cumulative"][1]["robust_correct"] = 6100.into(), name, "eval.cumulative");
        broken(&|v| v["attack"]["steps"] = 10.into(), name, "eval/attack steps");
        broken(&|v| v["attack"]["eps"] = 0.3.into(), name, "attack.eps");
        broken(&|v| v["dataset_verified"] = false.into(), name, "dataset_verified");
        broken(&|v| v["data"] = "fashion-mnist-mini".into(), name, "data");
        broken(&|v| v["config_hash"] = "0".into(), name, "config_hash");
        broken(&|_| {}, "lenet-300-100-awt-d0.05-s2", "name");
        broken(&|v| v["seed"] = 2.into(), name, "config");
        // Noise-broken points are subtracted from the last attack's count.
        let mut v = good.clone();
        v["eval"]["noise_broken"] = 3.into();
        v["eval"]["robust_correct"] = 5497.into();
        read_manifest(&write(&v, name)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The fuzz corpus of the record reader (`fuzz/corpus/records`, grown by `cargo fuzz run records`)
    /// replayed: every input is read and checked without a panic.
    #[test]
    fn the_record_fuzz_corpus_replays_without_panic() {
        let dir = crate::workspace::root().join("fuzz/corpus/records");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                let _ = check(&m, Path::new("/results/x/manifest.json"));
                let _ = check(&m, &Path::new("/results").join(&m.name).join("manifest.json"));
            }
            let _ = serde_json::from_slice::<EvalRecord>(&bytes);
            n += 1;
        }
        assert!(n >= 5, "{n} corpus files in {}", dir.display());
    }
}
