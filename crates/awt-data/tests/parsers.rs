//! Every malformed-file case of checks.md for the IDX and CIFAR-10 parsers, each error naming the file.

use std::io::Write;
use std::path::Path;

use awt_data::{cifar, idx};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Parses `bytes` (raw and gzipped) and expects an error containing `needle` and the file name.
fn check_idx_error(bytes: &[u8], needle: &str) {
    for (b, name) in [(bytes.to_vec(), "x-idx3-ubyte"), (gz(bytes), "x-idx3-ubyte.gz")] {
        let e = idx::parse(&b, Path::new(name)).unwrap_err().to_string();
        assert!(e.starts_with(name), "error does not name the file: {e}");
        assert!(e.contains(needle), "expected `{needle}` in `{e}`");
    }
}

#[test]
fn idx_round_trip_raw_and_gzip() {
    let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
    let f = idx::encode(&[2, 3, 4], &data);
    for b in [f.clone(), gz(&f)] {
        let p = idx::parse(&b, Path::new("ok")).unwrap();
        assert_eq!(p.dims, vec![2, 3, 4]);
        assert_eq!(p.data, data);
    }
}

#[test]
fn idx_reads_multi_member_gzip() {
    // Valid gzip (RFC 1952 allows several members; pigz and `cat a.gz b.gz` produce them).
    let data: Vec<u8> = (0..5 * 4 * 4).map(|i| (i * 7) as u8).collect();
    let f = idx::encode(&[5, 4, 4], &data);
    let mut two = gz(&f[..30]);
    two.extend(gz(&f[30..]));
    let p = idx::parse(&two, Path::new("multi.gz")).unwrap();
    assert_eq!((p.dims, p.data), (vec![5, 4, 4], data));
}

#[test]
fn idx_with_known_dimensions_refuses_another_header_before_inflating() {
    let f = idx::encode(&[3, 2, 2], &[1; 12]);
    assert!(idx::parse_expecting(&gz(&f), Path::new("ok.gz"), Some(&[3, 2, 2])).is_ok());
    for b in [f.clone(), gz(&f)] {
        let e = idx::parse_expecting(&b, Path::new("forged"), Some(&[60000, 28, 28])).unwrap_err().to_string();
        assert!(e.starts_with("forged") && e.contains("[3, 2, 2]") && e.contains("[60000, 28, 28]"), "{e}");
    }
}

#[test]
fn idx_rejects_malformed_files() {
    let good = idx::encode(&[2, 2, 2], &[1; 8]);
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    check_idx_error(&bad_magic, "wrong magic");
    let mut bad_type = good.clone();
    bad_type[2] = 0x0D; // float
    check_idx_error(&bad_type, "element type 0x0d");
    check_idx_error(&good[..good.len() - 1], "truncated");
    check_idx_error(&good[..6], "truncated");
    let mut trailing = good.clone();
    trailing.push(0);
    check_idx_error(&trailing, "trailing bytes");
    // A header claiming 4 G images must fail before any allocation of that size.
    let liar = idx::encode(&[u32::MAX as usize, 28, 28], &[0; 16]);
    check_idx_error(&liar, "more than the file can hold");
}

#[test]
fn idx_pairs_check_counts_and_labels() {
    let imgs = idx::parse(&idx::encode(&[3, 2, 2], &[0; 12]), Path::new("imgs")).unwrap();
    let labels = idx::parse(&idx::encode(&[2], &[1, 2]), Path::new("labels")).unwrap();
    let e = idx::split_from(imgs.clone(), Path::new("imgs"), labels, Path::new("labels")).unwrap_err().to_string();
    assert!(e.starts_with("labels") && e.contains("2 labels but 3 images"), "{e}");
    let labels = idx::parse(&idx::encode(&[3], &[1, 10, 2]), Path::new("labels")).unwrap();
    let e = idx::split_from(imgs.clone(), Path::new("imgs"), labels, Path::new("labels")).unwrap_err().to_string();
    assert!(e.contains("label 10 at index 1"), "{e}");
    let labels = idx::parse(&idx::encode(&[3], &[1, 9, 2]), Path::new("labels")).unwrap();
    let s = idx::split_from(imgs, Path::new("imgs"), labels, Path::new("labels")).unwrap();
    assert_eq!(s.shape, [1, 2, 2]);
}

#[test]
fn cifar_parses_records_and_rejects_bad_files() {
    let mut rec = vec![7u8];
    rec.extend((0..3072).map(|i| (i % 251) as u8));
    let mut two = rec.clone();
    two.extend_from_slice(&rec);
    let s = cifar::parse(&two, Path::new("b.bin")).unwrap();
    assert_eq!((s.len(), s.shape, s.labels[1]), (2, [3, 32, 32], 7));
    assert_eq!(&s.images[..3072], &rec[1..]);
    let e = cifar::parse(&two[..two.len() - 5], Path::new("b.bin")).unwrap_err().to_string();
    assert!(e.starts_with("b.bin") && e.contains("truncated"), "{e}");
    let mut bad = two.clone();
    bad[3073] = 12;
    let e = cifar::parse(&bad, Path::new("b.bin")).unwrap_err().to_string();
    assert!(e.contains("label 12 in record 1"), "{e}");
    assert!(cifar::parse(&[], Path::new("b.bin")).unwrap_err().to_string().contains("empty"));
}

/// An unreadable file's error names the file and what failed, and keeps the I/O error as its
/// source (the cause chain shows it; nothing is flattened into a string).
#[test]
fn an_io_error_is_kept_as_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("train-images-idx3-ubyte");
    let e = idx::read(&missing).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: cannot read", missing.display()));
    let source = std::error::Error::source(&e).expect("the I/O error is the source");
    let io = source.downcast_ref::<std::io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}
