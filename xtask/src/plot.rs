//! SVG line plots for the reports, drawn with `plotters` (SVG backend only): round tick values,
//! log axes where values span decades, error bars or shaded bands for the spread over seeds, and the
//! legend beside the plot. Deterministic: the same records give byte-identical files.

use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, DefaultFormatting, KeyPointHint, Ranged, ValueFormatter};
use plotters::prelude::*;

mod forest;
mod style;

pub(crate) use forest::{Row, forest};
use style::{Area, COLORS, esc, house_style, tick};

/// One line of a plot.
pub(crate) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// The spread at each point, `(low, high)` (e.g. mean ± sd over seeds); empty for none.
    pub spread: Vec<(f64, f64)>,
}

impl Series {
    /// A line without spread.
    pub(crate) fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points, spread: Vec::new() }
    }
}

/// How a series' spread is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spread {
    /// A vertical error bar at each point (few x values, e.g. densities).
    Bars,
    /// A shaded band between the low and high curves (many x values, e.g. epochs).
    Band,
    /// No line and no spread: a dot per point (a scatter, e.g. one dot per run).
    Points,
}

/// A figure's labels and axes.
pub(crate) struct Figure<'a> {
    pub title: &'a str,
    pub xlabel: &'a str,
    pub ylabel: &'a str,
    pub logx: bool,
    pub logy: bool,
    pub spread: Spread,
}

const SIZE: (u32, u32) = (720, 420);
const LEGEND_W: u32 = 170;

/// A line plot without spread; `logx` plots x on a log scale.
pub(crate) fn line_plot(title: &str, xlabel: &str, ylabel: &str, series: &[Series], logx: bool) -> String {
    figure(&Figure { title, xlabel, ylabel, logx, logy: false, spread: Spread::Bars }, series)
}

/// The finite points (and spread ends) of every series.
fn extent(series: &[Series], log: (bool, bool)) -> Option<(Range<f64>, Range<f64>)> {
    let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for s in series {
        for (i, &(x, y)) in s.points.iter().enumerate() {
            if !ok(x, log.0) || !ok(y, log.1) {
                continue;
            }
            xs.push(x);
            ys.push(y);
            if let Some(&(lo, hi)) = s.spread.get(i) {
                ys.extend([lo, hi].into_iter().filter(|v| ok(*v, log.1)));
            }
        }
    }
    let span = |v: &[f64], log: bool| -> Option<Range<f64>> {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return None;
        }
        Some(if log {
            // A little room in ratio terms; one value becomes a decade around it.
            let (lo, hi) = if hi / lo < 1.0 + 1e-9 { (lo / 3.0, hi * 3.0) } else { (lo, hi) };
            let r = (hi / lo).powf(0.05);
            lo / r..hi * r
        } else {
            let pad = if hi - lo < 1e-12 { lo.abs().max(1.0) * 0.05 } else { (hi - lo) * 0.05 };
            lo - pad..hi + pad
        })
    };
    Some((span(&xs, log.0)?, span(&ys, log.1)?))
}

/// Draws `series` as an SVG document.
pub(crate) fn figure(fig: &Figure, series: &[Series]) -> String {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw_all(&root, fig, series)
    };
    match drawn {
        Ok(()) => svg,
        // plotters fails only on backend errors, which a String backend does not have; say so
        // in the figure rather than panicking the whole report.
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\"><text x=\"10\" y=\"20\">cannot draw {}: {}</text></svg>\n",
            SIZE.0,
            SIZE.1,
            esc(fig.title),
            esc(&e)
        ),
    }
}

/// A log₁₀ axis whose ticks are round at any span: 1-2-5 or 1…9 multiples of powers of ten, and plain
/// round linear ticks inside one decade (plotters' own log axis labels powers of ten only, which
/// leaves a sub-decade range with one tick or none).
#[derive(Clone)]
struct LogAxis(Range<f64>);

impl Ranged for LogAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.0.start.log10(), self.0.end.log10());
        let t = if *v > 0.0 { (v.log10() - a) / (b - a) } else { -1.0 };
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        log_ticks(&self.0, hint.max_num_points(), hint.weight().allow_light_points())
    }

    fn range(&self) -> Range<f64> {
        self.0.clone()
    }
}

