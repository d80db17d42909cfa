//! Paths the commands write: an output may never be one of the command's inputs.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// True when `a` and `b` name the same file: the same inode for existing files, else the same
/// canonical folder and name.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return x.dev() == y.dev() && x.ino() == y.ino();
    }
    let canon = |p: &Path| -> Option<PathBuf> {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    };
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// Refuses a command whose output file (`flag`, `out`) is one of its inputs (`(flag, path)`), also
/// through another path or a hard link: writing it would destroy the input.
pub(crate) fn refuse_overwriting_inputs(flag: &str, out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    for (iflag, input) in inputs {
        if same_file(out, input) {
            anyhow::bail!(
                "{flag} {} is the same file as {iflag} {}: writing it would destroy the input; choose another {flag}",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// A helper file or folder of an output (`t.v1` → `t.v1.search.jsonl`).
pub(crate) use awt_runs::layout::beside;

/// What a writing command holds while it writes: the lock on its output, released at exit.
#[must_use = "the output stays owned only while this is alive"]
pub(crate) struct Owned {
    _lock: std::fs::File,
}

/// What a command writes at its output path. A file already there is replaced only when it is an
/// earlier output of the same kind (awt's own, recognised by its content): anything else is a
/// user's file, and the command is refused before any work instead of destroying it.
#[derive(Clone, Copy)]
pub(crate) struct Kind {
    /// What the output is, as the refusal names it.
    what: &'static str,
    /// Whether a file's bytes (at most [`SNIFF_MAX`] of them; the header of a safetensors file)
    /// are such an output.
    is: fn(&[u8]) -> bool,
    /// Whether `is` reads a safetensors header rather than the whole file.
    safetensors: bool,
}

/// The most bytes read to tell whether an existing output is awt's: a JSON output or a safetensors
/// header larger than this is not one of awt's.
const SNIFF_MAX: u64 = 64 << 20;

impl Kind {
    /// A model file (`init`, `prune`, `ticket`): safetensors whose metadata names the build that
    /// wrote it (`git_commit`), as every model file awt writes does.
    pub(crate) const MODEL: Kind = Kind { what: "a model file awt wrote", is: model_header, safetensors: true };
    /// `awt ntk --out`: safetensors holding a kernel `ntk` and its rows' `indices`.
    pub(crate) const KERNEL: Kind = Kind { what: "a kernel file awt ntk wrote", is: kernel_header, safetensors: true };

    /// A JSON output: one record that parses as `T`.
    pub(crate) const fn json<T: serde::de::DeserializeOwned>(what: &'static str) -> Kind {
        Kind { what, is: parses::<T>, safetensors: false }
    }

    /// A whole-file output recognised by `is`.
    pub(crate) const fn new(what: &'static str, is: fn(&[u8]) -> bool) -> Kind {
        Kind { what, is, safetensors: false }
    }

    /// A JSON-lines output: every line a record that parses as `T`.
    pub(crate) const fn jsonl<T: serde::de::DeserializeOwned>(what: &'static str) -> Kind {
        Kind { what, is: lines_parse::<T>, safetensors: false }
    }

    /// Whether `bytes` (a whole file, or a safetensors header) are an output of this kind.
    #[cfg(test)]
    pub(crate) fn accepts(&self, bytes: &[u8]) -> bool {
        (self.is)(bytes)
    }

    /// Whether the file at `out` (which exists) is an output of this kind; errors reading it count
    /// as no.
    fn holds(&self, out: &Path) -> bool {
        let bytes =
            if self.safetensors { safetensors_header(out) } else { awt_base::read_bounded(out, SNIFF_MAX).ok() };
        bytes.is_some_and(|b| (self.is)(&b))
    }
}

/// Whether `b` is a JSON record that parses as `T`.
pub(crate) fn parses<T: serde::de::DeserializeOwned>(b: &[u8]) -> bool {
    serde_json::from_slice::<T>(b).is_ok()
}

fn lines_parse<T: serde::de::DeserializeOwned>(b: &[u8]) -> bool {
    std::str::from_utf8(b)
        .is_ok_and(|s| s.lines().next().is_some() && s.lines().all(|l| serde_json::from_str::<T>(l).is_ok()))
}

/// The JSON header of a safetensors file, read without reading its tensors (at most [`SNIFF_MAX`]
/// bytes; `None` when it cannot be read).
fn safetensors_header(p: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    // Checked before opening: opening a FIFO blocks until something writes to it.
    if !std::fs::metadata(p).ok()?.is_file() {
        return None;
    }
    let mut f = std::fs::File::open(p).ok()?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).ok()?;
    let n = u64::from_le_bytes(n);
    if n > SNIFF_MAX {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    Some(header)
}

fn header_json(b: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(b).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The `__metadata__` entries of a safetensors header.
fn header_metadata(b: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    header_json(b)?.get("__metadata__")?.as_object().cloned()
}

/// A safetensors file's `__metadata__` entries, read from its header alone (`None` when the file
/// cannot be read as safetensors or has none).
pub(crate) fn safetensors_metadata(p: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    header_metadata(&safetensors_header(p)?)
}

fn model_header(b: &[u8]) -> bool {
    header_metadata(b).is_some_and(|m| m.get("git_commit").is_some_and(|c| c.is_string()))
}

fn kernel_header(b: &[u8]) -> bool {
    header_json(b).is_some_and(|h| h.contains_key("ntk") && h.contains_key("indices"))
}

/// Refuses an output path that holds a file other than an earlier output of this `kind`.
fn refuse_foreign(flag: &str, out: &Path, kind: Kind) -> Result<()> {
    if std::fs::symlink_metadata(out).is_err() || kind.holds(out) {
        return Ok(());
    }
    anyhow::bail!(
        "{flag} {} already exists and is not {}: awt replaces only its own earlier outputs; \
         move the file away or choose another {flag}",
        out.display(),
        kind.what
    )
}

/// Takes ownership of the output `out` (given by `flag`, of `kind`) and its `helpers` before any
/// work: none may be one of the `inputs`, a file already at `out` must be an earlier output of the
/// same kind, and the output is locked (`.<name>.lock` beside it) so a second command writing the
/// same output is refused, naming the holder, instead of splicing its files with this one's.
pub(crate) fn own(flag: &str, out: &Path, kind: Kind, helpers: &[&Path], inputs: &[(&str, &Path)]) -> Result<Owned> {
    refuse_overwriting_inputs(flag, out, inputs)?;
    for h in helpers {
        refuse_overwriting_inputs(&format!("{flag} (its {})", h.display()), h, inputs)?;
    }
    if out.is_dir() {
        anyhow::bail!("{flag} {} is a folder; name a file", out.display());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("{flag} {}: cannot create {}: {e}", out.display(), dir.display()))?;
    let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let lock = dir.join(format!(".{name}.lock"));
    let owned = match awt_runs::lock::lock_exclusive(&lock) {
        Ok(f) => Owned { _lock: f },
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => anyhow::bail!(
            "{flag} {} is being written by {e}; wait for it to finish or choose another {flag}",
            out.display()
        ),
        Err(e) => anyhow::bail!("{flag} {}: cannot lock {}: {e}", out.display(), lock.display()),
    };
    // Checked under the lock: another command may be writing the file until then.
    refuse_foreign(flag, out, kind)?;
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: Kind, bytes: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::write(&out, bytes).unwrap();
        let r = refuse_foreign("--out", &out, kind).is_err();
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
        r
    }

    fn safetensors(header: &str) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b
    }

    /// JSON lines (`dynamics`, which the CLI tests do not reach), and files that only look like
    /// outputs: an empty file, a safetensors file without the build in its metadata, a header
    /// length larger than any header awt writes (refused without reading or allocating it).
    #[test]
    fn only_an_earlier_output_of_the_same_kind_is_replaceable() {
        let line =
            r#"{"epoch":0,"rel_distance":0.1,"alignment":0.9,"sparse_change":0.0,"dense_change":0.0,"loss_gap":null}"#;
        let dynamics = Kind::jsonl::<awt_runs::records::DynamicsLine>("kernel dynamics");
        assert!(!refused(dynamics, format!("{line}\n{line}\n").as_bytes()));
        assert!(refused(dynamics, b""));
        assert!(refused(dynamics, format!("{line}\nnotes\n").as_bytes()));
        let model = r#"{"__metadata__":{"git_commit":"abc"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(!refused(Kind::MODEL, &safetensors(model)));
        assert!(refused(Kind::MODEL, &safetensors(r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#)));
        assert!(refused(Kind::MODEL, &u64::MAX.to_le_bytes()));
        assert!(refused(Kind::MODEL, b""));
        assert!(refused(Kind::KERNEL, &safetensors(model)));
        // A FIFO at the path is no output of awt's, found without opening it (opening blocks).
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(safetensors_header(&fifo).is_none());
        assert!(refuse_foreign("--out", &fifo, Kind::MODEL).is_err());
        assert!(refuse_foreign("--out", &fifo, dynamics).is_err());
        // A path with nothing at it is free.
        assert!(refuse_foreign("--out", Path::new("/nonexistent/awt/out"), Kind::MODEL).is_ok());
    }
}
