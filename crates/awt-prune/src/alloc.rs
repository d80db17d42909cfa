//! From scores to masks: density allocation and exact top-k selection.

use awt_runs::Density;
use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

/// Masks keyed by weight name (`fc1.weight`), each a 0/1 tensor of the weight's shape.
pub type Masks = BTreeMap<String, Tensor>;

/// Scores keyed by weight name, each of the weight's shape; higher = more important = kept.
pub type Scores = BTreeMap<String, Tensor>;

/// Why masks could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// A setting or input that cannot work, named.
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn invalid(s: impl Into<String>) -> PruneError {
    PruneError::Invalid(s.into())
}

/// How a target density is spread over layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// Every layer keeps the same fraction (the paper's and NTT's choice).
    Uniform,
    /// One threshold over all layers.
    Global,
    /// Erdős–Rényi-kernel: layer density ∝ (Σ dims)/(Π dims), scaled to the target, capped at 1.
    Erk,
}

impl std::str::FromStr for Allocation {
    type Err = awt_base::UnknownName;

    /// `uniform` (also `layerwise`), `global` or `erk`.
    fn from_str(s: &str) -> Result<Allocation, Self::Err> {
        match s {
            "uniform" | "layerwise" => Ok(Allocation::Uniform),
            "global" => Ok(Allocation::Global),
            "erk" => Ok(Allocation::Erk),
            _ => Err(awt_base::UnknownName {
                what: "allocation",
                got: s.to_string(),
                expected: "uniform, global or erk".into(),
            }),
        }
    }
}

/// Per-layer densities for [`Allocation::Uniform`] and [`Allocation::Erk`] (global has none a priori).
pub fn layer_densities(
    shapes: &BTreeMap<String, Vec<usize>>,
    density: Density,
    alloc: Allocation,
) -> Result<BTreeMap<String, f64>, PruneError> {
    let density = density.get();
    match alloc {
        Allocation::Uniform | Allocation::Global => Ok(shapes.keys().map(|k| (k.clone(), density)).collect()),
        Allocation::Erk => {
            // RigL's procedure: raw ERK weights, then layers that would exceed density 1 are made
            // dense and the rest rescaled, until none exceeds it.
            let total: f64 = shapes.values().map(|s| s.iter().product::<usize>() as f64).sum();
            let raw: BTreeMap<&String, f64> = shapes
                .iter()
                .map(|(k, s)| (k, s.iter().sum::<usize>() as f64 / s.iter().product::<usize>() as f64))
                .collect();
            let mut dense: Vec<&String> = Vec::new();
            loop {
                let dense_size: f64 = dense.iter().map(|k| shapes[*k].iter().product::<usize>() as f64).sum();
                let budget = density * total - dense_size;
                let denom: f64 = shapes
                    .iter()
                    .filter(|(k, _)| !dense.contains(k))
                    .map(|(k, s)| raw[k] * s.iter().product::<usize>() as f64)
                    .sum();
                let eps = budget / denom;
                let over: Vec<&String> = shapes.keys().filter(|k| !dense.contains(k) && raw[k] * eps > 1.0).collect();
                if over.is_empty() {
                    return Ok(shapes
                        .keys()
                        .map(|k| (k.clone(), if dense.contains(&k) { 1.0 } else { raw[k] * eps }))
                        .collect());
                }
                dense.extend(over);
            }
        }
    }
}

/// Indices of the `keep` largest entries of `v`; ties go to the lower index.
fn top_k(v: &[f64], keep: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(keep);
    idx
}

fn mask_from(n: usize, keep: &[usize], like: &Tensor) -> Result<Tensor, PruneError> {
    let mut m = vec![0f64; n];
    for &i in keep {
        m[i] = 1.0;
    }
    Ok(Tensor::from_vec(m, like.shape(), like.device())?.to_dtype(like.dtype())?)
}

