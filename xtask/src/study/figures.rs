//! The study report's figures of §2: each ticket against the dense net (forest plots), robust
//! accuracy vs density with error bars over seeds (the methods; then the variants recorded at two or
//! more densities, each beside its plain method), and the NTT/AWT search curves. The seed bands are
//! shared with §3's dynamics figures (`dynamics.rs`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::data::{Measure, Rec, by_seed, runs_of, values};
use crate::plot::{Figure, Row, Series, Spread, figure, forest};
use crate::spec::plain_of;
use crate::stats::{paired, summary};

/// The name prefixes of the figures [`super::write`] draws in docs/figures; the quick report's are
/// `quick-…`. `reproduce --commit` commits these and no other figure.
pub(crate) const FIGURE_PREFIXES: [&str; 3] = ["study-", "v2-", "selection-"];

/// Mean ± sd over seeds of `f` per x, as a series with its spread (None where nothing is recorded).
pub(super) fn seed_band(name: &str, per_seed: &[Vec<(f64, f64)>]) -> Option<Series> {
    let mut xs: Vec<f64> = per_seed.iter().flatten().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (mut points, mut spread) = (Vec::new(), Vec::new());
    for x in xs {
        let v: Vec<f64> = per_seed.iter().filter_map(|s| s.iter().find(|p| p.0 == x).map(|p| p.1)).collect();
        let s = summary(&v);
        points.push((x, s.mean));
        spread.push((s.mean - s.sd, s.mean + s.sd));
    }
    (!points.is_empty()).then(|| Series { name: name.to_string(), points, spread })
}

pub(super) fn write_figure(fig_dir: &Path, file: &str, fig: &Figure, series: &[Series]) -> Result<()> {
    let p = fig_dir.join(file);
    std::fs::write(&p, figure(fig, series)).with_context(|| format!("cannot write {}", p.display()))
}

/// Robust accuracy per density, mean ± sd over seeds (None where nothing is recorded).
fn over_density(recs: &[Rec], v: &str, densities: &[f64], head: Measure) -> Option<Series> {
    let (mut points, mut spread) = (Vec::new(), Vec::new());
    for d in densities {
        let s = summary(&values(&by_seed(recs, v, *d, |r| r.measure(head))));
        if s.n > 0 {
            points.push((*d, 100.0 * s.mean));
            spread.push((100.0 * (s.mean - s.sd), 100.0 * (s.mean + s.sd)));
        }
    }
    (!points.is_empty()).then(|| Series { name: v.to_string(), points, spread })
}

/// How [`vs_dense`] colours its rows: the legend's groups, and a variant's group at a density with
/// what its label adds after the seeds.
pub(super) struct Colours<'a> {
    pub(super) groups: &'a [&'a str],
    pub(super) of: &'a dyn Fn(&str, f64) -> (usize, String),
}

/// AWT and its variants, then the baselines.
pub(super) fn awt_or_baseline(v: &str, _: f64) -> (usize, String) {
    (usize::from(!(v == "awt" || v.starts_with("awt-"))), String::new())
}

