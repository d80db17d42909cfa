//! The Hugging Face hub's format for image datasets: parquet files with an image column (a struct
//! `{bytes: binary (PNG), path: string}`, named `image` for MNIST/Fashion-MNIST and `img` for
//! CIFAR-10) and an integer `label` column.

use std::path::Path;
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

use crate::error::{DataError, file_err, file_io};
use crate::split::Split;

/// Largest image side we decode (the datasets have 28 or 32); guards allocations on corrupt files.
const MAX_SIDE: u32 = 1024;

/// Decodes one PNG to CHW bytes: grayscale gives 1 channel, RGB 3 (alpha dropped).
fn decode_png(bytes: &[u8], path: &Path, row: usize) -> Result<([usize; 3], Vec<u8>), DataError> {
    let bad = |why: String| file_err(path, format!("row {row}: image: {why}"));
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(|e| bad(format!("not a PNG: {e}")))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(bad(format!("{w}×{h} pixels is outside 1..={MAX_SIDE}")));
    }
    let size = reader.output_buffer_size().ok_or_else(|| bad("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(format!("corrupt PNG data: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let px = w * h;
    let (c, stride) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (1, 2),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (3, 4),
        png::ColorType::Indexed => return Err(bad("indexed colour was not expanded".into())),
    };
    let mut out = vec![0u8; c * px];
    for p in 0..px {
        for ch in 0..c {
            out[ch * px + p] = buf[p * stride + ch];
        }
    }
    Ok(([c, h, w], out))
}

/// Reads a hub parquet file into a split.
pub fn read(path: &Path) -> Result<Split, DataError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| file_io(path, "cannot open", e))?;
    // The footer (its length is in the last 8 bytes) is checked before the parquet crate sees it.
    let io = |e: std::io::Error| file_io(path, "cannot read", e);
    let size = f.metadata().map_err(io)?.len();
    if size >= 12 {
        let mut last = [0u8; 8];
        f.seek(SeekFrom::End(-8)).map_err(io)?;
        f.read_exact(&mut last).map_err(io)?;
        let len = u64::from(u32::from_le_bytes(last[..4].try_into().expect("4 bytes")));
        if len + 8 <= size {
            let mut tail = vec![0u8; len as usize + 8];
            f.seek(SeekFrom::End(-(len as i64 + 8))).map_err(io)?;
            f.read_exact(&mut tail).map_err(io)?;
            crate::footer::check(&tail).map_err(|why| file_err(path, format!("malformed parquet footer: {why}")))?;
        }
        f.seek(SeekFrom::Start(0)).map_err(io)?;
    }
    read_from(f, path)
}

/// Reads a hub parquet file held in memory; `path` only labels errors.
pub fn read_bytes(bytes: Vec<u8>, path: &Path) -> Result<Split, DataError> {
    crate::footer::check(&bytes).map_err(|why| file_err(path, format!("malformed parquet footer: {why}")))?;
    read_from(bytes::Bytes::from(bytes), path)
}

thread_local! {
    /// Set while this thread decodes parquet under `catch_unwind`.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `catch_unwind(f)` without the panic hook's "thread panicked at …" message on stderr: the panic
/// becomes an error naming the file, so the raw message would only be noise beside it. The hook is
/// wrapped once per process and stays silent only on a thread inside this call; every other panic
/// reaches the previous hook unchanged.
fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r
}

/// Reads a parquet source, turning a panic of the parquet crate on a malformed file (fuzzing found
/// one: an out-of-bounds slice in parquet 60.1's plain byte-array decoder on a forged dictionary page)
/// into an error naming the file, like every other malformed input. Only the parquet decoding runs
/// under `catch_unwind`; it holds no state of ours that a panic could leave half-updated.
fn read_from<R: parquet::file::reader::ChunkReader + 'static>(source: R, path: &Path) -> Result<Split, DataError> {
    match quietly(|| read_unguarded(source, path)) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(file_err(path, format!("malformed parquet file (the parquet decoder failed: {why})")))
        }
    }
}

