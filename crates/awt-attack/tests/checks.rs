//! The attack checks of docs/checks.md, on a LeNet-300-100 trained (without adversarial
//! training) on the embedded Fashion-MNIST subset.

use std::sync::OnceLock;

use awt_attack::{
    Apgd, ApgdTargeted, Attack, Checks, FabTargeted, Fgsm, LossKind, Norm, Outcome, Pgd, Square, evaluate_batch,
    input_gradient,
};
use awt_data::{LoadOptions, epoch_order};
use awt_nets::{Arch, Init, Net};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

const N: usize = 200;

struct Fixture {
    net: Net,
    x: Tensor,
    y: Tensor,
    ids: Vec<u64>,
}

/// A naturally trained LeNet-300-100 and the first 200 test images. 20 passes of Adam over the
/// 10k embedded images (about 3 epochs' worth of full Fashion-MNIST): after only 2 passes the
/// net keeps ~12% PGD-20 accuracy at ε = 0.1 (trousers and bags have wide margins), which
/// torchattacks' PGD and APGD confirm on the same checkpoint, so the weakness is the model's.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dev = Device::Cpu;
        let ds = awt_data::load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
        let net = Net::init(&Arch::Lenet300100, Init::KaimingUniform, 0, DType::F32, &dev).unwrap();
        let mut opt =
            AdamW::new(net.vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() }).unwrap();
        for epoch in 0..20 {
            for b in epoch_order(ds.train.len(), 0, epoch).chunks(128) {
                let (x, y) = ds.train.batch(b, &dev).unwrap();
                let loss = candle_nn::loss::cross_entropy(&net.forward(&x).unwrap(), &y).unwrap();
                opt.backward_step(&loss).unwrap();
            }
        }
        let idx: Vec<usize> = (0..N).collect();
        let (x, y) = ds.test.batch(&idx, &dev).unwrap();
        Fixture { net, x, y, ids: (0..N as u64).collect() }
    })
}

fn pgd(eps: f64, steps: usize, restarts: usize) -> Pgd {
    Pgd {
        eps,
        step_size: (eps / 4.0).max(0.005),
        steps,
        norm: Norm::Linf,
        random_start: true,
        restarts,
        loss: LossKind::CrossEntropy,
        seed: 7,
    }
}

fn run(a: &dyn Attack) -> Outcome {
    let f = fixture();
    a.perturb(&f.net, &f.x, &f.y, None, &f.ids).unwrap()
}

fn accuracy(o: &Outcome) -> f64 {
    let clean = clean_correct();
    clean.iter().zip(&o.fooled).filter(|(c, f)| **c && !**f).count() as f64 / N as f64
}