/// Each ticket's paired difference to the dense net of the same seed at each density, best first,
/// as forest plots: the dot the mean, the bar its 95 % interval (hollow: one seed, no interval).
pub(super) fn vs_dense(
    recs: &[Rec],
    vs: &[String],
    densities: &[f64],
    head: Measure,
    fig_dir: &Path,
    tag: &str,
    colours: &Colours,
) -> Result<String> {
    let dense = by_seed(recs, "dense", 1.0, |r| r.measure(head));
    let mut md = String::new();
    for &d in densities {
        let mut rows: Vec<Row> = vs
            .iter()
            .filter(|v| *v != "dense")
            .map(|v| (v, paired(&by_seed(recs, v, d, |r| r.measure(head)), &dense)))
            .filter(|(_, s)| s.n > 0)
            .map(|(v, s)| {
                let (group, note) = (colours.of)(v, d);
                Row {
                    label: format!("{v} ({} seed{}{note})", s.n, if s.n == 1 { "" } else { "s" }),
                    value: 100.0 * s.mean,
                    ci: s.ci95().map(|(lo, hi)| (100.0 * lo, 100.0 * hi)),
                    group,
                }
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by(|a, b| b.value.total_cmp(&a.value));
        let f = format!("{tag}-vs-dense-d{d}.svg");
        let title = format!("robust accuracy − the dense net's, density {d} (paired by seed, 95 % interval)");
        let svg = forest(&title, "points", &rows, colours.groups);
        let p = fig_dir.join(&f);
        std::fs::write(&p, svg).with_context(|| format!("cannot write {}", p.display()))?;
        writeln!(md, "![each ticket against the dense net, density {d}](figures/{f})\n")?;
    }
    Ok(md)
}

pub(super) fn figures(recs: &[Rec], densities: &[f64], vs: &[String], head: Measure, fig_dir: &Path) -> Result<String> {
    // The methods themselves; their variants get a figure of their own (below).
    let mut series: Vec<Series> = vs
        .iter()
        .filter(|v| *v != "dense" && plain_of(v).is_none())
        .filter_map(|v| over_density(recs, v, densities, head))
        .collect();
    let dense = summary(&values(&by_seed(recs, "dense", 1.0, |r| r.measure(head))));
    let dense_line = || Series::line("dense", densities.iter().map(|d| (*d, 100.0 * dense.mean)).collect());
    if dense.n > 0 {
        series.push(dense_line());
    }
    let f1 = "study-robust-vs-density.svg";
    let fig = Figure {
        title: "robust accuracy vs density (mean ± sd over seeds)",
        xlabel: "density (log scale)",
        ylabel: "robust accuracy (%)",
        logx: true,
        logy: false,
        spread: Spread::Bars,
    };
    write_figure(fig_dir, f1, &fig, &series)?;
    let mut md = format!("![robust accuracy vs density](figures/{f1})\n\n");
    // Variants recorded at two or more densities, each beside its plain method.
    let mut paired: Vec<Series> = Vec::new();
    for v in vs {
        let Some(plain) = plain_of(v) else { continue };
        let Some(s) = over_density(recs, v, densities, head).filter(|s| s.points.len() > 1) else { continue };
        if !paired.iter().any(|p| p.name == plain) {
            paired.extend(over_density(recs, plain, densities, head));
        }
        paired.push(s);
    }
    if !paired.is_empty() {
        if dense.n > 0 {
            paired.push(dense_line());
        }
        let f = "study-variants-vs-density.svg";
        let fig = Figure { title: "variants beside their plain method (mean ± sd over seeds)", ..fig };
        write_figure(fig_dir, f, &fig, &paired)?;
        md += &format!("![variants vs density](figures/{f})\n\n");
    }
    Ok(md)
}

/// The NTT and AWT searches of the grid: kernel distance to the dense teacher over the search
/// steps, mean ± sd over seeds, one curve per method and density.
pub(super) fn search_curves(recs: &[Rec], densities: &[f64], fig_dir: &Path) -> Result<String> {
    let mut series = Vec::new();
    for v in ["ntt", "awt"] {
        for &d in densities {
            let per: Vec<Vec<(f64, f64)>> = runs_of(recs, v, d)
                .filter(|r| !r.search.is_empty())
                .map(|r| r.search.iter().map(|s| (s.step as f64, s.kernel_distance)).collect())
                .collect();
            series.extend(seed_band(&format!("{v} d{d}"), &per));
        }
    }
    if series.is_empty() {
        return Ok(String::new());
    }
    let f = "study-search.svg";
    let fig = Figure {
        title: "searches: kernel distance to the dense teacher (mean ± sd over seeds)",
        xlabel: "search step",
        ylabel: "‖Θ_s − Θ_d‖ / ‖Θ_d‖ on the batch",
        logx: false,
        logy: false,
        spread: Spread::Band,
    };
    write_figure(fig_dir, f, &fig, &series)?;
    Ok(format!("![search curves](figures/{f})\n\n"))
}

/// Removes the figures of [`FIGURE_PREFIXES`] in `fig_dir` that none of the reports `mds` links to
/// (`figures/<name>`): the study's own figures, drawn anew by each [`super::write`], so one it no longer
/// draws (a renamed or dropped figure) does not linger beside the report. Returns their names.
pub(super) fn prune(fig_dir: &Path, mds: &[&str]) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for e in std::fs::read_dir(fig_dir).with_context(|| format!("cannot read {}", fig_dir.display()))? {
        let Ok(name) = e?.file_name().into_string() else { continue };
        let ours = FIGURE_PREFIXES.iter().any(|p| name.starts_with(p)) && name.ends_with(".svg");
        if ours && !mds.iter().any(|md| md.contains(&format!("figures/{name})"))) {
            let path = fig_dir.join(&name);
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            gone.push(name);
        }
    }
    gone.sort();
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A study figure that no report links to any more is removed; linked ones, the quick report's and
    /// other files stay.
    #[test]
    fn figures_no_report_links_to_are_removed() {
        let dir = super::super::tests::tempfile_dir();
        for f in ["study-a.svg", "v2-gone.svg", "selection-b.svg", "quick-c.svg", "study-notes.txt"] {
            std::fs::write(dir.join(f), "<svg/>").unwrap();
        }
        let (study, appendix, selection) = ("![a](figures/study-a.svg)", "", "![b](figures/selection-b.svg)\n");
        assert_eq!(prune(&dir, &[study, appendix, selection]).unwrap(), ["v2-gone.svg"]);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["quick-c.svg", "selection-b.svg", "study-a.svg", "study-notes.txt"]);
        assert!(prune(&dir, &[study, appendix, selection]).unwrap().is_empty(), "nothing more");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
