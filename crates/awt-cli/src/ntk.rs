//! `awt ntk`: the empirical NTK of a checkpoint on clean or adversarial inputs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use awt_attack::{Attack, Pgd};
use awt_base::Staged;
use awt_nets::Arch;
use awt_ntk::{Kind, metrics};
use candle_core::{DType, Device, Module, Tensor};
use clap::Args;

use crate::args::{DataArgs, NtkAdv, NtkImpl, SplitArg, value_name};
use crate::output::say;

/// Flags of `awt ntk`.
#[derive(Args, Debug)]
pub(crate) struct NtkArgs {
    #[arg(long)]
    model: PathBuf,
    /// Architecture of a foreign state dict.
    #[arg(long)]
    arch: Option<Arch>,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Examples in the kernel's rows.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Start of a second batch for the columns (X1 ≠ X2); default: the same batch.
    #[arg(long)]
    offset2: Option<usize>,
    /// Evaluate the kernel on adversarial examples of the model itself.
    #[arg(long, value_enum)]
    adv: Option<NtkAdv>,
    /// With --adv: the attack's ℓ∞ radius (default 0.1).
    #[arg(long, requires = "adv")]
    eps: Option<f64>,
    /// With --adv: PGD steps (default 10).
    #[arg(long, requires = "adv")]
    steps: Option<usize>,
    #[arg(long, requires = "adv")]
    step_size: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Trace over classes: (n × n) instead of (n·k × n·k).
    #[arg(long)]
    trace: bool,
    /// Each example's kernel with itself only, Θ(x_i, x_i): (n, k, k), or (n,) with --trace. O(n)
    /// time and memory where the whole kernel is O(n²), computed --block examples at a time (and
    /// attacked so with --adv), so --n can be a whole split.
    #[arg(long, conflicts_with = "offset2")]
    diagonal: bool,
    /// The implementation.
    #[arg(long = "impl", value_enum, default_value_t = NtkImpl::Structured)]
    implementation: NtkImpl,
    /// Examples per block (bounded memory).
    #[arg(long, default_value_t = 128)]
    block: usize,
    /// Compute in f64.
    #[arg(long)]
    f64: bool,
    /// Summarise the kernel's spectrum (λ_max, λ_min, condition number): O((n·k)³), so by default
    /// only up to dimension 2,000 (`always` or `never` to choose).
    #[arg(long, value_enum, default_value_t = SpectrumArg::Auto)]
    spectrum: SpectrumArg,
    #[arg(long)]
    out: PathBuf,
}

/// `awt ntk --spectrum`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SpectrumArg {
    /// Up to dimension 2,000.
    Auto,
    Always,
    Never,
}

/// Peak bytes of an `awt ntk` run: the kernel (rows × cols entries) and its f64 copies (the
/// finiteness check, the file's bytes, the spectrum's matrices), and for the reference the
/// per-example Jacobians of both batches (entries × parameters).
fn ntk_bytes(rows: f64, cols: f64, elem: f64, params: f64, reference: bool, spectrum: bool) -> f64 {
    let kernel = rows * cols;
    let mut b = kernel * (2.0 * elem + 16.0);
    if spectrum {
        b += 3.0 * rows * rows * 8.0;
    }
    if reference {
        b += (rows + cols) * params * elem;
    }
    b
}

