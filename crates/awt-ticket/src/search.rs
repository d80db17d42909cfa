//! The search loop: teacher and student, per-batch loss, Adam, mask re-selection, and the ticket.

use std::collections::BTreeMap;

use awt_attack::Pgd;
use awt_base::Rng;
use awt_data::{Split, epoch_order};
use awt_nets::Net;
use awt_ntk::metrics;
use awt_prune::{Allocation, Target};
use awt_train::{Optimizer, OptimizerConfig};
use candle_core::{DType, Tensor, Var};

use crate::config::{AdvSource, InputMix, Method, SearchConfig, ValidSearchConfig, WeightsFrom};
use crate::error::SearchError;
use crate::loss::{LossTerms, loss_terms};
use crate::state::{SearchState, restore, state};

/// One step of the search log (the awt binary writes one per line of `<ticket>.search.jsonl`): the
/// run contract's record.
pub use awt_runs::records::SearchLine as SearchLog;

/// The result: a network holding the ticket's masks and weights, and the log.
#[derive(Debug)]
pub struct Ticket {
    /// Masked network (weights already multiplied by the masks), metadata filled in.
    pub net: Net,
    /// One entry per step.
    pub log: Vec<SearchLog>,
}

/// The masks of a re-selection: each layer's largest weights, as many as `cfg` allocates to it.
fn layerwise_magnitude(net: &Net, cfg: &SearchConfig) -> Result<BTreeMap<String, Tensor>, SearchError> {
    let w: BTreeMap<String, Tensor> =
        net.weights().map(|(k, v)| Ok((k.clone(), v.as_tensor().abs()?))).collect::<Result<_, candle_core::Error>>()?;
    let target = if cfg.layer_keep.is_empty() {
        Target::Density { density: cfg.density, alloc: Allocation::Uniform, dense: &cfg.keep_dense }
    } else {
        Target::Counts(&cfg.layer_keep)
    };
    Ok(target.select(&w)?)
}

/// Given layer counts fit `net`: they add up to the density, and keep the layers kept dense whole.
fn check_layer_keep(net: &Net, cfg: &SearchConfig) -> Result<(), SearchError> {
    if cfg.layer_keep.is_empty() {
        return Ok(());
    }
    let sizes: BTreeMap<String, usize> = net.weights().map(|(k, v)| (k.clone(), v.as_tensor().elem_count())).collect();
    Ok(awt_prune::check_counts(&sizes, &cfg.layer_keep, cfg.density, &cfg.keep_dense)?)
}

fn count_changes(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> Result<usize, SearchError> {
    let mut n = 0;
    for (k, m) in a {
        n += m.ne(&b[k])?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()? as usize;
    }
    Ok(n)
}

fn rel(a: &Tensor, b: &Tensor) -> Result<f64, SearchError> {
    Ok(metrics::relative_distance(a, b)?)
}

/// Saving and resuming a long search.
pub struct Checkpoints<'a> {
    /// Save a state every this many steps (0: never).
    pub every: usize,
    /// Continue from this state instead of the start.
    pub resume: Option<SearchState>,
    /// Called with each state to keep; an error stops the search.
    pub save: &'a mut dyn FnMut(&SearchState) -> Result<(), SearchError>,
}

/// Runs the search from the dense initialisation `teacher` on `data`.
pub fn search(
    teacher: &Net,
    data: &Split,
    cfg: &ValidSearchConfig,
    progress: &mut dyn FnMut(&SearchLog),
) -> Result<Ticket, SearchError> {
    let mut never = |_: &SearchState| Ok(());
    search_resumable(teacher, data, cfg, Checkpoints { every: 0, resume: None, save: &mut never }, progress)
}