fn clean_correct() -> Vec<bool> {
    let f = fixture();
    let p = f.net.forward(&f.x).unwrap().argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
    p.iter().zip(f.y.to_vec1::<u32>().unwrap()).map(|(a, b)| *a == b).collect()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn attacks(eps: f64) -> Vec<Box<dyn Attack>> {
    vec![
        Box::new(Fgsm { eps, loss: LossKind::CrossEntropy }),
        Box::new(pgd(eps, 10, 1)),
        Box::new(Pgd { loss: LossKind::CwMargin, ..pgd(eps, 10, 1) }),
        Box::new(Apgd { eps, steps: 20, norm: Norm::Linf, restarts: 1, loss: LossKind::CrossEntropy, seed: 1 }),
        Box::new(Apgd { eps, steps: 20, norm: Norm::Linf, restarts: 1, loss: LossKind::Dlr, seed: 1 }),
        Box::new(ApgdTargeted { steps: 10, targets: 3, ..ApgdTargeted::standard(eps, 1) }),
        Box::new(FabTargeted { steps: 10, targets: 3, ..FabTargeted::standard(eps) }),
        Box::new(Square { queries: 200, ..Square::standard(eps, 1) }),
    ]
}

#[test]
fn eps_zero_leaves_inputs_bit_identical_and_accuracy_clean() {
    let f = fixture();
    let clean = clean_correct();
    for a in attacks(0.0) {
        let o = run(a.as_ref());
        let same = o.adv.eq(&f.x).unwrap().to_dtype(DType::F32).unwrap().min_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(same, 1.0, "{} moved inputs at ε = 0", a.name());
        assert_eq!(o.fooled, clean.iter().map(|c| !c).collect::<Vec<_>>(), "{}", a.name());
    }
}

#[test]
fn adversarial_inputs_stay_in_the_ball_and_the_box() {
    let f = fixture();
    for a in attacks(0.1) {
        let o = run(a.as_ref());
        let d = (&o.adv - &f.x).unwrap();
        assert!(max_abs(&d) <= 0.1 + 1e-6, "{}: ‖δ‖∞ = {}", a.name(), max_abs(&d));
        let v = o.adv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)), "{}", a.name());
    }
    for a in [
        Box::new(Pgd { norm: Norm::L2, step_size: 0.25, ..pgd(1.0, 10, 1) }) as Box<dyn Attack>,
        Box::new(Apgd { eps: 1.0, steps: 10, norm: Norm::L2, restarts: 1, loss: LossKind::CrossEntropy, seed: 1 }),
    ] {
        let o = run(a.as_ref());
        let d = (&o.adv - &f.x).unwrap().reshape((N, ())).unwrap();
        let norms = d.sqr().unwrap().sum(1).unwrap().sqrt().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            norms.iter().all(|&n| n as f64 <= 1.0 * (1.0 + 1e-5)),
            "{}: max ‖δ‖₂ {:?}",
            a.name(),
            norms.iter().cloned().fold(0f32, f32::max)
        );
    }
}

#[test]
fn one_step_pgd_of_size_eps_without_random_start_is_fgsm_and_pgd_is_stronger() {
    let f = fixture();
    let p1 = run(&Pgd { step_size: 0.1, random_start: false, ..pgd(0.1, 1, 1) });
    let fg = run(&Fgsm { eps: 0.1, loss: LossKind::CrossEntropy });
    let same = p1.adv.eq(&fg.adv).unwrap().to_dtype(DType::F32).unwrap().min_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(same, 1.0, "PGD-1 and FGSM differ");
    assert_eq!(p1.fooled, fg.fooled);
    let _ = f;
    assert!(accuracy(&run(&pgd(0.1, 20, 1))) <= accuracy(&fg));
}

#[test]
fn more_steps_or_restarts_never_raise_robust_accuracy_per_example() {
    let subset = |a: &Outcome, b: &Outcome| a.fooled.iter().zip(&b.fooled).all(|(x, y)| !*x || *y);
    // Small ε so that not every point falls and the comparison has teeth.
    let (s5, s10) = (run(&pgd(0.02, 5, 1)), run(&pgd(0.02, 10, 1)));
    assert!(subset(&s5, &s10), "a point broken by PGD-5 survived PGD-10");
    let (r1, r3) = (run(&pgd(0.02, 5, 1)), run(&pgd(0.02, 5, 3)));
    assert!(subset(&r1, &r3), "a point broken with 1 restart survived 3");
    let apgd =
        |restarts| Apgd { eps: 0.02, steps: 10, norm: Norm::Linf, restarts, loss: LossKind::CrossEntropy, seed: 2 };
    let (a1, a3) = (run(&apgd(1)), run(&apgd(3)));
    assert!(subset(&a1, &a3), "a point broken by APGD with 1 restart survived 3");
    // Restart 0 is the same run either way: its points keep exactly the adversarial example it found.
    for i in (0..N).filter(|&i| a1.fooled[i]) {
        assert_eq!(max_abs(&(a1.adv.get(i).unwrap() - a3.adv.get(i).unwrap()).unwrap()), 0.0);
    }
    assert!(accuracy(&s10) < accuracy(&clean_outcome()), "the attack at ε = 0.02 does nothing: the test is toothless");
}

