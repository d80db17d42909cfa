//! `awt check-device`: does `--device` compute what the CPU computes, and how fast?
//!
//! For each network (the checkpoints given, else LeNet-300-100 and LeNet-5 initialised from seed
//! 0), the same computation runs on the CPU with its hand-written kernels (the reference) and on
//! the device; the relative differences and the robust counts are reported: logits, the input
//! gradient, the weight gradients, PGD-20's robust count on `--n` test images, the full NTK of 64
//! images, one AWT search step. With `--device cpu` the device side is the CPU on the
//! device-generic path (the ops CUDA runs): a dry run of the check on a machine without a GPU.
//! Then timings on the device (median of `--reps`, the device synchronised before each clock
//! read) of the rows `docs/performance.md` compares with PyTorch: a PGD step and forward+backward
//! at batch 128, an AWT search step at batch 64 (2-step minus 1-step search), and a PGD-10
//! adversarial-training epoch over the training split.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use awt_attack::{Attack, LossKind, Pgd, per_example_loss};
use awt_base::{Classifier, Staged};
use awt_nets::{Arch, Init, Net};
use awt_ticket::{Method, SearchConfig, search};
use candle_core::{DType, Device, Module, Tensor};
use serde_json::{Value, json};

use crate::output::{device_name, say};

/// `awt check-device` flags.
#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// Checkpoints to compare on (repeat the flag); default: lenet-300-100 and lenet5-caffe
    /// initialised from seed 0.
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Test images for PGD-20's robust count.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Repetitions of each timing (the median is reported); 0 skips the timings.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Training images of the timed adversarial-training epoch; 0 skips it.
    #[arg(long, default_value_t = 10_000)]
    epoch_n: usize,
    #[command(flatten)]
    data: crate::args::DataArgs,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `f` on the device side: the device itself, or the CPU's device-generic path.
fn on_device<R>(dev: &Device, f: impl FnOnce() -> R) -> R {
    if dev.is_cpu() { awt_base::device::generic_path(f) } else { f() }
}

/// ‖a − b‖ / ‖a‖ (Frobenius), `b` brought to the CPU.
fn rel(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let d = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    Ok(d / a.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt().max(f64::MIN_POSITIVE))
}

fn ce(z: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    per_example_loss(z, &y.to_device(z.device())?, None, LossKind::CrossEntropy)
}

/// The weight gradients of the mean cross-entropy, in the order of `net.params()`.
fn weight_grads(net: &Net, x: &Tensor, y: &Tensor) -> Result<Vec<Tensor>> {
    let g = ce(&net.forward(x)?, y)?.mean_all()?.backward()?;
    net.params().values().map(|v| g.get(v.as_tensor()).cloned().context("a parameter without a gradient")).collect()
}

/// PGD-20's robust count (correct and not fooled) on `x`, in batches of 500.
fn robust(net: &Net, x: &Tensor, y: &Tensor) -> Result<Vec<bool>> {
    let pgd = Pgd::linf(0.1, 20, Pgd::eval_step(0.1, 20), 7);
    let n = x.dim(0)?;
    let mut out = Vec::with_capacity(n);
    for s in (0..n).step_by(500) {
        let len = 500.min(n - s);
        let (xb, yb) = (x.narrow(0, s, len)?, y.narrow(0, s, len)?);
        let ids: Vec<u64> = (s as u64..(s + len) as u64).collect();
        let correct = net.forward(&xb)?.argmax(1)?.to_device(&Device::Cpu)?.to_vec1::<u32>()?;
        let labels = yb.to_device(&Device::Cpu)?.to_vec1::<u32>()?;
        let o = pgd.perturb(net, &xb, &yb, None, &ids)?;
        out.extend(correct.iter().zip(&labels).zip(&o.fooled).map(|((c, l), f)| c == l && !f));
    }
    Ok(out)
}

fn search_cfg(steps: usize) -> Result<awt_ticket::ValidSearchConfig> {
    let d = awt_runs::Density::new(0.05)?;
    Ok(SearchConfig { steps, mask_every: 0, lambda_ker: 1e-3, ..SearchConfig::defaults(Method::Awt, d) }.validate()?)
}

