//! Forest plots: one row per comparison, its estimate as a dot and its 95 % interval as a
//! horizontal bar, a line at 0 — how paired differences over seeds are read at a glance.

use plotters::prelude::*;

use super::style::{Area, COLORS, esc, house_style, tick};

/// One row of a forest plot.
pub(crate) struct Row {
    pub label: String,
    pub value: f64,
    /// The 95 % interval; `None` where there is none yet (one seed): the dot is drawn hollow.
    pub ci: Option<(f64, f64)>,
    /// Index into the plot's groups (its colour and legend entry).
    pub group: usize,
}

const WIDTH: u32 = 720;
const LEGEND_W: u32 = 150;

/// Rows top to bottom in the given order; `groups` name the colours in the legend. Deterministic.
pub(crate) fn forest(title: &str, xlabel: &str, rows: &[Row], groups: &[&str]) -> String {
    let height = 110 + 22 * rows.len().max(1) as u32;
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        draw(&root, title, xlabel, rows, groups)
    };
    match drawn {
        Ok(()) => svg,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\"><text x=\"10\" y=\"20\">cannot draw {}: {}</text></svg>\n",
            esc(title),
            esc(&e)
        ),
    }
}

fn draw(root: &Area, title: &str, xlabel: &str, rows: &[Row], groups: &[&str]) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<_>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_W);
    // The x range holds every estimate, every interval and 0.
    let ends = rows.iter().flat_map(|r| [Some(r.value), r.ci.map(|c| c.0), r.ci.map(|c| c.1)]).flatten();
    let (lo, hi) = ends.filter(|v| v.is_finite()).fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let pad = if hi - lo < 1e-12 { 1.0 } else { (hi - lo) * 0.06 };
    let n = rows.len().max(1);
    // Row k is drawn at height n - 1 - k, so the first row is on top.
    let at = |k: usize| SegmentValue::CenterOf(n - 1 - k);
    let label_w = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(4) as u32 * 7 + 12;
    let mut ch = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(label_w)
        .build_cartesian_2d(lo - pad..hi + pad, (0..n - 1).into_segmented())
        .map_err(e)?;
    let ylabel = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < rows.len() => rows[n - 1 - i].label.clone(),
        _ => String::new(),
    };
    house_style(ch.configure_mesh().x_desc(xlabel))
        .x_labels(8)
        .x_label_formatter(&|v: &f64| tick(*v))
        .y_labels(n)
        .y_label_formatter(&ylabel)
        .disable_y_mesh()
        .draw()
        .map_err(e)?;
    let zero = vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)];
    ch.draw_series(LineSeries::new(zero, BLACK.stroke_width(1))).map_err(e)?;
    for (k, r) in rows.iter().enumerate().filter(|(_, r)| r.value.is_finite()) {
        let c = COLORS[r.group % COLORS.len()];
        if let Some((l, h)) = r.ci {
            ch.draw_series(std::iter::once(ErrorBar::new_horizontal(at(k), l, r.value, h, c.stroke_width(2), 8)))
                .map_err(e)?;
        }
        let style = if r.ci.is_some() { c.filled() } else { c.stroke_width(2) };
        ch.draw_series(std::iter::once(Circle::new((r.value, at(k)), 4, style))).map_err(e)?;
    }
    for (i, g) in groups.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let y = 44 + 20 * i as i32;
        legend.draw(&Circle::new((20, y), 4, c.filled())).map_err(e)?;
        legend.draw(&Text::new(g.to_string(), (32, y - 7), ("sans-serif", 13))).map_err(e)?;
    }
    let y = 44 + 20 * groups.len() as i32;
    legend.draw(&Circle::new((20, y), 4, BLACK.stroke_width(2))).map_err(e)?;
    legend.draw(&Text::new("one seed: no interval", (32, y - 7), ("sans-serif", 12))).map_err(e)?;
    root.present().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every label and interval reaches the SVG in order, a row without an interval is a hollow
    /// dot, and the same rows give the same bytes.
    #[test]
    fn forest_plots_draw_every_row_and_are_deterministic() {
        let rows = vec![
            Row { label: "awt".into(), value: -7.3, ci: Some((-9.0, -5.6)), group: 0 },
            Row { label: "awt-ker1e-3 & co".into(), value: -1.1, ci: Some((-3.0, 0.8)), group: 0 },
            Row { label: "snip".into(), value: -2.9, ci: None, group: 1 },
        ];
        let a = forest("− dense <d 0.05>", "points", &rows, &["AWT variants", "baselines"]);
        assert_eq!(a, forest("− dense <d 0.05>", "points", &rows, &["AWT variants", "baselines"]));
        assert!(a.starts_with("<svg") && !a.contains("cannot draw"), "{a}");
        assert!(a.contains("&lt;d 0.05&gt;") && a.contains("awt-ker1e-3 &amp; co"), "labels escaped");
        // The y coordinate of a label's text element: the first row is drawn on top.
        let y_of = |label: &str| -> f64 {
            let at = a.find(&format!("\n{label}\n")).unwrap_or_else(|| panic!("no {label}:\n{a}"));
            let tag = &a[a[..at].rfind("<text").unwrap()..at];
            let y = &tag[tag.find(" y=\"").unwrap() + 4..];
            y[..y.find('"').unwrap()].parse().unwrap()
        };
        let (p, q, r) = (y_of("awt"), y_of("awt-ker1e-3 &amp; co"), y_of("snip"));
        assert!(p < q && q < r, "rows out of order: {p} {q} {r}");
        // The x range holds the intervals' ends (-9 here; the estimates alone end at -7.3) and 0.
        assert!(a.contains("\n-8\n") && a.contains("\n0\n"), "{a}");
        assert!(a.contains("one seed: no interval"));
        for few in [&rows[..0], &rows[..1]] {
            let f = forest("few", "x", few, &["g"]);
            assert!(f.starts_with("<svg") && !f.contains("cannot draw"), "{f}");
        }
    }
}
