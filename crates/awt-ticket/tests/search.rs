//! The AWT search does what it claims: on LeNet-300-100 at density 0.05 with the embedded data it
//! at least halves the relative kernel distance to the dense teacher on a held-out adversarial
//! batch, compared with the initial magnitude mask; and the loss gradient it descends is the true
//! one (finite differences in f64 on a small net).

use awt_attack::Pgd;
use awt_base::Staged;
use awt_data::LoadOptions;
use awt_nets::{Arch, Init, Net};
use awt_ntk::{Kind, structured};
use awt_ticket::{Method, SearchConfig, WeightsFrom, kernel_distance, search};
use candle_core::{DType, Device, Module, Tensor};

/// The density `x`.
fn d(x: f64) -> awt_runs::Density {
    awt_runs::Density::new(x).unwrap()
}

#[test]
fn awt_search_halves_the_held_out_adversarial_kernel_distance() {
    let dev = Device::Cpu;
    let ds = awt_data::load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    let teacher = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 0, DType::F32, &dev).unwrap();
    // Held-out adversarial batch: PGD against the teacher on test images.
    let idx: Vec<usize> = (0..64).collect();
    let (x, y) = ds.test.batch(&idx, &dev).unwrap();
    let pgd = Pgd::linf(0.1, 10, 0.025, 9);
    let xa = pgd.last_iterate(&teacher, &x, &y, &(0..64).collect::<Vec<u64>>()).unwrap();
    let (x1, x2) = (xa.narrow(0, 0, 32).unwrap(), xa.narrow(0, 32, 32).unwrap());
    // The initial magnitude mask, as the search starts from.
    let cfg = SearchConfig {
        steps: 300,
        lr: 5e-3,
        lambda_ker: 1.0,
        attack_steps: 5,
        attack_step_size: 0.04,
        ..SearchConfig::defaults(Method::Awt, d(0.05))
    };
    let mut zero = teacher.deep_clone().unwrap();
    let weights = teacher
        .weight_names()
        .into_iter()
        .map(|k| (k.clone(), teacher.param(&k).unwrap().as_tensor().clone()))
        .collect();
    let masks =
        awt_prune::select(&awt_prune::scores::magnitude(&weights).unwrap(), d(0.05), awt_prune::Allocation::Uniform)
            .unwrap();
    for (k, m) in &masks {
        zero.set_mask(k, m).unwrap();
    }
    let before = kernel_distance(&zero, &teacher, &x1, &x2).unwrap();
    let t = search(&teacher, &ds.train, &cfg.validate().unwrap(), &mut |_| {}).unwrap();
    let after = kernel_distance(&t.net, &teacher, &x1, &x2).unwrap();
    assert!(after <= 0.5 * before, "held-out adversarial kernel distance {before:.3} → {after:.3}: not halved");
    // The ticket is exactly at the density, its pruned weights are zero, and the log is complete.
    for (k, m) in t.net.masks() {
        let kept = m.sum_all().unwrap().to_scalar::<f32>().unwrap() as usize;
        assert_eq!(kept, (0.05 * m.elem_count() as f64).round() as usize, "{k}");
        let leak = t
            .net
            .param(k)
            .unwrap()
            .as_tensor()
            .mul(&(1.0 - m).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(leak, 0.0);
    }
    assert_eq!(t.log.len(), 300);
    assert!(t.log.iter().any(|l| l.mask_changes > 0));
    assert_eq!(t.net.meta["method"], "awt");
    let _ = (structured(&t.net.stages(), &x1, &x2, Kind::Trace).unwrap(), t.net.forward(&x1).unwrap());
}

