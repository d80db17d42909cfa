//! Named datasets: their files, pinned SHA-256 sums, and where to look for them.
//!
//! Search order (the first place that has every file wins): `--data-dir`/`AWT_DATA_DIR`
//! (`<dir>/<name>/` or `<dir>/`), `/usr/share/datasets/<name>/` (Debian's
//! `dataset-fashion-mnist`), the Hugging Face cache (`$HF_HOME/hub`), then a hub download, skipped
//! when `AWT_OFFLINE=1` or `HF_HUB_OFFLINE=1`. The embedded `fashion-mnist-mini` needs none of them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{DataError, file_err};
use crate::split::Split;
use crate::{cifar, hf, idx};

/// File layout of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Four IDX files: train images, train labels, test images, test labels.
    Idx,
    /// CIFAR-10 binary: five training batches and one test batch.
    Cifar10,
}

/// A dataset on the hub: repository and the parquet files of each split.
#[derive(Clone, Copy, Debug)]
pub struct HfSpec {
    /// Dataset repository, e.g. `zalando-datasets/fashion_mnist`.
    pub repo: &'static str,
    /// Training split file inside the repository.
    pub train: &'static str,
    /// Test split file inside the repository.
    pub test: &'static str,
}

/// One file of a registered dataset.
#[derive(Clone, Copy, Debug)]
pub struct FileSpec {
    /// File name (a `.gz` name also matches its uncompressed copy without the suffix).
    pub name: &'static str,
    /// Pinned SHA-256 of the file as named (`None`: not pinned, checked by structure only).
    pub sha256: Option<&'static str>,
    /// Pinned SHA-256 of the uncompressed content of a `.gz` file, for an uncompressed copy.
    pub raw_sha256: Option<&'static str>,
    /// The dimensions an IDX file's header must declare; checked before anything is decompressed.
    pub dims: Option<&'static [usize]>,
}

/// A pinned IDX file: name, SHA-256 of the `.gz`, SHA-256 of its content, header dimensions.
const fn idx_file(
    name: &'static str,
    sha256: &'static str,
    raw_sha256: Option<&'static str>,
    dims: &'static [usize],
) -> FileSpec {
    FileSpec { name, sha256: Some(sha256), raw_sha256, dims: Some(dims) }
}

/// A file checked by structure only.
const fn unpinned(name: &'static str) -> FileSpec {
    FileSpec { name, sha256: None, raw_sha256: None, dims: None }
}

/// A registered dataset.
#[derive(Clone, Copy, Debug)]
pub struct DatasetSpec {
    /// Name used on the command line.
    pub name: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// File layout.
    pub format: Format,
    /// The files, with their pinned sums and expected dimensions.
    pub files: &'static [FileSpec],
    /// Bytes of each file, when the dataset is embedded in this crate.
    pub embedded: Option<&'static [&'static [u8]]>,
    /// The hub copy, if any.
    pub hf: Option<HfSpec>,
    /// The standard ℓ∞ budget in pixel units for this dataset.
    pub eps: f64,
    /// How to get the data, for error messages.
    pub how_to_get: &'static str,
}

const FMNIST_MINI: &[&[u8]] = &[
    include_bytes!("../embedded/fashion-mnist-mini/train-images-idx3-ubyte.gz"),
    include_bytes!("../embedded/fashion-mnist-mini/train-labels-idx1-ubyte.gz"),
    include_bytes!("../embedded/fashion-mnist-mini/t10k-images-idx3-ubyte.gz"),
    include_bytes!("../embedded/fashion-mnist-mini/t10k-labels-idx1-ubyte.gz"),
];

