//! The one decision rule of study v2 (docs/protocol.md §7), in code: each statement is a one-sided
//! Student-t test on paired per-seed differences at α = 0.025 (the 95 % interval's bounds), and a
//! family of primary claims is corrected by Holm's step-down procedure. Every report uses these:
//! [`matches()`] and [`beats()`] read a statement off an interval where no family is corrected
//! (the first study, the quick report, the exploratory rows), [`test()`] / [`holm`] / [`verdict`]
//! decide a family.

use crate::stats::Summary;

/// α of each one-sided test (the two-sided 95 % interval).
pub(crate) const ALPHA: f64 = 0.025;

/// Margin of "matches the dense net" and of equivalence, as a fraction (1 point).
pub(crate) const MARGIN: f64 = 0.01;

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-13 here).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s: f64 = G[0] + (1..9).map(|i| G[i] / (x + i as f64)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// The regularised incomplete beta function I_x(a, b), by its continued fraction (modified Lentz).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - inc_beta(b, a, 1.0 - x);
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp() / a;
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..300 {
        let m = m as f64;
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = 1.0 + num / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub(crate) fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// One-sided p-value of H1: mean(d) > m (H0: mean ≤ m), from the t-test on the differences `d`.
/// 1 where it cannot be computed (fewer than two values); a zero spread decides by the sign.
pub(crate) fn p_above(d: &[f64], m: f64) -> f64 {
    let n = d.len();
    if n < 2 {
        return 1.0;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    if sd == 0.0 {
        return if mean > m { 0.0 } else { 1.0 };
    }
    1.0 - t_cdf((mean - m) / (sd / (n as f64).sqrt()), (n - 1) as f64)
}

/// One-sided p-value of H1: mean(d) < m.
pub(crate) fn p_below(d: &[f64], m: f64) -> f64 {
    let neg: Vec<f64> = d.iter().map(|x| -x).collect();
    p_above(&neg, -m)
}

/// What a statement claims about the paired differences (method − reference).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Statement {
    /// "X matches the reference": the difference is above −MARGIN.
    Matches,
    /// "X beats the reference": the difference is above 0.
    Beats,
    /// "X is equivalent to the reference": the difference lies within ±MARGIN (TOST).
    Equivalent,
}

/// A statement tested on differences: the p-value it enters Holm's procedure with, and which way it
/// points when it is decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tested {
    pub statement: Statement,
    /// The smaller one-sided p (Matches, Beats) or the larger (TOST).
    pub p: f64,
    /// For Matches and Beats: the evidence is for the statement (true) or against it (false).
    pub for_it: bool,
}

pub(crate) fn test(statement: Statement, d: &[f64]) -> Tested {
    let (up, down) = match statement {
        Statement::Matches => (p_above(d, -MARGIN), p_below(d, -MARGIN)),
        Statement::Beats => (p_above(d, 0.0), p_below(d, 0.0)),
        Statement::Equivalent => {
            let p = p_above(d, -MARGIN).max(p_below(d, MARGIN));
            return Tested { statement, p, for_it: true };
        }
    };
    Tested { statement, p: up.min(down), for_it: up <= down }
}

/// Holm's step-down adjusted p-values (same order as `p`): the k-th smallest is multiplied by
/// (m − k + 1), made non-decreasing, and capped at 1.
pub(crate) fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adj = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        adj[i] = running;
    }
    adj
}

/// "X matches the reference" (the dense net), read from the 95 % interval of the paired differences
/// X − reference (fractions), as the protocol's table states it: holds when the lower bound is at
/// least −1 point, does not hold when the upper bound is below −1 point, else open. The same
/// decision as [`test()`] with [`Statement::Matches`] outside a family (tested below).
pub(crate) fn matches(d: &Summary) -> &'static str {
    match d.ci95() {
        Some((lo, _)) if lo >= -MARGIN => "holds",
        Some((_, hi)) if hi < -MARGIN => "does **not** hold",
        Some(_) => "open: the interval straddles the margin",
        None => "open: fewer than two paired seeds",
    }
}

/// "X beats the reference", read from the interval as [`matches()`]: holds when the lower bound is
/// above 0, does not hold (the reference beats X) when the upper bound is below 0.
pub(crate) fn beats(d: &Summary) -> &'static str {
    match d.ci95() {
        Some((lo, _)) if lo > 0.0 => "holds",
        Some((_, hi)) if hi < 0.0 => "does **not** hold (below)",
        Some(_) => "open: the interval contains 0",
        None => "open: fewer than two paired seeds",
    }
}

