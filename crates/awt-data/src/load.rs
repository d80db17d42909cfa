//! Finding and reading a registered dataset. Search order (the first place that has every file
//! wins): `--data-dir`/`AWT_DATA_DIR` (`<dir>/<name>/` or `<dir>/`), `/usr/share/datasets/<name>/`
//! (Debian's `dataset-fashion-mnist`), the Hugging Face cache (`$HF_HOME/hub`), then a hub
//! download, skipped when `AWT_OFFLINE=1` or `HF_HUB_OFFLINE=1`. The embedded
//! `fashion-mnist-mini` needs none of them. Every file is checked against its pinned SHA-256.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{DataError, file_err, file_io};
use crate::registry::{DatasetSpec, FileSpec, Format, HfSpec, spec, unpinned};
use crate::split::Split;
use crate::{cifar, hf, idx};

/// Where to look for data, and how strict to be.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--data-dir` or `AWT_DATA_DIR`, with a label saying which.
    pub data_dir: Option<(PathBuf, String)>,
    /// System folder holding `<name>/` (default `/usr/share/datasets`).
    pub system_dir: Option<PathBuf>,
    /// Hugging Face home (`$HF_HOME`, default `~/.cache/huggingface`); the cache is `<home>/hub`.
    pub hf_home: Option<PathBuf>,
    /// Never touch the network.
    pub offline: bool,
    /// Accept files whose SHA-256 differs from the pinned one (recorded in the provenance).
    pub allow_checksum_mismatch: bool,
}

impl LoadOptions {
    /// Options from the environment: `AWT_DATA_DIR` (unless `data_dir` is given, as from
    /// `--data-dir`), `HF_HOME`, and `AWT_OFFLINE=1` / `HF_HUB_OFFLINE=1`.
    pub fn from_env(data_dir: Option<PathBuf>) -> LoadOptions {
        let truthy = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0" && v.to_lowercase() != "false");
        let data_dir = match data_dir {
            Some(d) => Some((d, "--data-dir".to_string())),
            None => std::env::var_os("AWT_DATA_DIR").map(|d| (PathBuf::from(d), "AWT_DATA_DIR".to_string())),
        };
        let hf_home = std::env::var_os("HF_HOME").map(PathBuf::from).or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|x| PathBuf::from(x).join("huggingface"))
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))
        });
        LoadOptions {
            data_dir,
            system_dir: Some(PathBuf::from("/usr/share/datasets")),
            hf_home,
            offline: truthy("AWT_OFFLINE") || truthy("HF_HUB_OFFLINE"),
            allow_checksum_mismatch: false,
        }
    }

    /// Options that find only embedded datasets (for examples and tests).
    pub fn offline_embedded_only() -> LoadOptions {
        LoadOptions { offline: true, ..LoadOptions::default() }
    }
}

/// Where a dataset was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// Compiled into this crate.
    Embedded,
    /// A folder holding every file; `via` says which search step found it.
    Dir {
        /// The folder.
        dir: PathBuf,
        /// `--data-dir`, `AWT_DATA_DIR` or `system`.
        via: String,
    },
    /// Parquet files from the hub (cache or fresh download).
    Hub {
        /// Training split file.
        train: PathBuf,
        /// Test split file.
        test: PathBuf,
        /// `hf-cache` or `hf-download`.
        via: String,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Embedded => f.write_str("embedded in awt-data"),
            Location::Dir { dir, via } => write!(f, "{} ({via})", dir.display()),
            Location::Hub { train, via, .. } => {
                write!(f, "{} ({via})", train.parent().map(Path::display).map(|d| d.to_string()).unwrap_or_default())
            }
        }
    }
}

/// Checksum outcome of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCheck {
    /// File name.
    pub file: String,
    /// Its SHA-256.
    pub sha256: String,
    /// `verified`, `unpinned`, or `MISMATCH accepted (expected …)`.
    pub status: String,
}

/// Where a loaded dataset came from, for run manifests.
#[derive(Clone, Debug)]
pub struct Provenance {
    /// Location, in words.
    pub location: String,
    /// One entry per file read.
    pub files: Vec<FileCheck>,
}

impl Provenance {
    /// `file (status)` for every file not verified against a pinned checksum: unpinned files,
    /// uncompressed copies without a pinned content sum, accepted mismatches. Results computed from
    /// such data should say so.
    pub fn unverified(&self) -> Vec<String> {
        self.files.iter().filter(|f| f.status != "verified").map(|f| format!("{} ({})", f.file, f.status)).collect()
    }
}

/// A loaded dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Registry name.
    pub name: String,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// The validation split held out of the training split by [`Dataset::hold_out_validation`]
    /// (none as loaded).
    pub validation: Option<Split>,
    /// Where it came from and its checksums.
    pub provenance: Provenance,
}

