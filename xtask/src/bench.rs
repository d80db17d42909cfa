//! `cargo xtask bench [--peers]`: our criterion benchmarks and, with `--peers`, the PyTorch and
//! neural-tangents scripts of `benches/peers/` in the same sitting, then the ratio table of
//! docs/performance.md (between its `bench:begin` / `bench:end` markers) from that one sitting.
//!
//! Peers run in virtual environments created on first use under `target/peers/` (pinned versions,
//! from PyPI), or in the interpreters named by `AWT_PEER_TORCH_PYTHON` / `AWT_PEER_JAX_PYTHON`.

use awt_runs::layout;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::workspace::root;

mod gflop;
use gflop::gflop;

/// `cargo xtask bench` flags.
struct Opts {
    peers: bool,
    filter: Option<String>,
    at_epoch: bool,
    threads: usize,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts { peers: false, filter: None, at_epoch: true, threads: 2 };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--peers" => o.peers = true,
            "--no-at-epoch" => o.at_epoch = false,
            "--filter" => o.filter = Some(it.next().context("--filter needs a value")?.clone()),
            "--threads" => {
                o.threads = it.next().context("--threads needs a value")?.parse().context("--threads: not a number")?;
                if o.threads == 0 {
                    bail!("--threads must be ≥ 1");
                }
            }
            other => bail!("bench: unknown flag `{other}`"),
        }
    }
    if o.peers && o.filter.is_some() {
        bail!("bench: --peers writes the whole table; it runs every benchmark (drop --filter)");
    }
    Ok(o)
}

/// The networks of the side-by-side table.
const NETS: [&str; 2] = ["lenet-300-100", "lenet5-caffe"];

/// Pinned peer environments: (name, packages, the variable that overrides the interpreter).
const TORCH_ENV: (&str, &[&str], &str) =
    ("torch", &["torch==2.15.0", "torchattacks==3.5.1", "numpy", "safetensors"], "AWT_PEER_TORCH_PYTHON");
const JAX_ENV: (&str, &[&str], &str) = (
    "jax",
    &["jax==0.4.23", "jaxlib==0.4.23", "neural-tangents==0.6.5", "numpy<2", "scipy<1.13"],
    "AWT_PEER_JAX_PYTHON",
);

/// The Python of a peer environment, creating the environment on first use.
pub(crate) fn peer_python((name, packages, var): (&str, &[&str], &str)) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Ok(PathBuf::from(p));
    }
    let dir = root().join("target").join("peers").join(name);
    let python = dir.join("bin").join("python");
    let stamp = dir.join("awt-installed.txt");
    let wanted = packages.join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    eprintln!("creating the {name} peer environment in {} ({wanted}; several GB for torch)", dir.display());
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir), "python3 -m venv")?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet"]).args(packages), "pip install")?;
    std::fs::write(&stamp, &wanted)?;
    Ok(python)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs a peer script and parses its JSON lines.
fn peer(python: &Path, script: &str, args: &[String]) -> Result<Vec<Value>> {
    let path = root().join("benches").join("peers").join(script);
    eprintln!("$ {} {} {}", python.display(), path.display(), args.join(" "));
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!("{script} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{script}: output is not JSON lines"))?;
    for l in &lines {
        eprintln!("  {l}");
    }
    Ok(lines)
}

/// Criterion's medians (ms) by full benchmark id, read from `target/criterion/**/new/`.
fn criterion_medians() -> Result<BTreeMap<String, f64>> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, f64>) -> Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let meta: Value = crate::records::read_json(&p.join("benchmark.json"))?;
                    let est: Value = crate::records::read_json(&p.join("estimates.json"))?;
                    if let (Some(id), Some(ns)) = (meta["full_id"].as_str(), est["median"]["point_estimate"].as_f64()) {
                        out.insert(id.to_string(), ns / 1e6);
                    }
                } else {
                    walk(&p, out)?;
                }
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    let dir = root().join("target").join("criterion");
    if dir.is_dir() {
        walk(&dir, &mut out)?;
    }
    Ok(out)
}

/// One row of the side-by-side table.
struct Row {
    what: String,
    peer_name: String,
    peer_ms: Option<f64>,
    ours_ms: Option<f64>,
    target: &'static str,
    gflop: Option<f64>,
    unit: &'static str,
}

