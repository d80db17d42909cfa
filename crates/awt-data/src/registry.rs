//! Named datasets: their files, pinned SHA-256 sums and header dimensions, the hub copy, and how to
//! get them. Finding and reading them is [`crate::load`]'s.

use crate::error::DataError;

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
pub(crate) const fn unpinned(name: &'static str) -> FileSpec {
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
