//! `reproduce --verify`: a recorded run made again, in a scratch folder (`runs/verify/<preset>/`
//! unless `--out`), and compared with its record in `results/<preset>/`: the evaluation's counts
//! and attack settings, AutoAttack's counts, the ticket's structure, every training epoch, the
//! search log's recorded lines and the kernel dynamics — everything but times, paths and the
//! commit. Nothing is recorded or committed. A reader who doubts a number in docs/study.md can make
//! it again with one command and see whether it repeats, and where it first does not.

use std::path::Path;

use anyhow::{Context, Result};
use awt_runs::layout;
use serde_json::Value;

use crate::plan::Run;
use crate::records::Manifest;

use super::record::record_dir;

/// Keys that say when, where, by which build or how fast (not what was computed): left out of
/// every comparison.
const VOLATILE: [&str; 9] = [
    "wall_seconds",
    "seconds",
    "images_per_sec",
    "git_commit",
    "model",
    "dataset_location",
    "meta",
    "device",
    "timings_seconds",
];

/// What a comparison found: the files and lines compared, and the differences (the first of each
/// file, said with the recorded and the new value).
#[derive(Debug, Default)]
pub(super) struct Verdict {
    pub compared: Vec<String>,
    pub differences: Vec<String>,
    /// The summation orders (`awt numerics`) of the record's machine and of this one, where they differ.
    pub orders: Option<(String, String)>,
    /// The commits of the binaries that made the record and the run again, where they differ.
    pub commits: Option<(String, String)>,
}

/// Compares the run made again in `run.dir` with its record.
pub(super) fn compare(preset: &str, run: &Run) -> Result<Verdict> {
    compare_dirs(&record_dir(preset, run), &run.dir)
}

/// Compares a record folder with a run folder (whose files carry the run folder's names).
pub(super) fn compare_dirs(record: &Path, fresh: &Path) -> Result<Verdict> {
    let mut v = Verdict::default();
    let rec_m: Manifest = crate::records::read_json(&record.join(layout::MANIFEST))?;
    let new_m: Manifest = crate::records::read_json(&fresh.join(layout::MANIFEST))?;
    let (rec_j, new_j) = (serde_json::to_value(&rec_m)?, serde_json::to_value(&new_m)?);
    for key in ["config_hash", "attack", "eval", "warnings"] {
        same_value(&mut v, &format!("manifest.json {key}"), &rec_j[key], &new_j[key]);
    }
    v.compared.push("the evaluation's counts".into());
    if rec_m.git_commit != new_m.git_commit {
        v.commits = Some((rec_m.git_commit.clone(), new_m.git_commit.clone()));
    }
    if let (Some(a), Some(b)) = (&rec_m.gemm, &new_m.gemm)
        && a != b
    {
        v.orders = Some((a.clone(), b.clone()));
    }
    for (what, rec, new) in [
        ("AutoAttack", record.join(layout::EVAL_AA), fresh.join(layout::EVAL_AA)),
        ("the ticket's structure", record.join(layout::MASK), fresh.join(layout::MASK)),
        ("the security curve", record.join(layout::CURVE), fresh.join(layout::CURVE)),
    ] {
        if !rec.exists() {
            continue;
        }
        let name = rec.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        match std::fs::read(&new) {
            Err(_) => v.differences.push(format!("{name}: recorded, not made again")),
            Ok(bytes) => {
                let new: Value = serde_json::from_slice(&bytes).with_context(|| format!("{}", fresh.display()))?;
                let rec: Value = crate::records::read_json(&rec)?;
                same_value(&mut v, &name, &strip(rec), &strip(new));
                v.compared.push(what.into());
            }
        }
    }
    let fresh_search = layout::beside(&fresh.join(layout::TICKET), layout::SEARCH_LOG);
    for (what, name, rec, new, by) in [
        (
            "training epochs",
            "training",
            record.join(layout::RECORD_TRAIN_METRICS),
            fresh.join(layout::TRAIN).join(layout::METRICS),
            "epoch",
        ),
        ("search-log lines", "search log", record.join(layout::RECORD_SEARCH), fresh_search, "step"),
        ("kernel-dynamics epochs", "dynamics", record.join(layout::DYNAMICS), fresh.join(layout::DYNAMICS), "epoch"),
    ] {
        let rec = lines(&rec)?;
        if rec.is_empty() {
            continue;
        }
        let new = lines(&new)?;
        // The record may hold a thinned log: each recorded line against the new line of its step.
        for r in &rec {
            match new.iter().find(|n| n[by] == r[by]) {
                None => {
                    v.differences.push(format!("{name}: {by} {} recorded, not made again", r[by]));
                    break;
                }
                Some(n) if n != r => {
                    same_value(&mut v, &format!("{name} {by} {}", r[by]), r, n);
                    break;
                }
                Some(_) => {}
            }
        }
        v.compared.push(format!("{} {what}", rec.len()));
    }
    Ok(v)
}