fn clean_outcome() -> Outcome {
    let f = fixture();
    Outcome { adv: f.x.clone(), fooled: clean_correct().iter().map(|c| !c).collect(), loss: vec![] }
}

#[test]
fn robust_accuracy_falls_with_eps_and_is_at_chance_at_half() {
    let accs: Vec<f64> = [0.0, 0.01, 0.03, 0.1, 0.5].iter().map(|&e| accuracy(&run(&pgd(e, 10, 1)))).collect();
    assert!(accs.windows(2).all(|w| w[1] <= w[0]), "{accs:?}");
    assert!(accs[4] <= 0.1, "{accs:?}");
}

#[test]
fn naturally_trained_model_is_broken_by_pgd20() {
    let clean = clean_correct().iter().filter(|&&c| c).count() as f64 / N as f64;
    assert!(clean > 0.7, "the fixture did not train: clean accuracy {clean}");
    let acc = accuracy(&run(&pgd(0.1, 20, 1)));
    assert!(acc < 0.05, "PGD-20 at ε = 0.1 left {acc} accuracy on a non-robust model");
}

#[test]
fn worst_case_is_the_fraction_robust_to_all_and_noise_never_beats_pgd() {
    let f = fixture();
    let (a, b) =
        (pgd(0.03, 5, 1), Apgd { eps: 0.03, steps: 10, norm: Norm::Linf, restarts: 1, loss: LossKind::Dlr, seed: 3 });
    let ev =
        evaluate_batch(&f.net, &f.x, &f.y, &f.ids, &[&a, &b], &Checks { noise_eps: 0.03, noise_samples: 8, seed: 5 })
            .unwrap();
    let (oa, ob) = (run(&a), run(&b));
    let clean = clean_correct();
    let expect: Vec<bool> = (0..N).map(|i| clean[i] && !oa.fooled[i] && !ob.fooled[i]).collect();
    assert_eq!(ev.robust, expect);
    assert_eq!(ev.clean, clean);
    assert_eq!(ev.warnings.eps0_mismatch, 0);
    assert_eq!(ev.warnings.zero_gradient, 0);
    assert_eq!(ev.warnings.noise_beats_attack, 0, "uniform noise broke points PGD did not");
    assert!(ev.warnings.messages().is_empty());
}

#[test]
fn noise_check_fires_when_the_attack_is_useless() {
    // A "defence" that masks gradients: rounding the input to {0, 1} has a zero gradient almost everywhere.
    struct Masked<'a>(&'a Net);
    impl Module for Masked<'_> {
        fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
            let hard = x.ge(0.5)?.to_dtype(DType::F32)?; // no gradient flows through `ge`
            self.0.forward(&hard)
        }
    }
    let f = fixture();
    let masked = Masked(&f.net);
    let m = awt_base::Autograd(&masked);
    let a = pgd(0.3, 5, 1);
    let ev =
        evaluate_batch(&m, &f.x, &f.y, &f.ids, &[&a], &Checks { noise_eps: 0.3, noise_samples: 4, seed: 5 }).unwrap();
    assert!(ev.warnings.zero_gradient > 0, "{:?}", ev.warnings);
    assert!(ev.warnings.noise_beats_attack > 0, "{:?}", ev.warnings);
    assert!(ev.warnings.messages().iter().any(|m| m.contains("gradient masking")));
    assert!(ev.warnings.gradient_masking_suspected(), "a masking warning with masking not suspected");
    // Points noise broke are not counted robust.
    let count = |v: &[bool]| v.iter().filter(|&&b| b).count();
    assert_eq!(count(&ev.robust), count(ev.robust_after.last().unwrap()) - ev.warnings.noise_beats_attack);
    // Without an attack there is nothing for noise to test: no check, no warning, robust = clean.
    let none =
        evaluate_batch(&m, &f.x, &f.y, &f.ids, &[], &Checks { noise_eps: 0.3, noise_samples: 4, seed: 5 }).unwrap();
    assert_eq!((none.warnings.noise_beats_attack, none.robust.clone()), (0, none.clean.clone()));
}

