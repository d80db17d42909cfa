//! The dataset registry: embedded data, the search order, checksums, and the Hugging Face path
//! tested offline against a hand-built cache holding a parquet file in the hub's format.

use std::path::{Path, PathBuf};

use awt_data::{DataError, LoadOptions, Location, hf, idx, load, locate, synthetic};

fn opts_with(data_dir: Option<&Path>, hf_home: Option<&Path>) -> LoadOptions {
    LoadOptions {
        data_dir: data_dir.map(|d| (d.to_path_buf(), "--data-dir".to_string())),
        system_dir: None,
        hf_home: hf_home.map(Path::to_path_buf),
        offline: true,
        allow_checksum_mismatch: false,
    }
}

#[test]
fn embedded_subset_loads_with_verified_checksums() {
    let ds = load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (10_000, 2_000));
    assert_eq!(ds.train.shape, [1, 28, 28]);
    assert!(ds.provenance.files.iter().all(|f| f.status == "verified"), "{:?}", ds.provenance.files);
    // Real Fashion-MNIST is class-balanced; the first 10k are close to 1k per class.
    assert!(ds.train.class_counts().iter().all(|&c| (900..1100).contains(&c)), "{:?}", ds.train.class_counts());
}

/// Writes an MNIST-shaped folder of uncompressed IDX files (the registry checks the header
/// dimensions of MNIST's files, 60,000 and 10,000 images of 28×28, so the fixture has them too).
fn write_idx_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let (n_train, n_test) = (60_000, 10_000);
    let labels = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<u8>>();
    std::fs::write(dir.join("train-images-idx3-ubyte"), idx::encode(&[n_train, 28, 28], &vec![40; n_train * 784]))
        .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx::encode(&[n_train], &labels(n_train))).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx::encode(&[n_test, 28, 28], &vec![90; n_test * 784]))
        .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx::encode(&[n_test], &labels(n_test))).unwrap();
}

#[test]
fn data_dir_is_searched_first_and_uncompressed_copies_are_unpinned() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx_dir(&tmp.path().join("mnist"));
    let opts = opts_with(Some(tmp.path()), None);
    assert_eq!(
        locate("mnist", &opts).unwrap(),
        Location::Dir { dir: tmp.path().join("mnist"), via: "--data-dir".into() }
    );
    let ds = load("mnist", &opts).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (60_000, 10_000));
    assert!(ds.provenance.files.iter().all(|f| f.status.starts_with("unpinned")));
    assert_eq!(ds.provenance.unverified().len(), 4);
}

#[test]
fn pinned_checksum_mismatch_is_an_error_unless_overridden() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("fashion-mnist");
    write_idx_dir(&d);
    // Rename to the .gz names the registry pins, with gzipped (wrong) content.
    for f in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    {
        let b = std::fs::read(d.join(f)).unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, &b).unwrap();
        std::fs::write(d.join(format!("{f}.gz")), e.finish().unwrap()).unwrap();
        std::fs::remove_file(d.join(f)).unwrap();
    }
    let mut opts = opts_with(Some(tmp.path()), None);
    let e = load("fashion-mnist", &opts).unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte.gz")
            && e.contains("differs from the pinned")
            && e.contains("--allow-checksum-mismatch"),
        "{e}"
    );
    opts.allow_checksum_mismatch = true;
    let ds = load("fashion-mnist", &opts).unwrap();
    assert!(ds.provenance.files.iter().all(|f| f.status.starts_with("MISMATCH accepted")));
}

#[test]
fn not_found_lists_every_place_tried_and_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts_with(Some(tmp.path()), Some(&tmp.path().join("hfhome")));
    let e = locate("mnist", &opts).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }));
    let e = e.to_string();
    for needle in ["--data-dir", "Hugging Face cache", "skipped (AWT_OFFLINE or HF_HUB_OFFLINE is set)", "To get it"] {
        assert!(e.contains(needle), "expected `{needle}` in:\n{e}");
    }
    assert!(load("no-such-set", &opts).unwrap_err().to_string().contains("known datasets are"));
}

/// Builds `$HF_HOME/hub/datasets--OWNER--NAME/{refs/main, snapshots/<sha>/<file>}` as the hub client does.
fn put_in_hf_cache(home: &Path, repo: &str, file: &str, content_from: &Path) -> PathBuf {
    let folder = home.join("hub").join(format!("datasets--{}", repo.replace('/', "--")));
    let sha = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs").join("main"), sha).unwrap();
    let target = folder.join("snapshots").join(sha).join(file);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(content_from, &target).unwrap();
    target
}