/// Round ticks in `r` (positive): the coarsest of 1, 1-2-5 and 1…9 × 10^k with at least three in
/// range and at most `max` (`fine`: the finest that fits, for light grid lines); inside a decade
/// where none gives three, round linear ticks.
/// A range that is not positive and finite, or spans more than [`MAX_DECADES`], gets no ticks
/// (its decades would be counted from `log10(0) = −∞`: billions of candidates).
fn log_ticks(r: &Range<f64>, max: usize, fine: bool) -> Vec<f64> {
    let sets: [&[f64]; 3] = [&[1.0], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]];
    if !(r.start > 0.0 && r.end.is_finite() && r.start < r.end) {
        return Vec::new();
    }
    let (k0, k1) = (r.start.log10().floor() as i32, r.end.log10().ceil() as i32);
    if k1 - k0 > MAX_DECADES {
        return Vec::new();
    }
    let in_range = |set: &[f64]| -> Vec<f64> {
        (k0..=k1)
            .flat_map(|k| set.iter().map(move |m| m * 10f64.powi(k)))
            // Round away the powi error so that labels read 0.3, not 0.30000000000000004.
            .map(|v| format!("{v:.12e}").parse::<f64>().unwrap_or(v))
            .filter(|v| *v >= r.start && *v <= r.end)
            .collect()
    };
    let fits: Vec<Vec<f64>> = sets.iter().map(|s| in_range(s)).filter(|t| t.len() <= max.max(1)).collect();
    let pick = if fine { fits.last() } else { fits.iter().find(|t| t.len() >= 3).or(fits.last()) };
    match pick {
        Some(t) if t.len() >= 2 => t.clone(),
        _ => {
            let lin: Range<f64> = r.clone();
            let coord: plotters::coord::types::RangedCoordf64 = lin.into();
            coord.key_points(max.clamp(2, 6))
        }
    }
}

/// The most decades a log axis gets ticks for.
const MAX_DECADES: i32 = 40;

fn draw_all(root: &Area, fig: &Figure, series: &[Series]) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<_>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (plot, legend) = root.split_horizontally(SIZE.0 - LEGEND_W);
    // Nothing to draw: an empty frame, whose log axes start above 0.
    let empty = |log: bool| if log { 0.1..1.0 } else { 0.0..1.0 };
    let (xr, yr) = extent(series, (fig.logx, fig.logy)).unwrap_or((empty(fig.logx), empty(fig.logy)));
    match (fig.logx, fig.logy) {
        (false, false) => chart(&plot, fig, series, xr, yr)?,
        (true, false) => chart(&plot, fig, series, LogAxis(xr), yr)?,
        (false, true) => chart(&plot, fig, series, xr, LogAxis(yr))?,
        (true, true) => chart(&plot, fig, series, LogAxis(xr), LogAxis(yr))?,
    }
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let y = 44 + 20 * i as i32;
        legend.draw(&PathElement::new(vec![(8, y), (32, y)], c.stroke_width(3))).map_err(e)?;
        legend.draw(&Text::new(s.name.clone(), (38, y - 7), ("sans-serif", 13))).map_err(e)?;
    }
    root.present().map_err(e)
}