/// Every dataset awt knows.
pub const REGISTRY: &[DatasetSpec] = &[
    DatasetSpec {
        name: "fashion-mnist-mini",
        about: "embedded subset of real Fashion-MNIST: first 10,000 train / 2,000 test images (MIT, Zalando SE)",
        format: Format::Idx,
        files: &[
            idx_file(
                "train-images-idx3-ubyte.gz",
                "dbc97073061adfe46b8bf8af6112364d34cf4cf2363dd8191a14d6515e121e6b",
                Some("ed2e37ed5a3a57d212141a69fe0a0de5a7126ffba14ac3f7e76f5f52cc04b1f0"),
                &[10000, 28, 28],
            ),
            idx_file(
                "train-labels-idx1-ubyte.gz",
                "0b1c9fd85da433904cd8c43816d58e9156256c8dde6e23698c4b9340b0494067",
                Some("a69f2dad024ca220a8c4d85f621fdf929042d40c444abde2868903e9220ad517"),
                &[10000],
            ),
            idx_file(
                "t10k-images-idx3-ubyte.gz",
                "34b6848fb35a59e5287bf485522433dfd8bd017eb126fde6f02e96123c8ff741",
                Some("862035b0a96959b614c9574f4c2b0ae9584ca234813e8d6d7adb7838b12ca46b"),
                &[2000, 28, 28],
            ),
            idx_file(
                "t10k-labels-idx1-ubyte.gz",
                "6a1ad38ad7d33240e59f70a44ddce4e9483e573ffad983d287064bd467dcbd4e",
                Some("aa3f574d30afaf0d4d9da084a6f8541771e20693d6a97fae6e9a4953fca8f078"),
                &[2000],
            ),
        ],
        embedded: Some(FMNIST_MINI),
        hf: None,
        eps: 0.1,
        how_to_get: "it is compiled into awt-data; nothing to do",
    },
    DatasetSpec {
        name: "fashion-mnist",
        about: "Fashion-MNIST, 60,000 train / 10,000 test 28×28 grayscale images (MIT, Zalando SE)",
        format: Format::Idx,
        // The `.gz` sums are those the dataset's authors publish; the content sums were computed
        // here from the verified `.gz` files, so an uncompressed copy is verified too.
        files: &[
            idx_file(
                "train-images-idx3-ubyte.gz",
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                Some("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
                &[60000, 28, 28],
            ),
            idx_file(
                "train-labels-idx1-ubyte.gz",
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                Some("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
                &[60000],
            ),
            idx_file(
                "t10k-images-idx3-ubyte.gz",
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                Some("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
                &[10000, 28, 28],
            ),
            idx_file(
                "t10k-labels-idx1-ubyte.gz",
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                Some("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
                &[10000],
            ),
        ],
        embedded: None,
        hf: Some(HfSpec {
            repo: "zalando-datasets/fashion_mnist",
            train: "fashion_mnist/train-00000-of-00001.parquet",
            test: "fashion_mnist/test-00000-of-00001.parquet",
        }),
        eps: 0.1,
        how_to_get: "on Debian: `apt-get install dataset-fashion-mnist`; or put the four IDX .gz files in <dir>/fashion-mnist/ and pass --data-dir <dir>",
    },
    DatasetSpec {
        name: "mnist",
        about: "MNIST, 60,000 train / 10,000 test 28×28 grayscale digits",
        format: Format::Idx,
        // MNIST's content sums are not pinned (no copy here to compute them from): an uncompressed
        // copy loads as unpinned, and says so wherever its results are reported.
        files: &[
            idx_file(
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                None,
                &[60000, 28, 28],
            ),
            idx_file(
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                None,
                &[60000],
            ),
            idx_file(
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                None,
                &[10000, 28, 28],
            ),
            idx_file(
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                None,
                &[10000],
            ),
        ],
        embedded: None,
        hf: Some(HfSpec {
            repo: "ylecun/mnist",
            train: "mnist/train-00000-of-00001.parquet",
            test: "mnist/test-00000-of-00001.parquet",
        }),
        eps: 0.3,
        how_to_get: "put the four IDX .gz files in <dir>/mnist/ and pass --data-dir <dir> (or set AWT_DATA_DIR)",
    },
    DatasetSpec {
        name: "cifar10",
        about: "CIFAR-10 binary version, 50,000 train / 10,000 test 32×32 colour images",
        format: Format::Cifar10,
        // The member files' sums are not pinned: we could not verify published values offline.
        // They are checked by structure (whole records, labels < 10) and their sums are recorded.
        files: &[
            unpinned("data_batch_1.bin"),
            unpinned("data_batch_2.bin"),
            unpinned("data_batch_3.bin"),
            unpinned("data_batch_4.bin"),
            unpinned("data_batch_5.bin"),
            unpinned("test_batch.bin"),
        ],
        embedded: None,
        hf: Some(HfSpec {
            repo: "uoft-cs/cifar10",
            train: "plain_text/train-00000-of-00001.parquet",
            test: "plain_text/test-00000-of-00001.parquet",
        }),
        eps: 8.0 / 255.0,
        how_to_get: "extract cifar-10-binary.tar.gz into <dir>/cifar10/ (so <dir>/cifar10/cifar-10-batches-bin/ exists) and pass --data-dir <dir>",
    },
];

/// The registered dataset `name`, or an error listing the known names.
pub fn spec(name: &str) -> Result<&'static DatasetSpec, DataError> {
    REGISTRY.iter().find(|d| d.name == name).ok_or_else(|| {
        DataError::Invalid(format!(
            "unknown dataset `{name}`: known datasets are {}",
            REGISTRY.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

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
    /// Where it came from and its checksums.
    pub provenance: Provenance,
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
    let mut tried = Vec::new();
    for (dir, via) in dir_candidates(spec, opts) {
        let missing: Vec<&str> =
            spec.files.iter().filter(|f| file_in(&dir, f.name).is_none()).map(|f| f.name).collect();
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
                let b = std::fs::read(&p).map_err(|e| file_err(&p, format!("cannot read: {e}")))?;
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
                let b = std::fs::read(p).map_err(|e| file_err(p, format!("cannot read: {e}")))?;
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
        provenance: Provenance { location: loc.to_string(), files: checks },
    })
}