fn read_unguarded<R: parquet::file::reader::ChunkReader + 'static>(source: R, path: &Path) -> Result<Split, DataError> {
    let reader = SerializedFileReader::new(source).map_err(|e| file_io(path, "not a readable parquet file", e))?;
    let rows = reader.get_row_iter(None).map_err(|e| file_io(path, "cannot read rows", e))?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut shape: Option<[usize; 3]> = None;
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| file_io(path, format!("row {i}"), e))?;
        let mut img: Option<Vec<u8>> = None;
        let mut label: Option<i64> = None;
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("image" | "img", Field::Group(g)) => {
                    for (n, f) in g.get_column_iter() {
                        if let ("bytes", Field::Bytes(b)) = (n.as_str(), f) {
                            img = Some(b.data().to_vec());
                        }
                    }
                }
                ("image" | "img", Field::Bytes(b)) => img = Some(b.data().to_vec()),
                ("label", Field::Long(v)) => label = Some(*v),
                ("label", Field::Int(v)) => label = Some(i64::from(*v)),
                ("label", Field::Short(v)) => label = Some(i64::from(*v)),
                ("label", Field::Byte(v)) => label = Some(i64::from(*v)),
                ("label", Field::UByte(v)) => label = Some(i64::from(*v)),
                _ => {}
            }
        }
        let img = img.ok_or_else(|| file_err(path, format!("row {i}: no `image`/`img` column with PNG bytes")))?;
        let label = label.ok_or_else(|| file_err(path, format!("row {i}: no integer `label` column")))?;
        if !(0..10).contains(&label) {
            return Err(file_err(path, format!("row {i}: label {label} is not a class 0..9")));
        }
        let (s, px) = decode_png(&img, path, i)?;
        match shape {
            None => shape = Some(s),
            Some(s0) if s0 != s => {
                return Err(file_err(path, format!("row {i}: image shape {s:?} differs from the first row's {s0:?}")));
            }
            _ => {}
        }
        images.extend_from_slice(&px);
        labels.push(label as u8);
    }
    let shape = shape.ok_or_else(|| file_err(path, "no rows"))?;
    Ok(Split { images, labels, shape })
}

/// Writes a split in the hub's format (PNG images in an `image` or `img` struct column, int64
/// `label`, snappy-compressed), as `datasets` would. For fixtures and for exporting data.
pub fn write(split: &Split, image_column: &str, path: &Path) -> Result<(), DataError> {
    use parquet::basic::Compression;
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;

    let e = |x: parquet::errors::ParquetError| file_err(path, format!("cannot write parquet: {x}"));
    let schema = format!(
        "message schema {{ optional group {image_column} {{ optional binary bytes; optional binary path (STRING); }} optional int64 label; }}"
    );
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&schema).map_err(e)?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let [c, h, w] = split.shape;
    let px = h * w;
    let mut pngs = Vec::with_capacity(split.len());
    for i in 0..split.len() {
        let img = &split.images[i * c * px..(i + 1) * c * px];
        let mut interleaved = vec![0u8; c * px];
        for p in 0..px {
            for ch in 0..c {
                interleaved[p * c + ch] = img[ch * px + p];
            }
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(if c == 1 { png::ColorType::Grayscale } else { png::ColorType::Rgb });
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|x| file_err(path, format!("png: {x}")))?;
        wr.write_image_data(&interleaved).map_err(|x| file_err(path, format!("png: {x}")))?;
        wr.finish().map_err(|x| file_err(path, format!("png: {x}")))?;
        pngs.push(ByteArray::from(out));
    }
    let file = std::fs::File::create(path).map_err(|x| file_err(path, format!("cannot create: {x}")))?;
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(e)?;
    let mut rg = writer.next_row_group().map_err(e)?;
    let n = split.len();
    let mut col_index = 0;
    while let Some(mut col) = rg.next_column().map_err(e)? {
        match (col_index, col.untyped()) {
            (0, ColumnWriter::ByteArrayColumnWriter(wr)) => {
                wr.write_batch(&pngs, Some(&vec![2i16; n]), None).map_err(e)?;
            }
            (1, ColumnWriter::ByteArrayColumnWriter(wr)) => {
                // `path` is null in the hub's files: defined only up to the group.
                wr.write_batch(&[], Some(&vec![1i16; n]), None).map_err(e)?;
            }
            (2, ColumnWriter::Int64ColumnWriter(wr)) => {
                let labels: Vec<i64> = split.labels.iter().map(|&l| i64::from(l)).collect();
                wr.write_batch(&labels, Some(&vec![1i16; n]), None).map_err(e)?;
            }
            _ => return Err(file_err(path, "unexpected parquet column layout")),
        }
        col.close().map_err(e)?;
        col_index += 1;
    }
    rg.close().map_err(e)?;
    writer.close().map_err(e)?;
    Ok(())
}
