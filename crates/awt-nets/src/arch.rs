//! Architectures by name, and their layer lists.

use std::fmt;

/// A named architecture from the paper, or a generic MLP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arch {
    /// 784-300-100-10 fully connected, ReLU.
    Lenet300100,
    /// conv 20@5×5, max-pool, conv 50@5×5, max-pool, fc 500, fc 10 (28×28×1 input, valid padding).
    Lenet5Caffe,
    /// conv 64, 64, pool, 128, 128, pool, fc 512, fc 10 (3×3, valid, 32×32×3 input).
    Conv4,
    /// A fully connected net with the given widths, input first and classes last
    /// (`mlp-784-64-10`). Inputs of any shape are flattened first.
    Mlp(Vec<usize>),
}

/// One layer of an architecture, in forward order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerDef {
    /// Fully connected layer `name` with `(out, in)` weight.
    Linear {
        /// Parameter prefix.
        name: String,
        /// Input features.
        inp: usize,
        /// Output features.
        out: usize,
    },
    /// Convolution `name` with `(out, inp, k, k)` weight, stride 1, no padding.
    Conv {
        /// Parameter prefix.
        name: String,
        /// Input channels.
        inp: usize,
        /// Output channels.
        out: usize,
        /// Kernel size.
        k: usize,
    },
    /// ReLU.
    Relu,
    /// 2×2 max-pool, stride 2.
    MaxPool2,
    /// 2×2 average pool, stride 2.
    AvgPool2,
    /// Flatten to `(batch, features)`.
    Flatten,
}

impl Arch {
    /// Every architecture name the zoo knows (MLPs are `mlp-<w0>-<w1>-...`).
    pub const NAMES: [&'static str; 3] = ["lenet-300-100", "lenet5-caffe", "conv4"];
}

impl std::str::FromStr for Arch {
    type Err = awt_base::UnknownName;

    /// Parses `lenet-300-100`, `lenet5-caffe`, `conv4` or `mlp-784-64-10`.
    fn from_str(name: &str) -> Result<Arch, Self::Err> {
        match name {
            "lenet-300-100" => Ok(Arch::Lenet300100),
            "lenet5-caffe" => Ok(Arch::Lenet5Caffe),
            "conv4" => Ok(Arch::Conv4),
            _ => {
                if let Some(rest) = name.strip_prefix("mlp-") {
                    let widths: Result<Vec<usize>, _> = rest.split('-').map(str::parse::<usize>).collect();
                    match widths {
                        Ok(w) if w.len() >= 2 && w.iter().all(|&x| x > 0) => {
                            return Ok(Arch::Mlp(w));
                        }
                        _ => {}
                    }
                }
                Err(awt_base::UnknownName {
                    what: "architecture",
                    got: name.to_string(),
                    expected: format!(
                        "one of {} or mlp-<in>-<hidden>...-<classes> (e.g. mlp-784-64-10)",
                        Arch::NAMES.join(", ")
                    ),
                })
            }
        }
    }
}

impl Arch {
    /// Input shape without the batch dimension `(c, h, w)`, or `(features,)` for a generic MLP.
    pub fn input_shape(&self) -> Vec<usize> {
        match self {
            Arch::Lenet300100 | Arch::Lenet5Caffe => vec![1, 28, 28],
            Arch::Conv4 => vec![3, 32, 32],
            Arch::Mlp(w) => vec![w[0]],
        }
    }

    /// Number of classes (logits).
    pub fn classes(&self) -> usize {
        match self {
            Arch::Mlp(w) => *w.last().expect("MLP has widths"),
            _ => 10,
        }
    }

    /// The layers in forward order.
    pub fn layers(&self) -> Vec<LayerDef> {
        let lin = |name: &str, inp, out| LayerDef::Linear { name: name.into(), inp, out };
        let conv = |name: &str, inp, out, k| LayerDef::Conv { name: name.into(), inp, out, k };
        use LayerDef::{Flatten, MaxPool2, Relu};
        match self {
            Arch::Lenet300100 => {
                vec![Flatten, lin("fc1", 784, 300), Relu, lin("fc2", 300, 100), Relu, lin("fc3", 100, 10)]
            }
            Arch::Lenet5Caffe => vec![
                conv("conv1", 1, 20, 5),
                Relu,
                MaxPool2,
                conv("conv2", 20, 50, 5),
                Relu,
                MaxPool2,
                Flatten,
                lin("fc1", 800, 500),
                Relu,
                lin("fc2", 500, 10),
            ],
            Arch::Conv4 => vec![
                conv("conv1", 3, 64, 3),
                Relu,
                conv("conv2", 64, 64, 3),
                Relu,
                MaxPool2,
                conv("conv3", 64, 128, 3),
                Relu,
                conv("conv4", 128, 128, 3),
                Relu,
                MaxPool2,
                Flatten,
                lin("fc1", 3200, 512),
                Relu,
                lin("fc2", 512, 10),
            ],
            Arch::Mlp(w) => {
                let mut v = vec![Flatten];
                for i in 0..w.len() - 1 {
                    if i > 0 {
                        v.push(Relu);
                    }
                    v.push(lin(&format!("fc{}", i + 1), w[i], w[i + 1]));
                }
                v
            }
        }
    }