#[test]
fn rewound_tickets_keep_the_teachers_weights_under_the_final_mask() {
    let dev = Device::Cpu;
    let ds = awt_data::load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    let teacher = Net::init(&Arch::Mlp(vec![784, 32, 10]), Init::KaimingUniform, 1, DType::F32, &dev).unwrap();
    let cfg = SearchConfig {
        steps: 20,
        mask_every: 5,
        weights: WeightsFrom::Rewind,
        ..SearchConfig::defaults(Method::Ntt, d(0.2))
    };
    let t = search(&teacher, &ds.train, &cfg.clone().validate().unwrap(), &mut |_| {}).unwrap();
    for (k, m) in t.net.masks() {
        let expect = teacher.param(k).unwrap().as_tensor().mul(m).unwrap();
        let got = t.net.param(k).unwrap().as_tensor();
        assert_eq!(
            expect.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
    // A density out of (0, 1] cannot be made (`awt_runs::Density`), so the config has none to refuse.
    let _ = Tensor::zeros(1, DType::F32, &dev);
}

#[test]
fn hydra_optimises_scores_under_the_robust_loss_and_keeps_pretrained_weights() {
    use awt_prune::{Allocation, scores, select};
    let dev = Device::Cpu;
    let ds = awt_data::load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    let pretrained = Net::init(&Arch::Mlp(vec![784, 64, 10]), Init::KaimingUniform, 3, DType::F32, &dev).unwrap();
    let train = ds.train.subset(0, 512).unwrap();
    let tmp = std::env::temp_dir().join(format!("awt-hydra-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let cfg = awt_ticket::HydraConfig {
        density: d(0.1),
        epochs: 2,
        lr: 0.1,
        eps: 0.1,
        steps: 3,
        step_size: 0.04,
        batch: 128,
        seed: 0,
        keep_dense: vec!["fc2.weight".into()],
    };
    let t = awt_ticket::hydra(&pretrained, &train, &ds.test, &cfg, &tmp).unwrap();
    let weights = pretrained
        .weight_names()
        .into_iter()
        .map(|k| (k.clone(), pretrained.param(&k).unwrap().as_tensor().clone()))
        .collect();
    let magnitude = select(&scores::magnitude(&weights).unwrap(), d(0.1), Allocation::Uniform).unwrap();
    let mut moved = 0.0;
    for (k, m) in t.masks() {
        let kept = m.sum_all().unwrap().to_scalar::<f32>().unwrap() as usize;
        // The output layer is kept whole and counted in the density; fc1 keeps the rest of 10 %.
        let want = if k == "fc2.weight" { 640 } else { (0.1f64 * 50_816.0).round() as usize - 640 };
        assert_eq!(kept, want, "{k}");
        let expect =
            pretrained.param(k).unwrap().as_tensor().mul(m).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(t.param(k).unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(), expect);
        moved +=
            m.ne(&magnitude[k]).unwrap().to_dtype(DType::F32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    }
    assert!(moved > 0.0, "score optimisation left the magnitude mask unchanged");
    assert_eq!(t.meta["method"], "hydra");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn search_loss_gradient_matches_finite_differences_in_f64() {
    use awt_ticket::loss_terms;
    let dev = Device::Cpu;
    let teacher = Net::init(&Arch::Mlp(vec![10, 8, 6, 4]), Init::KaimingUniform, 2, DType::F64, &dev).unwrap();
    let mut student = teacher.deep_clone().unwrap();
    let mut r = awt_base::Rng::new(4);
    let mut masks = std::collections::BTreeMap::new();
    for k in student.weight_names() {
        let w = student.param(&k).unwrap().as_tensor().clone();
        let m: Vec<f64> = (0..w.elem_count()).map(|_| if r.uniform() < 0.5 { 1.0 } else { 0.0 }).collect();
        let m = Tensor::from_vec(m, w.shape(), &dev).unwrap();
        student.set_mask(&k, &m).unwrap();
        masks.insert(k, m);
    }
    // Move the student away from the teacher so every term is non-trivial.
    for v in student.params().values() {
        let noise: Vec<f64> = (0..v.elem_count()).map(|_| 0.1 * r.normal()).collect();
        v.set(&(v.as_tensor() + Tensor::from_vec(noise, v.shape(), &dev).unwrap()).unwrap()).unwrap();
    }
    let inputs = Tensor::from_vec((0..60).map(|_| r.uniform()).collect::<Vec<f64>>(), (6, 10), &dev).unwrap();
    let cfg = SearchConfig { lambda_ker: 0.7, lambda_l2: 0.05, ..SearchConfig::defaults(Method::Awt, d(0.5)) };
    let total = |s: &Net| -> Tensor {
        let t = loss_terms(s, &teacher, &inputs, &masks, &cfg).unwrap();
        ((t.kernel_term + t.output_term).unwrap() + t.l2_term).unwrap()
    };
    let grads = total(&student).backward().unwrap();
    for (name, var) in student.params() {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            None => vec![0.0; var.elem_count()],
        };
        let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for i in (0..base.len()).step_by(3) {
            let at = |v: f64| {
                let mut p = base.clone();
                p[i] = v;
                var.set(&Tensor::from_vec(p, var.shape(), &dev).unwrap()).unwrap();
                let l = total(&student).to_scalar::<f64>().unwrap();
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &dev).unwrap()).unwrap();
                l
            };
            let h = 1e-6;
            let fd = (at(base[i] + h) - at(base[i] - h)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "{name}[{i}]: finite difference {fd} vs backward {}",
                g[i]
            );
        }
    }
}

/// A search stopped at a saved state and resumed from it ends bit-identical to one never stopped:
/// the same ticket weights and masks, the same log from the resumed step on, and the state's
/// optimiser moments carried over (a resume with fresh Adam moments would differ). For NTT and for
/// AWT (whose per-step attack seed derives from the step), across mask re-selections.
#[test]
fn a_resumed_search_is_bit_identical_to_an_uninterrupted_one() {
    use awt_ticket::{Checkpoints, SearchState, search_resumable};
    let dev = Device::Cpu;
    let ds = awt_data::load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    let teacher = Net::init(&Arch::Mlp(vec![784, 32, 16, 10]), Init::KaimingUniform, 3, DType::F32, &dev).unwrap();
    for method in [Method::Ntt, Method::Awt] {
        let cfg = SearchConfig { steps: 24, mask_every: 5, attack_steps: 2, ..SearchConfig::defaults(method, d(0.2)) }
            .validate()
            .unwrap();
        let full = search(&teacher, &ds.train, &cfg, &mut |_| {}).unwrap();
        let mut states: Vec<SearchState> = Vec::new();
        let mut keep = |s: &SearchState| {
            states.push(s.clone());
            Ok(())
        };
        let ck = Checkpoints { every: 7, resume: None, save: &mut keep };
        let again = search_resumable(&teacher, &ds.train, &cfg, ck, &mut |_| {}).unwrap();
        assert_eq!(states.iter().map(|s| s.step).collect::<Vec<_>>(), vec![7, 14, 21]);
        assert_eq!(again.log, full.log, "checkpointing changed the search");
        let flat = |n: &Net| -> Vec<Vec<f32>> {
            n.params()
                .values()
                .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .chain(n.masks().values().map(|m| m.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
                .collect()
        };
        let mut never = |_: &SearchState| Ok(());
        // Through the state file, as `awt ticket --resume` reads it.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.search.state.safetensors");
        states[1].save(&file, "this search").unwrap();
        let e = SearchState::load(&file, "another search", &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("t.search.state.safetensors") && e.contains("another search"), "{e}");
        let from = SearchState::load(&file, "this search", &Device::Cpu).unwrap();
        assert_eq!((from.step, from.opt_steps), (14, states[1].opt_steps));
        let ck = Checkpoints { every: 0, resume: Some(from.clone()), save: &mut never };
        let resumed = search_resumable(&teacher, &ds.train, &cfg, ck, &mut |_| {}).unwrap();
        assert_eq!(resumed.log, full.log[14..], "{method:?}: the resumed log differs");
        assert_eq!(flat(&resumed.net), flat(&full.net), "{method:?}: the resumed ticket differs");
        // The optimiser's moments matter: dropping them changes the result.
        let mut no_moments = from;
        no_moments.tensors.retain(|(k, _)| !k.starts_with("opt."));
        let ck = Checkpoints { every: 0, resume: Some(no_moments), save: &mut never };
        let wrong = search_resumable(&teacher, &ds.train, &cfg, ck, &mut |_| {}).unwrap();
        assert_ne!(flat(&wrong.net), flat(&full.net), "{method:?}: the test cannot tell a bad resume");
    }
}

/// With the output layer kept dense, every re-selected mask keeps it whole, the other layers share
/// the rest of the density, and the ticket's metadata says so.
#[test]
fn a_search_keeps_the_output_layer_dense_when_asked() {
    let ds = awt_data::load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    let teacher =
        Net::init(&Arch::Mlp(vec![784, 32, 16, 10]), Init::KaimingUniform, 3, DType::F32, &Device::Cpu).unwrap();
    let cfg = SearchConfig {
        steps: 12,
        mask_every: 5,
        attack_steps: 2,
        keep_dense: vec!["fc3.weight".into()],
        ..SearchConfig::defaults(Method::Awt, d(0.05))
    }
    .validate()
    .unwrap();
    let t = search(&teacher, &ds.train, &cfg, &mut |_| {}).unwrap();
    let kept = |k: &str| t.net.masks()[k].sum_all().unwrap().to_scalar::<f32>().unwrap() as usize;
    assert_eq!(kept("fc3.weight"), 160);
    // round(0.05 · 25,760) = 1,288 weights in all, 1,128 of them in fc1 and fc2.
    let rest = kept("fc1.weight") + kept("fc2.weight");
    assert!(rest.abs_diff(1128) <= 1, "{rest}");
    assert!(t.log.iter().any(|l| l.mask_changes > 0), "the masks were never re-selected");
    assert!(t.net.meta["search"].ends_with(" keep_dense=fc3.weight"), "{}", t.net.meta["search"]);
}
