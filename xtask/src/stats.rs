//! Small statistics for reports over a few seeds: mean ± sd, Student-t 95 % intervals, paired
//! differences, and verdicts that say when the seeds cannot decide.

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom (exact to 3 decimals for
/// df ≤ 30, the normal quantile's series beyond).
pub(crate) fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => 1.960 + 2.4 / df as f64,
    }
}

/// Mean, sample sd (0 for one value) and count; NaN mean for none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Summary {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

pub(crate) fn summary(v: &[f64]) -> Summary {
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
    Summary { mean, sd, n }
}

impl Summary {
    /// The 95 % t-interval of the mean; None below two values.
    pub(crate) fn ci95(&self) -> Option<(f64, f64)> {
        (self.n > 1).then(|| {
            let h = t95(self.n - 1) * self.sd / (self.n as f64).sqrt();
            (self.mean - h, self.mean + h)
        })
    }

    /// "m ± sd" in percent points (values are fractions), or "m" for one value, "—" for none.
    pub(crate) fn pct(&self) -> String {
        match self.n {
            0 => "—".into(),
            1 => format!("{:.1}", 100.0 * self.mean),
            _ => format!("{:.1} ± {:.1}", 100.0 * self.mean, 100.0 * self.sd),
        }
    }

    /// "m [lo, hi]" as plain numbers (3 decimals) with the 95 % interval.
    pub(crate) fn num_ci(&self) -> String {
        match self.ci95() {
            Some((lo, hi)) => format!("{:+.3} [{lo:+.3}, {hi:+.3}]", self.mean),
            None if self.n == 1 => format!("{:+.3} (one seed)", self.mean),
            None => "—".into(),
        }
    }

    /// "m [lo, hi]" in percent points with the 95 % interval.
    pub(crate) fn pct_ci(&self) -> String {
        match self.ci95() {
            Some((lo, hi)) => format!("{:+.1} [{:+.1}, {:+.1}]", 100.0 * self.mean, 100.0 * lo, 100.0 * hi),
            None if self.n == 1 => format!("{:+.1} (one seed)", 100.0 * self.mean),
            None => "—".into(),
        }
    }
}

/// The paired differences a − b over the keys (seeds) both have, in `a`'s order.
pub(crate) fn paired_diffs(a: &[(u64, f64)], b: &[(u64, f64)]) -> Vec<f64> {
    a.iter().filter_map(|(s, x)| b.iter().find(|(t, _)| t == s).map(|(_, y)| x - y)).collect()
}

/// The summary of [`paired_diffs`].
pub(crate) fn paired(a: &[(u64, f64)], b: &[(u64, f64)]) -> Summary {
    summary(&paired_diffs(a, b))
}

/// Ranks from 1, ties given their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            r[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of paired values, and whether it differs from 0 at the 5 % level
/// (two-sided, t = ρ √((n − 2) / (1 − ρ²)) on n − 2 degrees of freedom). None below 4 pairs or
/// where either side is constant.
pub(crate) fn spearman(x: &[f64], y: &[f64]) -> Option<(f64, bool)> {
    let n = x.len();
    if n != y.len() || n < 4 {
        return None;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let m = (n as f64 + 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - m) * (b - m);
        sxx += (a - m) * (a - m);
        syy += (b - m) * (b - m);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    let rho = sxy / (sxx * syy).sqrt();
    let t = if rho.abs() >= 1.0 { f64::INFINITY } else { rho.abs() * ((n as f64 - 2.0) / (1.0 - rho * rho)).sqrt() };
    Some((rho, t > t95(n - 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_verdicts() {
        let s = summary(&[0.80, 0.82, 0.84]);
        assert!((s.mean - 0.82).abs() < 1e-12 && (s.sd - 0.02).abs() < 1e-12);
        let (lo, hi) = s.ci95().unwrap();
        assert!((hi - 0.82 - 4.303 * 0.02 / 3f64.sqrt()).abs() < 1e-12 && (0.82 - lo - (hi - 0.82)).abs() < 1e-12);
        assert_eq!(summary(&[0.5]).ci95(), None);
        // Paired on common seeds only: seed 2 has no partner.
        let d = paired(&[(0, 0.9), (1, 0.8), (2, 0.1)], &[(0, 0.85), (1, 0.76)]);
        assert_eq!(d.n, 2);
        assert!((d.mean - 0.045).abs() < 1e-12);
        assert!((t95(1000) - 1.9624).abs() < 1e-3 && (t95(2) - 4.303).abs() < 1e-12);
    }

    /// Against hand-computed values: a monotone relation is ±1 whatever its shape, ties share
    /// their mean rank, and too few or constant values give none.
    #[test]
    fn rank_correlation() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(spearman(&x, &[1.0, 4.0, 9.0, 16.0, 100.0]), Some((1.0, true)));
        assert_eq!(spearman(&x, &[5.0, 4.0, 3.0, 2.0, -7.0]), Some((-1.0, true)));
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // Ranks 1 2 3 4 5 against 2 1 4 3 5: d² sums to 4, ρ = 1 − 6·4 / (5·24) = 0.8; t = 0.8·√(3/0.36) ≈ 2.31
        // is below t95(3) = 3.18, so not different from 0.
        let (rho, decided) = spearman(&x, &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap();
        assert!((rho - 0.8).abs() < 1e-12 && !decided, "{rho}");
        assert_eq!(spearman(&x[..3], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&x, &[1.0; 5]), None);
    }
}
