//! `validate --path s3://…`: the dataset on an object store, read through a local copy.
//!
//! Every reader of `validate` (discovery, the per-file scan, `--incremental`, the audit) reads
//! files; rather than give each an object-store twin, a run first brings the objects it needs
//! into a local folder laid out as the lake is (`<copy>/<name>/…` for the dataset and
//! `<copy>/aggregates/<name>/…` for its window files, so that `OUTPUT_PATH/../aggregates/`
//! resolves as on local disk), validates that folder, then puts the report and the
//! `--incremental` state back into `<URL>/_reports/` for the next run, wherever it runs.
//!
//! What is fetched: one LIST of each prefix, then every object whose local copy is missing or
//! differs in size or modification time. Data files are written once under a name fixed by their
//! offsets, so a kept copy (`--cache-dir`) makes a later run fetch only what is new; the small
//! JSON files (checkpoint entries, `windows.json`, identity) are compared the same way. Of
//! `_reports/`, only the `--incremental` state is fetched, not the history of reports. Objects
//! gone from the store are removed from the copy, so it never shows a file the store lost.
//! Each copy carries the object's modification time, which is what `--incremental` compares.
//!
//! What a run sees of a job that is writing: objects are listed once, so a commit that lands
//! after the LIST is not seen (the next run sees it). An object PUT before its checkpoint entry
//! is listed like any other; the audit reports it as beyond the committed position, which is
//! what it is until its entry is created (docs/format.md, "Object storage").

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::error::ValidateError;
use super::incremental::STATE_FILE;
use super::report::Report;
use super::REPORTS_DIR;
use crate::storage::{Listed, ObjectStoreRoot, ObjectUrl, Store};

/// Concurrent GETs while fetching: the work is waiting on the network, not the CPU.
const FETCH_THREADS: usize = 16;

/// A local copy of a dataset on an object store, fetched for one or more validate runs.
pub struct Mirror {
    url: ObjectUrl,
    store: ObjectStoreRoot,
    /// The dataset's key prefix relative to the store's root (the URL's last part), or empty
    /// when the URL is a bucket's root.
    name: String,
    /// The folder that stands for the URL's parent.
    base: PathBuf,
    /// A temporary copy, removed when the mirror is dropped.
    temporary: bool,
}

/// What one [`Mirror::sync`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub listed: usize,
    pub fetched: usize,
    pub fetched_bytes: u64,
    pub removed: usize,
}

impl Mirror {
    /// A copy of `url` in `cache_dir` (kept between runs), or in a new temporary folder.
    pub fn open(url: &ObjectUrl, cache_dir: Option<&Path>) -> Result<Mirror, ValidateError> {
        // The store is opened at the URL's parent, so that the sibling `aggregates/<name>/`
        // prefix the audit reads is under it.
        let (parent, name) = match url.prefix.rsplit_once('/') {
            Some((parent, name)) => (parent.to_string(), name.to_string()),
            None => (String::new(), url.prefix.clone()),
        };
        let root = ObjectUrl {
            given: format!("s3://{}/{parent}", url.bucket).trim_end_matches('/').to_string(),
            bucket: url.bucket.clone(),
            prefix: parent,
        };
        // Nothing is sent yet: the first LIST of `sync` names a missing bucket, wrong
        // credentials or an unreachable endpoint, before anything is read.
        let store = ObjectStoreRoot::open(&root)?;
        let (base, temporary) = match cache_dir {
            Some(dir) => (dir.join(&url.bucket).join(&root.prefix), false),
            None => (
                temporary_dir()
                    .map_err(|source| ValidateError::Write { path: std::env::temp_dir(), source })?,
                true,
            ),
        };
        Ok(Mirror { url: url.clone(), store, name, base, temporary })
    }

    /// The local folder that stands for the URL: what the readers are given.
    pub fn root(&self) -> PathBuf {
        if self.name.is_empty() {
            self.base.join("dataset")
        } else {
            self.base.join(&self.name)
        }
    }

