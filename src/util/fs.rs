//! File-system steps shared by every writer of the output: the sinks (Parquet publication,
//! checkpoint entries, owner markers) and `validate` (reports, incremental state).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Atomically replaces `dst` with `bytes`: written to the hidden `.<name>.tmp` beside it, fsynced,
/// renamed into place, and the folder fsynced. A reader (or a restart) sees the old file or the
/// new one, never a part. `before_rename` runs between the durable temp file and the rename (the
/// sinks name a crash point there, see [`crate::crash`]).
pub fn write_atomic(dst: &Path, bytes: &[u8], before_rename: impl FnOnce()) -> Result<(), FsError> {
    let dir = match dst.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(at(Step::CreateFolder, dir))?;
    let name = dst.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).map_err(at(Step::Create, &tmp))?;
    f.write_all(bytes).map_err(at(Step::Write, &tmp))?;
    f.sync_all().map_err(at(Step::Fsync, &tmp))?;
    drop(f);
    before_rename();
    fs::rename(&tmp, dst).map_err(at(Step::Rename, dst))?;
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
