//! Checkpoint round trips, the PyTorch-layout claim (checked by an independent f64 forward pass
//! that reads the file with the plain safetensors crate), and every malformed-file error.

use std::collections::HashMap;
use std::path::Path;

use awt_base::Rng;
use awt_nets::{Arch, Init, Net, load, save};
use candle_core::{DType, Device, Module, Tensor};

fn dev() -> Device {
    Device::Cpu
}

fn masked_lenet(seed: u64) -> Net {
    let mut net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, seed, DType::F32, &dev()).unwrap();
    let mut rng = Rng::new(42);
    let m: Vec<f32> = (0..300 * 784).map(|_| if rng.uniform() < 0.3 { 1.0 } else { 0.0 }).collect();
    net.set_mask("fc1.weight", &Tensor::from_vec(m, (300, 784), &dev()).unwrap()).unwrap();
    net.meta.insert("git_commit".into(), "abc123".into());
    net
}

/// Writes a safetensors file from (name, shape, f32 values) with optional metadata.
fn write_raw(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)], meta: Option<HashMap<String, String>>) {
    let ts: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, s, v)| (n.to_string(), Tensor::from_vec(v.clone(), s.as_slice(), &dev()).unwrap()))
        .collect();
    let bytes = safetensors::serialize(ts.iter().map(|(k, t)| (k.as_str(), t)), meta).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn expect_error(path: &Path, arch: Option<&Arch>, needle: &str) {
    let e = load(path, arch, DType::F32, &dev()).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "error does not name the file: {e}");
    assert!(e.contains(needle), "expected `{needle}` in: {e}");
}

#[test]
fn round_trip_is_exact_and_keeps_masks_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let net = masked_lenet(0);
    save(&net, &p).unwrap();
    let back = load(&p, None, DType::F32, &dev()).unwrap();
    assert!(!back.foreign);
    let back = back.net;
    assert_eq!(back.meta["arch"], "lenet-300-100");
    assert_eq!(back.meta["seed"], "0");
    assert_eq!(back.meta["git_commit"], "abc123");
    assert_eq!(back.masks().len(), 1);
    let x = Tensor::from_vec(Rng::new(1).uniform_vec_f32(4 * 784, 0.0, 1.0), (4, 1, 28, 28), &dev()).unwrap();
    let a = net.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = back.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
    // The stored weight is the masked one.
    let st = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    let w = st.tensor("fc1.weight").unwrap();
    let m = st.tensor("fc1.weight_mask").unwrap();
    let w: Vec<f32> = w.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let m: Vec<f32> = m.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert!(w.iter().zip(&m).all(|(w, m)| *m == 1.0 || *w == 0.0));
}

