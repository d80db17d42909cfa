//! The network type: architecture + parameters + masks + metadata.

use std::collections::BTreeMap;

use awt_base::{Rng, Stage, Staged, Weighted};
use candle_core::{DType, Device, Module, Tensor, Var};

use crate::arch::{Arch, LayerDef};
use crate::layers::forward_stages;

/// Errors from building or changing a network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A setting of the network that cannot work, named.
    #[error("{0}")]
    Invalid(String),
    /// A mask was given for a tensor that is not a maskable weight.
    #[error("mask `{name}`: {why}")]
    BadMask {
        /// Parameter name.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// Weight initialisation scheme. Biases follow PyTorch's `nn.Linear`/`nn.Conv2d` default
/// (uniform ±1/√fan_in) under Kaiming-uniform, are zero under Glorot-normal, and N(0, 10⁻²) under
/// `Ntt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// PyTorch's default: `kaiming_uniform_(a=√5)`, i.e. U(±1/√fan_in).
    KaimingUniform,
    /// Glorot (Xavier) normal: N(0, 2/(fan_in+fan_out)), zero biases.
    GlorotNormal,
    /// NTT's recipe (JAX stax's defaults `glorot_normal()`, `normal()`): Glorot-normal weights and
    /// biases drawn from N(0, 0.01²).
    Ntt,
}

impl std::str::FromStr for Init {
    type Err = awt_base::UnknownName;

    /// `kaiming-uniform`, `glorot-normal` or `ntt`.
    fn from_str(s: &str) -> Result<Init, Self::Err> {
        match s {
            "kaiming-uniform" => Ok(Init::KaimingUniform),
            "glorot-normal" => Ok(Init::GlorotNormal),
            "ntt" => Ok(Init::Ntt),
            _ => Err(awt_base::UnknownName {
                what: "init",
                got: s.to_string(),
                expected: "kaiming-uniform, glorot-normal or ntt".into(),
            }),
        }
    }
}

impl Init {
    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Init::KaimingUniform => "kaiming-uniform",
            Init::GlorotNormal => "glorot-normal",
            Init::Ntt => "ntt",
        }
    }
}

/// Standardisation of the inputs inside the network, before its first layer: `(x − mean) / std`
/// with one value for all inputs or one per channel. Attacks keep working in pixel units on [0, 1].
/// Checkpoints keep it in their metadata (`input_mean`, `input_std`, comma-separated).
#[derive(Clone, Debug, PartialEq)]
pub struct InputNorm {
    /// One value, or one per input channel.
    pub mean: Vec<f64>,
    /// One value, or one per input channel; every value finite and > 0.
    pub std: Vec<f64>,
}

impl InputNorm {
    fn check(&self, arch: &Arch) -> Result<(), String> {
        let channels = arch.input_shape()[0];
        let lens_ok = self.mean.len() == self.std.len()
            && (self.mean.len() == 1 || (arch.input_shape().len() == 3 && self.mean.len() == channels));
        if !lens_ok {
            return Err(format!(
                "input standardisation needs one mean and one std, or one of each per input channel ({channels} for {arch}); got {} and {}",
                self.mean.len(),
                self.std.len()
            ));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("input standardisation mean {m} is not finite"));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("input standardisation std {s} must be finite and > 0"));
        }
        Ok(())
    }

    fn join(v: &[f64]) -> String {
        v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Reads `input_mean` / `input_std` from checkpoint metadata (`None` when both are absent).
    fn from_meta(meta: &BTreeMap<String, String>) -> Result<Option<InputNorm>, String> {
        let parse = |k: &str| -> Result<Option<Vec<f64>>, String> {
            meta.get(k)
                .map(|s| {
                    s.split(',')
                        .map(|x| x.trim().parse::<f64>().map_err(|_| format!("metadata `{k}`: `{x}` is not a number")))
                        .collect()
                })
                .transpose()
        };
        match (parse("input_mean")?, parse("input_std")?) {
            (None, None) => Ok(None),
            (Some(mean), Some(std)) => Ok(Some(InputNorm { mean, std })),
            _ => Err("metadata has only one of `input_mean` and `input_std`".into()),
        }
    }
}

/// A feed-forward network of the zoo with optional weight masks.
#[derive(Clone, Debug)]
pub struct Net {
    arch: Arch,
    params: BTreeMap<String, Var>,
    masks: BTreeMap<String, Tensor>,
    input_norm: Option<InputNorm>,
    /// Free-form metadata stored in checkpoints (arch, seed, init, git commit, config hash, ...).
    pub meta: BTreeMap<String, String>,
}