/// The agreement of the device with the CPU on one network.
fn agreement(cpu: &Net, dev_net: &Net, ds: &awt_data::Dataset, n: usize, dev: &Device) -> Result<Value> {
    let n = n.min(ds.test.len());
    let idx: Vec<usize> = (0..n).collect();
    let (x, y) = ds.test.batch(&idx, &Device::Cpu)?;
    let (xd, yd) = (x.to_device(dev)?, y.to_device(dev)?);
    let m = 256.min(n);
    let (xs, ys, xsd) = (x.narrow(0, 0, m)?, y.narrow(0, 0, m)?, xd.narrow(0, 0, m)?);
    let (z, zd) = (cpu.forward(&xs)?, on_device(dev, || dev_net.forward(&xsd))?);
    let argmax = |t: &Tensor| -> Result<Vec<u32>> { Ok(t.argmax(1)?.to_device(&Device::Cpu)?.to_vec1::<u32>()?) };
    let same_class = argmax(&z)?.iter().zip(argmax(&zd)?).filter(|(a, b)| **a == *b).count();
    let loss = |z: &Tensor| ce(z, &ys);
    let (_, _, g) = cpu.loss_and_input_grad(&xs, &loss)?;
    let (_, _, gd) = on_device(dev, || dev_net.loss_and_input_grad(&xsd, &loss))?;
    let (w, wd) = (weight_grads(cpu, &xs, &ys)?, on_device(dev, || weight_grads(dev_net, &xsd, &ys))?);
    let wrel = w.iter().zip(&wd).map(|(a, b)| rel(a, b)).collect::<Result<Vec<_>>>()?;
    let (r, rd) = (robust(cpu, &x, &y)?, on_device(dev, || robust(dev_net, &xd, &yd))?);
    let count = |v: &[bool]| v.iter().filter(|b| **b).count();
    let x64 = x.narrow(0, 0, 64.min(n))?;
    let k = awt_ntk::structured(&cpu.stages(), &x64, &x64, awt_ntk::Kind::Full)?;
    let x64d = x64.to_device(dev)?;
    let kd = on_device(dev, || awt_ntk::structured(&dev_net.stages(), &x64d, &x64d, awt_ntk::Kind::Full))?;
    let train = ds.train.subset(0, 256.min(ds.train.len()))?;
    let cfg = search_cfg(1)?;
    let t = search(cpu, &train, &cfg, &mut |_| {})?;
    let td = on_device(dev, || search(dev_net, &train, &cfg, &mut |_| {}))?;
    let mut search_rel = 0f64;
    for (k, v) in t.net.params() {
        search_rel = search_rel.max(rel(v.as_tensor(), td.net.param(k).context("a parameter")?.as_tensor())?);
    }
    let mut mask_diff = 0usize;
    for (k, mk) in t.net.masks() {
        let md = td.net.masks().get(k).context("a mask")?.to_device(&Device::Cpu)?;
        mask_diff += mk.ne(&md)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()? as usize;
    }
    Ok(json!({
        "logits_rel": rel(&z, &zd)?,
        "same_class": format!("{same_class}/{m}"),
        "input_grad_rel": rel(&g, &gd)?,
        "weight_grad_rel_max": wrel.iter().copied().fold(0.0, f64::max),
        "pgd20_robust": {"n": n, "cpu": count(&r), "device": count(&rd),
                          "examples_differing": r.iter().zip(&rd).filter(|(a, b)| a != b).count()},
        "ntk64_full_rel": rel(&k, &kd)?,
        "search_step_weights_rel_max": search_rel,
        "search_step_mask_entries_differing": mask_diff,
    }))
}

