//! Durable file publication: write under a hidden name, fsync, rename into place, fsync the folder.
//!
//! A reader (or a restart) therefore sees either nothing or the whole file, and once the folder is
//! synced the rename survives a power cut. Checkpoint entries use the same steps, after the data
//! they describe.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::{io_err, SinkError};

/// fsyncs a folder so that renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err("sync folder", dir))
}

/// Renames a fully written, fsynced `tmp` to `dst` and fsyncs the folder of `dst`.
pub fn publish(tmp: &Path, dst: &Path) -> Result<(), SinkError> {
    fs::rename(tmp, dst).map_err(io_err("rename into place", dst))?;
    if let Some(dir) = dst.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Atomically replaces `dst` with `bytes`; `crash_point` names the moment between the durable
/// temp file and the rename (see [`crate::crash`]).
pub fn write_atomic(dst: &Path, bytes: &[u8], crash_point: &'static str) -> Result<(), SinkError> {
    let dir = dst.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create folder", dir))?;
    let name = dst.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(f);
    crate::crash::point(crash_point);
    publish(&tmp, dst)
}

/// Creates `dir` (and parents) and makes its entry durable in the parent folder.
pub fn create_dir_durable(dir: &Path) -> Result<(), SinkError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err("create folder", dir))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}
