//! Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder.
//!
//! A crash at any point leaves either the old file or the new one, never a torn mix; this is
//! what "nothing already written is lost" rests on for checkpoints, tickets and reports.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (same-folder temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{} has no file name", path.display()))
    })?;
    let prefix = format!(".{}.tmp-", file_name.to_string_lossy());
    remove_dead_writers_temporaries(&dir, &prefix);
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // fsync the folder so the rename itself is durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes `<prefix><pid>` files in `dir` whose writer process no longer exists: what a writer
/// killed between creating its temporary file and renaming it leaves behind. Only on systems with
/// `/proc` (elsewhere nothing is removed).
fn remove_dead_writers_temporaries(dir: &Path, prefix: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Bytes of memory the OS could give this process now (`MemAvailable` of `/proc/meminfo`), or
/// `None` where that is unknown. Used to refuse, with a clear message, an allocation that would
/// otherwise end in the kernel's out-of-memory killer.
///
/// A cap on the process is honoured too: a cgroup v2 limit (`memory.max` less `memory.current`) and
/// an address-space limit (`ulimit -v`, less the address space already mapped), whichever is lowest.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut avail = kb.checked_mul(1024)?;
    let read_u64 = |p: &str| std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse::<u64>().ok());
    if let (Some(max), Some(cur)) = (read_u64("/sys/fs/cgroup/memory.max"), read_u64("/sys/fs/cgroup/memory.current")) {
        avail = avail.min(max.saturating_sub(cur));
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft_as = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(cap) = soft_as {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let vm_kb = status
            .lines()
            .find(|l| l.starts_with("VmSize:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        avail = avail.min(cap.saturating_sub(vm_kb.saturating_mul(1024)));
    }
    Some(avail)
}

/// Reads a whole file that must be a regular file of at most `max` bytes: a device (`/dev/zero`), a
/// FIFO or a folder is refused at once (reading one would never end or would hang), and so is a
/// file larger than any valid one can be, before any byte is read. Errors have kind `InvalidInput`.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    if !meta.is_file() {
        let what = if meta.is_dir() { "a folder" } else { "not a regular file (a device, FIFO or socket)" };
        return Err(invalid(format!("{what}, not a file that can be read")));
    }
    if meta.len() > max {
        return Err(invalid(format!("{} bytes, more than any valid file of its kind ({max} at most)", meta.len())));
    }
    use std::io::Read;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` bounds the read even if the file grows while it is read.
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(invalid(format!("grew past {max} bytes while being read")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_and_replaces_without_leaving_temp_files() {
        let dir = std::env::temp_dir().join(format!("awt-base-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.bin");
        super::write_atomic(&p, b"one").unwrap();
        super::write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        // pid 1 is alive (init); a pid beyond the kernel's maximum never is.
        let (dead, live) = (dir.path().join(".m.safetensors.tmp-4194999"), dir.path().join(".m.safetensors.tmp-1"));
        std::fs::write(&dead, b"torn").unwrap();
        std::fs::write(&live, b"in progress").unwrap();
        super::write_atomic(&p, b"new").unwrap();
        assert!(!dead.exists(), "a dead writer's temporary file was left");
        assert!(live.exists(), "a live writer's temporary file was removed");
    }
}