pub(crate) fn bench(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    warn_if_busy();
    let mut cargo_args = vec!["bench", "-p", "benches", "--"];
    if let Some(f) = &o.filter {
        cargo_args.push(f);
    }
    crate::workspace::cargo(&cargo_args)?;
    if !o.peers {
        return Ok(());
    }
    let ours = criterion_medians()?;
    let threads = o.threads.to_string();
    let torch = peer_python(TORCH_ENV)?;
    let jax = peer_python(JAX_ENV)?;
    let mut peers: Vec<Value> = peer(&torch, "torch_bench.py", std::slice::from_ref(&threads))?;
    for net in NETS {
        peers.extend(peer(&torch, "torch_awt_step.py", &[threads.clone(), net.into()])?);
    }
    peers.extend(peer(&jax, "nt_bench.py", &[])?);
    peers.extend(peer(&jax, "nt_bench.py", &["20".into(), "lenet5-caffe-avgpool".into()])?);
    let mut at = BTreeMap::new();
    if o.at_epoch {
        match fashion_mnist_dir() {
            Some(dir) => {
                for net in NETS {
                    let args = [dir.display().to_string(), threads.clone(), net.into()];
                    let t = peer(&torch, "torch_at_epoch.py", &args)?;
                    at.insert(net, (t[0]["s"].as_f64(), our_at_epoch(net)?));
                }
            }
            None => eprintln!("no Fashion-MNIST files (apt-get install dataset-fashion-mnist): AT epoch rows skipped"),
        }
    }
    let gemm = ours.get("gemm/f32/1024").map(|ms| 2.0 * 1024f64.powi(3) / (ms / 1e3) / 1e9);
    let rows = rows(&ours, &peers, &at);
    let table = table(&rows, gemm, &peers);
    write_section(&root().join("docs").join("performance.md"), &table)?;
    println!("{table}");
    Ok(())
}

/// The table's rows; targets are issue 25's (MLP rows ≤ 1.0× PyTorch, LeNet-5 search step ≤ 0.5× and
/// NTK ≤ 0.5× neural-tangents, LeNet-5 AT epoch ≤ 0.8×) and issue 13's for the rest.
fn rows(ours: &BTreeMap<String, f64>, peers: &[Value], at: &BTreeMap<&str, (Option<f64>, f64)>) -> Vec<Row> {
    let find = |net: &str, measure: &str| {
        peers
            .iter()
            .find(|v| v["net"] == net && v["measure"] == measure && v.get("implementation").is_none_or(|i| i == "best"))
            .map(|v| (v["ms"].as_f64(), v["peer"].as_str().unwrap_or("?").to_string()))
    };
    let diff = |a: &str, b: &str, by: f64| Some((ours.get(a)? - ours.get(b)?) / by);
    let mut rows = Vec::new();
    for net in NETS {
        for (measure, ours_ms) in [
            ("pgd_step", diff(&format!("pgd10/{net}/b128"), &format!("pgd1/{net}/b128"), 9.0)),
            ("fwd_bwd", ours.get(&format!("fwd_bwd/{net}/b128")).copied()),
            ("apgd_ce100", ours.get(&format!("apgd_ce100/{net}/b128")).copied()),
        ] {
            let (peer_ms, peer_name) = find(net, measure).unwrap_or((None, "—".into()));
            let what = match measure {
                "pgd_step" => format!("{net} PGD step, batch 128"),
                "apgd_ce100" => format!("{net} APGD-CE (100 iterations, AutoAttack's), batch 128"),
                _ => format!("{net} forward + backward, batch 128"),
            };
            let (target, gflop) = ("≤ 1.0×", gflop(net, measure));
            rows.push(Row { what, peer_name, peer_ms, ours_ms, target, gflop, unit: "ms" });
        }
    }
    for net in NETS {
        if let Some((peer_s, ours_s)) = at.get(net) {
            rows.push(Row {
                what: format!("{net} PGD-10 AT epoch, full Fashion-MNIST"),
                peer_name: peers.first().and_then(|v| v["peer"].as_str()).unwrap_or("torch").into(),
                peer_ms: *peer_s,
                ours_ms: Some(*ours_s),
                target: if net == "lenet-300-100" { "≤ 1.0×" } else { "≤ 0.8×" },
                gflop: None,
                unit: "s",
            });
        }
    }
    for net in NETS {
        let (peer_ms, peer_name) = find(net, "awt_step").unwrap_or((None, "—".into()));
        rows.push(Row {
            what: format!("AWT search step, {net}, d 0.05, batch 64"),
            peer_name,
            peer_ms,
            ours_ms: diff(&format!("awt_search/{net}/b64/2_steps"), &format!("awt_search/{net}/b64/1_steps"), 1.0),
            target: if net == "lenet-300-100" { "≤ 1.0×" } else { "≤ 0.5×" },
            gflop: None,
            unit: "ms",
        });
    }
    for net in ["lenet-300-100", "lenet5-caffe-avgpool"] {
        for (measure, id) in [
            ("ntk_full", "n64x64/full"),
            ("ntk_traced", "n64x64/traced"),
            ("ntk_gram", "n64x64/gram"),
            ("ntk_diag", "diag256/traced"),
        ] {
            let (peer_ms, peer_name) = find(net, measure).unwrap_or((None, "—".into()));
            let what = match measure {
                "ntk_gram" => format!("{net} NTK full, one batch of 64 with itself"),
                "ntk_diag" => format!("{net} NTK diagonal, each of 256 examples with itself, traced"),
                _ => format!("{net} NTK {}, n 64 × 64", id.trim_start_matches("n64x64/")),
            };
            rows.push(Row {
                what,
                peer_name: format!("{peer_name}, best implementation"),
                peer_ms,
                ours_ms: ours.get(&format!("ntk/{net}/{id}")).copied(),
                target: if net == "lenet-300-100" { "≤ 0.7×" } else { "≤ 0.5×" },
                gflop: None,
                unit: "ms",
            });
        }
    }
    rows
}

