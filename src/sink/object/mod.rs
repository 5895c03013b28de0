//! The sink on an object store (`--output s3://bucket/prefix`): the same dataset, checkpoint
//! and aggregates as on local disk, committed without rename or fsync (docs/format.md, "Object
//! storage").
//!
//! Files are staged on local disk, in a spool folder private to this process, exactly as the
//! local sink stages them; a commit then puts each finished file under its final key (one PUT:
//! an object is visible whole or not at all) and creates the checkpoint entry with a
//! conditional create ([`commit::ObjectCommit`]). Nothing in the spool is ever committed, so a
//! start simply empties it. One process per run and process index holds a lease
//! ([`lease::Lease`]), so a second writer is refused before it deletes anything, and one whose
//! lease lapsed stops before it commits.
//!
//! Keys are relative to the *parent* of OUTPUT_PATH, because the aggregates live beside it
//! (`OUTPUT_PATH/../aggregates/<name>/run_<RUN_ID>/`, as on local disk).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{io_err, SinkError};
use crate::storage::{ObjectUrl, Patient, Store, StoreError};

pub mod commit;
pub mod lease;
pub mod state;

/// Where one process of a run writes on an object store.
#[derive(Debug)]
pub struct ObjectTarget {
    /// Rooted at OUTPUT_PATH's parent prefix; waits out a store that does not answer.
    pub store: Arc<Patient>,
    /// `<name>/run_<RUN_ID>`: the run folder's key.
    pub run_key: String,
    /// `aggregates/<name>/run_<RUN_ID>`.
    pub aggregates_key: String,
    /// The run as the user would name it (`s3://lake/out/run_x`), for messages.
    pub run_url: String,
    /// This process's local staging folder; `raw/` holds the raw files, `aggregates/` the window
    /// files, until they are uploaded.
    pub spool: PathBuf,
    /// This process's hold on the run (set once acquired).
    pub lease: std::sync::OnceLock<Arc<lease::Lease>>,
}

impl ObjectTarget {
    /// The keys of run `run_id` under `url`; `None` when the URL has no parent prefix for the
    /// aggregates (`s3://bucket` itself).
    pub fn keys(url: &ObjectUrl, run_id: &str) -> Option<(ObjectUrl, String, String)> {
        let (parent, name) = match url.prefix.rsplit_once('/') {
            Some((parent, name)) => (parent.to_string(), name.to_string()),
            None if !url.prefix.is_empty() => (String::new(), url.prefix.clone()),
            None => return None,
        };
        let run = format!("{}{run_id}", crate::format::RUN_PREFIX);
        let root = ObjectUrl {
            given: format!("s3://{}/{parent}", url.bucket),
            bucket: url.bucket.clone(),
            prefix: parent,
        };
        Some((root, format!("{name}/{run}"), format!("{}/{name}/{run}", crate::format::AGGREGATES_DIR)))
    }

    /// The spool folder of the raw files (the local layout's run folder).
    pub fn raw_spool(&self) -> PathBuf {
        self.spool.join("raw")
    }

    /// The spool folder of the window files.
    pub fn aggregates_spool(&self) -> PathBuf {
        self.spool.join("aggregates")
    }

    /// `key` under the run folder.
    pub fn run(&self, rel: &str) -> String {
        format!("{}/{rel}", self.run_key)
    }

    /// Returns once this process may commit: at once while its lease is fresh, after a lapse
    /// once it is renewed; fails if another process took over or a stop was asked for.
    pub fn wait_for_lease(&self) -> Result<(), SinkError> {
        match self.lease.get() {
            Some(lease) => lease.wait_valid(&|| self.store.give_up()),
            None => Ok(()),
        }
    }

    /// A write that only the holder of the run may make (a checkpoint entry, `windows.json`):
    /// every attempt starts while the lease is valid, and a store that does not answer is
    /// waited out between attempts, never by resending a request across a lapse.
    pub fn holder_write<T>(
        &self,
        doing: &str,
        key: &str,
        op: impl Fn(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, SinkError> {
        self.store.retry_with(doing, key, || self.wait_for_lease(), op)
    }

    /// Puts the files `rels` (relative to `local_root`) under `key_prefix/<rel>`, all at once,
    /// then removes the local copies. Returns the bytes uploaded.
    pub fn upload(&self, local_root: &Path, rels: &[String], key_prefix: &str) -> Result<u64, SinkError> {
        let mut objects = Vec::with_capacity(rels.len());
        let mut bytes = 0u64;
        for rel in rels {
            let path = local_root.join(rel);
            let data = std::fs::read(&path).map_err(io_err("read staged file", &path))?;
            bytes += data.len() as u64;
            objects.push((format!("{key_prefix}/{rel}"), Bytes::from(data)));
        }
        self.store.put_all(objects)?;
        for rel in rels {
            let path = local_root.join(rel);
            std::fs::remove_file(&path).map_err(io_err("remove staged file", &path))?;
        }
        Ok(bytes)
    }
}

/// Empties `dir` (this process's spool: nothing in it was ever committed) and creates it.
pub fn reset_spool(dir: &Path) -> Result<(), SinkError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("empty the spool folder", dir)(e)),
    }
    std::fs::create_dir_all(dir).map_err(io_err("create the spool folder", dir))
}

/// The default spool folder of a process: under the system's temp folder, per output URL, run
/// and process, so that two jobs on one host never share one.
pub fn default_spool(url: &ObjectUrl, run_id: &str, process: usize) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (url.bucket.as_str(), url.prefix.as_str()).hash(&mut h);
    std::env::temp_dir()
        .join("streamlake-spool")
        .join(format!("{:016x}", h.finish()))
        .join(format!("run_{run_id}"))
        .join(format!("process-{process}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_below_the_parent_prefix() {
        let url = ObjectUrl::parse("s3://lake/a/out").unwrap();
        let (root, run, agg) = ObjectTarget::keys(&url, "x").unwrap();
        assert_eq!(
            (root.prefix.as_str(), run.as_str(), agg.as_str()),
            ("a", "out/run_x", "aggregates/out/run_x")
        );
        let url = ObjectUrl::parse("s3://lake/out").unwrap();
        let (root, run, _) = ObjectTarget::keys(&url, "x").unwrap();
        assert_eq!((root.prefix.as_str(), run.as_str()), ("", "out/run_x"));
        assert!(ObjectTarget::keys(&ObjectUrl::parse("s3://lake").unwrap(), "x").is_none());
    }
}