/// Refuses an architecture whose parameters alone would take more than half the memory available
/// (an `mlp-784-100000000-10` would otherwise be killed by the OS, taking other processes with it).
fn check_memory(arch: &Arch, dtype: DType) -> Result<(), NetError> {
    let gb = |b: f64| b / 1e9;
    let Some(count) = arch.param_count() else {
        return Err(NetError::Invalid(format!("{arch}: the parameter count overflows a 64-bit integer")));
    };
    // Drawn in f64, then converted: 8 + dtype bytes per parameter while initialising. Training needs
    // several times the parameters' own size again (gradients, optimiser state).
    let need = count as f64 * (8 + dtype.size_in_bytes()) as f64;
    if let Some(avail) = awt_base::available_memory()
        && need > avail as f64 / 2.0
    {
        return Err(NetError::Invalid(format!(
            "{arch} has {count} parameters: initialising it needs about {:.1} GB, more than half of the {:.1} GB of memory available (and training needs several times more); choose a smaller architecture",
            gb(need),
            gb(avail as f64)
        )));
    }
    Ok(())
}

impl Net {
    /// A freshly initialised network. Each parameter draws from its own stream
    /// `Rng::new(seed).derive(name)`, so values do not depend on iteration order.
    pub fn init(arch: &Arch, init: Init, seed: u64, dtype: DType, device: &Device) -> Result<Net, NetError> {
        check_memory(arch, dtype)?;
        let root = Rng::new(seed);
        let mut params = BTreeMap::new();
        for l in arch.layers() {
            let (name, shape, fan_in, fan_out): (String, Vec<usize>, usize, usize) = match &l {
                LayerDef::Linear { name, inp, out } => (name.clone(), vec![*out, *inp], *inp, *out),
                LayerDef::Conv { name, inp, out, k } => {
                    (name.clone(), vec![*out, *inp, *k, *k], inp * k * k, out * k * k)
                }
                _ => continue,
            };
            let n: usize = shape.iter().product();
            let mut rw = root.derive(&format!("{name}.weight"));
            let mut rb = root.derive(&format!("{name}.bias"));
            let bound = 1.0 / (fan_in as f64).sqrt();
            let (w, b): (Vec<f64>, Vec<f64>) = match init {
                Init::KaimingUniform => (
                    (0..n).map(|_| rw.uniform_range(-bound, bound)).collect(),
                    (0..shape[0]).map(|_| rb.uniform_range(-bound, bound)).collect(),
                ),
                Init::GlorotNormal => {
                    let std = (2.0 / (fan_in + fan_out) as f64).sqrt();
                    ((0..n).map(|_| std * rw.normal()).collect(), vec![0.0; shape[0]])
                }
                Init::Ntt => {
                    let std = (2.0 / (fan_in + fan_out) as f64).sqrt();
                    ((0..n).map(|_| std * rw.normal()).collect(), (0..shape[0]).map(|_| 0.01 * rb.normal()).collect())
                }
            };
            // Values are drawn in f64 and rounded once, so f32 and f64 nets share their numbers.
            let w = Tensor::from_vec(w, shape.as_slice(), device)?.to_dtype(dtype)?;
            let b = Tensor::from_vec(b, shape[0], device)?.to_dtype(dtype)?;
            params.insert(format!("{name}.weight"), Var::from_tensor(&w)?);
            params.insert(format!("{name}.bias"), Var::from_tensor(&b)?);
        }
        let mut meta = BTreeMap::new();
        meta.insert("arch".into(), arch.to_string());
        meta.insert("seed".into(), seed.to_string());
        meta.insert("init".into(), init.name().into());
        Ok(Net { arch: arch.clone(), params, masks: BTreeMap::new(), input_norm: None, meta })
    }

    /// Builds a network from parameter tensors already checked against `arch` (used by the loader).
    pub(crate) fn from_parts(
        arch: Arch,
        params: BTreeMap<String, Tensor>,
        masks: BTreeMap<String, Tensor>,
        meta: BTreeMap<String, String>,
    ) -> Result<Net, NetError> {
        let params =
            params.into_iter().map(|(k, v)| Ok((k, Var::from_tensor(&v)?))).collect::<Result<_, NetError>>()?;
        let input_norm = InputNorm::from_meta(&meta).map_err(NetError::Invalid)?;
        if let Some(n) = &input_norm {
            n.check(&arch).map_err(NetError::Invalid)?;
        }
        Ok(Net { arch, params, masks, input_norm, meta })
    }

    /// The input standardisation, if any.
    pub fn input_norm(&self) -> Option<&InputNorm> {
        self.input_norm.as_ref()
    }

