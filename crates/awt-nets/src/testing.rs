//! For tests: the peer fixtures' formula networks (`benches/peers/formulas.py` computes the same
//! parameters), shared by the tests that compare awt against independent implementations.

use awt_base::testing::{formula_mask, formula_values};
use candle_core::{DType, Device, Tensor};

use crate::{Arch, Init, LayerDef, Net};

/// `arch` in f64 on the CPU with the formula's parameters ([`formula_values`]: parameters numbered
/// in forward order, weight before bias, each flat in PyTorch's layout), and, when `masked`, each
/// weight masked by [`formula_mask`] (the weights themselves left as they are).
pub fn formula_net(arch: &Arch, masked: bool) -> Net {
    let mut net =
        Net::init(arch, Init::KaimingUniform, 0, DType::F64, &Device::Cpu).expect("an architecture of the zoo");
    let layers = arch.layers().into_iter().filter_map(|l| match l {
        LayerDef::Linear { name, .. } | LayerDef::Conv { name, .. } => Some(name),
        _ => None,
    });
    for (l, layer) in layers.enumerate() {
        let (wn, bn) = (format!("{layer}.weight"), format!("{layer}.bias"));
        let w = net.param(&wn).expect("every layer has a weight").as_tensor().clone();
        let b = net.param(&bn).expect("every layer has a bias").as_tensor().clone();
        let fan_in: usize = w.dims()[1..].iter().product();
        let set = |name: &str, v: Vec<f64>, like: &Tensor| {
            let t = Tensor::from_vec(v, like.shape(), &Device::Cpu).expect("the parameter's size");
            net.param(name).expect("present").set(&t).expect("same shape and dtype");
        };
        set(&wn, formula_values(2 * l, w.elem_count(), fan_in, false), &w);
        set(&bn, formula_values(2 * l + 1, b.elem_count(), fan_in, true), &b);
        if masked {
            let m = Tensor::from_vec(formula_mask(2 * l, w.elem_count()), w.shape(), &Device::Cpu).expect("size");
            net.set_mask(&wn, &m).expect("a mask of the weight's shape");
        }
    }
    net
}