    /// Brings the copy up to date with the store: the dataset, minus old reports, and its
    /// window files. Logs progress every few seconds on a long fetch.
    pub fn sync(&self) -> Result<SyncStats, ValidateError> {
        let mut stats = SyncStats::default();
        let dataset = if self.name.is_empty() { String::new() } else { format!("{}/", self.name) };
        let mut prefixes = vec![(dataset.clone(), self.root())];
        if !self.name.is_empty() {
            let aggregates = format!("{}/{}/", crate::format::AGGREGATES_DIR, self.name);
            prefixes.push((aggregates.clone(), self.base.join(&aggregates)));
        }
        for (prefix, local) in prefixes {
            let listed: Vec<Listed> = self
                .store
                .list(&prefix)?
                .into_iter()
                .map(|l| Listed { key: l.key[prefix.len()..].to_string(), ..l })
                .filter(|l| wanted(&l.key))
                .collect();
            stats.listed += listed.len();
            let stale: Vec<&Listed> = listed.iter().filter(|l| !fresh(&local.join(&l.key), l)).collect();
            let (fetched, bytes) = self.fetch(&prefix, &local, &stale)?;
            stats.fetched += fetched;
            stats.fetched_bytes += bytes;
            let keep: BTreeSet<&str> = listed.iter().map(|l| l.key.as_str()).collect();
            stats.removed += remove_unlisted(&local, &local, &keep)?;
        }
        tracing::info!(
            url = %self.url.given,
            objects = stats.listed,
            fetched = stats.fetched,
            fetched_mb = format!("{:.1}", stats.fetched_bytes as f64 / 1e6),
            removed = stats.removed,
            copy = %self.root().display(),
            "object store read for validate"
        );
        Ok(stats)
    }

    /// GETs `objects` (keys under `prefix`) into `local`, concurrently; returns how many were
    /// written and their bytes. An object deleted since the LIST (a crash's leftover removed by a
    /// restarting job) is skipped: it is not part of the dataset any more.
    fn fetch(&self, prefix: &str, local: &Path, objects: &[&Listed]) -> Result<(usize, u64), ValidateError> {
        let total = objects.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let last_log = std::sync::Mutex::new(Instant::now());
        let results = crate::util::fanout::map(objects, FETCH_THREADS, |l| -> Result<u64, ValidateError> {
            let Some(bytes) = self.store.get(&format!("{prefix}{}", l.key))? else { return Ok(0) };
            let path = local.join(&l.key);
            write_copy(&path, &bytes, l.modified)?;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let mut last = last_log.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                tracing::info!(url = %self.url.given, fetched = n, of = total, "reading the dataset from the object store");
            }
            Ok(bytes.len() as u64)
        });
        let mut count = 0;
        let mut bytes = 0;
        for r in results {
            let b = r?;
            count += 1;
            bytes += b;
        }
        Ok((count, bytes))
    }

    /// Puts the report (and, with `--incremental`, the state) into `<URL>/_reports/`, and makes
    /// the report name the URL rather than the local copy.
    pub fn publish(&self, report: &mut Report, incremental: bool) -> Result<(), ValidateError> {
        let root = self.root();
        let local = root.display().to_string();
        let url = self.url.given.trim_end_matches('/').to_string();
        let rewrite = |s: &str| s.replace(&local, &url);
        report.path = url.clone();
        report.messages = report.messages.iter().map(|m| rewrite(m)).collect();
        for problem in &mut report.unreadable {
            problem.reason = rewrite(&problem.reason);
        }
        let dataset = if self.name.is_empty() { String::new() } else { format!("{}/", self.name) };
        let mut uploads: Vec<PathBuf> = Vec::new();
        if let Some(file) = &report.report_file {
            let path = PathBuf::from(file);
            // The report names where it is kept: the object, not the copy.
            report.report_file = Some(rewrite(file));
            // Written again with the rewritten names, then put.
            let bytes = serde_json::to_vec_pretty(&*report).unwrap_or_default();
            super::write_atomic(&path, &bytes)?;
            uploads.push(path);
        }
        if incremental {
            uploads.push(root.join(REPORTS_DIR).join(STATE_FILE));
        }
        for path in uploads {
            let Ok(rel) = path.strip_prefix(&root) else { continue };
            let bytes =
                std::fs::read(&path).map_err(|source| ValidateError::Open { path: path.clone(), source })?;
            self.store.put(&format!("{dataset}{}", rel.to_string_lossy()), bytes.into())?;
        }
        Ok(())
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// Whether the object at `key` (relative to the dataset) is read by validate: everything but the
/// history of reports, of which only the `--incremental` state counts.
fn wanted(key: &str) -> bool {
    match key.strip_prefix(REPORTS_DIR).and_then(|rest| rest.strip_prefix('/')) {
        Some(rest) => rest == STATE_FILE,
        None => true,
    }
}

/// Whether the local copy at `path` is the listed object: same size and modification time.
fn fresh(path: &Path, listed: &Listed) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    meta.len() == listed.size && listed.modified.is_some() && meta.modified().ok() == listed.modified
}

