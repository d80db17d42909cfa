//! The run folder: an exclusive lock, the configuration and the per-epoch checkpoint
//! (`state.safetensors`), and the rules that keep them consistent. What else a caller records per
//! epoch (the awt binary's `metrics.jsonl`) it writes from [`crate::Hooks`].
//!
//! Nothing is written before every check has passed: a refused run leaves the folder as it was.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};

use crate::error::{TrainError, file_err};
use crate::optim::Optimizer;

/// The configuration file a fresh run writes.
pub use awt_runs::layout::CONFIG;
use awt_runs::layout::LOCK;
pub(crate) use awt_runs::layout::STATE;

/// An open run folder, locked by this process until dropped.
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
    config_hash: String,
    resume: bool,
    _lock: File,
}

/// Takes the folder's lock file (`<dir>/.lock`, an OS-level exclusive lock that dies with the
/// process) and writes this process's id into it; a second process gets an error naming the folder
/// and the holder.
pub fn lock_folder(dir: &Path, what: &str) -> Result<File, TrainError> {
    let path = dir.join(LOCK);
    awt_runs::lock::lock_exclusive(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => {
            file_err(dir, format!("{what} is in use by {e}; wait for it to finish or choose another folder"))
        }
        _ => TrainError::file_io(&path, "cannot lock", e),
    })
}

/// Removes the temporary files a killed writer left behind (`.<name>.tmp-<pid>` of
/// [`awt_base::write_atomic`]); only call it while holding the folder's lock.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl RunFolder {
    /// Opens `dir` for a run whose configuration file is `config` (hash `config_hash`).
    ///
    /// - A fresh run (`resume == false`) creates the folder; it refuses a folder that already holds
    ///   a checkpoint, before writing anything; then writes `config.toml`.
    /// - `resume == true` needs the folder and its checkpoint; the checkpoint's configuration hash
    ///   must equal `config_hash` (checked again when the checkpoint is read).
    /// - Either way the folder is locked: a second process on the same folder gets an error naming
    ///   the holder. Temporary files of a killed writer are removed.
    pub fn open(dir: &Path, config: &str, config_hash: &str, resume: bool) -> Result<RunFolder, TrainError> {
        if resume {
            if !dir.is_dir() {
                return Err(file_err(dir, "cannot resume: no such run folder (drop --resume to start a new run)"));
            }
        } else {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::file_io(dir, "cannot create the run folder", e))?;
        }
        let lock = lock_folder(dir, "this run folder")?;
        let state = dir.join(STATE);
        if resume {
            if !state.exists() {
                return Err(file_err(
                    &state,
                    "cannot resume: no checkpoint (the run did not finish an epoch); start it again without --resume",
                ));
            }
            check_state_hash(&state, config_hash)?;
        } else if state.exists() {
            return Err(file_err(
                &state,
                "a run already lives in this folder: pass --resume to continue it, or choose another --out",
            ));
        }
        remove_stale_temporaries(dir);
        if !resume {
            let p = dir.join(CONFIG);
            awt_base::write_atomic(&p, config.as_bytes()).map_err(|e| TrainError::file_io(&p, "cannot write", e))?;
        }
        Ok(RunFolder { dir: dir.to_path_buf(), config_hash: config_hash.to_string(), resume, _lock: lock })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when this run continues from a checkpoint.
    pub fn resuming(&self) -> bool {
        self.resume
    }

    /// The configuration hash this run was opened with.
    pub fn config_hash(&self) -> &str {
        &self.config_hash
    }

    /// The last epoch whose checkpoint is on disk, if any.
    pub(crate) fn checkpoint_epoch(&self) -> Option<usize> {
        let bytes = std::fs::read(self.dir.join(STATE)).ok()?;
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        md.metadata().as_ref()?.get("epoch")?.parse().ok()
    }

    /// Writes the checkpoint of `epoch`: parameters, optimiser state, and the hooks' state.
    pub(crate) fn save_state(
        &self,
        vars: &[(String, Var)],
        opt: &Optimizer,
        epoch: usize,
        hook_state: &BTreeMap<String, String>,
    ) -> Result<(), TrainError> {
        let path = self.dir.join(STATE);
        let mut tensors: Vec<(String, Tensor)> =
            vars.iter().map(|(n, v)| (format!("param.{n}"), v.as_tensor().clone())).collect();
        tensors.extend(opt.state());
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let mut meta = BTreeMap::from([
            ("epoch".to_string(), epoch.to_string()),
            ("config_hash".to_string(), self.config_hash.clone()),
            ("optimizer_steps".to_string(), opt.steps().to_string()),
        ]);
        meta.extend(hook_state.iter().map(|(k, v)| (format!("hook.{k}"), v.clone())));
        let bytes = awt_base::safetensors_bytes(&tensors, &meta).map_err(|e| file_err(&path, e))?;
        awt_base::write_atomic(&path, &bytes).map_err(|e| file_err(&path, e))
    }

    /// Loads the checkpoint into `vars` and `opt`; returns the epoch it finished and the hooks' state.
    pub(crate) fn load_state(
        &self,
        vars: &[(String, Var)],
        opt: &mut Optimizer,
    ) -> Result<(usize, BTreeMap<String, String>), TrainError> {
        let path = self.dir.join(STATE);
        let bytes = std::fs::read(&path).map_err(|e| TrainError::file_io(&path, "cannot resume", e))?;
        let meta = state_metadata(&path, &bytes)?;
        if meta.get("config_hash").map(String::as_str) != Some(self.config_hash.as_str()) {
            return Err(hash_mismatch(&path, meta.get("config_hash"), &self.config_hash));
        }
        let epoch: usize =
            meta.get("epoch").and_then(|e| e.parse().ok()).ok_or_else(|| file_err(&path, "no epoch in metadata"))?;
        let steps: u64 = meta.get("optimizer_steps").and_then(|e| e.parse().ok()).unwrap_or(0);
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| file_err(&path, e))?;
        // The checkpoint's tensors go to the device of the model they belong to.
        let dev = match vars.first() {
            Some((_, v)) => v.device().clone(),
            None => candle_core::Device::Cpu,
        };
        let mut all = HashMap::new();
        for (name, view) in st.tensors() {
            let t = candle_core::safetensors::Load::load(&view, &dev)
                .map_err(|e| TrainError::file_io(&path, format!("tensor `{name}`"), e))?;
            all.insert(name, t);
        }
        for (name, v) in vars {
            let t = all
                .get(&format!("param.{name}"))
                .ok_or_else(|| file_err(&path, format!("missing tensor `param.{name}`")))?;
            v.set(t)?;
        }
        opt.restore(&all, steps);
        let hooks = meta.iter().filter_map(|(k, v)| Some((k.strip_prefix("hook.")?.to_string(), v.clone()))).collect();
        Ok((epoch, hooks))
    }
}

fn state_metadata(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>, TrainError> {
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| file_err(path, e))?;
    Ok(md.metadata().clone().unwrap_or_default().into_iter().collect())
}

fn hash_mismatch(path: &Path, saved: Option<&String>, ours: &str) -> TrainError {
    file_err(
        path,
        format!(
            "was written by a run with config hash {}, this run's is {ours}: refusing to resume a different configuration",
            saved.map(String::as_str).unwrap_or("(none)")
        ),
    )
}

fn check_state_hash(path: &Path, config_hash: &str) -> Result<(), TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::file_io(path, "cannot resume", e))?;
    let meta = state_metadata(path, &bytes)?;
    match meta.get("config_hash") {
        Some(h) if h == config_hash => Ok(()),
        other => Err(hash_mismatch(path, other, config_hash)),
    }
}