#[test]
fn input_gradient_matches_central_finite_differences_in_f64() {
    let f = fixture();
    let net = f.net.to_dtype(DType::F64).unwrap();
    let x = f.x.narrow(0, 0, 4).unwrap().to_dtype(DType::F64).unwrap();
    let y = f.y.narrow(0, 0, 4).unwrap();
    let t = Tensor::new(&[3u32, 1, 0, 2], &Device::Cpu).unwrap();
    for (loss, target) in [
        (LossKind::CrossEntropy, None),
        (LossKind::CwMargin, None),
        (LossKind::Dlr, None),
        (LossKind::CrossEntropy, Some(&t)),
        (LossKind::Dlr, Some(&t)),
    ] {
        let g = input_gradient(&net, &x, &y, target, loss).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let total = |v: &[f64]| {
            let xt = Tensor::from_vec(v.to_vec(), x.shape(), &Device::Cpu).unwrap();
            awt_attack::per_example_loss(&net.forward(&xt).unwrap(), &y, target, loss)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let h = 1e-6;
        let mut rng = awt_base::Rng::new(11);
        for _ in 0..40 {
            let i = rng.below(xv.len() as u64) as usize;
            let (mut p, mut m) = (xv.clone(), xv.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (total(&p) - total(&m)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "{loss:?} {target:?} coord {i}: fd {fd} vs autograd {}",
                g[i]
            );
        }
    }
}

#[test]
fn bad_settings_are_errors_naming_the_setting() {
    let f = fixture();
    let check = |a: &dyn Attack, x: &Tensor, y: &Tensor, needle: &str| {
        let e = a.perturb(&f.net, x, y, None, &f.ids[..x.dim(0).unwrap()]).unwrap_err().to_string();
        assert!(e.contains(needle), "expected `{needle}` in `{e}`");
    };
    check(&pgd(-0.1, 5, 1), &f.x, &f.y, "eps");
    check(&pgd(f64::NAN, 5, 1), &f.x, &f.y, "eps");
    check(&Pgd { step_size: 0.0, ..pgd(0.1, 5, 1) }, &f.x, &f.y, "step size");
    check(&Pgd { restarts: 0, ..pgd(0.1, 5, 1) }, &f.x, &f.y, "restarts");
    let bad_y = Tensor::new(&[3u32, 10], &Device::Cpu).unwrap();
    check(&pgd(0.1, 5, 1), &f.x.narrow(0, 0, 2).unwrap(), &bad_y, "label 10 is out of range");
    let big_x = (f.x.narrow(0, 0, 2).unwrap() * 2.0).unwrap();
    check(&pgd(0.1, 5, 1), &big_x, &f.y.narrow(0, 0, 2).unwrap(), "[0, 1]");
    check(&Fgsm { eps: -1.0, loss: LossKind::CrossEntropy }, &f.x, &f.y, "eps");
}

#[test]
fn results_are_bit_reproducible_and_streams_follow_example_ids() {
    let f = fixture();
    let a = pgd(0.05, 3, 1);
    let o1 = run(&a);
    let o2 = run(&a);
    assert_eq!(max_abs(&(&o1.adv - &o2.adv).unwrap()), 0.0);
    // The same example attacked alone, under its id, gets exactly the same result.
    let i = 17;
    let solo =
        a.perturb(&f.net, &f.x.narrow(0, i, 1).unwrap(), &f.y.narrow(0, i, 1).unwrap(), None, &[i as u64]).unwrap();
    assert_eq!(solo.fooled[0], o1.fooled[i]);
    assert!(max_abs(&(solo.adv.get(0).unwrap() - o1.adv.get(i).unwrap()).unwrap()) < 1e-6);
}

#[test]
fn targeted_attacks_reach_their_targets() {
    let f = fixture();
    let target = Tensor::from_vec(
        (0..N as u32).map(|i| (f.y.to_vec1::<u32>().unwrap()[i as usize] + 1) % 10).collect::<Vec<_>>(),
        N,
        &Device::Cpu,
    )
    .unwrap();
    let a = pgd(0.2, 20, 1);
    let o = a.perturb(&f.net, &f.x, &f.y, Some(&target), &f.ids).unwrap();
    let hit = f
        .net
        .forward(&o.adv)
        .unwrap()
        .argmax(D::Minus1)
        .unwrap()
        .eq(&target)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let fooled = o.fooled.iter().filter(|&&b| b).count() as f32 / N as f32;
    assert!(hit > 0.8, "targeted PGD hit its target on only {hit}");
    assert!((hit - fooled).abs() < 1e-6, "`fooled` must mean `reached the target` for targeted attacks");
}

/// The AutoAttack additions: more iterations, queries or targets never raise robust accuracy (each
/// longer run continues the shorter one exactly), and FAB's result is monotone in ε exactly (its
/// search does not depend on ε).
#[test]
fn autoattack_attacks_are_monotone_in_iterations_targets_and_eps() {
    let subset = |a: &Outcome, b: &Outcome| a.fooled.iter().zip(&b.fooled).all(|(x, y)| !*x || *y);
    let eps = 0.02;
    let (q1, q2) = (
        run(&Square { queries: 100, ..Square::standard(eps, 4) }),
        run(&Square { queries: 400, ..Square::standard(eps, 4) }),
    );
    assert!(subset(&q1, &q2), "a point broken with 100 queries survived 400");
    let fab = |steps, targets, eps| FabTargeted { steps, targets, ..FabTargeted::standard(eps) };
    let (f1, f2) = (run(&fab(10, 2, eps)), run(&fab(30, 2, eps)));
    assert!(subset(&f1, &f2), "a point broken by FAB-T in 10 iterations survived 30");
    let (t1, t3) = (run(&fab(10, 1, eps)), run(&fab(10, 3, eps)));
    assert!(subset(&t1, &t3), "a point broken with 1 target survived 3");
    let (e1, e2) = (run(&fab(10, 2, 0.01)), run(&fab(10, 2, 0.03)));
    assert!(subset(&e1, &e2), "FAB-T broke a point at ε = 0.01 but not at 0.03");
    let apgd_t = |targets| ApgdTargeted { steps: 10, targets, ..ApgdTargeted::standard(eps, 5) };
    let (a1, a3) = (run(&apgd_t(1)), run(&apgd_t(3)));
    assert!(subset(&a1, &a3), "a point broken by APGD-T with 1 target survived 3");
    for o in [&q2, &f2, &a3] {
        assert!(accuracy(o) < accuracy(&clean_outcome()), "an AutoAttack attack did nothing at ε = {eps}");
    }
    // Robust accuracy falls with ε for each (checked along a grid).
    for make in [
        &(|e| Box::new(Square { queries: 300, ..Square::standard(e, 4) }) as Box<dyn Attack>)
            as &dyn Fn(f64) -> Box<dyn Attack>,
        &|e| Box::new(ApgdTargeted { steps: 10, targets: 3, ..ApgdTargeted::standard(e, 5) }) as Box<dyn Attack>,
    ] {
        let accs: Vec<f64> = [0.0, 0.01, 0.03, 0.1].iter().map(|&e| accuracy(&run(make(e).as_ref()))).collect();
        assert!(accs.windows(2).all(|w| w[1] <= w[0]), "{accs:?}");
    }
}

#[test]
fn autoattack_attacks_are_bit_reproducible_per_example_whatever_the_batch() {
    let f = fixture();
    let attacks: Vec<Box<dyn Attack>> = vec![
        Box::new(ApgdTargeted { steps: 10, targets: 3, ..ApgdTargeted::standard(0.03, 6) }),
        Box::new(FabTargeted { steps: 10, targets: 3, ..FabTargeted::standard(0.03) }),
        Box::new(Square { queries: 300, ..Square::standard(0.03, 6) }),
    ];
    for a in attacks {
        let full = run(a.as_ref());
        for i in [3usize, 17, 101] {
            let solo = a
                .perturb(&f.net, &f.x.narrow(0, i, 1).unwrap(), &f.y.narrow(0, i, 1).unwrap(), None, &[i as u64])
                .unwrap();
            assert_eq!(solo.fooled[0], full.fooled[i], "{}: example {i} alone differs", a.name());
            let d = max_abs(&(solo.adv.get(0).unwrap() - full.adv.get(i).unwrap()).unwrap());
            assert!(d < 1e-5, "{}: example {i} alone moved {d} elsewhere", a.name());
        }
    }
}

/// A "defence" whose input gradient is zero: it binarises its input (no gradient flows through
/// `ge`), as input quantisation defences do. Gradient attacks cannot move its points; a score-based
/// attack can.
struct Binarised<'a>(&'a Net);
impl Module for Binarised<'_> {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(&x.ge(0.5)?.to_dtype(DType::F32)?)
    }
}

