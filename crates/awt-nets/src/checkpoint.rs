//! safetensors checkpoints in PyTorch layout, written atomically and read strictly.
//!
//! Layout: `<layer>.weight` (masked values), `<layer>.bias`, and `<layer>.weight_mask` for each
//! masked weight; metadata holds `arch`, `seed`, `init` and whatever the caller adds (git commit,
//! config hash, pruning method, ...). A state dict saved by PyTorch with
//! `safetensors.torch.save_file(model.state_dict(), path)` loads when the architecture is named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::arch::Arch;
use crate::net::Net;

/// A checkpoint that could not be written or read, with the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct CheckpointError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, naming the tensor where there is one.
    pub why: String,
    /// The error underneath (I/O, safetensors, candle), where there is one: the cause chain shows it
    /// after `why`.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    /// The network, masks applied.
    pub net: Net,
    /// True when the file had no `arch` metadata (a foreign state dict) and `arch` came from the caller.
    pub foreign: bool,
}

fn err(path: &Path, why: impl Into<String>) -> CheckpointError {
    CheckpointError { path: path.to_path_buf(), why: why.into(), source: None }
}

/// `what` failed on `path` because of `e`, kept as the source.
fn err_from(
    path: &Path,
    what: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> CheckpointError {
    CheckpointError { path: path.to_path_buf(), why: what.into(), source: Some(Box::new(e)) }
}

/// Saves `net` (weights multiplied by their masks, masks beside them, `net.meta` as metadata).
pub fn save(net: &Net, path: &Path) -> Result<(), CheckpointError> {
    let e = |x: candle_core::Error| err(path, x.to_string());
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, v) in net.params() {
        let t = match net.masks().get(name) {
            Some(m) => v.as_tensor().mul(m).map_err(e)?,
            None => v.as_tensor().clone(),
        };
        tensors.push((name.clone(), t.contiguous().map_err(e)?));
    }
    for (name, m) in net.masks() {
        tensors.push((format!("{name}_mask"), m.contiguous().map_err(e)?));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = awt_base::safetensors_bytes(&tensors, &net.meta).map_err(e)?;
    awt_base::write_atomic(path, &bytes).map_err(|x| err_from(path, "cannot write", x))?;
    tracing::debug!(path = %path.display(), tensors = tensors.len(), "checkpoint saved");
    Ok(())
}

/// A `torch.save` file: a zip archive, or a bare pickle (protocol 2+ opens with 0x80). A safetensors
/// file opens with its header length as a little-endian u64, whose first byte is 0x80 for one header
/// length in 256, so a file whose JSON header opens right after those 8 bytes is never taken for a
/// pickle (a pickle's 9th byte is an opcode or magic-number byte, never the `{` that opens the header).
fn looks_like_torch_save(bytes: &[u8]) -> bool {
    let safetensors_shaped = bytes.get(8) == Some(&b'{');
    !safetensors_shaped && (bytes.first() == Some(&0x80) || bytes.starts_with(b"PK\x03\x04"))
}

/// Loads a checkpoint as `dtype` on `device`. `arch` is required for files without `arch`
/// metadata (a plain PyTorch state dict) and must agree with the metadata when both exist.
pub fn load(path: &Path, arch: Option<&Arch>, dtype: DType, device: &Device) -> Result<Loaded, CheckpointError> {
    // No valid checkpoint is larger than the memory it would be loaded into.
    let max = awt_base::available_memory().unwrap_or(u64::MAX);
    let bytes = awt_base::read_bounded(path, max).map_err(|x| err_from(path, "cannot read", x))?;
    load_bytes(&bytes, path, arch, dtype, device)
}

/// [`load`] from bytes in memory; `path` only labels errors.
pub fn load_bytes(
    bytes: &[u8],
    path: &Path,
    arch: Option<&Arch>,
    dtype: DType,
    device: &Device,
) -> Result<Loaded, CheckpointError> {
    refuse_non_safetensors(bytes, path)?;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|x| err_from(path, "malformed or truncated safetensors file", x))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(|x| err_from(path, "malformed header", x))?;
    let meta: BTreeMap<String, String> =
        md.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let (arch, foreign) = which_arch(meta.get("arch"), arch, path)?;
    let shapes: BTreeMap<String, Vec<usize>> = arch.param_shapes().into_iter().collect();
    let mut params = BTreeMap::new();
    let mut masks = BTreeMap::new();
    let mut extra = Vec::new();
    for (name, view) in st.tensors() {
        let (target, is_mask) = match name.strip_suffix("_mask") {
            Some(w) if shapes.contains_key(w) && w.ends_with(".weight") => (w.to_string(), true),
            _ => (name.clone(), false),
        };
        let Some(shape) = shapes.get(&target) else {
            extra.push(name.clone());
            continue;
        };
        let t = read_tensor(&view, &name, shape, &arch, path, dtype, device)?;
        if is_mask {
            masks.insert(target, t);
        } else {
            params.insert(target, t);
        }
    }
    if !extra.is_empty() {
        extra.sort();
        return Err(err(path, format!("unexpected tensors for `{arch}`: {}", extra.join(", "))));
    }
    let missing: Vec<&str> = shapes.keys().filter(|k| !params.contains_key(*k)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(err(path, format!("missing tensors for `{arch}`: {}", missing.join(", "))));
    }
    let mut net = Net::from_parts(arch, params, BTreeMap::new(), meta).map_err(|x| err(path, x.to_string()))?;
    for (name, m) in masks {
        net.set_mask(&name, &m).map_err(|x| err(path, x.to_string()))?;
    }
    if foreign {
        net.meta.insert("arch".into(), net.arch().to_string());
        net.meta.insert("source".into(), "foreign state dict".into());
    }
    Ok(Loaded { net, foreign })
}