/// Writes a copy through a temp file and a rename (a run stopped mid-write leaves no half file
/// that a later run would take for the object), stamped with the object's modification time.
fn write_copy(path: &Path, bytes: &[u8], modified: Option<SystemTime>) -> Result<(), ValidateError> {
    let err = |source| ValidateError::Write { path: path.to_path_buf(), source };
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(err)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.{:08x}.tmp", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        std::fs::write(&tmp, bytes)?;
        if let Some(t) = modified {
            std::fs::File::options().write(true).open(&tmp)?.set_modified(t)?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Removes the files below `dir` whose key (relative to `root`) is not in `keep`, and any temp
/// file a stopped run left; returns how many objects' copies were removed.
fn remove_unlisted(root: &Path, dir: &Path, keep: &BTreeSet<&str>) -> Result<usize, ValidateError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(ValidateError::ListDir { path: dir.to_path_buf(), source }),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += remove_unlisted(root, &path, keep)?;
            continue;
        }
        let key = path.strip_prefix(root).map(|k| k.to_string_lossy().replace('\\', "/")).unwrap_or_default();
        // The reports this run wrote are kept: they are put back to the store.
        if keep.contains(key.as_str()) || key.starts_with(&format!("{REPORTS_DIR}/")) {
            continue;
        }
        std::fs::remove_file(&path).map_err(|source| ValidateError::Write { path: path.clone(), source })?;
        if !path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".tmp")) {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A new private folder for a temporary copy.
fn temporary_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "streamlake-validate-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_not_fetched_but_the_state_is() {
        assert!(wanted("run_t/id=1/part-p000-o000000000000-000000000010-w000.parquet"));
        assert!(wanted("run_t/_checkpoint/partitions/p=0/00000001.json"));
        assert!(wanted("_reports/_state.json"));
        assert!(!wanted("_reports/20261206T100000Z.json"));
        assert!(wanted("_reportsx/a.json"));
    }

    #[test]
    fn a_copy_is_fresh_only_with_the_same_size_and_time() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b.parquet");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        write_copy(&path, b"12345", Some(t)).unwrap();
        let listed = |size, modified| Listed { key: "a/b.parquet".into(), size, modified };
        assert!(fresh(&path, &listed(5, Some(t))));
        assert!(!fresh(&path, &listed(6, Some(t))), "another size");
        assert!(!fresh(&path, &listed(5, Some(t + Duration::from_secs(1)))), "another time");
        assert!(!fresh(&path, &listed(5, None)), "a store that gives no time is always fetched");
        assert!(!fresh(&tmp.path().join("a/c.parquet"), &listed(5, Some(t))), "no copy");
        let names: Vec<_> =
            std::fs::read_dir(tmp.path().join("a")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b.parquet")], "no temp file is left");
    }

    #[test]
    fn copies_of_objects_gone_from_the_store_are_removed_and_reports_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for f in ["run_t/id=1/a.parquet", "run_t/id=1/b.parquet", "_reports/x.json", "run_t/.c.parquet.1.tmp"]
        {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let keep: BTreeSet<&str> = ["run_t/id=1/a.parquet"].into_iter().collect();
        assert_eq!(remove_unlisted(root, root, &keep).unwrap(), 1);
        assert!(root.join("run_t/id=1/a.parquet").exists());
        assert!(!root.join("run_t/id=1/b.parquet").exists());
        assert!(!root.join("run_t/.c.parquet.1.tmp").exists());
        assert!(root.join("_reports/x.json").exists());
    }
}