#[test]
fn square_breaks_what_masked_gradients_hide_and_the_evaluation_says_so() {
    let f = fixture();
    let masked = Binarised(&f.net);
    let m = awt_base::Autograd(&masked);
    let eps = 0.3;
    let grad_attacks: Vec<Box<dyn Attack>> = vec![
        Box::new(Pgd::linf(eps, 20, eps / 4.0, 1)),
        Box::new(Apgd { eps, steps: 20, norm: Norm::Linf, restarts: 1, loss: LossKind::CrossEntropy, seed: 1 }),
        Box::new(ApgdTargeted { steps: 20, targets: 3, ..ApgdTargeted::standard(eps, 1) }),
        Box::new(FabTargeted { steps: 20, targets: 3, ..FabTargeted::standard(eps) }),
    ];
    let square = Square { queries: 1000, ..Square::standard(eps, 1) };
    let correct = |o: &Outcome| o.fooled.iter().filter(|&&b| !b).count();
    let sq = square.perturb(&m, &f.x, &f.y, None, &f.ids).unwrap();
    for a in &grad_attacks {
        let g = a.perturb(&m, &f.x, &f.y, None, &f.ids).unwrap();
        assert!(
            correct(&sq) + 40 < correct(&g),
            "{} left {} of {N} standing, Square {}: Square should see through the masked gradient",
            a.name(),
            correct(&g),
            correct(&sq)
        );
    }
    // In a sequence, Square's extra breaks are counted and flagged.
    let refs: Vec<&dyn Attack> = grad_attacks.iter().map(|a| a.as_ref()).chain([&square as &dyn Attack]).collect();
    let ev =
        evaluate_batch(&m, &f.x, &f.y, &f.ids, &refs, &Checks { noise_eps: eps, noise_samples: 0, seed: 2 }).unwrap();
    assert!(ev.warnings.gradient_masking_suspected(), "{:?}", ev.warnings);
    assert!(ev.warnings.messages().iter().any(|m| m.contains("GRADIENT MASKING")), "{:?}", ev.warnings.messages());
    // And on the honest model it stays quiet.
    let refs: Vec<&dyn Attack> = vec![grad_attacks[1].as_ref(), &square];
    let ev = evaluate_batch(&f.net, &f.x, &f.y, &f.ids, &refs, &Checks { noise_eps: 0.03, noise_samples: 0, seed: 2 })
        .unwrap();
    assert!(!ev.warnings.gradient_masking_suspected(), "{:?}", ev.warnings);
}

