//! `cargo xtask census`: how often a mask made at initialisation would cut a class off if the
//! output layer were pruned like the others (docs/protocol.md §3). The study's runs keep the output
//! layer dense, so no ticket of theirs can; this census makes the unconstrained masks of a final
//! preset's methods at initialisation — the same methods, densities, seeds, allocation and data
//! split, the output layer pruned — for every evaluation seed (a mask only, no training), and
//! records which classes each leaves without an incoming weight in `results/census/<preset>.json`,
//! which docs/study.md reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use awt_runs::TicketRecipe;
use awt_runs::records::MaskReport;
use serde::{Deserialize, Serialize};

use crate::plan::{expand, steps, variant_of};
use crate::workspace::root;

/// One mask of the census.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub(crate) struct CensusMask {
    /// The method with its ablation (`snip`, `snip-layerwise`).
    pub variant: String,
    pub density: f64,
    pub seed: u64,
    /// The classes left without any kept incoming weight.
    pub classes_cut: Vec<u64>,
}

/// `results/census/<preset>.json`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub(crate) struct Census {
    /// The final preset whose masks at initialisation these are.
    pub preset: String,
    pub arch: String,
    /// What differs from the preset's own runs.
    pub output_layer: String,
    /// The commit of the `awt` binary that made the masks.
    pub git_commit: String,
    pub masks: Vec<CensusMask>,
}

/// Where a preset's census is recorded.
pub(crate) fn record_path(preset: &str) -> PathBuf {
    root().join("results").join("census").join(format!("{preset}.json"))
}

/// The recorded census of `preset`, if there is one.
pub(crate) fn load(preset: &str) -> Result<Option<Census>> {
    let p = record_path(preset);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("{}: not a census record", p.display()))?))
}

/// `cargo xtask census [--preset final-mlp] [--force]`: a recorded census is kept unless `--force`.
pub(crate) fn census(args: &[String]) -> Result<()> {
    let (mut preset, mut force) = ("final-mlp".to_string(), false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--preset" => preset = it.next().context("--preset needs a preset name")?.clone(),
            "--force" => force = true,
            other => bail!("census: unknown flag `{other}`"),
        }
    }
    let mut spec = crate::spec::load(&preset)?;
    // A census answers for a recorded preset whose runs keep the output layer dense: any other
    // preset's census would be a file under results/ that no report reads.
    if !spec.record || spec.output_layer.is_none() {
        bail!(
            "census: preset `{preset}` is not a recorded preset with a dense output layer (its runs would not need \
             one); a census is made for final-mlp, final-lenet5 or a selection preset"
        );
    }
    let out = record_path(&preset);
    if out.exists() && !force {
        eprintln!("{} is recorded; `cargo xtask census --force` makes it again", out.display());
        return Ok(());
    }
    // The unconstrained masks: output layer pruned like the others; nothing is searched or trained.
    spec.output_layer = None;
    spec.selected = None;
    spec.dynamics = None;
    let awt = crate::workspace::awt_binary()?;
    let found = crate::workspace::data_installed(&awt, &spec.data)?;
    if !found {
        bail!("census: {} is not installed (the census uses the study's data, never a fallback)", spec.data);
    }
    let base = root().join("target").join("census").join(&preset);
    // One census of a preset at a time: its mask folders and its record are this process's.
    std::fs::create_dir_all(&base).with_context(|| format!("cannot make {}", base.display()))?;
    let lock_path = base.join(".census.lock");
    let _lock = awt_runs::lock::try_lock(&lock_path)
        .map_err(|e| anyhow::anyhow!("census: {} is in use ({e})", lock_path.display()))?;
    if force {
        // "Makes it again": the masks too, not only the record (masks an older build left here
        // would otherwise be read back as they are).
        forget_masks(&base)?;
    }
    let runs: Vec<_> = expand(&spec, &spec.data, &base, &|_, _| None)?
        .into_iter()
        .filter(|r| r.method.recipe() == TicketRecipe::MaskAtInit)
        .collect();
    let mut masks = Vec::new();
    let mut commits = std::collections::BTreeSet::new();
    for (i, run) in runs.iter().enumerate() {
        let all = steps(run, &spec, &spec.data)?;
        let upto = all.iter().position(|s| s.name == "mask").context("a mask at initialisation has a mask step")?;
        eprintln!("[{:>3}/{}] {}", i + 1, runs.len(), run.name);
        for s in &all[..=upto] {
            if !s.done.exists() {
                run_step(&awt, &s.args, &run.dir)?;
            }
        }
        let report: MaskReport = crate::records::read_json(&all[upto].done)?;
        commits.insert(file_commit(&run.dir.join(awt_runs::layout::TICKET))?);
        masks.push(CensusMask {
            variant: variant_of(&run.name, &run.arch),
            density: run.density.get(),
            seed: run.seed,
            classes_cut: report.classes_without_input.unwrap_or_default(),
        });
    }
    // Masks left from an older build would mix two commits: say which, and refuse.
    if commits.len() > 1 {
        bail!(
            "census: the masks under {} come from several builds ({commits:?}): remove the folder and run again",
            base.display()
        );
    }
    let git_commit = commits.into_iter().next().unwrap_or_else(|| "unknown".into());
    let census =
        Census { preset: preset.clone(), arch: spec.archs.join(","), output_layer: "pruned".into(), git_commit, masks };
    std::fs::create_dir_all(out.parent().expect("a file under results/census"))?;
    crate::workspace::write_atomic(&out, serde_json::to_string_pretty(&census)? + "\n")?;
    let cut = census.masks.iter().filter(|m| !m.classes_cut.is_empty()).count();
    eprintln!("{}: {} masks, {cut} cut a class off", out.display(), census.masks.len());
    Ok(())
}

