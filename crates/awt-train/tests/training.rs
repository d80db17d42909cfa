//! The training checks of docs/checks.md: masks survive momentum and weight decay, an
//! all-ones mask trains bit-identically to dense, kill-and-resume equals an uninterrupted run,
//! divergence stops within one step leaving the last checkpoint intact, and seeds fix every file.

use std::path::Path;

use awt_base::Rng;
use awt_data::{Split, synthetic};
use awt_nets::{Arch, Init, Net};
use awt_train::{
    EpochMetrics, Hooks, NoHooks, Objective, OptimizerConfig, RunFolder, Schedule, TrainConfig, TrainError, train,
};
use candle_core::{DType, Device, Tensor};

/// 256 training and 64 test examples drawn around the same ten class prototypes.
fn data() -> (Split, Split) {
    let all = synthetic::prototypes(320, [1, 28, 28], 10, 0.3, 1);
    (all.subset(0, 256).unwrap(), all.subset(256, 64).unwrap())
}

fn sgd() -> OptimizerConfig {
    OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 5e-4 }
}

fn cfg(objective: Objective, optimizer: OptimizerConfig, epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        lr: 0.01,
        optimizer,
        schedule: Schedule::Cosine,
        objective,
        seed,
        eval_n: 32,
        eval_eps: 0.1,
        eval_steps: 3,
    }
}

fn pgd() -> Objective {
    Objective::Pgd { eps: 0.1, steps: 3, step_size: 0.04 }
}

fn small_net(seed: u64) -> Net {
    Net::init(&Arch::Mlp(vec![784, 32, 10]), Init::KaimingUniform, seed, DType::F32, &Device::Cpu).unwrap()
}

fn run(
    net: &Net,
    c: &TrainConfig,
    dir: &Path,
    resume: bool,
    hooks: &mut dyn Hooks,
) -> Result<awt_train::Summary, TrainError> {
    let (tr, te) = data();
    let vars = net.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let valid = c.clone().validate()?;
    let hash = format!("{c:?}");
    let folder = RunFolder::open(dir, &hash, &hash, resume)?;
    if !resume {
        std::fs::write(dir.join("metrics.jsonl"), "").unwrap();
    }
    train(net, vars, &tr, &te, &valid, &folder, &mut Logged(hooks, dir.join("metrics.jsonl")))
}

/// Records each epoch's metrics as a JSON line (as the awt binary does) around another hook.
struct Logged<'a>(&'a mut dyn Hooks, std::path::PathBuf);
impl Hooks for Logged<'_> {
    fn after_step(&mut self, epoch: usize, global: u64) -> Result<(), TrainError> {
        self.0.after_step(epoch, global)
    }
    fn after_epoch(&mut self, m: &mut EpochMetrics) -> Result<(), TrainError> {
        self.0.after_epoch(m)?;
        let mut text = std::fs::read_to_string(&self.1).unwrap();
        text += &(serde_json::to_string(m).unwrap() + "\n");
        std::fs::write(&self.1, text).unwrap();
        Ok(())
    }
    fn state(&self) -> std::collections::BTreeMap<String, String> {
        self.0.state()
    }
    fn restore(&mut self, epoch: usize, s: &std::collections::BTreeMap<String, String>) -> Result<(), TrainError> {
        let text = std::fs::read_to_string(&self.1).unwrap();
        let kept: String = text.lines().take(epoch + 1).map(|l| format!("{l}\n")).collect();
        std::fs::write(&self.1, kept).unwrap();
        self.0.restore(epoch, s)
    }
}

fn weights(net: &Net) -> Vec<Vec<f32>> {
    net.params().values().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

/// metrics.jsonl without the timing fields, which legitimately differ between runs.
fn metrics_without_timing(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| l.split(",\"images_per_sec\"").next().unwrap().to_string())
        .collect()
}

fn mask_half(net: &mut Net) {
    let mut r = Rng::new(3);
    for name in net.weight_names() {
        let w = net.param(&name).unwrap().as_tensor().clone();
        let m: Vec<f32> = (0..w.elem_count()).map(|_| if r.uniform() < 0.5 { 1.0 } else { 0.0 }).collect();
        net.set_mask(&name, &Tensor::from_vec(m, w.shape(), &Device::Cpu).unwrap()).unwrap();
    }
    net.apply_masks().unwrap();
}