/// Median milliseconds of `f` over `reps` runs (after one warm-up), the device synchronised.
fn median_ms(dev: &Device, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f()?;
            dev.synchronize()?;
            Ok(s.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// The time of one step from the medians of a short and a long run (`extra` more steps), or null
/// where the long run was not slower: a machine busy with other work, too few repetitions. A
/// negative time is never reported.
fn per_step(short_ms: f64, long_ms: f64, extra: f64) -> Value {
    if long_ms > short_ms { json!((long_ms - short_ms) / extra) } else { Value::Null }
}

/// Timings on the device side (see the module documentation).
fn timings(net: &Net, ds: &awt_data::Dataset, dev: &Device, a: &CheckArgs) -> Result<Value> {
    let (x, y) = ds.test.batch(&(0..128.min(ds.test.len())).collect::<Vec<_>>(), dev)?;
    let ids: Vec<u64> = (0..x.dim(0)? as u64).collect();
    let pgd1 = Pgd { random_start: false, ..Pgd::linf(0.1, 1, 0.01, 0) };
    let pgd10 = Pgd { steps: 10, ..pgd1.clone() };
    let reps = a.reps;
    on_device(dev, || {
        let p1 = median_ms(dev, reps, || Ok(pgd1.perturb(net, &x, &y, None, &ids).map(|_| ())?))?;
        let p10 = median_ms(dev, reps, || Ok(pgd10.perturb(net, &x, &y, None, &ids).map(|_| ())?))?;
        let fb = median_ms(dev, reps, || weight_grads(net, &x, &y).map(|_| ()))?;
        let train = ds.train.subset(0, 256.min(ds.train.len()))?;
        let (c1, c2) = (search_cfg(1)?, search_cfg(2)?);
        let s1 = median_ms(dev, reps.div_ceil(3), || Ok(search(net, &train, &c1, &mut |_| {}).map(|_| ())?))?;
        let s2 = median_ms(dev, reps.div_ceil(3), || Ok(search(net, &train, &c2, &mut |_| {}).map(|_| ())?))?;
        let epoch = if a.epoch_n > 0 { Some(at_epoch(net, ds, a.epoch_n)?) } else { None };
        Ok(json!({
            "pgd_step_b128_ms": per_step(p1, p10, 9.0),
            "fwd_bwd_b128_ms": fb,
            "awt_search_step_b64_ms": per_step(s1, s2, 1.0),
            "at_epoch": epoch,
        }))
    })
}

/// One PGD-10 adversarial-training epoch (batch 128, Adam) over the first `n` training images.
fn at_epoch(net: &Net, ds: &awt_data::Dataset, n: usize) -> Result<Value> {
    let n = n.min(ds.train.len());
    let data = ds.train.subset(0, n)?;
    let net = net.deep_clone()?;
    let cfg = awt_train::TrainConfig {
        epochs: 1,
        batch_size: 128,
        lr: 1e-3,
        optimizer: awt_train::OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        },
        schedule: awt_train::Schedule::Constant,
        objective: awt_train::Objective::Pgd { eps: 0.1, steps: 10, step_size: 0.025 },
        seed: 0,
        eval_n: 0,
        eval_eps: 0.1,
        eval_steps: 0,
    };
    let dir = std::env::temp_dir().join(format!("awt-check-device-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let hash = format!("{cfg:?}");
    let folder = awt_train::RunFolder::open(&dir, &hash, &hash, false)?;
    let vars = net.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let t = Instant::now();
    awt_train::train(&net, vars, &data, &data, &cfg.validate()?, &folder, &mut awt_train::NoHooks)?;
    net.device().synchronize()?;
    let s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({"images": n, "seconds": s, "seconds_per_60000": s * 60_000.0 / n as f64}))
}

/// What `awt check-device --json` writes: an object naming its reference and its nets.
const CHECK_JSON: crate::files::Kind = crate::files::Kind::new("a device check awt check-device wrote", |b| {
    serde_json::from_slice::<Value>(b).is_ok_and(|v| v.get("reference").is_some() && v.get("nets").is_some())
});

pub(crate) fn run(a: CheckArgs, dev: &Device) -> Result<()> {
    if a.n == 0 {
        bail!("--n must be ≥ 1 (test images for the robust count)");
    }
    let inputs: Vec<(&str, &std::path::Path)> = a.models.iter().map(|p| ("--model", p.as_path())).collect();
    let _owned = a.json.as_deref().map(|j| crate::files::own("--json", j, CHECK_JSON, &[], &inputs)).transpose()?;
    let ds = a.data.load()?;
    let side = device_name(dev).unwrap_or_else(|| "cpu (device-generic path)".into());
    let nets: Vec<(String, Net, Net)> = if a.models.is_empty() {
        ["lenet-300-100", "lenet5-caffe"]
            .iter()
            .map(|s| -> Result<_> {
                let arch: Arch = s.parse()?;
                let init = |d: &Device| Net::init(&arch, Init::KaimingUniform, 0, DType::F32, d);
                Ok((format!("{arch} (seed 0)"), init(&Device::Cpu)?, init(dev)?))
            })
            .collect::<Result<_>>()?
    } else {
        a.models
            .iter()
            .map(|p| -> Result<_> {
                let load = |d: &Device| awt_nets::load(p, None, DType::F32, d).with_context(|| p.display().to_string());
                Ok((p.display().to_string(), load(&Device::Cpu)?.net, load(dev)?.net))
            })
            .collect::<Result<_>>()?
    };
    let mut results = Vec::new();
    for (name, cpu, on_dev) in &nets {
        say!("{name}: {side} against the CPU's kernels");
        let agree = agreement(cpu, on_dev, &ds, a.n, dev)?;
        say!("  agreement {agree}");
        let times = if a.reps > 0 { timings(on_dev, &ds, dev, &a)? } else { Value::Null };
        if a.reps > 0 {
            say!("  timings on {side}: {times}");
        }
        results.push(json!({"net": name, "arch": cpu.arch().to_string(), "agreement": agree, "timings": times}));
    }
    let out = json!({
        "device": side,
        "reference": "cpu (hand-written kernels)",
        "data": a.data.name,
        "git_commit": crate::output::git_commit(),
        "nets": results,
    });
    if let Some(j) = &a.json {
        crate::output::write_json(j, &out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An earlier device check's JSON may be replaced by the next; other JSON may not.
    #[test]
    fn only_a_device_checks_own_json_is_replaceable() {
        assert!(CHECK_JSON.accepts(br#"{"device":"cuda:0","reference":"cpu","nets":[]}"#));
        assert!(!CHECK_JSON.accepts(br#"{"device":"cuda:0"}"#));
        assert!(!CHECK_JSON.accepts(b"{"));
    }

    /// One step's time from a short and a long run; never negative (a busy machine once gave −1000 ms).
    #[test]
    fn a_step_time_is_the_difference_per_extra_step_or_null() {
        assert_eq!(per_step(10.0, 37.0, 9.0), json!(3.0));
        assert_eq!(per_step(1000.0, 1.0, 1.0), Value::Null);
        assert_eq!(per_step(5.0, 5.0, 1.0), Value::Null);
    }
}