/// A JSON-lines file's lines, volatile keys left out (missing file: none).
fn lines(p: &Path) -> Result<Vec<Value>> {
    if !p.exists() {
        return Ok(Vec::new());
    }
    json_lines(p)
}

/// A JSON-lines file's lines with the keys that say when, where, by which build or how fast
/// ([`VOLATILE`]) left out: what two runs that computed the same thing share. The runner's check
/// that a dense net trained again repeats its record reads its epochs with this too.
pub(super) fn json_lines(p: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map(strip).with_context(|| format!("{}: not a JSON line: {l}", p.display())))
        .collect()
}

/// `v` without its volatile top-level keys.
fn strip(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in VOLATILE {
            o.remove(k);
        }
    }
    v
}

/// Adds a difference where `rec` and `new` differ, naming the first differing key of an object.
fn same_value(v: &mut Verdict, what: &str, rec: &Value, new: &Value) {
    if rec == new {
        return;
    }
    let at = match (rec.as_object(), new.as_object()) {
        (Some(a), Some(b)) => a
            .iter()
            .find(|(k, x)| b.get(*k) != Some(*x))
            .map(|(k, x)| format!("{what} {k}: now {}, recorded {}", short(b.get(k).unwrap_or(&Value::Null)), short(x)))
            .or_else(|| b.keys().find(|k| !a.contains_key(*k)).map(|k| format!("{what} {k}: not in the record"))),
        _ => None,
    };
    v.differences.push(at.unwrap_or_else(|| format!("{what}: now {}, recorded {}", short(new), short(rec))));
}

