//! The one exclusive lock every writer takes: run folders (`<dir>/.lock`, the runner's
//! `<dir>/.xtask.lock`) and single outputs (`.<name>.lock` beside them). An OS-level lock on a file
//! holding the holder's process id; it dies with the process, however the process ends.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another holder has it: its process id as written in the file (empty when it has taken the
    /// lock but not yet written its id).
    Held(String),
    /// The lock file cannot be opened or locked.
    Io(std::io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held(h) if h.is_empty() => f.write_str("another process"),
            LockError::Held(h) => write!(f, "process {h}"),
            LockError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Io(e) => Some(e),
            LockError::Held(_) => None,
        }
    }
}

/// Takes the exclusive lock on the file `path` (created if missing) without waiting, and writes
/// this process's id into it; the lock lasts as long as the returned file.
pub fn try_lock(path: &Path) -> Result<File, LockError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(LockError::Io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Err(LockError::Held(holder.trim().to_string()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
    }
    let mut write_id = || -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(std::process::id().to_string().as_bytes())?;
        f.flush()
    };
    write_id().map_err(LockError::Io)?;
    Ok(f)
}

/// [`try_lock`] with the error as an `std::io::Error`: kind `WouldBlock` and the holder ("process
/// 1234") as its message when another process holds it.
pub fn lock_exclusive(path: &Path) -> std::io::Result<File> {
    try_lock(path).map_err(|e| match e {
        LockError::Io(e) => e,
        held => std::io::Error::new(std::io::ErrorKind::WouldBlock, held.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        let held = try_lock(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), std::process::id().to_string());
        // A second open file description conflicts even within one process.
        match try_lock(&p) {
            Err(LockError::Held(h)) => assert_eq!(h, std::process::id().to_string()),
            other => panic!("{other:?}"),
        }
        let e = lock_exclusive(&p).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(e.to_string(), format!("process {}", std::process::id()));
        drop(held);
        drop(try_lock(&p).unwrap());
        assert!(matches!(try_lock(&dir.path().join("no/such/dir/.lock")), Err(LockError::Io(_))));
    }
}
