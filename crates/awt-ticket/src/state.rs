//! A search's resumable state: what it holds, how it is taken from and put back into a running
//! search, and its file (safetensors with the step, Adam's step count and the search's identity in
//! the metadata).

use std::collections::BTreeMap;
use std::path::Path;

use awt_nets::Net;
use awt_train::Optimizer;
use candle_core::Tensor;

use crate::error::SearchError;

/// Where a search can continue from: the next step, and the student's weights (`student.<name>`,
/// unmasked), its masks (`mask.<name>`) and Adam's moments (`opt.m.<name>`, `opt.v.<name>`) with
/// Adam's step count. Everything else a step uses (its batch, its attack's seed) derives from the
/// seed and the step, so a search resumed from a state is bit-identical to one never stopped.
#[derive(Clone, Debug)]
pub struct SearchState {
    /// The first step still to run.
    pub step: usize,
    /// Student weights, masks and optimiser moments, by name.
    pub tensors: Vec<(String, Tensor)>,
    /// Adam's step count.
    pub opt_steps: u64,
}

impl SearchState {
    /// Writes the state to `path` atomically, tagged with `config`, a description of the search it
    /// belongs to (settings, teacher, data), which [`SearchState::load`] must be given again.
    pub fn save(&self, path: &Path, config: &str) -> Result<(), SearchError> {
        let err = |why: String| SearchError::File { path: path.to_path_buf(), why, source: None };
        let mut tensors = self.tensors.clone();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let meta = BTreeMap::from([
            ("step".to_string(), self.step.to_string()),
            ("optimizer_steps".to_string(), self.opt_steps.to_string()),
            ("search".to_string(), config.to_string()),
        ]);
        let bytes = awt_base::safetensors_bytes(&tensors, &meta).map_err(|e| err(e.to_string()))?;
        awt_base::write_atomic(path, &bytes).map_err(|e| SearchError::file_io(path, "cannot write", e))
    }

    /// Reads a state written by [`SearchState::save`] for the same `config` onto `device` (the
    /// student's); a state of another search, or a damaged file, is an error naming the file.
    pub fn load(path: &Path, config: &str, device: &candle_core::Device) -> Result<SearchState, SearchError> {
        let err = |why: String| SearchError::File { path: path.to_path_buf(), why, source: None };
        let bytes = std::fs::read(path).map_err(|e| SearchError::file_io(path, "cannot read", e))?;
        let (_, md) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| SearchError::file_io(path, "malformed", e))?;
        let meta: BTreeMap<String, String> = md.metadata().clone().unwrap_or_default().into_iter().collect();
        if meta.get("search").map(String::as_str) != Some(config) {
            let saved = meta.get("search").map_or("", String::as_str);
            // Descriptions of `key=value` lines: name the settings that differ, not the whole of both.
            let differ: Vec<String> = config
                .lines()
                .filter(|l| !saved.lines().any(|s| s == *l))
                .map(|l| {
                    let key = l.split('=').next().unwrap_or(l);
                    let was = saved.lines().find(|s| s.split('=').next() == Some(key)).and_then(|s| s.split_once('='));
                    match was {
                        Some((_, v)) => format!("{l} (saved: {v})"),
                        None => l.to_string(),
                    }
                })
                .collect();
            let what = if saved.is_empty() {
                "it records no description".to_string()
            } else if differ.is_empty() || !config.contains('\n') {
                format!("saved for {saved}")
            } else {
                format!("these settings differ: {}", differ.join("; "))
            };
            return Err(err(format!(
                "the saved state belongs to another search ({what}): remove it or run without --resume"
            )));
        }
        let num = |k: &str| -> Result<u64, SearchError> {
            meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| err(format!("no `{k}` in the metadata")))
        };
        let (step, opt_steps) = (num("step")? as usize, num("optimizer_steps")?);
        let st =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| SearchError::file_io(path, "malformed", e))?;
        let mut tensors = Vec::new();
        for (name, view) in st.tensors() {
            let t = candle_core::safetensors::Load::load(&view, device)
                .map_err(|e| err(format!("tensor `{name}`: {e}")))?;
            tensors.push((name, t));
        }
        Ok(SearchState { step, tensors, opt_steps })
    }
}

/// A snapshot: copies, because the optimiser updates the weights' and moments' storage in place.
pub(crate) fn state(
    step: usize,
    student: &Net,
    masks: &BTreeMap<String, Tensor>,
    opt: &Optimizer,
) -> Result<SearchState, SearchError> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (k, v) in student.params() {
        tensors.push((format!("student.{k}"), v.as_tensor().copy()?));
    }
    for (k, m) in masks {
        tensors.push((format!("mask.{k}"), m.copy()?));
    }
    for (k, t) in opt.state() {
        tensors.push((k, t.copy()?));
    }
    Ok(SearchState { step, tensors, opt_steps: opt.steps() })
}

/// Puts a saved state into the student, its masks and the optimiser.
pub(crate) fn restore(
    st: &SearchState,
    student: &mut Net,
    masks: &mut BTreeMap<String, Tensor>,
    opt: &mut Optimizer,
) -> Result<(), SearchError> {
    let map: std::collections::HashMap<String, Tensor> = st.tensors.iter().cloned().collect();
    let missing = |k: &str| SearchError::Invalid(format!("the search state has no tensor `{k}`"));
    for (k, v) in student.params() {
        let t = map.get(&format!("student.{k}")).ok_or_else(|| missing(&format!("student.{k}")))?;
        if t.dims() != v.dims() {
            return Err(SearchError::Invalid(format!("the search state's `student.{k}` has shape {:?}", t.dims())));
        }
        v.set(&t.to_dtype(v.dtype())?)?;
    }
    for k in masks.keys().cloned().collect::<Vec<_>>() {
        let m = map.get(&format!("mask.{k}")).ok_or_else(|| missing(&format!("mask.{k}")))?;
        student.set_mask(&k, m)?;
        masks.insert(k.clone(), student.masks()[&k].clone());
    }
    opt.restore(&map, st.opt_steps);
    Ok(())
}