/// [`search`], saving a [`SearchState`] every `ck.every` steps and starting from `ck.resume` when
/// given. The returned log holds the steps this call ran.
pub fn search_resumable(
    teacher: &Net,
    data: &Split,
    cfg: &ValidSearchConfig,
    ck: Checkpoints,
    progress: &mut dyn FnMut(&SearchLog),
) -> Result<Ticket, SearchError> {
    if !teacher.masks().is_empty() {
        return Err(SearchError::Invalid("the teacher must be a dense network (it has masks)".into()));
    }
    let teacher = teacher.deep_clone()?;
    let mut student = teacher.deep_clone()?;
    check_layer_keep(&teacher, cfg)?;
    let mut masks = layerwise_magnitude(&teacher, cfg)?;
    for (k, m) in &masks {
        student.set_mask(k, m)?;
    }
    let weight_vars: Vec<(String, Var)> = student.params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut opt = Optimizer::new(
        OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false },
        weight_vars,
    );
    let first = match &ck.resume {
        Some(st) if st.step > cfg.steps => {
            return Err(SearchError::Invalid(format!(
                "the search state is at step {}, beyond the {} steps asked for",
                st.step, cfg.steps
            )));
        }
        Some(st) => {
            restore(st, &mut student, &mut masks, &mut opt)?;
            st.step
        }
        None => 0,
    };
    let n = data.len();
    if n < cfg.batch {
        return Err(SearchError::Invalid(format!("the data has {n} examples, fewer than one batch of {}", cfg.batch)));
    }
    let per_epoch = n / cfg.batch;
    let mut log = Vec::with_capacity(cfg.steps);
    let input_shape = {
        let mut s = vec![0];
        s.extend(teacher.arch().input_shape());
        s
    };
    for step in first..cfg.steps {
        let inputs = step_inputs(step, data, per_epoch, &input_shape, &teacher, &student, cfg)?;
        let terms = loss_terms(&student, &teacher, &inputs, &masks, cfg)?;
        let LossTerms { kernel_term, output_term, l2_term, ks, kt, fs, ft } = terms;
        let loss = ((&kernel_term + &output_term)? + &l2_term)?;
        let lv = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !lv.is_finite() {
            return Err(SearchError::Diverged { step, loss: lv });
        }
        let grads = loss.backward()?;
        opt.step(&grads, cfg.lr)?;
        let changes = if cfg.mask_every > 0 && (step + 1) % cfg.mask_every == 0 && step + cfg.mask_every < cfg.steps {
            reselect(&mut student, &mut masks, cfg)?
        } else {
            0
        };
        let s = |t: &Tensor| -> Result<f64, SearchError> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let entry = SearchLog {
            step: step as u64,
            loss: lv,
            kernel_term: s(&kernel_term)?,
            output_term: s(&output_term)?,
            l2_term: s(&l2_term)?,
            kernel_distance: rel(&ks.detach(), &kt)?,
            output_distance: rel(&fs.detach(), &ft)?,
            mask_changes: changes as u64,
        };
        progress(&entry);
        log.push(entry);
        if ck.every > 0 && (step + 1) % ck.every == 0 && step + 1 < cfg.steps {
            (ck.save)(&state(step + 1, &student, &masks, &opt)?)?;
        }
    }
    Ok(Ticket { net: final_ticket(cfg, &teacher, student, &masks)?, log })
}

/// The search step `step`'s inputs: its batch of the seeded epoch order, clean (NTT) or attacked
/// (AWT: PGD on the teacher, the student or half each, alone or beside the clean images).
fn step_inputs(
    step: usize,
    data: &Split,
    per_epoch: usize,
    input_shape: &[usize],
    teacher: &Net,
    student: &Net,
    cfg: &ValidSearchConfig,
) -> Result<Tensor, SearchError> {
    let dev = teacher.device();
    let n = data.len();
    let epoch = (step / per_epoch) as u64;
    let b = step % per_epoch;
    let order = epoch_order(n, cfg.seed, epoch);
    let idx = &order[b * cfg.batch..(b + 1) * cfg.batch];
    let (x, y) = data.batch(idx, &dev)?;
    let x = x.to_dtype(teacher.dtype())?;
    let ids: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
    let inputs = match cfg.method {
        Method::Ntt => x.clone(),
        Method::Awt => {
            let seed = Rng::new(cfg.seed).derive("search-attack").fork(step as u64).next_u64();
            let pgd = Pgd::linf(cfg.eps, cfg.attack_steps, cfg.attack_step_size, seed);
            let adv = |m: &Net, xs: &Tensor, ys: &Tensor, is: &[u64]| pgd.last_iterate(m, xs, ys, is);
            let xa = match cfg.adv_source {
                AdvSource::Teacher => adv(teacher, &x, &y, &ids)?,
                AdvSource::Student => adv(student, &x, &y, &ids)?,
                AdvSource::Both => {
                    let h = cfg.batch / 2;
                    let a = adv(teacher, &x.narrow(0, 0, h)?, &y.narrow(0, 0, h)?, &ids[..h])?;
                    let s = adv(student, &x.narrow(0, h, cfg.batch - h)?, &y.narrow(0, h, cfg.batch - h)?, &ids[h..])?;
                    Tensor::cat(&[&a, &s], 0)?
                }
            };
            match cfg.inputs {
                InputMix::Adversarial => xa.detach(),
                InputMix::CleanAndAdversarial => Tensor::cat(&[&x, &xa.detach()], 0)?,
            }
        }
    };
    let mut shape = input_shape.to_vec();
    shape[0] = inputs.dim(0)?;
    Ok(inputs.reshape(shape.as_slice())?)
}