#[test]
fn pruned_weights_stay_exactly_zero_through_momentum_weight_decay_and_adam() {
    for opt in [
        sgd(),
        OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 1e-2 },
        OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, decoupled: false },
        OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, decoupled: true },
    ] {
        let mut net = small_net(0);
        mask_half(&mut net);
        let tmp = tempfile::tempdir().unwrap();
        // No hook re-applies the masks: the optimisers alone must keep pruned weights at zero.
        run(&net, &cfg(pgd(), opt.clone(), 2, 0), tmp.path(), false, &mut NoHooks).unwrap();
        for (name, m) in net.masks() {
            let w = net.param(name).unwrap().as_tensor();
            let leaked =
                w.mul(&(1.0 - m).unwrap()).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(leaked, 0.0, "{opt:?}: pruned weights of {name} moved");
            let kept = w.mul(m).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(kept > 0.0);
        }
        // And the saved checkpoint shows it.
        let p = tmp.path().join("model.safetensors");
        awt_nets::save(&net, &p).unwrap();
        let back = awt_nets::load(&p, None, DType::F32, &Device::Cpu).unwrap().net;
        assert_eq!(weights(&back), weights(&net));
    }
}

#[test]
fn all_ones_mask_trains_bit_identically_to_dense() {
    let dense = small_net(1);
    let mut ones = small_net(1);
    for n in ones.weight_names() {
        let w = ones.param(&n).unwrap().as_tensor().clone();
        ones.set_mask(&n, &w.ones_like().unwrap()).unwrap();
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&dense, &cfg(pgd(), sgd(), 2, 0), a.path(), false, &mut NoHooks).unwrap();
    run(&ones, &cfg(pgd(), sgd(), 2, 0), b.path(), false, &mut NoHooks).unwrap();
    assert!(weights(&dense) == weights(&ones), "all-ones mask changed training");
    assert_eq!(metrics_without_timing(a.path()), metrics_without_timing(b.path()));
}

/// Stops the run at a given (epoch, step), like a kill.
struct KillAt(usize, u64);
impl Hooks for KillAt {
    fn after_step(&mut self, epoch: usize, global: u64) -> Result<(), TrainError> {
        if epoch == self.0 && global == self.1 {
            return Err(TrainError::Invalid("killed".into()));
        }
        Ok(())
    }
}

#[test]
fn killed_and_resumed_run_equals_an_uninterrupted_one() {
    for objective in [
        pgd(),
        Objective::Trades { eps: 0.1, steps: 2, step_size: 0.05, beta: 6.0 },
        Objective::Fgsm { eps: 0.1, step_size: 0.125 },
    ] {
        let c = cfg(
            objective.clone(),
            OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false },
            3,
            5,
        );
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let full = small_net(2);
        run(&full, &c, a.path(), false, &mut NoHooks).unwrap();
        let part = small_net(2);
        // 8 steps per epoch: step 19 is inside epoch 2, after epoch 1's checkpoint.
        assert!(run(&part, &c, b.path(), false, &mut KillAt(2, 19)).is_err());
        assert_eq!(metrics_without_timing(b.path()).len(), 2);
        let resumed = small_net(99); // weights come from the checkpoint, not from this init
        let s = run(&resumed, &c, b.path(), true, &mut NoHooks).unwrap();
        assert_eq!(s.resumed_from, Some(1));
        assert!(weights(&full) == weights(&resumed), "{objective:?}: resumed weights differ");
        assert_eq!(metrics_without_timing(a.path()), metrics_without_timing(b.path()));
    }
}

#[test]
fn resume_refuses_another_config_and_fresh_runs_refuse_an_existing_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let net = small_net(0);
    run(&net, &cfg(pgd(), sgd(), 1, 0), tmp.path(), false, &mut NoHooks).unwrap();
    let e = run(&net, &cfg(pgd(), sgd(), 1, 0), tmp.path(), false, &mut NoHooks).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let e = run(&net, &cfg(pgd(), sgd(), 2, 1), tmp.path(), true, &mut NoHooks).unwrap_err().to_string();
    assert!(e.contains("config hash") && e.contains("state.safetensors"), "{e}");
}

/// Poisons the weights at a given step so the next loss is NaN.
struct Poison(u64, Net);
impl Hooks for Poison {
    fn after_step(&mut self, _epoch: usize, global: u64) -> Result<(), TrainError> {
        if global == self.0 {
            let v = self.1.param("fc1.weight").unwrap();
            v.set(&Tensor::full(f32::NAN, v.shape(), &Device::Cpu).unwrap()).unwrap();
        }
        Ok(())
    }
}