#[test]
fn logits_match_an_independent_f64_forward_pass_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let net = masked_lenet(7);
    save(&net, &p).unwrap();
    // Independent reader: plain safetensors + loops, PyTorch semantics y = x Wᵀ + b.
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let get = |n: &str| -> Vec<f64> {
        st.tensor(n).unwrap().data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
    };
    let layer = |x: &[f64], w: &[f64], b: &[f64], relu: bool| -> Vec<f64> {
        let (o, i) = (b.len(), x.len());
        (0..o)
            .map(|r| {
                let s = b[r] + (0..i).map(|c| w[r * i + c] * x[c]).sum::<f64>();
                if relu { s.max(0.0) } else { s }
            })
            .collect()
    };
    let xs = Rng::new(3).uniform_vec_f32(3 * 784, 0.0, 1.0);
    let x = Tensor::from_vec(xs.clone(), (3, 1, 28, 28), &dev()).unwrap();
    let got = net.forward(&x).unwrap().to_vec2::<f32>().unwrap();
    for (s, row) in got.iter().enumerate() {
        let x0: Vec<f64> = xs[s * 784..(s + 1) * 784].iter().map(|&v| v as f64).collect();
        let h1 = layer(&x0, &get("fc1.weight"), &get("fc1.bias"), true);
        let h2 = layer(&h1, &get("fc2.weight"), &get("fc2.bias"), true);
        let out = layer(&h2, &get("fc3.weight"), &get("fc3.bias"), false);
        for (a, b) in row.iter().zip(&out) {
            assert!((*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn foreign_state_dict_needs_arch_and_then_loads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("torch.safetensors");
    let shapes = Arch::Mlp(vec![4, 3, 2]).param_shapes();
    let ts: Vec<(&str, Vec<usize>, Vec<f32>)> =
        shapes.iter().map(|(n, s)| (n.as_str(), s.clone(), vec![0.5; s.iter().product()])).collect();
    write_raw(&p, &ts, None);
    expect_error(&p, None, "--arch");
    let l = load(&p, Some(&Arch::Mlp(vec![4, 3, 2])), DType::F64, &dev()).unwrap();
    assert!(l.foreign);
    assert_eq!(l.net.dtype(), DType::F64);
    expect_error(&p, Some(&Arch::Mlp(vec![4, 5, 2])), "shape");
}

/// CI once failed on this: an IMP round's checkpoint whose header length happened to be 0x..80 was
/// refused as a PyTorch pickle (a pickle also opens with 0x80). Every residue of the header length
/// modulo 256 must load, whatever the first byte of the length.
#[test]
fn every_header_length_loads_even_one_whose_first_byte_looks_like_a_pickle() {
    let dir = tempfile::tempdir().unwrap();
    let arch = Arch::Mlp(vec![3, 2]);
    let mut firsts = std::collections::BTreeSet::new();
    for pad in 0..300 {
        let mut net = Net::init(&arch, Init::KaimingUniform, 0, DType::F32, &dev()).unwrap();
        net.meta.insert("pad".into(), "x".repeat(pad));
        let p = dir.path().join(format!("m{pad}.safetensors"));
        save(&net, &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        firsts.insert(bytes[0]);
        let back =
            load(&p, None, DType::F32, &dev()).unwrap_or_else(|e| panic!("pad {pad}, first byte {:#x}: {e}", bytes[0]));
        assert_eq!(back.net.meta["pad"].len(), pad);
    }
    assert!(firsts.contains(&0x80), "no header length with first byte 0x80 was tried: {firsts:?}");
}

#[test]
fn malformed_files_are_reported_with_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    save(&masked_lenet(0), &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let pickle = dir.path().join("m.pt");
    std::fs::write(&pickle, [0x80, 0x02, b'c']).unwrap();
    expect_error(&pickle, None, "pickle");
    let zip = dir.path().join("z.pt");
    std::fs::write(&zip, b"PK\x03\x04rest").unwrap();
    expect_error(&zip, None, "convert");

    let trunc = dir.path().join("trunc.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() - 100]).unwrap();
    expect_error(&trunc, None, "truncated");
    let tiny = dir.path().join("tiny.safetensors");
    std::fs::write(&tiny, [1, 2, 3]).unwrap();
    expect_error(&tiny, None, "truncated");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!").unwrap();
    expect_error(&junk, None, "malformed");

    let arch = Arch::Mlp(vec![4, 3, 2]);
    let full: Vec<(String, Vec<usize>)> = arch.param_shapes();
    let mk = |skip: &str, extra: bool, nan: bool, bad_shape: bool| {
        let mut v: Vec<(&str, Vec<usize>, Vec<f32>)> = full
            .iter()
            .filter(|(n, _)| n != skip)
            .map(|(n, s)| {
                let mut s = s.clone();
                if bad_shape && n == "fc2.bias" {
                    s = vec![3];
                }
                let mut vals = vec![0.1; s.iter().product()];
                if nan && n == "fc1.weight" {
                    vals[5] = f32::NAN;
                }
                (n.as_str(), s, vals)
            })
            .collect();
        if extra {
            v.push(("fc9.weight", vec![2], vec![0.0, 0.0]));
        }
        v
    };
    let meta = Some(HashMap::from([("arch".to_string(), arch.to_string())]));
    let p = dir.path().join("missing.safetensors");
    write_raw(&p, &mk("fc1.bias", false, false, false), meta.clone());
    expect_error(&p, None, "missing tensors for `mlp-4-3-2`: fc1.bias");
    let p = dir.path().join("extra.safetensors");
    write_raw(&p, &mk("", true, false, false), meta.clone());
    expect_error(&p, None, "unexpected tensors for `mlp-4-3-2`: fc9.weight");
    let p = dir.path().join("nan.safetensors");
    write_raw(&p, &mk("", false, true, false), meta.clone());
    expect_error(&p, None, "tensor `fc1.weight` holds a non-finite value");
    let p = dir.path().join("shape.safetensors");
    write_raw(&p, &mk("", false, false, true), meta.clone());
    expect_error(&p, None, "tensor `fc2.bias` has shape [3]");
    expect_error(&good, Some(&arch), "requested");
}

#[test]
fn failed_save_leaves_the_previous_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    save(&masked_lenet(0), &p).unwrap();
    let before = std::fs::read(&p).unwrap();
    // A path inside a missing folder cannot be written; the old file must be untouched.
    let bad = dir.path().join("nope").join("m.safetensors");
    assert!(save(&masked_lenet(1), &bad).unwrap_err().to_string().contains("nope"));
    assert_eq!(std::fs::read(&p).unwrap(), before);
}
