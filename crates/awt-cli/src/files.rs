//! Paths the commands write: an output may never be one of the command's inputs.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// True when `a` and `b` name the same file: the same inode for existing files, else the same
/// canonical folder and name.
fn same_file(a: &Path, b: &Path) -> bool {
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
