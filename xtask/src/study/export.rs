//! docs/study-runs.csv: every recorded run of every study preset as one row, for analyses of one's
//! own (pandas, R) without reading the run folders: what the run was, its correct counts (counts,
//! not percentages, so that any interval can be computed again), the robust counts after each attack
//! of both evaluations, what Square alone broke, its kernel distance to the dense net, the share of
//! each layer it kept, its warnings, time, CPU and commit. Regenerated with the study report.

use std::fmt::Write as _;

use super::data::Rec;
use super::verdicts::over_all_epochs;

/// The file name, beside the study report, of the CSV with one row per recorded run.
pub(crate) const RUNS_CSV: &str = "study-runs.csv";

/// The columns, in order, with what each holds.
pub(super) const COLUMNS: [(&str, &str); 29] = [
    ("preset", "the preset that ran it (`results/<preset>/`)"),
    ("run", "its name, `<arch>-<variant>-d<density>-s<seed>`, its folder under `results/<preset>/`"),
    ("arch", "the architecture"),
    ("variant", "the method with its ablation (`awt-ntk-sap-layers`), as the report's tables name it"),
    ("method", "the method alone"),
    ("density", "the share of prunable weights kept (1: dense)"),
    ("seed", "the seed of its initialisation, data order and attacks (paired across variants)"),
    ("split", "the split it was scored on (`test`, or `validation` for the selections)"),
    ("attack", "the main evaluation: `worst` (the worst case of its attacks) or `none` (clean only)"),
    ("eps", "the perturbation budget (empty without an attack)"),
    ("norm", "the threat model (empty without an attack)"),
    ("n", "images evaluated"),
    ("clean_correct", "of them, classified correctly"),
    ("robust_correct", "of them, correct under every attack of the main evaluation (empty without an attack)"),
    ("robust_after_each", "`attack=count;…`: those still correct after each attack, in order"),
    ("noise_broken", "points uniform noise broke after the attacks (a sign of a useless attack; empty: none)"),
    ("autoattack_n", "images AutoAttack ran on (the first ones; empty where it did not run)"),
    ("autoattack_correct", "of them, correct after all of AutoAttack"),
    ("autoattack_after_each", "`attack=count;…` after each of AutoAttack's attacks"),
    ("square_only", "of them, broken by Square alone after the gradient attacks (gradient masking if many)"),
    (
        "kernel_distance_init",
        "‖Θ_s − Θ_d‖/‖Θ_d‖ to the dense net of its seed at initialisation, on the probe's PGD examples",
    ),
    ("kernel_distance_mean", "the same, mean over epochs 0..T (the protocol's dynamics measure)"),
    ("layer_keep", "`layer=share;…`: the share of each weight layer it kept"),
    ("warnings", "how many evaluation warnings it has (listed in the appendix)"),
    ("wall_seconds", "its run time (time the run stood stopped left out where its record says how long)"),
    ("cpu", "the CPU it computed on (empty in early records)"),
    (
        "summation",
        "how that CPU summed its matrix products (`awt numerics`; runs agree bit for bit only under one order and one build; empty in early records)",
    ),
    ("git_commit", "the commit of the binary that ran it"),
    ("config_hash", "the hash of its settings (`manifest.json`'s `config`)"),
];

/// docs/study.md's section on the CSV: where it is and what each column holds.
pub(super) fn section() -> String {
    let mut md = format!(
        "## Every run as data

[`{}`]({}) holds every recorded run above as one row (counts, not percentages, so that any \
interval or test can be computed again), regenerated with this report; read it with `pandas.read_csv(path, comment=\"#\")` or \
R's `read.csv(path, comment.char = \"#\")`. Its columns:\n\n| column | what it holds |\n|---|---|\n",
        RUNS_CSV,
        RUNS_CSV
    );
    for (name, what) in COLUMNS {
        let _ = writeln!(md, "| `{name}` | {what} |");
    }
    md + "\n"
}

/// The CSV of `presets`' records, preceded by one `#` line saying what made it (read it with
/// `pandas.read_csv(path, comment="#")` or R's `read.csv(path, comment.char = "#")`).
pub(super) fn csv(presets: &[(&str, &[Rec])]) -> String {
    let mut out = format!(
        "# {} --study` from the records in results/; one row per recorded run; docs/study.md explains the \
columns; read with pandas.read_csv(path, comment=\"#\")\n{}\n",
        crate::workspace::GENERATED,
        COLUMNS.map(|c| c.0).join(",")
    );
    for (_, recs) in presets {
        for r in *recs {
            let row = row(r);
            debug_assert_eq!(row.len(), COLUMNS.len());
            let _ = writeln!(out, "{}", row.iter().map(|f| quote(f)).collect::<Vec<_>>().join(","));
        }
    }
    out
}

