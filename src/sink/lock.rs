//! One writer per run folder and process index.
//!
//! Two `streamlake run` instances on one RUN_ID would interleave files and checkpoint entries of
//! the same partitions: both would be "exactly once" on their own and duplicate data together.
//! Each process therefore holds an exclusive advisory lock (`flock`) on
//! `_checkpoint/locks/process-<P>.lock` for as long as it runs. Every cluster has a process 0, so
//! two clusters on one run folder always collide on at least that file, whatever their sizes.
//! The kernel drops the lock when the process dies, even by SIGKILL, so a crash never leaves a
//! stale lock behind. On network file systems `flock` may not be enforced; see docs/reliability.md.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::{io_err, SinkError};

/// Held for the life of the run; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `process` in `run_dir`, or says who holds it.
    pub fn acquire(run_dir: &Path, process: usize) -> Result<RunLock, SinkError> {
        let dir = crate::format::checkpoint_dir(run_dir).join(crate::format::LOCKS_DIR);
        fs::create_dir_all(&dir).map_err(io_err("create folder", &dir))?;
        let path = dir.join(format!("process-{process}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(SinkError::Locked {
                    run_dir: run_dir.to_path_buf(),
                    path,
                    holder: holder.trim().replace('\n', ", "),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
        }
        let me = format!(
            "pid={}\nhost={}\nstarted={}\n",
            std::process::id(),
            hostname(),
            chrono::Utc::now().to_rfc3339()
        );
        file.set_len(0).map_err(io_err("write lock file", &path))?;
        file.rewind().map_err(io_err("write lock file", &path))?;
        file.write_all(me.as_bytes()).map_err(io_err("write lock file", &path))?;
        Ok(RunLock { _file: file, path })
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(tmp.path(), 0).unwrap();
        let err = RunLock::acquire(tmp.path(), 0).unwrap_err().to_string();
        assert!(err.contains(&format!("pid={}", std::process::id())), "{err}");
        assert!(err.contains("another RUN_ID"), "{err}");
        // Another process index of the same cluster is independent.
        let _other = RunLock::acquire(tmp.path(), 1).unwrap();
        drop(first);
        RunLock::acquire(tmp.path(), 0).unwrap();
    }
}