/// A value as JSON, cut to its first 240 characters (a mask's unit lists run to thousands).
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(240) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// The lines the runner prints for a verified run: that it repeats, or where it does not, with a
/// note when the two machines sum their products in different orders.
pub(super) fn report(name: &str, v: &Verdict) -> String {
    let mut s = if v.differences.is_empty() {
        format!("      {name}: repeats its record ({})", v.compared.join(", "))
    } else {
        let mut s = format!("      {name}: differs from its record ({} compared):", v.compared.join(", "));
        for d in &v.differences {
            s += &format!("\n        - {d}");
        }
        s
    };
    if let Some((rec, now)) = &v.commits {
        let (rec, now) = (rec.chars().take(7).collect::<String>(), now.chars().take(7).collect::<String>());
        s += &format!("\n        (made again by the awt of {now}, the record by that of {rec}");
        s += &if v.differences.is_empty() {
            ")".to_string()
        } else {
            format!(
                ": a change of the code between them that moves a sum moves what follows it; `git log {rec}..{now} -- \
                 crates` lists them, and AWT_BIN=<the awt of {rec}> makes the run with the record's code)"
            )
        };
    }
    if let Some((rec, here)) = &v.orders {
        s += &format!(
            "\n        (the record was made summing matrix products as `{rec}`, this machine sums them as `{here}`: \
             docs/reproducing.md, \"Across CPUs\", says what can then differ)"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run folder and its record (as `record` copies it): equal apart from times, paths and the
    /// commit they repeat; a changed count, a changed search line at a recorded step, a missing
    /// training epoch and a missing AutoAttack file are each named, with both values.
    #[test]
    fn a_record_is_compared_field_by_field_apart_from_times_and_paths() {
        let tmp = std::env::temp_dir().join(format!("awt-verify-{}", std::process::id()));
        let (rec, new) = (tmp.join("rec"), tmp.join("new"));
        for d in [&rec, &new.join("train")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let m = crate::records::test_manifest("t", "awt", 0.05, 1, (0.8, 0.6, 0.55));
        let mut m2 = m.clone();
        m2["wall_seconds"] = 99.0.into();
        m2["git_commit"] = "1".into();
        let write = |p: &Path, s: String| std::fs::write(p, s).unwrap();
        write(&rec.join("manifest.json"), m.to_string());
        write(&new.join("manifest.json"), m2.to_string());
        let aa = |n: u64, secs: f64, model: &str| {
            format!(r#"{{"n":1000,"robust_correct":{n},"wall_seconds":{secs},"model":"{model}","cumulative":[]}}"#)
        };
        write(&rec.join("eval-aa.json"), aa(700, 1.0, "/a/ticket"));
        write(&new.join("eval-aa.json"), aa(700, 2.0, "/b/ticket"));
        let epoch = |e: u32, loss: f64, secs: f64| format!(r#"{{"epoch":{e},"train_loss":{loss},"seconds":{secs}}}"#);
        write(&rec.join("train-metrics.jsonl"), format!("{}\n{}\n", epoch(0, 1.5, 3.0), epoch(1, 1.2, 3.0)));
        write(&new.join("train/metrics.jsonl"), format!("{}\n{}\n", epoch(0, 1.5, 9.0), epoch(1, 1.2, 9.0)));
        let step = |s: u32, loss: f64| format!(r#"{{"step":{s},"loss":{loss},"mask_changes":0}}"#);
        // The record keeps every 50th step; the run folder has them all.
        write(&rec.join("search.jsonl"), format!("{}\n{}\n", step(0, 0.3), step(50, 0.2)));
        let all: Vec<String> = (0..=50)
            .map(|s| {
                step(
                    s,
                    match s {
                        0 => 0.3,
                        50 => 0.2,
                        _ => 0.25,
                    },
                )
            })
            .collect();
        write(&new.join("ticket.safetensors.search.jsonl"), all.join("\n") + "\n");
        let v = compare_dirs(&rec, &new).unwrap();
        assert!(v.differences.is_empty(), "{:?}", v.differences);
        assert!(
            v.compared.contains(&"2 training epochs".to_string()) && v.compared.contains(&"2 search-log lines".into())
        );
        assert!(report("r", &v).contains("r: repeats its record"));
        assert!(
            report("r", &v).ends_with("(made again by the awt of 1, the record by that of 0)"),
            "{}",
            report("r", &v)
        );

        let mut m3 = m.clone();
        m3["eval"]["robust_correct"] = 5501.into();
        write(&new.join("manifest.json"), m3.to_string());
        write(&new.join("eval-aa.json"), aa(699, 2.0, "/b/ticket"));
        write(&new.join("train/metrics.jsonl"), format!("{}\n", epoch(0, 1.5, 9.0)));
        let mut changed = all.clone();
        changed[50] = step(50, 0.21);
        write(&new.join("ticket.safetensors.search.jsonl"), changed.join("\n") + "\n");
        let d = compare_dirs(&rec, &new).unwrap().differences;
        let has = |s: &str| d.iter().any(|x| x.contains(s));
        assert!(has("manifest.json eval robust_correct: now 5501, recorded 5500"), "{d:?}");
        assert!(has("eval-aa.json robust_correct: now 699, recorded 700"), "{d:?}");
        assert!(has("training: epoch 1 recorded, not made again"), "{d:?}");
        assert!(has("search log step 50 loss: now 0.21, recorded 0.2"), "{d:?}");
        let long = Value::from(vec![7; 500]);
        assert!(short(&long).ends_with('…') && short(&long).chars().count() == 241);
        std::fs::remove_file(new.join("eval-aa.json")).unwrap();
        let d = compare_dirs(&rec, &new).unwrap().differences;
        assert!(d.iter().any(|x| x == "eval-aa.json: recorded, not made again"), "{d:?}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
