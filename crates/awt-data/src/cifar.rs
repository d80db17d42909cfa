//! CIFAR-10's binary version: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
//! row-major 32×32), so each record is already CHW.

use std::path::Path;

use crate::error::{DataError, file_err, file_io};
use crate::split::Split;

/// Bytes per record.
pub const RECORD: usize = 1 + 3 * 32 * 32;
/// Training batch files in order.
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
/// Test batch file.
pub const TEST_FILE: &str = "test_batch.bin";

/// Parses one batch file held in memory.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Split, DataError> {
    if bytes.is_empty() {
        return Err(file_err(path, "empty file"));
    }
    if !bytes.len().is_multiple_of(RECORD) {
        let n = bytes.len() / RECORD;
        return Err(file_err(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte records ({n} records + {} bytes): truncated or trailing bytes",
                bytes.len(),
                bytes.len() % RECORD
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut images = Vec::with_capacity(n * (RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] >= 10 {
            return Err(file_err(path, format!("label {} in record {i} is not a class 0..9", rec[0])));
        }
        labels.push(rec[0]);
        images.extend_from_slice(&rec[1..]);
    }
    Ok(Split { images, labels, shape: [3, 32, 32] })
}

/// Reads and concatenates batch files.
pub fn load_files(paths: &[std::path::PathBuf]) -> Result<Split, DataError> {
    let mut out: Option<Split> = None;
    for p in paths {
        let bytes = std::fs::read(p).map_err(|e| file_io(p, "cannot read", e))?;
        let s = parse(&bytes, p)?;
        out = Some(match out {
            None => s,
            Some(mut a) => {
                a.images.extend_from_slice(&s.images);
                a.labels.extend_from_slice(&s.labels);
                a
            }
        });
    }
    out.ok_or_else(|| DataError::Invalid("no CIFAR-10 files given".into()))
}
