//! The structured kernel against an independent implementation: neural-tangents' empirical NTK
//! (structured derivatives, checked there against its Jacobian contraction), stored as a fixture by
//! `benches/peers/nt_fixture.py` in float64 for LeNet-300-100 and LeNet-5-Caffe with average pools
//! (the LeNet-5 stax can build), dense and under a sparse mask, for X1 = X2 (the Gram path) and
//! X1 ≠ X2. The weights, masks and inputs are formulas both sides compute (see the script), so the
//! fixture holds only the kernels.

use awt_base::{Stage, Staged};
use awt_nets::Arch;
use awt_nets::testing::formula_net;
use awt_ntk::{Kind, structured, trace_full};
use candle_core::{Device, Tensor};

const FIXTURE: &str = include_str!("data/neural-tangents.json");

/// `0.5 + 0.5 sin(0.11 e + 2.1 i + 0.7 s)`, as `(n, 1, 28, 28)`.
fn inputs(s: usize, n: usize) -> Tensor {
    let v: Vec<f64> = (0..n)
        .flat_map(|i| (0..784).map(move |e| 0.5 + 0.5 * (0.11 * e as f64 + 2.1 * i as f64 + 0.7 * s as f64).sin()))
        .collect();
    Tensor::from_vec(v, (n, 1, 28, 28), &Device::Cpu).unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let max = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
    max(&(a - b).unwrap()) / max(b)
}

fn check(key: &str, arch: Arch, avg_pools: bool) {
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let (n1, n2) = (fixture["n1"].as_u64().unwrap() as usize, fixture["n2"].as_u64().unwrap() as usize);
    let (x1, x2) = (inputs(1, n1), inputs(2, n2));
    for masked in [false, true] {
        let net = formula_net(&arch, masked);
        let stages: Vec<Stage> = net
            .stages()
            .into_iter()
            .map(|s| if avg_pools && matches!(s, Stage::MaxPool2) { Stage::AvgPool2 } else { s })
            .collect();
        for (same, b) in [(true, &x1), (false, &x2)] {
            let case = format!("{}-{}", if masked { "masked" } else { "dense" }, if same { "same" } else { "pair" });
            let k = &fixture[key][&case];
            let shape: Vec<usize> =
                k["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            let v: Vec<f64> = k["kernel"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let theirs = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap();
            let ours = structured(&stages, &x1, b, Kind::Full).unwrap();
            let e = rel_err(&ours, &theirs);
            assert!(e <= 1e-10, "{key} {case}: relative error {e:.3e} against neural-tangents");
            let traced = structured(&stages, &x1, b, Kind::Trace).unwrap();
            let e = rel_err(&traced, &trace_full(&theirs, n1, b.dim(0).unwrap()).unwrap());
            assert!(e <= 1e-10, "{key} {case}: traced kernel off by {e:.3e} against neural-tangents");
        }
    }
}

#[test]
fn lenet_300_100_kernel_equals_neural_tangents() {
    check("lenet-300-100", Arch::Lenet300100, false);
}

#[test]
fn lenet5_kernel_equals_neural_tangents() {
    check("lenet5-caffe-avgpool", Arch::Lenet5Caffe, true);
}