impl Dataset {
    /// Holds the last `n` training examples out as the validation split: training keeps the first
    /// `len − n`. Selection on held-out data then never reads the test split. Once only.
    pub fn hold_out_validation(&mut self, n: usize) -> Result<(), DataError> {
        let len = self.train.len();
        if self.validation.is_some() {
            return Err(DataError::Invalid(format!("{}: a validation split is already held out", self.name)));
        }
        if n == 0 || n >= len {
            return Err(DataError::Invalid(format!(
                "{}: cannot hold out {n} of its {len} training examples as validation (1 to {}: training keeps \
                 the rest, at least one)",
                self.name,
                len.saturating_sub(1)
            )));
        }
        self.validation = Some(self.train.subset(len - n, n)?);
        self.train = self.train.subset(0, len - n)?;
        Ok(())
    }

    /// The split held-out evaluations use: the validation split when one is held out, else the test
    /// split; with its name (`validation` or `test`).
    pub fn eval_split(&self) -> (&Split, &'static str) {
        match &self.validation {
            Some(v) => (v, "validation"),
            None => (&self.test, "test"),
        }
    }
}

fn dir_candidates(spec: &DatasetSpec, opts: &LoadOptions) -> Vec<(PathBuf, String)> {
    let mut v = Vec::new();
    let sub = |d: &Path| {
        let mut c = vec![d.join(spec.name)];
        if spec.format == Format::Cifar10 {
            c.push(d.join(spec.name).join("cifar-10-batches-bin"));
        }
        c
    };
    if let Some((d, via)) = &opts.data_dir {
        for c in sub(d) {
            v.push((c, via.clone()));
        }
        v.push((d.clone(), via.clone()));
    }
    if let Some(s) = &opts.system_dir {
        for c in sub(s) {
            v.push((c, "system".to_string()));
        }
    }
    v
}

/// The path of `file` in `dir`, accepting an uncompressed copy of a `.gz` file.
fn file_in(dir: &Path, file: &str) -> Option<PathBuf> {
    let p = dir.join(file);
    if p.is_file() {
        return Some(p);
    }
    let raw = dir.join(file.strip_suffix(".gz")?);
    raw.is_file().then_some(raw)
}

/// Finds `name` without reading it. The error lists every place tried and how to get the data.
pub fn locate(name: &str, opts: &LoadOptions) -> Result<Location, DataError> {
    let spec = spec(name)?;
    if spec.embedded.is_some() {
        return Ok(Location::Embedded);
    }
    // A folder named by hand that does not exist is a typo, never a reason to fall back silently.
    if let Some((d, via)) = &opts.data_dir
        && !d.is_dir()
    {
        return Err(DataError::Invalid(format!("{via} {}: no such folder", d.display())));
    }
    let mut tried = Vec::new();
    for (dir, via) in dir_candidates(spec, opts) {
        let missing: Vec<String> = spec
            .files
            .iter()
            .filter(|f| file_in(&dir, f.name).is_none())
            .map(|f| match std::fs::metadata(dir.join(f.name)) {
                // There, but not a file that can be read (a folder, a FIFO, a device).
                Ok(m) if m.is_dir() => format!("{} (a folder, not a file)", f.name),
                Ok(_) => format!("{} (not a regular file)", f.name),
                Err(_) => f.name.to_string(),
            })
            .collect();
        if missing.is_empty() {
            return Ok(Location::Dir { dir, via });
        }
        let why = if dir.is_dir() { format!("missing {}", missing.join(", ")) } else { "no such folder".to_string() };
        tried.push(format!("{} ({via}): {why}", dir.display()));
    }
    if opts.data_dir.is_none() {
        tried.insert(0, "--data-dir / AWT_DATA_DIR: not set".into());
    }
    if let Some(hf) = spec.hf {
        match &opts.hf_home {
            Some(home) => {
                let cache = hf_hub::Cache::new(home.join("hub"));
                let repo = cache.repo(hf_hub::Repo::new(hf.repo.to_string(), hf_hub::RepoType::Dataset));
                match (repo.get(hf.train), repo.get(hf.test)) {
                    (Some(train), Some(test)) => {
                        return Ok(Location::Hub { train, test, via: "hf-cache".into() });
                    }
                    _ => tried.push(format!("Hugging Face cache {}: no {} files", home.join("hub").display(), hf.repo)),
                }
                if opts.offline {
                    tried.push(format!(
                        "download of {} from the Hugging Face hub: skipped (AWT_OFFLINE or HF_HUB_OFFLINE is set)",
                        hf.repo
                    ));
                } else {
                    match download(hf, home) {
                        Ok((train, test)) => {
                            return Ok(Location::Hub { train, test, via: "hf-download".into() });
                        }
                        Err(e) => tried.push(format!("download of {} from the Hugging Face hub: {e}", hf.repo)),
                    }
                }
            }
            None => tried.push("Hugging Face cache: HF_HOME and HOME are unset".into()),
        }
    }
    Err(DataError::NotFound { name: name.to_string(), tried, hint: format!("To get it: {}.", spec.how_to_get) })
}

