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

/// Takes ownership of the output `out` (given by `flag`) and its `helpers` before any work: none
/// may be one of the `inputs`, and the output is locked (`.<name>.lock` beside it) so a second
/// command writing the same output is refused, naming the holder, instead of splicing its files
/// with this one's.
pub(crate) fn own(flag: &str, out: &Path, helpers: &[&Path], inputs: &[(&str, &Path)]) -> Result<Owned> {
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
    match awt_runs::lock::lock_exclusive(&lock) {
        Ok(f) => Ok(Owned { _lock: f }),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => anyhow::bail!(
            "{flag} {} is being written by {e}; wait for it to finish or choose another {flag}",
            out.display()
        ),
        Err(e) => anyhow::bail!("{flag} {}: cannot lock {}: {e}", out.display(), lock.display()),
    }
}