/// One run's fields, in [`COLUMNS`]' order; an empty field where the run has no such record.
fn row(r: &Rec) -> Vec<String> {
    let m = &r.m;
    let attacked = m.attack.attack != "none";
    let if_attacked = |s: String| if attacked { s } else { String::new() };
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let dist = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    let after_each = each(m.eval.cumulative.iter().map(|c| (c.attack.as_str(), c.robust_correct)));
    let (aa_n, aa_correct, aa_each, square) = match &r.aa {
        Some(a) => (
            a.n.to_string(),
            opt(a.robust_correct),
            each(a.cumulative.iter().map(|c| (c.attack.as_str(), c.robust_correct))),
            opt(a.gradient_free_only),
        ),
        None => Default::default(),
    };
    let keep = r
        .mask
        .as_ref()
        .map(|k| k.layers.iter().map(|l| format!("{}={:.6}", l.name, l.density)).collect::<Vec<_>>().join(";"))
        .unwrap_or_default();
    vec![
        m.preset.clone(),
        m.name.clone(),
        m.arch.clone(),
        r.variant(),
        m.method.to_string(),
        m.density.to_string(),
        m.seed.to_string(),
        m.split.clone().unwrap_or_else(|| "test".into()),
        m.attack.attack.clone(),
        if_attacked(m.attack.eps.to_string()),
        if_attacked(m.attack.norm.clone()),
        m.eval.n.to_string(),
        m.eval.clean_correct.to_string(),
        if_attacked(m.eval.robust_correct.to_string()),
        after_each,
        opt(m.eval.noise_broken),
        aa_n,
        aa_correct,
        aa_each,
        square,
        dist(r.dynamics.iter().find(|e| e.epoch == 0).map(|e| e.rel_distance)),
        dist(over_all_epochs(r)),
        keep,
        m.warnings.len().to_string(),
        format!("{:.1}", m.wall_seconds),
        m.cpu.clone().unwrap_or_default(),
        m.gemm.clone().unwrap_or_default(),
        m.git_commit.clone(),
        m.config_hash.clone(),
    ]
}

/// Counts after each attack as `attack=count;…`.
fn each<'a>(steps: impl Iterator<Item = (&'a str, u64)>) -> String {
    steps.map(|(a, n)| format!("{a}={n}")).collect::<Vec<_>>().join(";")
}

/// A field as RFC 4180 writes it: in double quotes (doubled inside) where it holds a comma, a quote
/// or a line break.
fn quote(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() }
}

#[cfg(test)]
mod tests {
    use super::super::data::load;
    use super::*;

    /// Splits one CSV line as [`quote`] writes it.
    fn fields(line: &str) -> Vec<String> {
        let (mut out, mut cur, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => out.push(std::mem::take(&mut cur)),
                (c, _) => cur.push(c),
            }
        }
        out.push(cur);
        out
    }

    #[test]
    fn fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(quote("Intel(R) Xeon(R) Processor, avx512f"), "\"Intel(R) Xeon(R) Processor, avx512f\"");
        assert_eq!(quote("a \"b\""), "\"a \"\"b\"\"\"");
        assert_eq!(quote("plain"), "plain");
        assert_eq!(fields("x,\"a, b\",\"c \"\"d\"\"\","), ["x", "a, b", "c \"d\"", ""]);
    }

    /// Read back, the committed records' CSV has one row per run folder with a manifest, every row
    /// as many fields as the header, and each run's counts those its own files hold (read here
    /// without the study's loader), the AutoAttack and dynamics fields filled exactly where the run
    /// has those files.
    #[test]
    fn every_recorded_run_is_one_row_with_its_own_counts() {
        let presets = ["final-mlp", "final-lenet5", "ntt-validation"];
        let loaded: Vec<(&str, Vec<Rec>)> = presets.iter().map(|p| (*p, load(p).unwrap())).collect();
        let refs: Vec<(&str, &[Rec])> = loaded.iter().map(|(p, r)| (*p, r.as_slice())).collect();
        let text = csv(&refs);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("# Generated by `cargo xtask report"));
        assert_eq!(lines.next().unwrap(), COLUMNS.map(|c| c.0).join(","));
        let rows: Vec<Vec<String>> = lines.map(fields).collect();
        let col = |name: &str| COLUMNS.iter().position(|c| c.0 == name).unwrap();
        let mut folders = 0;
        for preset in presets {
            let dir = crate::workspace::root().join("results").join(preset);
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let Ok(bytes) = std::fs::read(p.join("manifest.json")) else { continue };
                folders += 1;
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let name = p.file_name().unwrap().to_str().unwrap();
                let row = rows.iter().find(|r| r[col("run")] == name).unwrap_or_else(|| panic!("{name}: no row"));
                assert_eq!(row.len(), COLUMNS.len(), "{name}");
                assert_eq!(row[col("preset")], preset);
                for field in ["n", "clean_correct"] {
                    assert_eq!(row[col(field)], v["eval"][field].to_string(), "{name} {field}");
                }
                // Without an attack the manifest's robust count is the clean one: no robust number.
                let robust = if v["attack"]["attack"] == "none" {
                    String::new()
                } else {
                    v["eval"]["robust_correct"].to_string()
                };
                assert_eq!(row[col("robust_correct")], robust, "{name}");
                let aa = p.join("eval-aa.json");
                assert_eq!(!row[col("autoattack_n")].is_empty(), aa.exists(), "{name}");
                if aa.exists() {
                    let a: serde_json::Value = serde_json::from_slice(&std::fs::read(&aa).unwrap()).unwrap();
                    assert_eq!(row[col("autoattack_correct")], a["robust_correct"].to_string(), "{name}");
                }
                let dynamics = std::fs::metadata(p.join("dynamics.jsonl")).is_ok_and(|m| m.len() > 0);
                assert_eq!(!row[col("kernel_distance_mean")].is_empty(), dynamics, "{name}");
            }
        }
        assert!(folders > 100, "only {folders} records found");
        assert_eq!(rows.len(), folders, "rows and run folders differ in number");
    }
}