fn download(hf: HfSpec, home: &Path) -> Result<(PathBuf, PathBuf), String> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(home.join("hub"))
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.repo(hf_hub::Repo::new(hf.repo.to_string(), hf_hub::RepoType::Dataset));
    let train = repo.get(hf.train).map_err(|e| e.to_string())?;
    let test = repo.get(hf.test).map_err(|e| e.to_string())?;
    Ok((train, test))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares `bytes` (read from `path`) with the pinned sum of `spec`, or of its content for an
/// uncompressed copy of a `.gz` file.
fn check_sum(path: &Path, spec: &FileSpec, bytes: &[u8], opts: &LoadOptions) -> Result<FileCheck, DataError> {
    let sha = sha256_hex(bytes);
    let uncompressed = !spec.name.is_empty() && !path.to_string_lossy().ends_with(spec.name);
    let pinned = if uncompressed { spec.raw_sha256 } else { spec.sha256 };
    let status = match pinned {
        None if uncompressed => "unpinned (uncompressed copy)".to_string(),
        None => "unpinned".to_string(),
        Some(p) if p == sha => "verified".to_string(),
        Some(p) if opts.allow_checksum_mismatch => format!("MISMATCH accepted (expected {p})"),
        Some(p) => {
            return Err(file_err(
                path,
                format!(
                    "SHA-256 {sha} differs from the pinned {p}: the file is corrupt or a different version (pass --allow-checksum-mismatch to use it anyway; the run records it)"
                ),
            ));
        }
    };
    let file = if spec.name.is_empty() {
        path.file_name().unwrap_or_default().to_string_lossy().to_string()
    } else {
        spec.name.to_string()
    };
    Ok(FileCheck { file, sha256: sha, status })
}

/// Train and test splits from the four parsed IDX files, in registry order.
fn idx_splits(parts: Vec<(idx::Idx, PathBuf)>) -> Result<(Split, Split), DataError> {
    let mut it = parts.into_iter();
    let mut next = || it.next().ok_or_else(|| DataError::Invalid("an IDX dataset needs four files".into()));
    let ((ti, tip), (tl, tlp), (si, sip), (sl, slp)) = (next()?, next()?, next()?, next()?);
    Ok((idx::split_from(ti, &tip, tl, &tlp)?, idx::split_from(si, &sip, sl, &slp)?))
}

/// Finds, verifies and parses dataset `name`.
pub fn load(name: &str, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let spec = spec(name)?;
    let loc = locate(name, opts)?;
    tracing::info!(dataset = name, location = %loc, "loading dataset");
    let mut checks = Vec::new();
    let (train, test) = match &loc {
        Location::Embedded => {
            let bytes = spec.embedded.expect("embedded dataset has bytes");
            let mut parsed = Vec::new();
            for (f, b) in spec.files.iter().zip(bytes) {
                let p = PathBuf::from(format!("<embedded>/{}/{}", spec.name, f.name));
                checks.push(check_sum(&p, f, b, opts)?);
                parsed.push((idx::parse_expecting(b, &p, f.dims)?, p));
            }
            idx_splits(parsed)?
        }
        Location::Dir { dir, .. } => {
            let mut read = |f: &FileSpec| -> Result<(Vec<u8>, PathBuf), DataError> {
                let p = file_in(dir, f.name).expect("located");
                let b = std::fs::read(&p).map_err(|e| file_io(&p, "cannot read", e))?;
                checks.push(check_sum(&p, f, &b, opts)?);
                Ok((b, p))
            };
            match spec.format {
                Format::Idx => {
                    let mut parts = Vec::new();
                    for f in spec.files {
                        let (b, p) = read(f)?;
                        parts.push((idx::parse_expecting(&b, &p, f.dims)?, p));
                    }
                    idx_splits(parts)?
                }
                Format::Cifar10 => {
                    let mut splits = Vec::new();
                    for f in spec.files {
                        let (b, p) = read(f)?;
                        splits.push(cifar::parse(&b, &p)?);
                    }
                    let test = splits.pop().expect("6 files");
                    let mut train = splits.remove(0);
                    for s in splits {
                        train.images.extend_from_slice(&s.images);
                        train.labels.extend_from_slice(&s.labels);
                    }
                    (train, test)
                }
            }
        }
        Location::Hub { train, test, .. } => {
            for p in [train, test] {
                let b = std::fs::read(p).map_err(|e| file_io(p, "cannot read", e))?;
                // Hub files are named by the hub's cache: checked by structure, recorded by name.
                checks.push(check_sum(p, &unpinned(""), &b, opts)?);
            }
            (hf::read(train)?, hf::read(test)?)
        }
    };
    let expect_shape = match spec.format {
        Format::Idx => [1, 28, 28],
        Format::Cifar10 => [3, 32, 32],
    };
    for (s, which) in [(&train, "train"), (&test, "test")] {
        if s.shape != expect_shape {
            return Err(DataError::Invalid(format!(
                "{name} {which} split at {loc}: images are {:?}, expected {expect_shape:?}",
                s.shape
            )));
        }
    }
    Ok(Dataset {
        name: name.to_string(),
        train,
        test,
        validation: None,
        provenance: Provenance { location: loc.to_string(), files: checks },
    })
}