/// The fixture's net as plain candle ops (`x Wᵀ + b`, ReLU): the same logits and input gradients on
/// every path, so that an attack's own CPU kernels are all that differs between two runs of it.
struct PlainMlp(Vec<(Tensor, Tensor)>);
impl Module for PlainMlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.flatten_from(1)?;
        for (i, (w, b)) in self.0.iter().enumerate() {
            // candle's own product on purpose: the same on both paths, and independent of awt's.
            #[allow(clippy::disallowed_methods)]
            let z = h.matmul(&w.t()?)?;
            h = z.broadcast_add(b)?;
            if i + 1 < self.0.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

/// APGD's ℓ∞ update and the row selections of every attack's bookkeeping run as single passes on
/// the CPU (`awt_base::fused::{apgd_linf_step, select_rows}`); on the device-generic path (what a
/// GPU runs) they are candle ops. Both give the same iterates, bit for bit (signs of zeros aside),
/// and the same outcomes: APGD-CE and APGD-DLR at AutoAttack's 100 iterations, APGD-T and PGD, in f32.
#[test]
fn attack_kernels_on_the_cpu_equal_the_plain_candle_path_exactly() {
    let f = fixture();
    let p = |k: &str| f.net.param(k).unwrap().as_tensor().clone();
    let plain =
        PlainMlp(["fc1", "fc2", "fc3"].iter().map(|l| (p(&format!("{l}.weight")), p(&format!("{l}.bias")))).collect());
    let model = awt_base::Autograd(&plain);
    // The first 64 images: enough for broken and standing points under every attack.
    const M: usize = 64;
    let (x, y) = (f.x.narrow(0, 0, M).unwrap(), f.y.narrow(0, 0, M).unwrap());
    let eps = 0.03;
    let runs: Vec<Box<dyn Attack>> = vec![
        Box::new(Apgd { eps, steps: 100, norm: Norm::Linf, restarts: 1, loss: LossKind::CrossEntropy, seed: 3 }),
        Box::new(Apgd { eps, steps: 100, norm: Norm::Linf, restarts: 2, loss: LossKind::Dlr, seed: 3 }),
        Box::new(ApgdTargeted { steps: 20, targets: 2, ..ApgdTargeted::standard(eps, 3) }),
        Box::new(pgd(eps, 20, 1)),
    ];
    for a in runs {
        let go = || a.perturb(&model, &x, &y, None, &f.ids[..M]).unwrap();
        let (fast, plain) = (go(), awt_base::device::generic_path(go));
        let v = |o: &Outcome| o.adv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v(&fast) == v(&plain), "{}: the iterates differ", a.name());
        assert_eq!((&fast.fooled, &fast.loss), (&plain.fooled, &plain.loss), "{}", a.name());
        let broken = fast.fooled.iter().filter(|b| **b).count();
        assert!(broken > 0 && broken < M, "{}: {broken} of {M} broken, a check that cannot fail", a.name());
    }
}

/// FAB-T's per-example steps run split over the threads; each example's is computed as on one
/// thread, so a run on a one-thread pool gives the same closest points, bit for bit.
#[test]
fn fab_t_on_two_threads_equals_fab_t_on_one() {
    let fab = FabTargeted { steps: 10, targets: 2, ..FabTargeted::standard(0.03) };
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let f = fixture();
    let (x, y) = (f.x.narrow(0, 0, 64).unwrap(), f.y.narrow(0, 0, 64).unwrap());
    let run = || fab.perturb(&f.net, &x, &y, None, &f.ids[..64]).unwrap();
    let (many, single) = (run(), one.install(run));
    let v = |o: &Outcome| o.adv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v(&many) == v(&single), "the closest points differ");
    assert_eq!((&many.fooled, &many.loss), (&single.fooled, &single.loss));
    assert!(many.fooled.iter().any(|f| *f) && many.fooled.iter().any(|f| !*f), "a check that cannot fail");
}