pub(crate) fn run(a: NtkArgs, dev: &Device) -> Result<()> {
    let _owned = crate::files::own("--out", &a.out, crate::files::Kind::KERNEL, &[], &[("--model", &a.model)])?;
    if a.n == 0 {
        bail!("--n must be ≥ 1 (examples in the kernel)");
    }
    if a.block == 0 {
        bail!("--block must be ≥ 1 (examples per block)");
    }
    if a.adv.is_some() && a.steps == Some(0) {
        bail!("--steps must be ≥ 1 with --adv pgd (0 steps would leave the inputs at a random start)");
    }
    let dtype = if a.f64 { DType::F64 } else { DType::F32 };
    let net = awt_nets::load(&a.model, a.arch.as_ref(), dtype, dev)?.net;
    if a.diagonal {
        return run_diagonal(&a, &net, dtype);
    }
    let classes = net.arch().classes() as f64;
    let per = if a.trace { 1.0 } else { classes };
    let (rows, cols) = (a.n as f64 * per, a.n as f64 * per);
    let dim = if a.offset2.is_none() { a.n * per as usize } else { 0 };
    let spectrum = dim > 0 && (a.spectrum == SpectrumArg::Always || (a.spectrum == SpectrumArg::Auto && dim <= 2000));
    let params = net.arch().param_count().unwrap_or(u64::MAX) as f64;
    let elem = if a.f64 { 8.0 } else { 4.0 };
    let reference = a.implementation == NtkImpl::Reference;
    crate::output::check_memory(&format!("--n {}", a.n), ntk_bytes(rows, cols, elem, params, reference, spectrum))?;
    let ds = a.data.load_for(&net)?;
    let split = a.split.of(&ds)?;
    let batch = |flag: &str, offset: usize| inputs(&a, &net, split, dtype, flag, offset, a.n);
    let (x1, i1) = batch("--offset", a.offset)?;
    let (x2, i2) = match a.offset2 {
        Some(o) => batch("--offset2", o)?,
        None => (x1.clone(), i1.clone()),
    };
    let same = a.offset2.is_none();
    let kind = if a.trace { Kind::Trace } else { Kind::Full };
    let start = Instant::now();
    let k = match a.implementation {
        NtkImpl::Structured => {
            awt_ntk::structured_blocked(&net.stages(), &x1, if same { &x1 } else { &x2 }, kind, a.block)?
        }
        NtkImpl::Reference => {
            awt_ntk::reference(&|x: &Tensor| net.forward(x), &net.vars(), &x1, if same { &x1 } else { &x2 }, kind)?
        }
    };
    let secs = start.elapsed().as_secs_f64();
    refuse_non_finite(&a, &k)?;
    write_kernel(&a, &k, &i1, (!same).then_some(i2.as_slice()))?;
    say!(
        "{}: {} NTK of {}, {} implementation: {:?} in {:.3} s",
        a.out.display(),
        if a.trace { "traced" } else { "full" },
        kernel_of(&a, &net),
        value_name(&a.implementation),
        k.dims(),
        secs
    );
    report_spectrum(&k, same, spectrum, dim)
}

/// An error, before anything is written, when the kernel has non-finite entries.
fn refuse_non_finite(a: &NtkArgs, k: &Tensor) -> Result<()> {
    let bad = k.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        bail!(
            "{}: the kernel has {bad} non-finite entries of {}: the weights or activations overflow (huge or non-finite weights?); nothing was written",
            a.model.display(),
            k.elem_count()
        );
    }
    Ok(())
}

/// What a kernel was computed of: `arch (model) on data split [from..to)`, and the attack.
fn kernel_of(a: &NtkArgs, net: &awt_nets::Net) -> String {
    let (eps, steps) = (a.eps.unwrap_or(0.1), a.steps.unwrap_or(10));
    format!(
        "{} ({}) on {} {} [{}..{}){}",
        net.arch(),
        a.model.display(),
        a.data.name,
        value_name(&a.split),
        a.offset,
        a.offset + a.n,
        if a.adv.is_some() { format!(", PGD-{steps} adversarial ε = {eps}") } else { String::new() }
    )
}

/// `--diagonal`: Θ(x_i, x_i) for `--n` examples, `--block` at a time.
fn run_diagonal(a: &NtkArgs, net: &awt_nets::Net, dtype: DType) -> Result<()> {
    if a.implementation != NtkImpl::Structured {
        bail!("--diagonal: only the structured implementation computes it (drop --impl reference)");
    }
    if a.spectrum == SpectrumArg::Always {
        bail!("--diagonal: per-example kernels have no spectrum to summarise (drop --spectrum always)");
    }
    let classes = net.arch().classes() as f64;
    let per = if a.trace { 1.0 } else { classes * classes };
    let elem = if a.f64 { 8.0 } else { 4.0 };
    crate::output::check_memory(&format!("--n {}", a.n), ntk_bytes(a.n as f64, per, elem, 0.0, false, false))?;
    let ds = a.data.load_for(net)?;
    let split = a.split.of(&ds)?;
    // The whole range first, so that a bad --offset/--n is refused before any work.
    if a.n == 0 || a.offset + a.n > split.len() {
        bail!(
            "--offset {} --n {}: the {} split of {} has {} examples",
            a.offset,
            a.n,
            value_name(&a.split),
            a.data.name,
            split.len()
        );
    }
    let kind = if a.trace { Kind::Trace } else { Kind::Full };
    let start = Instant::now();
    let pb = crate::output::progress(a.n as u64, "ntk diagonal");
    let mut parts = Vec::new();
    for b0 in (a.offset..a.offset + a.n).step_by(a.block) {
        let count = a.block.min(a.offset + a.n - b0);
        let (x, _) = inputs(a, net, split, dtype, "--offset", b0, count)?;
        parts.push(awt_ntk::structured_diagonal(&net.stages(), &x, kind)?.detach());
        pb.inc(count as u64);
    }
    pb.finish_and_clear();
    let k = Tensor::cat(&parts, 0)?;
    let secs = start.elapsed().as_secs_f64();
    refuse_non_finite(a, &k)?;
    let idx: Vec<usize> = (a.offset..a.offset + a.n).collect();
    write_kernel(a, &k, &idx, None)?;
    say!(
        "{}: diagonal {} NTK of {}: {:?} in {:.3} s",
        a.out.display(),
        if a.trace { "traced" } else { "full" },
        kernel_of(a, net),
        k.dims(),
        secs
    );
    let traces = match a.trace {
        true => k.to_dtype(DType::F64)?,
        false => {
            let eye = Tensor::eye(k.dim(1)?, DType::F64, k.device())?.unsqueeze(0)?;
            k.to_dtype(DType::F64)?.broadcast_mul(&eye)?.sum(2)?.sum(1)?
        }
    };
    let t = traces.to_vec1::<f64>()?;
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    let (lo, hi) = t.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    say!("per-example trace Σ_c Θ(x_i, x_i)[c, c]: mean {mean:.6e}, min {lo:.6e}, max {hi:.6e}");
    Ok(())
}

