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
        let xs = match (&self.arch, xs.rank()) {
            (Arch::Lenet5Caffe | Arch::Conv4, 2) => {
                let s = self.arch.input_shape();
                xs.reshape((xs.dim(0)?, s[0], s[1], s[2]))?
            }
            _ => xs.clone(),
        };
        forward_stages(&self.stages(), &xs)
    }
}

impl awt_base::Classifier for Net {
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward(x)
    }

    /// Explicit backward to the input through the stages (no weight gradients are formed).
    fn loss_and_input_grad(
        &self,
        x: &Tensor,
        loss: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let xs = match (&self.arch, x.rank()) {
            (Arch::Lenet5Caffe | Arch::Conv4, 2) => {
                let s = self.arch.input_shape();
                x.reshape((x.dim(0)?, s[0], s[1], s[2]))?
            }
            _ => x.clone(),
        };
        let out = match crate::fast::loss_and_input_grad(&self.stages(), &xs, loss)? {
            Some(out) => out,
            None => self.staged_loss_and_input_grad(&xs, loss)?,
        };
        let (logits, l, g) = out;
        Ok((logits, l, g.reshape(x.shape())?))
    }
}

impl Net {
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
mod tests {
    use super::*;

    fn values(net: &Net) -> Vec<Vec<f32>> {
        net.params().values().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    }