fn table(rows: &[Row], gemm: Option<f64>, peers: &[Value]) -> String {
    let mut s = String::new();
    let when = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().ok();
    let when = when.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let _ = writeln!(
        s,
        "Measured by `cargo xtask bench --peers` in one sitting ({when}) on {cpu}, {} logical CPUs.",
        cores()
    );
    let _ = writeln!(
        s,
        "Ours: criterion medians (`benches/bench_main.rs`); peers: the scripts in `benches/peers/`, run right after. \
         Ratio = ours / peer (below 1: we are faster)."
    );
    if let Some(g) = gemm {
        let _ = writeln!(s, "GEMM rate measured in the same run (f32 1024³, gemm crate): **{g:.0} GFLOP/s**.");
    }
    let _ = writeln!(s);
    let _ =
        writeln!(s, "| measure | peer | peer time | awt | awt / peer | target | awt GFLOP/s (share of GEMM rate) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in rows {
        let fmt = |v: Option<f64>| match (v, r.unit) {
            (Some(v), "s") => format!("{v:.1} s"),
            (Some(v), _) => format!("{v:.2} ms"),
            (None, _) => "—".into(),
        };
        let ratio = match (r.ours_ms, r.peer_ms) {
            (Some(a), Some(b)) if b > 0.0 => {
                let x = a / b;
                let goal: Option<f64> = r.target.trim_start_matches("≤ ").trim_end_matches('×').parse().ok();
                let mark = match goal {
                    Some(g) if x <= g => " ✓",
                    Some(_) => " ✗",
                    None => "",
                };
                format!("{x:.2}×{mark}")
            }
            _ => "—".into(),
        };
        let rate = match (r.gflop, r.ours_ms) {
            (Some(gf), Some(ms)) => {
                let rate = gf / (ms / 1e3);
                match gemm {
                    Some(g) => format!("{rate:.0} ({:.0} %)", 100.0 * rate / g),
                    None => format!("{rate:.0}"),
                }
            }
            _ => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.what,
            r.peer_name,
            fmt(r.peer_ms),
            fmt(r.ours_ms),
            ratio,
            r.target,
            rate
        );
    }
    let impls: Vec<String> = peers
        .iter()
        .filter(|v| v.get("implementation").is_some_and(|i| i != "best"))
        .map(|v| {
            let time = match v["ms"].as_f64() {
                Some(ms) => format!("{ms:.2} ms"),
                None => format!("failed ({})", v["error"].as_str().unwrap_or("no time")),
            };
            format!(
                "{} {} {}: {time}",
                v["net"].as_str().unwrap_or(""),
                v["measure"].as_str().unwrap_or(""),
                v["implementation"].as_str().unwrap_or(""),
            )
        })
        .collect();
    if !impls.is_empty() {
        let _ = writeln!(s, "\nneural-tangents by implementation: {}.", impls.join("; "));
    }
    s
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Timings count only on an otherwise idle machine: say so when the load says otherwise.
fn warn_if_busy() {
    let load =
        std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
    if let Some(load) = load.filter(|l| *l > 0.5) {
        eprintln!(
            "warning: load average {load:.2}: other processes are running; timings count only on an idle machine"
        );
    }
}

fn fashion_mnist_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("AWT_DATA_DIR") {
        dirs.push(PathBuf::from(d).join("fashion-mnist"));
    }
    dirs.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
    dirs.into_iter()
        .find(|d| d.join("train-images-idx3-ubyte.gz").is_file() || d.join("train-images-idx3-ubyte").is_file())
}

