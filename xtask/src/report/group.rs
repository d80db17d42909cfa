//! One section of docs/reproduction.md: the runs of one preset, architecture and data set — what
//! ran, the accuracy table, the figures, the claims and the runs' provenance.

use std::path::Path;

use anyhow::Result;

use crate::spec::METHODS as ORDER;

use super::check::{GEMM_END, GEMM_LABEL};
use super::claims::claims;
use super::data::{RunData, acc, cell, mean_std};
use crate::plot::{Series, line_plot};
use crate::records::{EpochRecord, SearchRecord};
use awt_runs::records::Curve;

pub(super) struct Group<'a> {
    preset: String,
    arch: String,
    data: String,
    rs: Vec<&'a RunData>,
    /// The sparse densities, highest first.
    densities: Vec<f64>,
}

impl<'a> Group<'a> {
    pub(super) fn new(preset: String, arch: String, data: String, rs: Vec<&'a RunData>) -> Group<'a> {
        let mut densities: Vec<f64> = rs.iter().map(|r| r.manifest.density.get()).filter(|&d| d < 1.0).collect();
        densities.sort_by(|a, b| b.total_cmp(a));
        densities.dedup();
        Group { preset, arch, data, rs, densities }
    }

    /// The runs of `method` (at density `d`, or at any).
    fn sel(&self, method: &str, d: Option<f64>) -> Vec<&'a RunData> {
        self.rs
            .iter()
            .filter(|r| {
                r.manifest.method.name() == method && d.is_none_or(|d| (r.manifest.density.get() - d).abs() < 1e-12)
            })
            .copied()
            .collect()
    }

    pub(super) fn section(&self, fig_dir: &Path) -> Result<String> {
        let mut md = self.header();
        md += &self.table();
        md += &self.figures(fig_dir)?;
        md += &self.provenance();
        Ok(md)
    }

    /// What ran, on which data, scaled down how, evaluated how.
    fn header(&self) -> String {
        let (preset, arch, data) = (&self.preset, &self.arch, &self.data);
        let spec = crate::spec::load(preset).ok();
        let description = spec.as_ref().map(|s| s.description.clone()).unwrap_or_default();
        let scaled_down = spec.as_ref().map(|s| s.scaled_down.clone()).unwrap_or_default();
        let mut md = format!("## {preset}: {arch} on {data}\n\n{description}\n\n");
        let chosen = spec.as_ref().map(|s| s.data.as_str());
        if data == "fashion-mnist-mini" && chosen != Some("fashion-mnist-mini") {
            md += "**Data:** real Fashion-MNIST was not installed, so this ran on the embedded subset (first 10,000 training / 2,000 test images).\n\n";
        } else if data == "fashion-mnist-mini" {
            md += "**Data:** the embedded subset (first 10,000 training / 2,000 test images of Fashion-MNIST), as the preset chooses.\n\n";
        } else {
            md += &format!("**Data:** `{data}`, found at {}.\n\n", self.rs[0].manifest.dataset_location);
        }
        md += &format!("**Scaled down:** {scaled_down}\n\n");
        let first = &self.rs[0].manifest;
        md += &format!(
            "Evaluation: first {} test images; ε = {} (ℓ∞); PGD-{} (step 2.5ε/steps, 1 restart), then APGD-CE and APGD-DLR ({} iterations) on the points that survive; **worst** = robust to all three.\n\n",
            first.eval.n, first.attack.eps, first.attack.steps, first.attack.apgd_steps
        );
        md
    }