    /// The output layer's weight (`fc3.weight` in LeNet-300-100): the layer a mask keeps dense when
    /// no class may be cut off.
    pub fn output_weight(&self) -> String {
        let last = self.layers().into_iter().rev().find_map(|l| match l {
            LayerDef::Linear { name, .. } | LayerDef::Conv { name, .. } => Some(name),
            _ => None,
        });
        format!("{}.weight", last.expect("every architecture has a weighted layer"))
    }

    /// Per-example element count of every layer's output, in forward order (the input excluded).
    pub fn activation_sizes(&self) -> Vec<usize> {
        let mut shape = self.input_shape();
        self.layers()
            .iter()
            .map(|l| {
                match l {
                    LayerDef::Linear { out, .. } => shape = vec![*out],
                    LayerDef::Conv { out, k, .. } => {
                        shape = vec![*out, shape[1].saturating_sub(k - 1), shape[2].saturating_sub(k - 1)]
                    }
                    LayerDef::MaxPool2 | LayerDef::AvgPool2 => shape = vec![shape[0], shape[1] / 2, shape[2] / 2],
                    LayerDef::Flatten => shape = vec![shape.iter().product()],
                    LayerDef::Relu => {}
                }
                shape.iter().product()
            })
            .collect()
    }

    /// Number of parameters (weights and biases), or `None` when it does not fit in a `u64`.
    pub fn param_count(&self) -> Option<u64> {
        self.layers().iter().try_fold(0u64, |acc, l| {
            let n = match l {
                LayerDef::Linear { inp, out, .. } => {
                    (*inp as u64).checked_mul(*out as u64)?.checked_add(*out as u64)?
                }
                LayerDef::Conv { inp, out, k, .. } => (*inp as u64)
                    .checked_mul(*out as u64)?
                    .checked_mul((*k as u64).checked_mul(*k as u64)?)?
                    .checked_add(*out as u64)?,
                _ => 0,
            };
            acc.checked_add(n)
        })
    }

    /// `(name, shape)` of every parameter, sorted by name (the checkpoint order).
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for l in self.layers() {
            match l {
                LayerDef::Linear { name, inp, out } => {
                    v.push((format!("{name}.weight"), vec![out, inp]));
                    v.push((format!("{name}.bias"), vec![out]));
                }
                LayerDef::Conv { name, inp, out, k } => {
                    v.push((format!("{name}.weight"), vec![out, inp, k, k]));
                    v.push((format!("{name}.bias"), vec![out]));
                }
                _ => {}
            }
        }
        v.sort();
        v
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::Lenet300100 => f.write_str("lenet-300-100"),
            Arch::Lenet5Caffe => f.write_str("lenet5-caffe"),
            Arch::Conv4 => f.write_str("conv4"),
            Arch::Mlp(w) => {
                f.write_str("mlp")?;
                for x in w {
                    write!(f, "-{x}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for n in ["lenet-300-100", "lenet5-caffe", "conv4", "mlp-784-64-10", "mlp-3-2"] {
            assert_eq!(n.parse::<Arch>().unwrap().to_string(), n);
        }
        for bad in ["lenet", "mlp-", "mlp-3", "mlp-3-0", "mlp-a-b"] {
            let e = bad.parse::<Arch>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("lenet-300-100"), "{e}");
        }
    }

    #[test]
    fn parameter_counts_match_the_paper_networks() {
        let count = |a: Arch| a.param_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum::<usize>();
        assert_eq!(count(Arch::Lenet300100), 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10);
        assert_eq!(count(Arch::Lenet5Caffe), 20 * 25 + 20 + 50 * 20 * 25 + 50 + 800 * 500 + 500 + 5000 + 10);
        assert_eq!(
            count(Arch::Conv4),
            64 * 27 + 64 + 64 * 64 * 9 + 64 + 128 * 64 * 9 + 128 + 128 * 128 * 9 + 128 + 3200 * 512 + 512 + 5120 + 10
        );
    }

    #[test]
    fn activation_sizes_follow_the_layers_to_the_logits() {
        // LeNet-5: conv 24×24×20, ReLU, pool 12×12×20, conv 8×8×50, ReLU, pool 4×4×50, flatten, 500, ReLU, 10.
        let v = [11520, 11520, 2880, 3200, 3200, 800, 800, 500, 500, 10];
        assert_eq!(Arch::Lenet5Caffe.activation_sizes(), v);
        assert_eq!(Arch::Lenet300100.activation_sizes(), [784, 300, 300, 100, 100, 10]);
        for a in [Arch::Lenet300100, Arch::Lenet5Caffe, Arch::Conv4, Arch::Mlp(vec![3, 2])] {
            assert_eq!(*a.activation_sizes().last().unwrap(), a.classes(), "{a}");
        }
    }
}
