//! [`Store`] on a local or mounted file system: today's protocol of hidden names, fsync and rename.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::store::{check_key, Created, Listed, Store, StoreError};
use crate::util;

/// A dataset root folder.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

fn from_fs(e: crate::util::fs::FsError) -> StoreError {
    StoreError::Io { doing: e.step.doing(), location: e.path.display().to_string(), source: e.source }
}

fn io<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { doing, location: path.display().to_string(), source }
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        check_key(key)?;
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        util::fs::write_atomic(&self.path(key), &bytes, || {}).map_err(from_fs)
    }

    fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StoreError> {
        check_key(key)?;
        let dst = self.path(key);
        let dir = dst.parent().unwrap_or(&self.root);
        let name = dst.file_name().map_or_else(|| "object".into(), |n| n.to_string_lossy());
        let tmp = util::fs::durable_temp(dir, &name, &bytes).map_err(from_fs)?;
        // link(2) fails if the name exists, atomically: of two concurrent creates one links.
        // rename(2) would silently replace.
        let linked = fs::hard_link(&tmp, &dst);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                util::fs::sync_dir(dir).map_err(from_fs)?;
                Ok(Created::New)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::Exists),
            Err(e) => Err(io("create", &dst)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let under = prefix.trim_end_matches('/');
        if !under.is_empty() {
            check_key(under)?;
        }
        let mut out = Vec::new();
        let start = self.path(under);
        walk(&self.root, &start, &mut out)?;
        out.retain(|l| l.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => util::fs::sync_dir(path.parent().unwrap_or(&self.root)).map_err(from_fs),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }
}

/// Every file below `dir` (a file itself if `dir` is one), keyed relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<Listed>) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        // A prefix that names a file, or runs through one: nothing below it (as on S3, where a
        // prefix lists only what is under `prefix/`).
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(()),
        Err(e) => return Err(io("list folder", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("list folder", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("stat", &path))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() && !is_temp(&entry.file_name().to_string_lossy()) {
            let meta = entry.metadata().map_err(io("stat", &path))?;
            out.push(Listed { key: key_of(root, &path), size: meta.len(), modified: meta.modified().ok() });
        }
    }
    Ok(())
}

/// A temp file of [`util::fs::durable_temp`] (a `put` or `create` in progress, or a crash's
/// leftover): never an object.
fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

fn key_of(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}