    /// Accuracy per method and density (clean / PGD / worst, mean ± sd over seeds).
    fn table(&self) -> String {
        let steps = self.rs[0].manifest.attack.steps;
        let mut md = format!("Accuracy in % (clean / PGD-{steps} / worst case), mean ± std over seeds.\n\n| method |");
        for d in &self.densities {
            md += &format!(" density {d} |");
        }
        md += "\n|---|";
        for _ in &self.densities {
            md += "---|";
        }
        md += "\n";
        let triple = |v: &[&RunData]| -> String {
            let f = |w: &str| cell(&v.iter().map(|r| acc(r, w)).collect::<Vec<_>>());
            format!("{} / {} / {}", f("clean"), f("pgd"), f("worst"))
        };
        for method in ORDER {
            if method == "dense" {
                let v = self.sel("dense", None);
                if !v.is_empty() {
                    md += &format!(
                        "| dense (density 1) | {} |{}\n",
                        triple(&v),
                        " |".repeat(self.densities.len().saturating_sub(1))
                    );
                }
                continue;
            }
            if self.sel(method, None).is_empty() {
                continue;
            }
            md += &format!("| {method} |");
            for d in &self.densities {
                md += &format!(" {} |", triple(&self.sel(method, Some(*d))));
            }
            md += "\n";
        }
        md += "\nIMP-AT: lottery tickets by iterative magnitude pruning of adversarially trained nets, rewound to the initialisation (rounds and epochs per round in the spec's `[imp]`). HYDRA: importance scores optimised under the PGD-AT loss of an adversarially pretrained net (straight-through top-k), then fine-tuned with the common recipe (`[hydra]` in the spec). Both train before they prune, so they use more training compute than the methods at initialisation: the comparison is not compute-matched.\n\n";
        md
    }

    /// Robust accuracy vs density; at the density nearest 0.05 the training curves, the kernel
    /// distance, the searches, and the claims.
    fn figures(&self, fig_dir: &Path) -> Result<String> {
        let tag = format!("{}-{}", self.preset, self.arch);
        let mut series = Vec::new();
        let dense = self.sel("dense", None).iter().map(|r| acc(r, "worst")).collect::<Vec<_>>();
        for method in ORDER.iter().filter(|m| **m != "dense") {
            let pts: Vec<(f64, f64)> = self
                .densities
                .iter()
                .filter_map(|d| {
                    let v: Vec<f64> = self.sel(method, Some(*d)).iter().map(|r| acc(r, "worst")).collect();
                    (!v.is_empty()).then(|| (*d, 100.0 * mean_std(&v).0))
                })
                .collect();
            if !pts.is_empty() {
                series.push(Series::line(method.to_string(), pts));
            }
        }
        if !dense.is_empty() {
            let m = 100.0 * mean_std(&dense).0;
            series.push(Series::line("dense", self.densities.iter().map(|d| (*d, m)).collect()));
        }
        let f1 = format!("{tag}-robust-vs-density.svg");
        let title = format!("{}: worst-case robust accuracy vs density", self.arch);
        let svg = line_plot(&title, "density (log scale)", "robust accuracy (%)", &series, true);
        std::fs::write(fig_dir.join(&f1), svg)?;
        let mut md = format!("![robust accuracy vs density](figures/{f1})\n\n");
        let d0 = self.densities.iter().copied().min_by(|a, b| (a - 0.05).abs().total_cmp(&(b - 0.05).abs()));
        if let Some(d0) = d0 {
            md += &self.curve_figure(fig_dir, &tag, d0)?;
            md += &self.training_figures(fig_dir, &tag, d0)?;
            md += &self.search_figure(fig_dir, &tag, d0)?;
            md += &claims(&self.rs, d0)?;
        }
        Ok(md)
    }