/// A PyTorch pickle, or bytes too short to be a safetensors file, named for what they are.
fn refuse_non_safetensors(bytes: &[u8], path: &Path) -> Result<(), CheckpointError> {
    if looks_like_torch_save(bytes) {
        return Err(err(
            path,
            "this is a PyTorch pickle/zip file (torch.save), which awt never unpickles; convert it with \
             `python -c \"import torch; from safetensors.torch import save_file; \
             save_file(torch.load('IN.pt', weights_only=True), 'OUT.safetensors')\"` and pass --arch",
        ));
    }
    if bytes.len() < 8 {
        return Err(err(
            path,
            format!("truncated: {} bytes, a safetensors file has at least an 8-byte header length", bytes.len()),
        ));
    }
    Ok(())
}

/// The architecture: the file's (which a requested one must equal), else the requested one for a
/// foreign state dict (`true`).
fn which_arch(file: Option<&String>, arch: Option<&Arch>, path: &Path) -> Result<(Arch, bool), CheckpointError> {
    let file_arch = match file {
        Some(a) => Some(a.parse::<Arch>().map_err(|x| err_from(path, "metadata `arch`", x))?),
        None => None,
    };
    match (file_arch, arch) {
        (Some(f), Some(a)) if &f != a => Err(err(path, format!("the file is a `{f}` but `{a}` was requested"))),
        (Some(f), _) => Ok((f, false)),
        (None, Some(a)) => Ok((a.clone(), true)),
        (None, None) => {
            Err(err(path, "no `arch` in the metadata (a plain PyTorch state dict?): name the architecture with --arch"))
        }
    }
}

/// One tensor of the file, of the `shape` `arch` needs, read into `dtype`; its values finite in the
/// file and in `dtype`.
fn read_tensor(
    view: &safetensors::tensor::TensorView<'_>,
    name: &str,
    shape: &[usize],
    arch: &Arch,
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<Tensor, CheckpointError> {
    if view.shape() != shape {
        return Err(err(path, format!("tensor `{name}` has shape {:?}, `{arch}` needs {shape:?}", view.shape())));
    }
    let t = candle_core::safetensors::Load::load(view, device)
        .and_then(|t| t.to_dtype(DType::F64))
        .map_err(|x| err(path, format!("tensor `{name}`: cannot read {:?} data: {x}", view.dtype())))?;
    let vals =
        t.flatten_all().and_then(|t| t.to_vec1::<f64>()).map_err(|x| err_from(path, format!("tensor `{name}`"), x))?;
    if let Some(i) = vals.iter().position(|v| !v.is_finite()) {
        return Err(err(path, format!("tensor `{name}` holds a non-finite value ({}) at flat index {i}", vals[i])));
    }
    let t = t.to_dtype(dtype).map_err(|x| err_from(path, format!("tensor `{name}`"), x))?;
    // Finite in the file is not enough: the values must stay finite in the dtype they are used in
    // (1e300 is a finite f64 and an infinite f32).
    let used = t
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|x| err_from(path, format!("tensor `{name}`"), x))?;
    if let Some(i) = used.iter().position(|v| !v.is_finite()) {
        return Err(err(
            path,
            format!("tensor `{name}` holds {} at flat index {i}, which overflows {dtype:?}", vals[i]),
        ));
    }
    Ok(t)
}