fn chart<X, Y>(area: &Area, fig: &Figure, series: &[Series], x: X, y: Y) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let e = |x: DrawingAreaErrorKind<_>| x.to_string();
    let mut ch = ChartBuilder::on(area)
        .caption(fig.title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(62)
        .build_cartesian_2d(x, y)
        .map_err(e)?;
    let fmt = |v: &f64| tick(*v);
    // Integer x values (epochs) over a short span get one tick per integer, never 0.5.
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| x.is_finite());
    let (mut lo, mut hi, mut integral) = (f64::INFINITY, f64::NEG_INFINITY, true);
    for x in xs {
        (lo, hi, integral) = (lo.min(x), hi.max(x), integral && x.fract() == 0.0);
    }
    let x_labels = if integral && !fig.logx && hi >= lo && hi - lo < 8.0 { (hi - lo) as usize + 1 } else { 8 };
    house_style(ch.configure_mesh().x_desc(fig.xlabel))
        .y_desc(fig.ylabel)
        .x_labels(x_labels)
        .y_labels(8)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .draw()
        .map_err(e)?;
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<(usize, (f64, f64))> = s
            .points
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, (x, y))| x.is_finite() && y.is_finite() && (!fig.logx || *x > 0.0) && (!fig.logy || *y > 0.0))
            .collect();
        let spread: Vec<(f64, f64, f64, f64)> =
            pts.iter().filter_map(|&(j, (x, y))| s.spread.get(j).map(|&(lo, hi)| (x, y, lo, hi))).collect();
        match fig.spread {
            Spread::Points => {
                let dots = pts.iter().map(|p| Circle::new(p.1, 4, c.mix(0.8).filled()));
                ch.draw_series(dots).map_err(e)?;
                continue;
            }
            Spread::Band if spread.len() > 1 => {
                let mut poly: Vec<(f64, f64)> = spread.iter().map(|p| (p.0, p.3)).collect();
                poly.extend(spread.iter().rev().map(|p| (p.0, p.2)));
                ch.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled()))).map_err(e)?;
            }
            _ => {
                ch.draw_series(
                    spread.iter().map(|&(x, y, lo, hi)| ErrorBar::new_vertical(x, lo, y, hi, c.stroke_width(1), 8)),
                )
                .map_err(e)?;
            }
        }
        let line: Vec<(f64, f64)> = pts.iter().map(|p| p.1).collect();
        ch.draw_series(LineSeries::new(line.iter().copied(), c.stroke_width(2))).map_err(e)?;
        if line.len() <= 40 {
            ch.draw_series(line.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(e)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short_and_round() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(0.020000000001), "0.02");
        assert_eq!(tick(12.5), "12.5");
        assert_eq!(tick(80.0), "80");
        assert_eq!(tick(18720.0), "18720");
        assert_eq!(tick(0.00123), "0.00123");
        assert_eq!(tick(0.1234567), "0.123");
    }

    #[test]
    fn log_ticks_are_round_at_every_span() {
        assert_eq!(log_ticks(&(0.001..10.0), 8, false), vec![0.001, 0.01, 0.1, 1.0, 10.0]);
        assert_eq!(log_ticks(&(0.015..0.06), 8, false), vec![0.02, 0.03, 0.04, 0.05, 0.06]);
        assert_eq!(log_ticks(&(0.015..0.6), 8, false), vec![0.02, 0.05, 0.1, 0.2, 0.5]);
        assert_eq!(log_ticks(&(0.15..1.05), 8, false), vec![0.2, 0.5, 1.0]);
        assert_eq!(log_ticks(&(0.15..1.05), 12, true), vec![0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
        // Inside a decade with fewer than two round multiples: linear round ticks.
        let t = log_ticks(&(0.21..0.29), 8, false);
        assert!(t.len() >= 2 && t.iter().all(|v| (0.21..=0.29).contains(v)), "{t:?}");
        // Ranges that reach 0 or infinity, or span more decades than any figure here: no ticks, at once.
        for r in [0.0..1.0, -1.0..1.0, 1e-300..1e300, 1.0..f64::INFINITY, f64::NAN..1.0, 2.0..1.0] {
            assert!(log_ticks(&r, 8, false).is_empty(), "{r:?}");
        }
        let a = LogAxis(0.01..1.0);
        assert_eq!((a.map(&0.01, (0, 100)), a.map(&0.1, (0, 100)), a.map(&1.0, (0, 100))), (0, 50, 100));
    }

    /// Every series, spread and label reaches the SVG; log axes drop the non-positive points
    /// instead of failing; the output is deterministic.
    #[test]
    fn figures_hold_their_series_and_are_deterministic() {
        let s = vec![
            Series {
                name: "awt".into(),
                points: vec![(0.02, 40.0), (0.05, 50.0)],
                spread: vec![(38.0, 42.0), (47.0, 53.0)],
            },
            Series::line("dense & co", vec![(0.02, 60.0), (0.05, 60.0), (0.0, 1.0)]),
        ];
        for spread in [Spread::Bars, Spread::Band, Spread::Points] {
            let f = Figure { title: "t <1>", xlabel: "density", ylabel: "acc", logx: true, logy: true, spread };
            let a = figure(&f, &s);
            assert_eq!(a, figure(&f, &s));
            assert!(a.starts_with("<svg"), "{a}");
            assert!(a.contains("dense &amp; co") && a.contains("t &lt;1&gt;"), "labels escaped");
            assert!(!a.contains("cannot draw"), "{a}");
            let lines = a.matches("<polyline").count();
            match spread {
                Spread::Band => assert!(a.contains("<polygon"), "no band"),
                Spread::Bars => assert!(!a.contains("<polygon"), "a band where bars were asked"),
                // A scatter draws the dots alone: no band, no series line (the legend keys remain).
                Spread::Points => {
                    assert!(!a.contains("<polygon") && a.matches("<circle").count() == 4, "{a}");
                    assert!(lines < figure(&Figure { spread: Spread::Bars, ..f }, &s).matches("<polyline").count());
                }
            }
        }
        // No finite point at all still gives a (blank) figure.
        let empty = figure(
            &Figure { title: "none", xlabel: "x", ylabel: "y", logx: false, logy: false, spread: Spread::Bars },
            &[Series::line("nan", vec![(f64::NAN, 1.0)])],
        );
        assert!(empty.starts_with("<svg") && !empty.contains("cannot draw"));
        // On log axes too, where nothing positive is left (a grid of the dense run alone once drew
        // a density axis from log10(0) and allocated without bound).
        for (logx, logy) in [(true, false), (false, true), (true, true)] {
            let f = Figure { title: "none", xlabel: "x", ylabel: "y", logx, logy, spread: Spread::Bars };
            for pts in [vec![], vec![(0.0, 0.0)], vec![(f64::NAN, f64::NAN)]] {
                let svg = figure(&f, &[Series::line("zero", pts)]);
                assert!(svg.starts_with("<svg") && !svg.contains("cannot draw"), "{logx} {logy}");
            }
        }
    }
}