    /// With `[eval] curve`: the security curves at density `d0` (dense at 1), mean over seeds, as a
    /// figure and a table, and the reversals the attacks made.
    fn curve_figure(&self, fig_dir: &Path, tag: &str, d0: f64) -> Result<String> {
        // (method, mean robust accuracy per ε, reversals), every curve at the first one's ε.
        let mut rows: Vec<(String, Vec<f64>, u64)> = Vec::new();
        let mut first: Option<&Curve> = None;
        for method in ORDER {
            let runs = if method == "dense" { self.sel("dense", None) } else { self.sel(method, Some(d0)) };
            let curves: Vec<&Curve> = runs.iter().filter_map(|r| r.curve.as_ref()).collect();
            let Some(c0) = curves.first() else { continue };
            let f0 = *first.get_or_insert(c0);
            if curves.iter().any(|c| c.eps != f0.eps) {
                anyhow::bail!(
                    "{method} at density {d0}: security curves at other ε than the others (the runs' presets differ)"
                );
            }
            let mean: Vec<f64> = (0..f0.eps.len())
                .map(|i| 100.0 * mean_std(&curves.iter().map(|c| c.robust_accuracy[i]).collect::<Vec<_>>()).0)
                .collect();
            rows.push((method.to_string(), mean, curves.iter().flat_map(|c| &c.reversals).sum()));
        }
        let Some(first) = first else { return Ok(String::new()) };
        let eps = &first.eps;
        let series: Vec<Series> = rows
            .iter()
            .map(|(m, v, _)| Series::line(m.clone(), eps.iter().copied().zip(v.iter().copied()).collect()))
            .collect();
        let f = format!("{tag}-robust-vs-eps.svg");
        let attack = match first.evals.first().map_or("?", |e| e.settings.attack.as_str()) {
            "worst" => "worst case",
            a => a,
        };
        let title = format!("{}: security curves, {attack} (density {d0}; dense at 1)", self.arch);
        std::fs::write(fig_dir.join(&f), line_plot(&title, "ε (ℓ∞)", "robust accuracy (%)", &series, false))?;
        let mut md = format!(
            "Security curves (`awt eval --eps-curve`, the same attacks at each ε; a point counts robust at ε only if it \
             survived every smaller ε), robust accuracy in % at density {d0} (dense at 1), mean over seeds:\n\n| method |"
        );
        for e in eps {
            md += &format!(" ε = {e} |");
        }
        md += &format!(" reversals |\n|---|{}---|\n", "---|".repeat(eps.len()));
        for (m, v, rev) in &rows {
            let cells: String = v.iter().map(|a| format!(" {a:.1} |")).collect();
            md += &format!("| {m} |{cells} {rev} |\n");
        }
        md += "\nReversals: points the attacks left standing at an ε after breaking them at a smaller one (counted broken on the curve; many would mean the attacks have not converged).\n\n";
        Ok(format!("{md}![security curves](figures/{f})\n\n"))
    }

    /// Training loss, PGD accuracy and kernel distance over epochs at density `d0` (dense at 1).
    fn training_figures(&self, fig_dir: &Path, tag: &str, d0: f64) -> Result<String> {
        let curves = |key: fn(&EpochRecord) -> Option<f64>, scale: f64| -> Vec<Series> {
            ["dense", "awt", "random", "ntt"]
                .iter()
                .filter_map(|m| {
                    let r = if *m == "dense" { self.sel("dense", None) } else { self.sel(m, Some(d0)) };
                    let r = r.first()?;
                    let pts: Vec<(f64, f64)> =
                        r.metrics.iter().filter_map(|e| Some((e.epoch as f64 + 1.0, key(e)? * scale))).collect();
                    (!pts.is_empty()).then(|| Series::line(m.to_string(), pts))
                })
                .collect()
        };
        let f2 = format!("{tag}-train-loss.svg");
        let t2 = format!("robust training loss (density {d0}; dense at 1)");
        let svg = line_plot(&t2, "epoch", "adversarial training loss", &curves(|e| Some(e.train_loss), 1.0), false);
        std::fs::write(fig_dir.join(&f2), svg)?;
        let f3 = format!("{tag}-robust-vs-epoch.svg");
        let t3 = format!("PGD test accuracy during training (density {d0})");
        let svg = line_plot(
            &t3,
            "epoch",
            "PGD accuracy (%)",
            &curves(|e| Some(e.robust_acc).filter(|v| v.is_finite()), 100.0),
            false,
        );
        std::fs::write(fig_dir.join(&f3), svg)?;
        let f4 = format!("{tag}-kernel-distance.svg");
        // The study's measure where the grid has `[dynamics]`: each ticket's kernel against the dense
        // net of its seed at the same epoch, epoch 0 included; else the training hook's distance to
        // the dense initialisation.
        let dynamics: Vec<Series> = ["awt", "random", "ntt"]
            .iter()
            .filter_map(|m| {
                let r = self.sel(m, Some(d0));
                let pts: Vec<(f64, f64)> =
                    r.first()?.dynamics.iter().map(|e| (e.epoch as f64, e.rel_distance)).collect();
                (!pts.is_empty()).then(|| Series::line(m.to_string(), pts))
            })
            .collect();
        let svg = if dynamics.is_empty() {
            let t4 = format!("adversarial NTK distance to the dense init (density {d0})");
            let ss = curves(|e| e.extra(EpochRecord::KERNEL_TO_REFERENCE), 1.0);
            line_plot(&t4, "epoch", "‖Θ_t − Θ_dense,0‖ / ‖Θ_dense,0‖", &ss, false)
        } else {
            let t4 = format!("adversarial NTK distance to the dense net, same seed and epoch (density {d0})");
            line_plot(&t4, "epoch (0: initialisation)", "‖Θ_t − Θ_dense,t‖ / ‖Θ_dense,t‖", &dynamics, false)
        };
        std::fs::write(fig_dir.join(&f4), svg)?;
        Ok(format!(
            "![training loss](figures/{f2}) ![robust accuracy vs epoch](figures/{f3})\n\n![kernel distance during training](figures/{f4})\n\n"
        ))
    }