/// Seconds of one PGD-10 AT epoch of `net` on full Fashion-MNIST with the `awt` binary (the training
/// loop's own images/s, evaluation excluded), the recipe of `torch_at_epoch.py`.
fn our_at_epoch(net: &str) -> Result<f64> {
    let awt = crate::workspace::awt_binary()?;
    let dir = root().join("target").join("bench-at-epoch");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let init = dir.join(layout::INIT);
    let s = |p: &Path| p.display().to_string();
    let mut init_cmd = Command::new(&awt);
    init_cmd.args(["init", "--arch", net, "--seed", "0", "--out", &s(&init)]);
    run(&mut init_cmd, "awt init")?;
    let mut train = Command::new(&awt);
    train.args([
        "train",
        "--init",
        &s(&init),
        "--data",
        "fashion-mnist",
        "--adv",
        "pgd",
        "--eps",
        "0.1",
        "--steps",
        "10",
        "--step-size",
        "0.025",
        "--epochs",
        "1",
        "--batch",
        "128",
        "--opt",
        "adam",
        "--lr",
        "0.001",
        "--eval-n",
        "100",
        "--eval-steps",
        "0",
        "--seed",
        "0",
        "--quiet",
        "--out",
        &s(&dir.join(layout::TRAIN)),
    ]);
    eprintln!("$ awt train (1 PGD-10 AT epoch of {net} on full Fashion-MNIST)");
    run(&mut train, "awt train")?;
    let metrics: Vec<crate::records::EpochRecord> =
        crate::records::read_jsonl(&dir.join(layout::TRAIN).join(layout::METRICS))?;
    let ips = metrics.first().map(|m| m.images_per_sec).context("awt train wrote no epoch metrics")?;
    Ok(60_000.0 / ips)
}

/// Replaces the text between `<!-- bench:begin -->` and `<!-- bench:end -->` of `doc` (appending
/// the section when the markers are missing), written atomically.
fn write_section(doc: &Path, table: &str) -> Result<()> {
    splice(
        doc,
        ("<!-- bench:begin (written by cargo xtask bench --peers) -->", "<!-- bench:end -->"),
        "Side by side",
        table,
    )
}

/// Replaces the text between the markers `begin` and `end` of `doc` by `text` (appending it under
/// `## heading` when the markers are missing), written atomically.
pub(crate) fn splice(doc: &Path, (begin, end): (&str, &str), heading: &str, text: &str) -> Result<()> {
    let old = std::fs::read_to_string(doc).unwrap_or_default();
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) if a < b => format!("{}{begin}\n{text}{}", &old[..a], &old[b..]),
        _ => format!("{old}\n## {heading}\n\n{begin}\n{text}{end}\n"),
    };
    crate::workspace::write_atomic(doc, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_between_its_markers_and_the_rest_kept() {
        let dir = std::env::temp_dir().join(format!("awt-bench-doc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("p.md");
        std::fs::write(&doc, "# P\n\nintro\n").unwrap();
        write_section(&doc, "T1\n").unwrap();
        write_section(&doc, "T2\n").unwrap();
        let s = std::fs::read_to_string(&doc).unwrap();
        assert!(s.starts_with("# P\n\nintro\n") && s.contains("T2\n") && !s.contains("T1"));
        assert_eq!(s.matches("bench:begin").count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
