//! A grid's run and the `awt` invocations that make it.

use std::path::PathBuf;

use awt_runs::{Density, Method};

/// One run of a grid.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub name: String,
    pub dir: PathBuf,
    pub arch: String,
    pub method: Method,
    pub density: Density,
    pub seed: u64,
    /// Every setting that shapes the run, as text; its hash names the folder.
    pub canonical: String,
    /// An ablation's flags of the ticket step (`awt ticket` or `awt prune`; name without dashes,
    /// value), replacing the `[search]` or `[prune]` ones.
    pub flags: Vec<(String, String)>,
    /// With `[dynamics]`: the dense run of the same network and seed, which this run is compared with.
    pub dense_dir: Option<PathBuf>,
    /// A search with rewound weights whose transferred-weights twin (same settings otherwise) is in
    /// the grid: that run's folder. Once its ticket exists this run rewinds it instead of searching
    /// again (`awt ticket --rewind-from`, which gives the same file a search would).
    pub rewind_from: Option<PathBuf>,
    /// HYDRA with `[dynamics]`, where the dense run of its seed trains exactly as its pretraining
    /// would (`link_pretraining`): that run's network after the pretraining's epochs, which the
    /// score optimisation starts from instead of training the same net again.
    pub pretrained_from: Option<PathBuf>,
}

/// One `awt` invocation of a run.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// Short name (`init`, `prune`, `search`, `train`, `eval`, ...).
    pub name: String,
    pub args: Vec<String>,
    /// Exists once the step has finished.
    pub done: PathBuf,
    /// A resumable step's saved state: when it exists, the step runs again with `--resume`
    /// (training: `<folder>/state.safetensors`; a ticket search: `<ticket file name>.search.state.safetensors`).
    pub resume_from: Option<PathBuf>,
}