/// `count` examples of the split from `offset` (named by `flag` in errors), attacked with `--adv`,
/// shaped for the network; with their indices.
fn inputs(
    a: &NtkArgs,
    net: &awt_nets::Net,
    split: &awt_data::Split,
    dtype: DType,
    flag: &str,
    offset: usize,
    count: usize,
) -> Result<(Tensor, Vec<usize>)> {
    let (eps, steps) = (a.eps.unwrap_or(0.1), a.steps.unwrap_or(10));
    if count == 0 || offset + count > split.len() {
        bail!(
            "{flag} {offset} --n {}: the {} split of {} has {} examples",
            a.n,
            value_name(&a.split),
            a.data.name,
            split.len()
        );
    }
    let idx: Vec<usize> = (offset..offset + count).collect();
    let (x, y) = split.batch(&idx, &net.device())?;
    let x = x.to_dtype(dtype)?;
    let x = match a.adv {
        None => x,
        Some(NtkAdv::Pgd) => {
            let step = a.step_size.unwrap_or(Pgd::eval_step(eps, steps));
            let pgd = Pgd::linf(eps, steps, step, a.seed);
            let ids: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
            pgd.perturb(net, &x, &y, None, &ids)?.adv
        }
    };
    let mut shape = vec![count];
    shape.extend(net.arch().input_shape());
    Ok((x.reshape(shape.as_slice())?, idx))
}

/// Writes the kernel and the indices of its rows (and of its columns when they differ) to `--out`.
fn write_kernel(a: &NtkArgs, k: &Tensor, i1: &[usize], i2: Option<&[usize]>) -> Result<()> {
    let idx_t = |v: &[usize]| Tensor::from_vec(v.iter().map(|&i| i as u32).collect::<Vec<_>>(), v.len(), &Device::Cpu);
    let mut tensors = HashMap::from([("ntk".to_string(), k.clone()), ("indices".to_string(), idx_t(i1)?)]);
    if let Some(i2) = i2 {
        tensors.insert("indices2".to_string(), idx_t(i2)?);
    }
    let mut tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = awt_base::safetensors_bytes(&tensors, &Default::default())?;
    awt_base::write_atomic(&a.out, &bytes).with_context(|| format!("cannot write {}", a.out.display()))?;
    Ok(())
}

/// The kernel's trace and spectrum (a square kernel of small enough `dim`, or `--spectrum always`),
/// or its Frobenius norm when rows and columns differ.
fn report_spectrum(k: &Tensor, same: bool, spectrum: bool, dim: usize) -> Result<()> {
    if same && !spectrum {
        say!(
            "spectrum not computed (dimension {dim}: O(dim³) time; --spectrum always computes it); trace {:.6e}",
            metrics::trace(k)?
        );
    } else if same {
        let ev = metrics::spectrum(k)?;
        say!(
            "trace {:.6e}, λ_max {:.6e}, λ_min {:.6e}, condition number {:.3e}",
            metrics::trace(k)?,
            ev[0],
            ev[ev.len() - 1],
            metrics::condition_number(&ev)
        );
    } else {
        say!(
            "X1 ≠ X2: no spectrum (the kernel is not square-symmetric); Frobenius norm {:.6e}",
            k.to_dtype(DType::F64)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?
        );
    }
    Ok(())
}