    #[test]
    fn same_seed_same_weights_different_seed_differs() {
        let a = Arch::Lenet5Caffe;
        let n0 = Net::init(&a, Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
        let n0b = Net::init(&a, Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
        let n1 = Net::init(&a, Init::KaimingUniform, 1, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(values(&n0), values(&n0b));
        assert_ne!(values(&n0), values(&n1));
    }

    #[test]
    fn init_statistics_follow_pytorch_and_glorot() {
        let a = Arch::Lenet300100;
        let k = Net::init(&a, Init::KaimingUniform, 3, DType::F64, &Device::Cpu).unwrap();
        let w = k.param("fc1.weight").unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let bound = 1.0 / 784f64.sqrt();
        assert!(w.iter().all(|x| x.abs() <= bound));
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.02, "{var}");
        let g = Net::init(&a, Init::GlorotNormal, 3, DType::F64, &Device::Cpu).unwrap();
        let w = g.param("fc2.weight").unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!((var / (2.0 / 400.0) - 1.0).abs() < 0.03, "{var}");
        let b = g.param("fc2.bias").unwrap().as_tensor().to_vec1::<f64>().unwrap();
        assert!(b.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn masks_zero_weights_in_forward_and_gradient() {
        let a = Arch::Mlp(vec![4, 3, 2]);
        let mut net = Net::init(&a, Init::KaimingUniform, 0, DType::F64, &Device::Cpu).unwrap();
        let m =
            Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0], (3, 4), &Device::Cpu)
                .unwrap();
        net.set_mask("fc1.weight", &m).unwrap();
        let x = Tensor::from_vec(vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], (2, 4), &Device::Cpu).unwrap();
        let g = net.forward(&x).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = g.get(net.param("fc1.weight").unwrap().as_tensor()).unwrap();
        let gm = gw.mul(&(1.0 - &m).unwrap()).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert_eq!(gm, 0.0);
        // The bias is never masked and the mask must be 0/1 of the weight's shape.
        assert!(net.set_mask("fc1.bias", &Tensor::ones(3, DType::F64, &Device::Cpu).unwrap()).is_err());
        assert!(net.set_mask("fc1.weight", &Tensor::ones((4, 3), DType::F64, &Device::Cpu).unwrap()).is_err());
        assert!(net.set_mask("fc1.weight", &(m.clone() * 0.5).unwrap()).is_err());
        assert!((net.densities().unwrap()["fc1.weight"] - 6.0 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn explicit_input_gradient_equals_autograd_for_every_architecture() {
        use awt_base::{Autograd, Classifier};
        let loss = |z: &Tensor| -> candle_core::Result<Tensor> {
            // A per-example loss that mixes all logits non-linearly.
            let w = Tensor::arange(1.0f64, z.dim(1)? as f64 + 1.0, z.device())?;
            z.sqr()?.broadcast_mul(&w)?.sum(1)?.sqrt()
        };
        let mut rng = Rng::new(5);
        for (arch, shape) in [
            (Arch::Lenet300100, vec![3, 1, 28, 28]),
            (Arch::Lenet5Caffe, vec![3, 1, 28, 28]),
            (Arch::Conv4, vec![2, 3, 32, 32]),
            (Arch::Mlp(vec![12, 7, 5]), vec![3, 12]),
        ] {
            let mut net = Net::init(&arch, Init::KaimingUniform, 1, DType::F64, &Device::Cpu).unwrap();
            for name in net.weight_names() {
                let w = net.param(&name).unwrap().as_tensor().clone();
                let m: Vec<f64> = (0..w.elem_count()).map(|_| if rng.uniform() < 0.7 { 1.0 } else { 0.0 }).collect();
                net.set_mask(&name, &Tensor::from_vec(m, w.shape(), &Device::Cpu).unwrap()).unwrap();
            }
            let n: usize = shape.iter().product();
            let x =
                Tensor::from_vec((0..n).map(|_| rng.uniform()).collect::<Vec<f64>>(), shape.as_slice(), &Device::Cpu)
                    .unwrap();
            let (_, la, ga) = Autograd(&net).loss_and_input_grad(&x, &loss).unwrap();
            let (_, lb, gb) = net.loss_and_input_grad(&x, &loss).unwrap();
            let diff =
                (ga - &gb).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
            let scale = gb.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
            assert!(diff <= 1e-12 * scale.max(1.0), "{arch}: max diff {diff} (scale {scale})");
            // The explicit path multiplies with gemm directly, candle through its own dispatch: the
            // same sums in another order, so the losses agree to rounding.
            for (p, q) in la.to_vec1::<f64>().unwrap().iter().zip(lb.to_vec1::<f64>().unwrap()) {
                assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0), "{arch}: loss {p} vs {q}");
            }
        }
    }

    #[test]
    fn ntt_init_draws_glorot_weights_and_small_normal_biases() {
        let g = Net::init(&Arch::Lenet300100, Init::Ntt, 3, DType::F64, &Device::Cpu).unwrap();
        let w = g.param("fc1.weight").unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!((var / (2.0 / 1084.0) - 1.0).abs() < 0.02, "{var}");
        let b = g.param("fc1.bias").unwrap().as_tensor().to_vec1::<f64>().unwrap();
        let bvar = b.iter().map(|x| x * x).sum::<f64>() / b.len() as f64;
        assert!((bvar / 1e-4 - 1.0).abs() < 0.25, "{bvar}");
        assert_eq!("ntt".parse::<Init>().unwrap(), Init::Ntt);
    }

    #[test]
    fn input_standardisation_is_the_first_stage_and_round_trips_through_checkpoints() {
        use awt_base::{Autograd, Classifier};
        let dev = Device::Cpu;
        let mut rng = Rng::new(4);
        for (arch, norm) in [
            (Arch::Lenet5Caffe, InputNorm { mean: vec![0.3], std: vec![0.5] }),
            (Arch::Conv4, InputNorm { mean: vec![0.1, 0.2, 0.3], std: vec![0.5, 1.0, 2.0] }),
        ] {
            let plain = Net::init(&arch, Init::KaimingUniform, 1, DType::F64, &dev).unwrap();
            let mut net = plain.clone();
            net.set_input_norm(Some(norm.clone())).unwrap();
            let mut shape = vec![2];
            shape.extend(arch.input_shape());
            let n: usize = shape.iter().product();
            let x =
                Tensor::from_vec((0..n).map(|_| rng.uniform()).collect::<Vec<f64>>(), shape.as_slice(), &dev).unwrap();
            // By hand: (x - mean_c) / std_c per channel, then the plain network.
            let c = shape[1];
            let m = Tensor::from_vec(norm.mean.repeat(c / norm.mean.len()), (1, c, 1, 1), &dev).unwrap();
            let s = Tensor::from_vec(norm.std.repeat(c / norm.std.len()), (1, c, 1, 1), &dev).unwrap();
            let xs = x.broadcast_sub(&m).unwrap().broadcast_div(&s).unwrap();
            let a = net.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let b = plain.forward(&xs).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0), "{arch}: {p} vs {q}");
            }
            // The explicit input gradient passes through the standardisation.
            let loss = |z: &Tensor| z.sqr()?.sum(1);
            let (_, _, ga) = Autograd(&net).loss_and_input_grad(&x, &loss).unwrap();
            let (_, _, gb) = net.loss_and_input_grad(&x, &loss).unwrap();
            let d =
                (ga - gb).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
            assert!(d < 1e-10, "{arch}: input gradient differs by {d}");
            // Checkpoints keep it.
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("n.safetensors");
            crate::save(&net, &p).unwrap();
            let back = crate::load(&p, None, DType::F64, &dev).unwrap().net;
            assert_eq!(back.input_norm(), Some(&norm));
        }
        // Impossible settings are refused, naming what is wrong.
        let mut net = Net::init(&Arch::Conv4, Init::KaimingUniform, 1, DType::F64, &dev).unwrap();
        let e = net.set_input_norm(Some(InputNorm { mean: vec![0.1, 0.2], std: vec![1.0, 1.0] })).unwrap_err();
        assert!(e.to_string().contains("per input channel"), "{e}");
        let e = net.set_input_norm(Some(InputNorm { mean: vec![0.1], std: vec![0.0] })).unwrap_err();
        assert!(e.to_string().contains("> 0"), "{e}");
    }