    /// The AWT and NTT searches at density `d0`: kernel and output distance to the teacher.
    fn search_figure(&self, fig_dir: &Path, tag: &str, d0: f64) -> Result<String> {
        let mut ss = Vec::new();
        for m in ["awt", "ntt"] {
            if let Some(r) = self.sel(m, Some(d0)).first() {
                type Getter = fn(&SearchRecord) -> f64;
                let kinds: [(&str, Getter); 2] =
                    [("kernel distance", |e| e.kernel_distance), ("output distance", |e| e.output_distance)];
                for (key, get) in kinds {
                    let pts: Vec<(f64, f64)> = r.search.iter().map(|e| (e.step as f64, get(e))).collect();
                    if !pts.is_empty() {
                        ss.push(Series::line(format!("{m} {key}"), pts));
                    }
                }
            }
        }
        let f5 = format!("{tag}-search.svg");
        let title = format!("ticket search on the training batches (density {d0})");
        std::fs::write(fig_dir.join(&f5), line_plot(&title, "step", "relative distance to the teacher", &ss, false))?;
        Ok(format!("![search](figures/{f5})\n\n"))
    }

    /// Each run's configuration hash, wall time, commit and threads; the toolchain and data files.
    fn provenance(&self) -> String {
        let mut md = String::from(
            "### Runs\n\n| run | config hash | wall time (s) | git commit | threads |\n|---|---|---|---|---|\n",
        );
        for r in &self.rs {
            let m = &r.manifest;
            md += &format!(
                "| {} | `{}` | {:.0} | `{}` | {} |\n",
                m.name,
                m.config_hash,
                m.wall_seconds,
                m.git_commit.chars().take(10).collect::<String>(),
                m.threads
            );
        }
        let m = &self.rs[0].manifest;
        let files: Vec<String> = m
            .dataset_files
            .iter()
            .map(|f| format!("`{}` {} ({})", f.file, &f.sha256[..12.min(f.sha256.len())], f.status))
            .collect();
        let cpu = m.cpu.as_deref().map(|c| format!(" CPU: {c}.")).unwrap_or_default();
        let gemm = m.gemm.as_deref().map(|g| format!(" {GEMM_LABEL}{g}{GEMM_END}.")).unwrap_or_default();
        md += &format!(
            "\nToolchain: {}; candle-core {}.{cpu} Dataset files: {}.{gemm}\n\n",
            m.rustc,
            m.crates.candle_core,
            files.join(", ")
        );
        md
    }
}