    /// Sets (or with `None` removes) the input standardisation; it is recorded in `meta`.
    pub fn set_input_norm(&mut self, norm: Option<InputNorm>) -> Result<(), NetError> {
        match &norm {
            Some(n) => {
                n.check(&self.arch).map_err(NetError::Invalid)?;
                self.meta.insert("input_mean".into(), InputNorm::join(&n.mean));
                self.meta.insert("input_std".into(), InputNorm::join(&n.std));
            }
            None => {
                self.meta.remove("input_mean");
                self.meta.remove("input_std");
            }
        }
        self.input_norm = norm;
        Ok(())
    }

    /// The architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Parameters by PyTorch name, sorted.
    pub fn params(&self) -> &BTreeMap<String, Var> {
        &self.params
    }

    /// The parameter `name`, if it exists.
    pub fn param(&self, name: &str) -> Option<&Var> {
        self.params.get(name)
    }

    /// All parameters as a list (for optimisers), in sorted-name order.
    pub fn vars(&self) -> Vec<Var> {
        self.params.values().cloned().collect()
    }

    /// Names of the maskable tensors (every weight, no bias), sorted.
    pub fn weight_names(&self) -> Vec<String> {
        self.params.keys().filter(|k| k.ends_with(".weight")).cloned().collect()
    }

    /// Masks by weight name (only weights that have one).
    pub fn masks(&self) -> &BTreeMap<String, Tensor> {
        &self.masks
    }

    /// Sets the 0/1 mask of weight `name` (same shape, same dtype as the weight after conversion).
    pub fn set_mask(&mut self, name: &str, mask: &Tensor) -> Result<(), NetError> {
        let bad = |why: String| NetError::BadMask { name: name.to_string(), why };
        let w = self.params.get(name).ok_or_else(|| bad("no such weight (biases are never masked)".into()))?;
        if !name.ends_with(".weight") {
            return Err(bad("only weights can be masked, never biases".into()));
        }
        if mask.dims() != w.dims() {
            return Err(bad(format!("shape {:?} differs from the weight's {:?}", mask.dims(), w.dims())));
        }
        let m = mask.to_dtype(w.dtype())?.to_device(w.device())?;
        let vals = m.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if let Some(v) = vals.iter().find(|&&v| v != 0.0 && v != 1.0) {
            return Err(bad(format!("mask values must be exactly 0 or 1, found {v}")));
        }
        self.masks.insert(name.to_string(), m.detach());
        Ok(())
    }

    /// Removes every mask (the network becomes dense again; weights keep their values).
    pub fn clear_masks(&mut self) {
        self.masks.clear();
    }

    /// Multiplies each masked weight by its mask in place, so stored weights are exactly 0 where pruned.
    pub fn apply_masks(&self) -> Result<(), NetError> {
        for (name, m) in &self.masks {
            let v = &self.params[name];
            v.set(&v.as_tensor().mul(m)?)?;
        }
        Ok(())
    }

    /// Number of parameters, and of maskable weights.
    pub fn counts(&self) -> (usize, usize) {
        let all = self.params.values().map(|v| v.elem_count()).sum();
        let w = self.params.iter().filter(|(k, _)| k.ends_with(".weight")).map(|(_, v)| v.elem_count()).sum();
        (all, w)
    }

    /// Density (kept fraction) of each weight, 1.0 when unmasked.
    pub fn densities(&self) -> Result<BTreeMap<String, f64>, NetError> {
        let mut out = BTreeMap::new();
        for name in self.weight_names() {
            let d = match self.masks.get(&name) {
                Some(m) => m.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()? / m.elem_count() as f64,
                None => 1.0,
            };
            out.insert(name, d);
        }
        Ok(out)
    }

    /// A deep copy with fresh `Var`s (same values, masks and metadata), e.g. a frozen teacher.
    pub fn deep_clone(&self) -> Result<Net, NetError> {
        let params = self
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), Var::from_tensor(&v.as_tensor().copy()?)?)))
            .collect::<Result<_, NetError>>()?;
        Ok(Net {
            arch: self.arch.clone(),
            params,
            masks: self.masks.clone(),
            input_norm: self.input_norm.clone(),
            meta: self.meta.clone(),
        })
    }

    /// Converts every parameter and mask to `dtype` (fresh `Var`s).
    pub fn to_dtype(&self, dtype: DType) -> Result<Net, NetError> {
        let params = self
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), Var::from_tensor(&v.as_tensor().to_dtype(dtype)?)?)))
            .collect::<Result<_, NetError>>()?;
        let masks =
            self.masks.iter().map(|(k, m)| Ok((k.clone(), m.to_dtype(dtype)?))).collect::<Result<_, NetError>>()?;
        Ok(Net { arch: self.arch.clone(), params, masks, input_norm: self.input_norm.clone(), meta: self.meta.clone() })
    }

    /// The parameter dtype.
    pub fn dtype(&self) -> DType {
        self.params.values().next().map(|v| v.dtype()).unwrap_or(DType::F32)
    }

    /// The device the parameters live on (every tensor made for this network goes there).
    pub fn device(&self) -> Device {
        self.params.values().next().map(|v| v.device().clone()).unwrap_or(Device::Cpu)
    }
}