#[test]
fn hugging_face_cache_parquet_loads_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let train = synthetic::prototypes(25, [1, 28, 28], 10, 0.3, 3);
    let test = synthetic::prototypes(7, [1, 28, 28], 10, 0.3, 4);
    let (ptr, pte) = (tmp.path().join("train.parquet"), tmp.path().join("test.parquet"));
    hf::write(&train, "image", &ptr).unwrap();
    hf::write(&test, "image", &pte).unwrap();
    let home = tmp.path().join("hfhome");
    put_in_hf_cache(&home, "ylecun/mnist", "mnist/train-00000-of-00001.parquet", &ptr);
    put_in_hf_cache(&home, "ylecun/mnist", "mnist/test-00000-of-00001.parquet", &pte);
    // What HF_HUB_OFFLINE=1 sets (the CLI test runs the binary with that variable for real).
    let mut opts = opts_with(None, Some(&home));
    opts.offline = true;
    let loc = locate("mnist", &opts).unwrap();
    assert!(matches!(&loc, Location::Hub { via, .. } if via == "hf-cache"), "{loc:?}");
    let ds = load("mnist", &opts).unwrap();
    assert_eq!(ds.train, train);
    assert_eq!(ds.test, test);
    assert!(ds.provenance.files.iter().all(|f| f.status == "unpinned" && f.sha256.len() == 64));
}

#[test]
fn hugging_face_parquet_rgb_images_round_trip_and_bad_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let s = synthetic::prototypes(5, [3, 32, 32], 10, 0.3, 5);
    let p = tmp.path().join("cifar.parquet");
    hf::write(&s, "img", &p).unwrap();
    assert_eq!(hf::read(&p).unwrap(), s);
    let junk = tmp.path().join("junk.parquet");
    std::fs::write(&junk, b"PAR1 not really").unwrap();
    let e = hf::read(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.parquet") && e.contains("parquet"), "{e}");
}

#[test]
fn system_fashion_mnist_when_installed() {
    // CI installs Debian's dataset-fashion-mnist; there this test must run. Elsewhere it is skipped
    // only when the package is absent.
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        assert!(std::env::var_os("CI").is_none(), "CI must install dataset-fashion-mnist");
        return;
    }
    let opts = LoadOptions { system_dir: Some("/usr/share/datasets".into()), offline: true, ..LoadOptions::default() };
    let ds = load("fashion-mnist", &opts).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (60_000, 10_000));
    assert!(ds.provenance.files.iter().all(|f| f.status == "verified"));
    // The embedded subset is exactly the head of the real files.
    let mini = load("fashion-mnist-mini", &LoadOptions::offline_embedded_only()).unwrap();
    assert_eq!(mini.train, ds.train.subset(0, 10_000).unwrap());
    assert_eq!(mini.test, ds.test.subset(0, 2_000).unwrap());
}

/// The validation split is the last `n` training examples, training keeps the rest, the test split
/// is untouched; a second hold-out and sizes that leave nothing are refused by name.
#[test]
fn validation_is_the_end_of_the_training_split() {
    let full = awt_data::load("fashion-mnist-mini", &awt_data::LoadOptions::offline_embedded_only()).unwrap();
    let mut ds = full.clone();
    assert_eq!(ds.eval_split().1, "test");
    ds.hold_out_validation(1000).unwrap();
    let n = full.train.len();
    assert_eq!(ds.train, full.train.subset(0, n - 1000).unwrap());
    assert_eq!(ds.validation.as_ref().unwrap(), &full.train.subset(n - 1000, 1000).unwrap());
    assert_eq!(ds.test, full.test);
    let (split, name) = ds.eval_split();
    assert_eq!((split.len(), name), (1000, "validation"));
    let e = ds.hold_out_validation(10).unwrap_err().to_string();
    assert!(e.contains("already held out"), "{e}");
    for bad in [0, n] {
        let e = full.clone().hold_out_validation(bad).unwrap_err().to_string();
        assert!(e.contains(&format!("cannot hold out {bad} of its {n} training examples")), "{e}");
        // The range it names is the one it takes (it said "1..n", and refused n).
        assert!(e.contains(&format!("(1 to {}: training keeps the rest", n - 1)), "{e}");
    }
    full.clone().hold_out_validation(n - 1).unwrap();
}

/// A dataset file that is a folder or a FIFO is named as such, not as "missing"; a `--data-dir`
/// that does not exist is an error naming it, not a silent fall-back to the system copy.
#[test]
fn files_that_are_not_files_and_typoed_folders_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("fashion-mnist");
    std::fs::create_dir_all(d.join("train-images-idx3-ubyte.gz")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(d.join("t10k-images-idx3-ubyte.gz")).status().unwrap().success());
    let e = locate("fashion-mnist", &opts_with(Some(tmp.path()), None)).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte.gz (a folder, not a file)"), "{e}");
    assert!(e.contains("t10k-images-idx3-ubyte.gz (not a regular file)"), "{e}");
    let e = locate("fashion-mnist", &opts_with(Some(&tmp.path().join("typo")), None)).unwrap_err().to_string();
    assert!(e.contains("--data-dir") && e.contains("typo: no such folder"), "{e}");
}