#[test]
fn divergence_stops_within_one_step_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let net = small_net(0);
    let c = cfg(pgd(), sgd(), 3, 0);
    let e = run(&net, &c, tmp.path(), false, &mut Poison(10, net.clone())).unwrap_err();
    match &e {
        TrainError::Diverged { epoch, global, .. } => assert_eq!((*epoch, *global), (1, 11)),
        other => panic!("expected divergence, got {other}"),
    }
    assert!(e.to_string().contains("step 3") && e.to_string().contains("intact"), "{e}");
    // Epoch 0's checkpoint is there and loads; resuming from it works.
    assert_eq!(metrics_without_timing(tmp.path()).len(), 1);
    let again = small_net(0);
    run(&again, &c, tmp.path(), true, &mut NoHooks).unwrap();
}

#[test]
fn same_seed_same_files_different_seed_differs() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (d, seed) in dirs.iter().zip([7, 7, 8]) {
        run(&small_net(0), &cfg(pgd(), sgd(), 2, seed), d.path(), false, &mut NoHooks).unwrap();
    }
    let state = |d: &tempfile::TempDir| std::fs::read(d.path().join("state.safetensors")).unwrap();
    assert!(state(&dirs[0]) == state(&dirs[1]), "same seed, different checkpoints");
    assert!(state(&dirs[0]) != state(&dirs[2]), "different seeds, same checkpoint");
    assert_eq!(metrics_without_timing(dirs[0].path()), metrics_without_timing(dirs[1].path()));
}

#[test]
fn adversarial_training_learns_the_synthetic_task() {
    struct Record(Vec<EpochMetrics>);
    impl Hooks for Record {
        fn after_epoch(&mut self, m: &mut EpochMetrics) -> Result<(), TrainError> {
            self.0.push(m.clone());
            Ok(())
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut rec = Record(Vec::new());
    let adam = OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false };
    let c = TrainConfig { lr: 5e-3, schedule: Schedule::Constant, ..cfg(pgd(), adam, 6, 0) };
    run(&small_net(0), &c, tmp.path(), false, &mut rec).unwrap();
    let (first, last) = (&rec.0[0], rec.0.last().unwrap());
    assert!(last.train_loss < first.train_loss, "{first:?} → {last:?}");
    assert!(last.clean_acc > 0.9 && last.robust_acc > 0.5, "{last:?}");
}

#[test]
fn bad_settings_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (c, needle) in [
        (TrainConfig { lr: 0.0, ..cfg(pgd(), sgd(), 1, 0) }, "lr"),
        (TrainConfig { epochs: 0, ..cfg(pgd(), sgd(), 1, 0) }, "epochs"),
        (cfg(Objective::Pgd { eps: -1.0, steps: 3, step_size: 0.1 }, sgd(), 1, 0), "eps"),
        (TrainConfig { schedule: Schedule::OneCycle { warmup: 1.5 }, ..cfg(pgd(), sgd(), 1, 0) }, "warmup"),
        (
            TrainConfig {
                schedule: Schedule::MultiStep { milestones: vec![1], gamma: -5.0 },
                ..cfg(pgd(), sgd(), 3, 0)
            },
            "gamma",
        ),
        (
            TrainConfig {
                schedule: Schedule::MultiStep { milestones: vec![2, 1], gamma: 0.1 },
                ..cfg(pgd(), sgd(), 3, 0)
            },
            "milestones",
        ),
        (
            cfg(
                pgd(),
                OptimizerConfig::Sgd { momentum: 2.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 },
                1,
                0,
            ),
            "momentum",
        ),
        (
            cfg(
                pgd(),
                OptimizerConfig::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: -1.0 },
                1,
                0,
            ),
            "wd",
        ),
        (
            cfg(
                pgd(),
                OptimizerConfig::Adam { beta1: 1.0, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false },
                1,
                0,
            ),
            "beta1",
        ),
        (TrainConfig { batch_size: 0, ..cfg(pgd(), sgd(), 1, 0) }, "batch"),
        (cfg(Objective::Pgd { eps: 0.1, steps: 0, step_size: 0.1 }, sgd(), 1, 0), "steps"),
        (cfg(Objective::Pgd { eps: 0.1, steps: 3, step_size: f64::NAN }, sgd(), 1, 0), "step_size"),
    ] {
        let e = run(&small_net(0), &c, tmp.path(), false, &mut NoHooks).unwrap_err();
        match &e {
            TrainError::Setting { setting, .. } => assert_eq!(*setting, needle, "{e}"),
            other => panic!("{needle}: expected a setting error, got {other}"),
        }
        // A refused configuration writes nothing.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "{needle}: a refused run wrote files");
    }
}