/// Re-selects the student's masks by layer-wise magnitude; returns how many weights changed.
fn reselect(
    student: &mut Net,
    masks: &mut BTreeMap<String, Tensor>,
    cfg: &ValidSearchConfig,
) -> Result<usize, SearchError> {
    let new = layerwise_magnitude(student, cfg)?;
    let changes = count_changes(masks, &new)?;
    for (k, m) in &new {
        student.set_mask(k, m)?;
    }
    *masks = new;
    Ok(changes)
}

/// The ticket: the final mask with transferred (the student's) or rewound (the teacher's) weights.
fn final_ticket(
    cfg: &ValidSearchConfig,
    teacher: &Net,
    student: Net,
    masks: &BTreeMap<String, Tensor>,
) -> Result<Net, SearchError> {
    let mut ticket = match cfg.weights {
        WeightsFrom::Transferred => student,
        WeightsFrom::Rewind => {
            let mut t = teacher.deep_clone()?;
            for (k, m) in masks {
                t.set_mask(k, m)?;
            }
            t
        }
    };
    ticket.apply_masks()?;
    label(&mut ticket, cfg);
    Ok(ticket)
}

/// The search's settings as a ticket's metadata records them.
fn describe(cfg: &SearchConfig) -> String {
    format!(
        "steps={} batch={} lr={} lambda_ker={} lambda_l2={} mask_every={} eps={} attack_steps={} attack_step_size={} adv_source={:?} inputs={:?} weights={:?} seed={}",
        cfg.steps,
        cfg.batch,
        cfg.lr,
        cfg.lambda_ker,
        cfg.lambda_l2,
        cfg.mask_every,
        cfg.eps,
        cfg.attack_steps,
        cfg.attack_step_size,
        cfg.adv_source,
        cfg.inputs,
        cfg.weights,
        cfg.seed
    ) + &if cfg.keep_dense.is_empty() { String::new() } else { format!(" keep_dense={}", cfg.keep_dense.join(",")) }
        + &if cfg.layer_keep.is_empty() {
            String::new()
        } else {
            format!(" layer_keep={}", awt_prune::counts_text(&cfg.layer_keep))
        }
}

fn label(ticket: &mut Net, cfg: &SearchConfig) {
    let m = &mut ticket.meta;
    m.insert("method".into(), format!("{:?}", cfg.method).to_lowercase());
    m.insert("density".into(), cfg.density.to_string());
    m.insert("search".into(), describe(cfg));
}

/// The rewound ticket of a search already run with transferred weights: rewinding changes only the
/// ticket's final weights (the teacher's, under the same final mask), so the search need not run
/// again. `transferred` must be that search's ticket — the same settings but `weights`, which its
/// metadata is checked against — and the result equals, tensor for tensor and in its metadata, what
/// [`search`] with `cfg` (rewound weights) returns.
pub fn rewind_ticket(teacher: &Net, transferred: &Net, cfg: &ValidSearchConfig) -> Result<Net, SearchError> {
    if cfg.weights != WeightsFrom::Rewind {
        return Err(SearchError::Invalid("rewinding a ticket needs the rewound-weights setting".into()));
    }
    let want = describe(&SearchConfig { weights: WeightsFrom::Transferred, ..(**cfg).clone() });
    let have = transferred.meta.get("search").map_or("nothing", String::as_str);
    if have != want {
        return Err(SearchError::Invalid(format!(
            "the ticket to rewind was not made by this search with transferred weights: it records `{have}`, this search is `{want}`"
        )));
    }
    let mut t = teacher.deep_clone()?;
    for k in teacher.weight_names() {
        let m = transferred
            .masks()
            .get(&k)
            .ok_or_else(|| SearchError::Invalid(format!("the ticket to rewind has no mask for `{k}`")))?;
        t.set_mask(&k, m)?;
    }
    t.apply_masks()?;
    label(&mut t, cfg);
    Ok(t)
}