    #[test]
    fn the_raw_buffer_input_gradient_equals_the_staged_candle_path() {
        // f64 ≤ 1e-10 and f32 ≤ 1e-5 (relative), for every layer type: masked weights, both pools,
        // convolutions, standardisation, ties in max-pool windows (all-zero images).
        let loss = |z: &Tensor| -> candle_core::Result<Tensor> {
            let w = Tensor::arange(1.0f64, z.dim(1)? as f64 + 1.0, z.device())?.to_dtype(z.dtype())?;
            z.sqr()?.broadcast_mul(&w)?.sum(1)?.sqrt()
        };
        let mut rng = Rng::new(8);
        let avg = Arch::Lenet5Caffe;
        for (arch, shape, pool_avg) in [
            (Arch::Lenet300100, vec![4, 1, 28, 28], false),
            (Arch::Lenet5Caffe, vec![3, 1, 28, 28], false),
            (avg.clone(), vec![3, 1, 28, 28], true),
            (Arch::Conv4, vec![2, 3, 32, 32], false),
        ] {
            for dtype in [DType::F64, DType::F32] {
                let mut net = Net::init(&arch, Init::KaimingUniform, 2, DType::F64, &Device::Cpu).unwrap();
                for name in net.weight_names() {
                    let w = net.param(&name).unwrap().as_tensor().clone();
                    let m: Vec<f64> = (0..w.elem_count()).map(|_| f64::from(u8::from(rng.uniform() < 0.6))).collect();
                    net.set_mask(&name, &Tensor::from_vec(m, w.shape(), &Device::Cpu).unwrap()).unwrap();
                }
                net.set_input_norm(Some(InputNorm { mean: vec![0.25], std: vec![0.5] })).unwrap();
                let net = net.to_dtype(dtype).unwrap();
                let stages: Vec<Stage> = net
                    .stages()
                    .into_iter()
                    .map(|s| if pool_avg && matches!(s, Stage::MaxPool2) { Stage::AvgPool2 } else { s })
                    .collect();
                let n: usize = shape.iter().product();
                // The last image is blank: every max-pool window of its first layer is a tie.
                let mut v: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
                let per = n / shape[0];
                v[n - per..].iter_mut().for_each(|p| *p = 0.0);
                let x = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                let (fl, fls, fg) = crate::fast::loss_and_input_grad(&stages, &x, &loss).unwrap().unwrap();
                let st: Vec<Stage> = stages.iter().cloned().map(detach_stage).collect();
                let (sl, inputs) = awt_base::forward_keep(&st, &x).unwrap();
                let lv = Var::from_tensor(&sl).unwrap();
                let l = loss(lv.as_tensor()).unwrap();
                let v = l.sum_all().unwrap().backward().unwrap().get(lv.as_tensor()).unwrap().clone();
                let sg = awt_base::backward_stages(&st, &inputs, &v).unwrap();
                let tol = if dtype == DType::F64 { 1e-10 } else { 1e-5 };
                let rel = |a: &Tensor, b: &Tensor| {
                    let a = a.to_dtype(DType::F64).unwrap();
                    let b = b.to_dtype(DType::F64).unwrap();
                    let d = (&a - &b)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .max(0)
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap();
                    let s = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
                    d / s.max(1e-30)
                };
                assert!(rel(&fl, &sl) <= tol, "{arch} {dtype:?}: logits differ by {}", rel(&fl, &sl));
                assert!(rel(&fls, &l) <= tol, "{arch} {dtype:?}: losses differ");
                assert!(
                    rel(&fg, &sg) <= tol,
                    "{arch} avg={pool_avg} {dtype:?}: input gradients differ by {}",
                    rel(&fg, &sg)
                );
            }
        }
    }

    #[test]
    fn all_ones_mask_equals_dense() {
        let a = Arch::Lenet5Caffe;
        let dense = Net::init(&a, Init::KaimingUniform, 0, DType::F32, &Device::Cpu).unwrap();
        let mut masked = dense.clone();
        for n in dense.weight_names() {
            let w = dense.param(&n).unwrap();
            masked.set_mask(&n, &w.ones_like().unwrap()).unwrap();
        }
        let mut rng = Rng::new(0);
        let x = Tensor::from_vec(rng.uniform_vec_f32(3 * 784, 0.0, 1.0), (3, 1, 28, 28), &Device::Cpu).unwrap();
        let a = dense.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = masked.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
    }
}