/// Masks keeping the highest `scores` at `density` under `alloc`. NaN scores are an error.
pub fn select(scores: &BTreeMap<String, Tensor>, density: Density, alloc: Allocation) -> Result<Masks, PruneError> {
    if scores.is_empty() {
        return Err(invalid("no weights to prune"));
    }
    let mut flat: BTreeMap<&String, Vec<f64>> = BTreeMap::new();
    for (k, s) in scores {
        let v = s.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if let Some(i) = v.iter().position(|x| x.is_nan()) {
            return Err(invalid(format!("score of `{k}` is NaN at flat index {i}")));
        }
        flat.insert(k, v);
    }
    let mut masks = Masks::new();
    match alloc {
        Allocation::Global => {
            let all: Vec<(f64, usize, usize)> = flat
                .values()
                .enumerate()
                .flat_map(|(l, v)| v.iter().enumerate().map(move |(i, &s)| (s, l, i)))
                .collect();
            let keep = (density.get() * all.len() as f64).round() as usize;
            let scores_only: Vec<f64> = all.iter().map(|t| t.0).collect();
            let kept = top_k(&scores_only, keep);
            let mut per: Vec<Vec<usize>> = vec![Vec::new(); flat.len()];
            for j in kept {
                per[all[j].1].push(all[j].2);
            }
            for ((k, v), keep) in flat.iter().zip(per) {
                if keep.is_empty() {
                    return Err(invalid(format!(
                        "global pruning at density {density} would empty `{k}`: use a higher density or per-layer allocation"
                    )));
                }
                masks.insert((*k).clone(), mask_from(v.len(), &keep, &scores[*k])?);
            }
        }
        Allocation::Uniform | Allocation::Erk => {
            let shapes = scores.iter().map(|(k, s)| (k.clone(), s.dims().to_vec())).collect();
            let dens = layer_densities(&shapes, density, alloc)?;
            for (k, v) in &flat {
                let keep = (dens[*k] * v.len() as f64).round() as usize;
                if keep == 0 {
                    return Err(invalid(format!(
                        "density {:.3e} keeps no weight of `{k}` ({} weights): refusing to empty a layer",
                        dens[*k],
                        v.len()
                    )));
                }
                masks.insert((*k).clone(), mask_from(v.len(), &top_k(v, keep), &scores[*k])?);
            }
        }
    }
    Ok(masks)
}

/// Masks keeping, in each layer, its `counts` entry of highest `scores` (ties to the lower index):
/// an allocation given from outside, e.g. another mask's ([`kept_counts`]). Every scored layer needs
/// a count between 1 and its size, and every count a scored layer. NaN scores are an error.
pub fn select_counts(scores: &Scores, counts: &BTreeMap<String, usize>) -> Result<Masks, PruneError> {
    if let Some(k) = counts.keys().find(|k| !scores.contains_key(*k)) {
        return Err(invalid(format!("a count is given for `{k}`, which is not among the pruned weights")));
    }
    let mut masks = Masks::new();
    for (k, s) in scores {
        let n = s.elem_count();
        let keep = *counts.get(k).ok_or_else(|| invalid(format!("no count is given for `{k}`")))?;
        if keep == 0 || keep > n {
            return Err(invalid(format!("`{k}` has {n} weights: cannot keep {keep} (1 to {n})")));
        }
        let v = s.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if let Some(i) = v.iter().position(|x| x.is_nan()) {
            return Err(invalid(format!("score of `{k}` is NaN at flat index {i}")));
        }
        masks.insert(k.clone(), mask_from(n, &top_k(&v, keep), s)?);
    }
    Ok(masks)
}

/// How many weights each mask keeps (its non-zero entries).
pub fn kept_counts(masks: &Masks) -> Result<BTreeMap<String, usize>, PruneError> {
    masks
        .iter()
        .map(|(k, m)| {
            let kept = m.ne(0.0)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            Ok((k.clone(), kept as usize))
        })
        .collect()
}

/// Masks keeping the highest `scores` at overall `density`, with the layers named in `dense` kept
/// whole (e.g. the output layer, so that no class can be cut off) and counted in the density: the
/// other layers share what is left, `round(density · total) − Σ dense sizes` weights, under
/// `alloc`. With no `dense` layer this is [`select`] exactly.
pub fn select_keeping(
    scores: &BTreeMap<String, Tensor>,
    density: Density,
    alloc: Allocation,
    dense: &[String],
) -> Result<Masks, PruneError> {
    if dense.is_empty() {
        return select(scores, density, alloc);
    }
    let density = density.get();
    if let Some(k) = dense.iter().find(|k| !scores.contains_key(*k)) {
        return Err(invalid(format!("layer `{k}` to keep dense is not among the pruned weights")));
    }
    let size = |s: &Tensor| s.elem_count();
    let total: usize = scores.values().map(size).sum();
    let kept_dense: usize = dense.iter().map(|k| size(&scores[k])).sum();
    let rest: BTreeMap<String, Tensor> =
        scores.iter().filter(|(k, _)| !dense.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let rest_total = total - kept_dense;
    let budget = (density * total as f64).round() as i64 - kept_dense as i64;
    if rest.is_empty() || budget <= 0 {
        return Err(invalid(format!(
            "density {density} keeps {} of {total} weights, no more than the {kept_dense} of the layers kept dense ({})",
            (density * total as f64).round(),
            dense.join(", ")
        )));
    }
    let rest_density =
        Density::new((budget as f64 / rest_total as f64).min(1.0)).map_err(|e| invalid(e.to_string()))?;
    let mut masks = select(&rest, rest_density, alloc)?;
    for k in dense {
        masks.insert(k.clone(), scores[k].ones_like()?);
    }
    Ok(masks)
}

/// The density after round `r` (from 1) of `rounds` on the exponential schedule `d^(r/rounds)` of
/// the iterative scores (SynFlow's, NTK-SAP's).
pub(crate) fn after_round(density: Density, r: usize, rounds: usize) -> Density {
    Density::new(density.get().powf(r as f64 / rounds as f64)).expect("a power in (0, 1] of a density")
}
