//! Why a search failed, keeping the failing crate's error as the source.

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A setting that cannot work, named.
    #[error("{0}")]
    Invalid(String),
    /// A search-state file that cannot be read, written or used.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
        /// The error underneath (an I/O error, …), where there is one: the cause chain shows it
        /// after `why`.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The loss became NaN or infinite.
    #[error("search diverged at step {step}: non-finite loss {loss}")]
    Diverged {
        /// Step.
        step: usize,
        /// Loss.
        loss: f64,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A network could not be copied or masked.
    #[error(transparent)]
    Net(#[from] awt_nets::NetError),
    /// The kernel could not be formed or measured.
    #[error(transparent)]
    Ntk(#[from] awt_ntk::NtkError),
    /// A mask could not be selected.
    #[error(transparent)]
    Prune(#[from] awt_prune::PruneError),
    /// The adversarial inputs could not be formed.
    #[error(transparent)]
    Attack(#[from] awt_attack::AttackError),
    /// The data could not be batched.
    #[error(transparent)]
    Data(#[from] awt_data::DataError),
    /// HYDRA's score training failed.
    #[error(transparent)]
    Train(#[from] awt_train::TrainError),
}

impl SearchError {
    /// `what` failed on the file `path` because of `e`, kept as the source.
    pub fn file_io(
        path: &std::path::Path,
        what: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> SearchError {
        SearchError::File { path: path.to_path_buf(), why: what.into(), source: Some(Box::new(e)) }
    }
}
