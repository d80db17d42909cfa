//! The paper's claims beside the quick grid's numbers.

use crate::decide::{beats, matches};
use crate::records::EpochRecord;
use crate::stats::{paired, summary};

use super::data::{RunData, acc};

/// The paper's claims beside the quick grid's numbers, each decided by the same paired 95 %
/// intervals over seeds as the study (docs/study.md); with one seed every verdict stays open.
pub(super) fn claims(rs: &[&RunData], d0: f64) -> anyhow::Result<String> {
    let runs = |m: &str| -> Vec<&RunData> {
        rs.iter()
            .filter(|r| {
                r.manifest.method.name() == m && (m == "dense" || (r.manifest.density.get() - d0).abs() < 1e-12)
            })
            .copied()
            .collect()
    };
    let by_seed = |m: &str, f: &dyn Fn(&RunData) -> Option<f64>| -> Vec<(u64, f64)> {
        runs(m).iter().filter_map(|r| Some((r.manifest.seed, f(r)?))).collect()
    };
    let worst = |m: &str| by_seed(m, &|r| Some(acc(r, "worst")));
    let mean = |m: &str| summary(&worst(m).iter().map(|x| x.1).collect::<Vec<_>>());
    let seeds = worst("awt").len();
    let mut md = String::from("### The paper's claims beside our numbers\n\n");
    md += &format!(
        "Decided by the study's rule (docs/protocol.md): paired differences over seeds with 95 % intervals, a verdict \
only where the interval decides it. This grid has {seeds} seed(s) at a scaled-down recipe, so it cannot decide a \
claim with fewer than two.\n\n"
    );
    // What the study, which can decide them, found (two lines, from the committed records), between
    // markers: a recorded run changes it, and `reproduce --commit` refreshes it then.
    md += &crate::study::findings_block()?;
    md += "| claim (Shi et al. 2022) | measured here, worst-case robust accuracy at density ";
    md += &format!("{d0} (points) | verdict |\n|---|---|---|\n");
    let awt = worst("awt");
    if awt.is_empty() {
        return Ok(md + "| all | AWT was not run | open |\n\n");
    }
    let dense = paired(&awt, &worst("dense"));
    if dense.n > 0 {
        md += &format!(
            "| an AWT ticket trained adversarially from scratch matches the dense net's robust accuracy (within 1 point) | AWT − dense {} | {} |\n",
            dense.pct_ci(),
            matches(&dense)
        );
    }
    let best = crate::spec::masks_at_init()
        .into_iter()
        .chain(["ntt"])
        .filter(|m| mean(m).n > 0)
        .max_by(|a, b| mean(a).mean.total_cmp(&mean(b).mean));
    if let Some(b) = best {
        let d = paired(&awt, &worst(b));
        md += &format!(
            "| AWT beats pruning at initialisation and NTT at high sparsity | AWT − {b} (the best of them here) {} | {} |\n",
            d.pct_ci(),
            beats(&d)
        );
    }
    // The study's dynamics measure where the grid has `[dynamics]` (distance to the dense net of the
    // same seed at the same epoch, mean over epochs 0..T); else the training hook's final distance
    // to the dense initialisation.
    let with_dynamics = rs.iter().any(|r| !r.dynamics.is_empty());
    let kd = |m: &str| {
        if with_dynamics {
            by_seed(m, &|r| r.mean_kernel_distance())
        } else {
            by_seed(m, &|r| r.metrics.last()?.extra(EpochRecord::KERNEL_TO_REFERENCE))
        }
    };
    let what = if with_dynamics {
        "kernel distance to the dense net of the same seed at the same epoch, mean over epochs 0..T"
    } else {
        "final kernel distance to the dense init"
    };
    let k = paired(&kd("random"), &kd("awt"));
    if k.n > 0 {
        md += &format!(
            "| AWT tickets preserve the dense net's adversarial NTK dynamics better than random tickets | {what}, random − AWT {} | {} |\n",
            k.num_ci(),
            beats(&k)
        );
    }
    for m in ["imp-at", "hydra"] {
        let d = paired(&awt, &worst(m));
        if d.n > 0 {
            md += &format!(
                "| train → prune → fine-tune adversarial pruning ({m}) falls behind AWT at high sparsity | AWT − {m} {} | {} |\n",
                d.pct_ci(),
                beats(&d)
            );
        }
    }
    Ok(md + "\n")
}