/// Removes the mask folders of a census under `base` (this xtask's own, under target/), keeping
/// its lock file.
fn forget_masks(base: &Path) -> Result<()> {
    for e in std::fs::read_dir(base).with_context(|| format!("cannot read {}", base.display()))? {
        let p = e?.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    Ok(())
}

/// One `awt` step in `dir`, its output kept in `dir/census.log`; a failure names the step.
fn run_step(awt: &Path, args: &[String], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let out = Command::new(awt).args(args).output().with_context(|| format!("cannot run {}", awt.display()))?;
    let log = dir.join("census.log");
    let text = format!(
        "$ awt {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&log, text).with_context(|| format!("cannot write {}", log.display()))?;
    if !out.status.success() {
        bail!("`awt {}` failed ({}): see {}", args.join(" "), out.status, log.display());
    }
    Ok(())
}

/// The `git_commit` an `awt` output file's safetensors metadata records (the binary that made it).
fn file_commit(p: &Path) -> Result<String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).with_context(|| format!("{}: not a safetensors file", p.display()))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        bail!("{}: safetensors header of {n} bytes", p.display());
    }
    let mut head = vec![0u8; n as usize];
    f.read_exact(&mut head).with_context(|| format!("{}: truncated safetensors header", p.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&head).with_context(|| format!("{}: safetensors header is not JSON", p.display()))?;
    Ok(v["__metadata__"]["git_commit"].as_str().unwrap_or("unknown").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A preset that records nothing, or whose runs prune the output layer themselves, is refused
    /// before anything is built or written (the quick preset once wrote results/census/quick.json).
    #[test]
    fn a_census_is_made_only_for_a_recorded_preset_with_a_dense_output_layer() {
        for preset in ["quick", "study"] {
            let e = census(&["--preset".to_string(), preset.to_string()]).unwrap_err().to_string();
            assert!(e.contains(&format!("`{preset}`")) && e.contains("dense output layer"), "{e}");
            assert!(!record_path(preset).exists(), "{preset}: a census was written");
        }
    }

    /// `--force` makes the masks again: their folders go, the census's lock file stays.
    #[test]
    fn forced_census_forgets_its_masks_and_keeps_its_lock() {
        let base = std::env::temp_dir().join(format!("awt-census-forget-{}", std::process::id()));
        for run in ["run-a/train", "run-b"] {
            std::fs::create_dir_all(base.join(run)).unwrap();
        }
        std::fs::write(base.join("run-a/ticket.safetensors"), b"old").unwrap();
        std::fs::write(base.join(".census.lock"), b"").unwrap();
        super::forget_masks(&base).unwrap();
        let left: Vec<_> = std::fs::read_dir(&base).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from(".census.lock")]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