/// The verdict in words, from a tested statement and its (Holm-adjusted, where it is in a family)
/// p-value.
pub(crate) fn verdict(t: &Tested, p: f64) -> &'static str {
    let decided = p < ALPHA;
    match (t.statement, decided, t.for_it) {
        (_, false, _) if t.statement == Statement::Equivalent => "not shown",
        (_, false, _) => "open",
        (Statement::Equivalent, true, _) => "equivalent (within ±1 point)",
        (Statement::Matches, true, true) => "holds",
        (Statement::Matches, true, false) => "does **not** hold",
        (Statement::Beats, true, true) => "better",
        (Statement::Beats, true, false) => "worse",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The t distribution against the table of 97.5 % quantiles, its symmetry and its centre.
    #[test]
    fn t_cdf_agrees_with_the_quantile_table() {
        for df in 1..=30 {
            let q = crate::stats::t95(df);
            let f = t_cdf(q, df as f64);
            // The table is rounded to 3 decimals: within half a unit of the last digit times the density.
            assert!((f - 0.975).abs() < 5e-5, "df {df}: F({q}) = {f}");
            assert!((t_cdf(-q, df as f64) - 0.025).abs() < 5e-5);
        }
        assert!((t_cdf(0.0, 4.0) - 0.5).abs() < 1e-12);
        // Closed forms for 1, 2 and 3 degrees of freedom, to 1e-12.
        let pi = std::f64::consts::PI;
        for t in [-6.0f64, -1.3, -0.2, 0.4, 1.0, 2.5, 9.0] {
            let exact1 = 0.5 + t.atan() / pi;
            let exact2 = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
            let u = t / 3f64.sqrt();
            let exact3 = 0.5 + (u / (1.0 + u * u) + u.atan()) / pi;
            for (df, exact) in [(1.0, exact1), (2.0, exact2), (3.0, exact3)] {
                assert!((t_cdf(t, df) - exact).abs() < 1e-12, "df {df}, t {t}: {} vs {exact}", t_cdf(t, df));
            }
        }
        // A value from the normal limit: F(1.959964) → 0.975 as df grows.
        assert!((t_cdf(1.959_964, 1e6) - 0.975).abs() < 1e-5);
    }

    /// Fewer than two paired seeds: no interval, so no verdict.
    #[test]
    fn one_seed_decides_nothing() {
        let one = crate::stats::summary(&[0.05]);
        assert_eq!(
            (matches(&one), beats(&one)),
            ("open: fewer than two paired seeds", "open: fewer than two paired seeds")
        );
    }

    /// Holm on a worked example, and its monotonicity and cap.
    #[test]
    fn holm_steps_down() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        // Capped at 1 and never smaller than an earlier step.
        assert_eq!(holm(&[0.6, 0.5]), vec![1.0, 1.0]);
        assert_eq!(holm(&[0.001, 0.2]), vec![0.002, 0.2]);
    }

    /// Without a family, each statement decides exactly as the 95 % interval of the differences
    /// does (the rule stated in words in the protocol).
    #[test]
    fn single_statements_follow_the_interval() {
        let cases: [&[f64]; 5] = [
            &[0.004, -0.006, 0.001, -0.002, 0.003],
            &[-0.03, -0.025, -0.02, -0.028, -0.022],
            &[0.02, 0.03, 0.025, 0.015, 0.03],
            &[-0.009, -0.002, -0.004, -0.006, -0.003],
            &[0.05, -0.04, 0.02, -0.03, 0.01],
        ];
        for d in cases {
            let s = crate::stats::summary(d);
            let (lo, hi) = s.ci95().unwrap();
            let m = test(Statement::Matches, d);
            let want = if lo >= -MARGIN {
                "holds"
            } else if hi < -MARGIN {
                "does **not** hold"
            } else {
                "open"
            };
            assert_eq!(verdict(&m, m.p), want, "{d:?}");
            let b = test(Statement::Beats, d);
            let want = if lo > 0.0 {
                "better"
            } else if hi < 0.0 {
                "worse"
            } else {
                "open"
            };
            assert_eq!(verdict(&b, b.p), want, "{d:?}");
            // The interval readings say the same, in their words.
            assert_eq!(matches(&s).split(':').next().unwrap(), verdict(&m, m.p), "{d:?}");
            let in_words = match verdict(&b, b.p) {
                "better" => "holds",
                "worse" => "does **not** hold (below)",
                _ => "open",
            };
            assert_eq!(beats(&s).split(':').next().unwrap(), in_words, "{d:?}");
            let e = test(Statement::Equivalent, d);
            let want = if lo > -MARGIN && hi < MARGIN { "equivalent (within ±1 point)" } else { "not shown" };
            assert_eq!(verdict(&e, e.p), want, "{d:?}");
        }
    }
}
