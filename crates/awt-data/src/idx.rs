//! The IDX format (MNIST, Fashion-MNIST): big-endian header `0 0 type ndim`, `ndim` u32 sizes,
//! then the data. Only unsigned bytes (type 0x08) occur in these datasets; anything else is refused.

use std::io::Read;
use std::path::Path;

use crate::error::{DataError, file_err, file_io};
use crate::split::Split;

/// Deflate cannot expand data by more than about 1032:1, so a gzip file whose IDX header claims
/// more than this many times its own size is lying; we refuse it before allocating anything.
const MAX_DEFLATE_RATIO: u64 = 1100;

/// A parsed IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// Dimensions from the header.
    pub dims: Vec<usize>,
    /// `dims.product()` bytes.
    pub data: Vec<u8>,
}

/// Parses an IDX file held in memory (raw or gzip, detected by the gzip magic). `path` only labels errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Idx, DataError> {
    parse_expecting(bytes, path, None)
}

/// [`parse`], refusing a header whose dimensions differ from `expect` before any data is read or
/// decompressed: a registered dataset's files have known sizes, so a forged header cannot make
/// the reader inflate more than the real file holds.
pub fn parse_expecting(bytes: &[u8], path: &Path, expect: Option<&[usize]>) -> Result<Idx, DataError> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    // Multi-member gzip (concatenated streams, e.g. from pigz or `cat a.gz b.gz`) is valid gzip.
    let mut reader: Box<dyn Read + '_> =
        if gz { Box::new(flate2::read::MultiGzDecoder::new(bytes)) } else { Box::new(bytes) };
    let mut head = [0u8; 4];
    read_exact(&mut reader, &mut head, path, "the 4-byte magic number")?;
    if head[0] != 0 || head[1] != 0 {
        return Err(file_err(
            path,
            format!("wrong magic number {:02x}{:02x}{:02x}{:02x}: not an IDX file", head[0], head[1], head[2], head[3]),
        ));
    }
    if head[2] != 0x08 {
        return Err(file_err(path, format!("element type 0x{:02x} is not unsigned byte (0x08)", head[2])));
    }
    let ndim = head[3] as usize;
    if ndim == 0 || ndim > 4 {
        return Err(file_err(path, format!("{ndim} dimensions: expected 1 to 4")));
    }
    let mut dims = Vec::with_capacity(ndim);
    for i in 0..ndim {
        let mut b = [0u8; 4];
        read_exact(&mut reader, &mut b, path, &format!("dimension {i} of the header"))?;
        dims.push(u32::from_be_bytes(b) as usize);
    }
    if let Some(e) = expect
        && dims != e
    {
        return Err(file_err(path, format!("header declares dimensions {dims:?}, this dataset's file has {e:?}")));
    }
    let claimed = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).unwrap_or(u64::MAX);
    let header = 4 + 4 * ndim as u64;
    let available =
        if gz { (bytes.len() as u64).saturating_mul(MAX_DEFLATE_RATIO) } else { bytes.len() as u64 - header };
    if claimed > available {
        return Err(file_err(
            path,
            format!(
                "header claims {dims:?} = {claimed} bytes of data, more than the file can hold ({} bytes on disk): truncated or corrupt",
                bytes.len()
            ),
        ));
    }
    let mut data = Vec::new();
    reader.take(claimed + 1).read_to_end(&mut data).map_err(|e| file_io(path, "cannot decompress", e))?;
    if (data.len() as u64) < claimed {
        return Err(file_err(
            path,
            format!("truncated: header claims {claimed} data bytes, file holds {}", data.len()),
        ));
    }
    if data.len() as u64 > claimed {
        return Err(file_err(path, format!("trailing bytes after the {claimed} data bytes the header claims")));
    }
    Ok(Idx { dims, data })
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8], path: &Path, what: &str) -> Result<(), DataError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            file_err(path, format!("truncated: ends inside {what}"))
        } else {
            file_io(path, format!("cannot read {what}"), e)
        }
    })
}

/// Reads and parses an IDX file from disk.
pub fn read(path: &Path) -> Result<Idx, DataError> {
    let bytes = std::fs::read(path).map_err(|e| file_io(path, "cannot read", e))?;
    parse(&bytes, path)
}

/// Builds a split from an image IDX (`n × h × w`) and a label IDX (`n`), checking counts and labels.
pub fn split_from(images: Idx, images_path: &Path, labels: Idx, labels_path: &Path) -> Result<Split, DataError> {
    if images.dims.len() != 3 {
        return Err(file_err(
            images_path,
            format!("image file has {} dimensions, expected 3 (n, h, w)", images.dims.len()),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(file_err(labels_path, format!("label file has {} dimensions, expected 1", labels.dims.len())));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(file_err(
            labels_path,
            format!("{} labels but {} images in {}", labels.dims[0], images.dims[0], images_path.display()),
        ));
    }
    if let Some(i) = labels.data.iter().position(|&l| l >= 10) {
        return Err(file_err(labels_path, format!("label {} at index {i} is not a class 0..9", labels.data[i])));
    }
    Ok(Split { images: images.data, labels: labels.data, shape: [1, images.dims[1], images.dims[2]] })
}

/// Loads `images_path` + `labels_path` as a split.
pub fn load_split(images_path: &Path, labels_path: &Path) -> Result<Split, DataError> {
    split_from(read(images_path)?, images_path, read(labels_path)?, labels_path)
}

/// Encodes an IDX file of unsigned bytes (uncompressed); used by tests and tools that write fixtures.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        v.extend_from_slice(&(d as u32).to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}