impl Net {
    /// The parameters of layer `name` (present by construction: the architecture names them).
    fn weighted(&self, name: String) -> Weighted {
        Weighted {
            weight: self.params[&format!("{name}.weight")].as_tensor().clone(),
            bias: self.params[&format!("{name}.bias")].as_tensor().clone(),
            mask: self.masks.get(&format!("{name}.weight")).cloned(),
            name,
        }
    }

    /// The maskable weights `(name, variable)`, sorted by name (biases excluded).
    pub fn weights(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.params.iter().filter(|(k, _)| k.ends_with(".weight"))
    }
}

impl Staged for Net {
    fn stages(&self) -> Vec<Stage> {
        let norm = self.input_norm.iter().map(|n| Stage::Standardize { mean: n.mean.clone(), std: n.std.clone() });
        norm.chain(self.arch.layers().into_iter().map(|l| match l {
            LayerDef::Linear { name, .. } => Stage::Linear(self.weighted(name)),
            LayerDef::Conv { name, .. } => Stage::Conv2d(self.weighted(name)),
            LayerDef::Relu => Stage::Relu,
            LayerDef::MaxPool2 => Stage::MaxPool2,
            LayerDef::AvgPool2 => Stage::AvgPool2,
            LayerDef::Flatten => Stage::Flatten,
        }))
        .collect()
    }
}

impl Module for Net {
    /// Logits `(batch, classes)` for inputs `(batch, c, h, w)` (or `(batch, features)` for MLPs).
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        forward_stages(&self.stages(), &self.batched(xs)?)
    }
}

impl awt_base::Classifier for Net {
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward(x)
    }

    /// The raw-buffer forward pass of `fast` on the CPU (no graph; sparse layers over their kept
    /// weights), candle's forward, detached, elsewhere.
    fn predict(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.batched(x)?;
        match crate::fast::logits(&self.stages(), &xs)? {
            Some(z) => Ok(z),
            None => Ok(forward_stages(&self.stages(), &xs)?.detach()),
        }
    }

    /// Explicit backward to the input through the stages (no weight gradients are formed).
    fn loss_and_input_grad(
        &self,
        x: &Tensor,
        loss: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let xs = self.batched(x)?;
        let out = match crate::fast::loss_and_input_grad(&self.stages(), &xs, loss)? {
            Some(out) => out,
            None => self.staged_loss_and_input_grad(&xs, loss)?,
        };
        let (logits, l, g) = out;
        Ok((logits, l, g.reshape(x.shape())?))
    }
}

impl Net {
    /// Inputs as the first stage takes them: flat rows `(batch, features)` reshaped to images for
    /// the convolutional nets.
    fn batched(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match (&self.arch, x.rank()) {
            (Arch::Lenet5Caffe | Arch::Conv4, 2) => {
                let s = self.arch.input_shape();
                x.reshape((x.dim(0)?, s[0], s[1], s[2]))
            }
            _ => Ok(x.clone()),
        }
    }

    /// The input gradient through [`Stage::backward`] with candle ops (the path every device and
    /// dtype supports; on the CPU the raw-buffer path of `fast` computes the same, faster).
    pub fn staged_loss_and_input_grad(
        &self,
        xs: &Tensor,
        loss: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        // Detached weights: nothing below records an autograd graph.
        let stages: Vec<Stage> = self.stages().into_iter().map(detach_stage).collect();
        let (logits, inputs) = awt_base::forward_keep(&stages, &xs.detach())?;
        let lv = Var::from_tensor(&logits)?;
        let l = loss(lv.as_tensor())?;
        let v = match l.sum_all()?.backward()?.get(lv.as_tensor()) {
            Some(g) => g.clone(),
            None => logits.zeros_like()?,
        };
        let g = awt_base::backward_stages(&stages, &inputs, &v)?;
        Ok((logits, l.detach(), g))
    }
}

fn detach_stage(s: Stage) -> Stage {
    let detach = |p: Weighted| {
        Ok(Weighted {
            weight: p.weight.detach(),
            bias: p.bias.detach(),
            mask: p.mask.map(|m| m.detach()),
            name: p.name,
        })
    };
    s.map_params(detach).expect("detaching cannot fail")
}

#[cfg(test)]
mod tests;
