//! File-system steps shared by every writer of the output: the sinks (Parquet publication,
//! checkpoint entries, owner markers) and `validate` (reports, incremental state).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The step of [`write_atomic`] that failed, so that each caller can word (or, for the last
/// step, weigh) the failure itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateFolder,
    Create,
    Write,
    Fsync,
    Rename,
    /// The rename is done but the folder could not be fsynced: readers see the new file, but a
    /// power cut may still undo the rename.
    SyncFolder,
}

impl Step {
    /// The verb the sinks' error messages use (`cannot {doing} {path}`).
    pub fn doing(self) -> &'static str {
        match self {
            Step::CreateFolder => "create folder",
            Step::Create => "create",
            Step::Write => "write",
            Step::Fsync => "fsync",
            Step::Rename => "rename into place",
            Step::SyncFolder => "sync folder",
        }
    }
}

/// A failed step of [`write_atomic`], with the path it was applied to.
#[derive(Debug, thiserror::Error)]
#[error("cannot {} {path}: {source}", step.doing())]
pub struct FsError {
    pub step: Step,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn at(step: Step, path: &Path) -> impl FnOnce(std::io::Error) -> FsError + '_ {
    move |source| FsError { step, path: path.to_path_buf(), source }
}

/// fsyncs a folder so that renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(at(Step::SyncFolder, dir))
}

/// Makes temp names unique within the process (with the pid and a random part, across
/// processes and hosts sharing a mount, where pids repeat).
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a new hidden file `.<name>.<pid>-<seq>-<random>.tmp` in `dir` (created if
/// needed), fsynced, and returns its path. The name is new (`create_new`): two writers of one
/// file never write into one temp file, which a fixed temp name allowed. On failure the temp
/// file is removed. Every such name starts with `.` and ends with `.tmp`, which is what the
/// cleanups of a crash's leftovers look for.
pub fn durable_temp(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, FsError> {
    fs::create_dir_all(dir).map_err(at(Step::CreateFolder, dir))?;
    loop {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}-{seq}-{:08x}.tmp", std::process::id(), rand::random::<u32>()));
        let mut f = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(at(Step::Create, &tmp)(e)),
        };
        let written = f
            .write_all(bytes)
            .map_err(at(Step::Write, &tmp))
            .and_then(|()| f.sync_all().map_err(at(Step::Fsync, &tmp)));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        return Ok(tmp);
    }
}

/// Atomically replaces `dst` with `bytes`: written to a hidden temp file beside it
/// ([`durable_temp`]), renamed into place, and the folder fsynced. A reader (or a restart) sees
/// the old file or the new one, never a part. `before_rename` runs between the durable temp file
/// and the rename (the sinks name a crash point there, see [`crate::crash`]).
pub fn write_atomic(dst: &Path, bytes: &[u8], before_rename: impl FnOnce()) -> Result<(), FsError> {
    let dir = match dst.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = dst.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let tmp = durable_temp(dir, &name, bytes)?;
    before_rename();
    if let Err(e) = fs::rename(&tmp, dst) {
        let _ = fs::remove_file(&tmp);
        return Err(at(Step::Rename, dst)(e));
    }
    sync_dir(dir)
}

/// The process's soft limit on open files (`ulimit -n`); `None` when it is unlimited or unknown.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dst = tmp.path().join("a/b/state.json");
        write_atomic(&dst, b"one", || {}).unwrap();
        let mut seen = false;
        write_atomic(&dst, b"two", || seen = true).unwrap();
        assert!(seen, "the hook runs before the rename");
        assert_eq!(fs::read(&dst).unwrap(), b"two");
        let names: Vec<_> =
            fs::read_dir(dst.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        let err = write_atomic(&dst.join("x"), b"", || {}).unwrap_err();
        assert_eq!(err.step, Step::CreateFolder, "{err}");
    }
}