/// Keeps the best clean accuracy as hook state, like `awt train --keep-best`; stops the run at
/// global step `.2` when set.
#[derive(Default)]
struct Best(Option<(f64, usize)>, Vec<usize>, Option<u64>);
impl Hooks for Best {
    fn after_step(&mut self, _epoch: usize, global: u64) -> Result<(), TrainError> {
        if self.2 == Some(global) {
            return Err(TrainError::Invalid("killed".into()));
        }
        Ok(())
    }
    fn after_epoch(&mut self, m: &mut EpochMetrics) -> Result<(), TrainError> {
        if self.0.is_none_or(|(b, _)| m.clean_acc > b) {
            self.0 = Some((m.clean_acc, m.epoch));
        }
        self.1.push(m.epoch);
        Ok(())
    }
    fn state(&self) -> std::collections::BTreeMap<String, String> {
        self.0.iter().map(|(b, e)| ("best".to_string(), format!("{b} {e}"))).collect()
    }
    fn restore(&mut self, _epoch: usize, s: &std::collections::BTreeMap<String, String>) -> Result<(), TrainError> {
        let (b, e) = s["best"].split_once(' ').unwrap();
        self.0 = Some((b.parse().unwrap(), e.parse().unwrap()));
        Ok(())
    }
}

#[test]
fn hook_state_survives_kill_and_resume() {
    let c = cfg(pgd(), sgd(), 4, 3);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut full = Best::default();
    run(&small_net(4), &c, a.path(), false, &mut full).unwrap();
    // Killed inside epoch 2 (8 steps per epoch), then resumed: the best of epochs 0–1 must be known.
    assert!(run(&small_net(4), &c, b.path(), false, &mut Best(None, Vec::new(), Some(19))).is_err());
    let mut resumed = Best::default();
    run(&small_net(4), &c, b.path(), true, &mut resumed).unwrap();
    assert_eq!(resumed.1, vec![2, 3], "the resumed run saw other epochs");
    assert_eq!(resumed.0, full.0, "the best score was lost on resume");
}

#[test]
fn a_refused_run_writes_nothing_and_resume_needs_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(pgd(), sgd(), 1, 0);
    run(&small_net(0), &c, tmp.path(), false, &mut NoHooks).unwrap();
    let before = std::fs::read(tmp.path().join("config.toml")).unwrap();
    let other = cfg(pgd(), sgd(), 2, 1);
    let hash = format!("{other:?}");
    let e = RunFolder::open(tmp.path(), "a different configuration", &hash, false).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    assert_eq!(std::fs::read(tmp.path().join("config.toml")).unwrap(), before, "config.toml was overwritten");
    let missing = tmp.path().join("nothing-here");
    let e = RunFolder::open(&missing, "x", "x", true).unwrap_err().to_string();
    assert!(e.contains("no such run folder"), "{e}");
    assert!(!missing.exists(), "--resume created the folder");
}

#[test]
fn a_run_folder_is_held_by_one_process_and_stale_temporaries_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(".model.safetensors.tmp-999999"), b"torn").unwrap();
    let held = RunFolder::open(tmp.path(), "x", "x", false).unwrap();
    assert!(!tmp.path().join(".model.safetensors.tmp-999999").exists(), "stale temporary file left behind");
    // The lock is per open file description, so a second open in this process is refused like
    // another process would be, and the error names the holder.
    let e = RunFolder::open(tmp.path(), "x", "x", false).unwrap_err().to_string();
    assert!(e.contains("in use by process") && e.contains(&std::process::id().to_string()), "{e}");
    drop(held);
    RunFolder::open(tmp.path(), "x", "x", false).unwrap();
}

#[test]
fn divergence_before_any_checkpoint_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let net = small_net(0);
    let e = run(&net, &cfg(pgd(), sgd(), 2, 0), tmp.path(), false, &mut Poison(2, net.clone())).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("no checkpoint was written yet") && !msg.contains("intact"), "{msg}");
}

/// A run folder that cannot be created is an error naming it and what failed, with the I/O error
/// as its source.
#[test]
fn a_folder_that_cannot_be_made_keeps_the_io_error_as_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let e = awt_train::RunFolder::open(&file.join("run"), "c", "h", false).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: cannot create the run folder", file.join("run").display()));
    let io = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>()).expect("io source");
    assert_eq!(io.kind(), std::io::ErrorKind::NotADirectory);
}
