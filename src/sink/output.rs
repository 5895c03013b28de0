//! The output of a run, made ready before any worker starts: identity checked and recorded, the
//! run held by this process, the aggregates folder claimed, leftovers of a crash removed.
//!
//! The order is the same on local disk and on an object store, and every refusal comes before
//! anything is written: the identity and the aggregates owner are checked read-only first, then
//! the run is locked (a `flock` on local disk, a lease on a store), then the identity recorded.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::aggregates::{aggregates_dir, check_owner, claim, remove_unmarked, OWNER_FILE};
use super::checkpoint::{CheckpointDir, WindowsEntry};
use super::identity::{self, RunIdentity};
use super::lock::RunLock;
use super::object::{lease::Lease, reset_spool, ObjectTarget};
use crate::storage::{ObjectStoreRoot, ObjectUrl, Patient};

/// How long a process's hold on a run on an object store lasts without renewal, unless
/// `--object-lease` says otherwise: a restart after a crash waits up to this long for the dead
/// process's lease to expire.
pub const OBJECT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// What the workers write to.
pub struct PreparedOutput {
    /// The run folder on local disk, or this process's spool of raw files on a store.
    pub run_dir: PathBuf,
    /// The aggregates folder on local disk, or the spool of window files on a store.
    pub agg_dir: PathBuf,
    pub identity: RunIdentity,
    pub windows: WindowsEntry,
    pub object: Option<Arc<ObjectTarget>>,
    /// Held for the life of the run (local disk).
    _lock: Option<RunLock>,
}

impl PreparedOutput {
    /// Local disk: `output/run_<RUN_ID>` and `output/../aggregates/<name>/run_<RUN_ID>`.
    pub fn local(
        output: &std::path::Path,
        run_id: &str,
        process: usize,
        expected: RunIdentity,
    ) -> anyhow::Result<Self> {
        let run_dir = output.join(format!("run_{run_id}"));
        // Refuse a run folder of another topic or dataflow before creating or locking anything, so a
        // refusal leaves the output exactly as it was.
        let recorded = identity::check(&run_dir, &expected)?;
        let agg_dir = aggregates_dir(&run_dir).ok_or_else(|| {
            super::SinkError::OutputPath(format!(
                "OUTPUT_PATH {} has no parent folder for the aggregates (OUTPUT_PATH/../aggregates/); use a folder below it",
                output.display()
            ))
        })?;
        // A fresh run folder cannot know its run_uid yet, and another process of the same cluster may
        // have created the identity and claimed the aggregates folder a moment ago: then the claim is
        // checked again below, once the identity in force is known.
        let claimed = agg_dir.join(OWNER_FILE).exists();
        if recorded.is_some() || !claimed {
            check_owner(&agg_dir, &run_dir, recorded.as_ref().map(|r| r.run_uid.as_str()))?;
        }
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating output folder {}", run_dir.display()))?;
        let lock = RunLock::acquire(&run_dir, process)?;
        let identity = identity::establish(&run_dir, expected)?;
        check_owner(&agg_dir, &run_dir, Some(&identity.run_uid))?;
        let checkpoint = CheckpointDir::new(&run_dir);
        let windows = checkpoint.load_windows()?;
        checkpoint.verify_all()?;
        if process == 0 {
            claim(&agg_dir, &run_dir, &identity.run_uid)?;
            for path in remove_unmarked(&agg_dir, &identity.run_uid, &windows.files)? {
                tracing::warn!(path = %path.display(), "removed a window file written before a crash but never marked in windows.json; its windows are emitted again");
            }
        }
        Ok(PreparedOutput { run_dir, agg_dir, identity, windows, object: None, _lock: Some(lock) })
    }

    /// Opens the store of `url` and checks it (bucket, credentials, conditional create): `run`
    /// calls this first, so a wrong URL, endpoint or key fails before Kafka is contacted.
    ///
    /// From then on the job writes through a [`Patient`] store, which waits out a store that
    /// stops answering until `stop` says a stop was asked for.
    pub fn check_store(
        url: &ObjectUrl,
        run_id: &str,
        spool: PathBuf,
        stop: Arc<dyn Fn() -> bool + Send + Sync>,
        single_writer: bool,
    ) -> anyhow::Result<ObjectTarget> {
        let (root, run_key, aggregates_key) = ObjectTarget::keys(url, run_id).ok_or_else(|| {
            super::SinkError::OutputPath(format!(
                "OUTPUT_PATH {}: the aggregates go beside OUTPUT_PATH (OUTPUT_PATH/../aggregates/), so it needs a \
                 prefix below the bucket, such as {}/lake",
                url.given,
                url.given.trim_end_matches('/')
            ))
        })?;
        let store = ObjectStoreRoot::open(&root)?;
        store.check(single_writer)?;
        if single_writer {
            tracing::warn!(url = %url.given, "--single-writer: the store's conditional create is not relied on; nothing keeps a second process on this run and process index from committing too");
        }
        Ok(ObjectTarget {
            store: Arc::new(Patient::new(Arc::new(store), stop)),
            run_key,
            aggregates_key,
            run_url: format!("{}/run_{run_id}", url.given.trim_end_matches('/')),
            spool,
            lease: std::sync::OnceLock::new(),
        })
    }

    /// An object store, checked by [`PreparedOutput::check_store`].
    /// `lease`: how long this process's hold on the run lasts without renewal.
    pub fn object(
        target: ObjectTarget,
        process: usize,
        expected: RunIdentity,
        lease: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let run_url = target.run_url.clone();
        let recorded = target.check_identity(&expected)?;
        target.check_owner(recorded.as_ref().map(|r| r.run_uid.as_str()))?;
        let lease = Lease::acquire(target.store.clone(), &target.run_key, &run_url, process, lease)?;
        let _ = target.lease.set(lease);
        // Nothing in the spool was ever committed: whatever a crash left there goes.
        reset_spool(&target.raw_spool())?;
        reset_spool(&target.aggregates_spool())?;
        let identity = target.establish_identity(expected)?;
        target.check_owner(Some(&identity.run_uid))?;
        let windows = target.load_windows()?;
        if process == 0 {
            target.claim(&identity.run_uid)?;
            for key in target.remove_unmarked(&identity.run_uid, &windows.files)? {
                tracing::warn!(key, "removed a window file put before a crash but never marked in windows.json; its windows are emitted again");
            }
        }
        tracing::info!(run = %run_url, spool = %target.spool.display(), "writing to the object store");
        Ok(PreparedOutput {
            run_dir: target.raw_spool(),
            agg_dir: target.aggregates_spool(),
            identity,
            windows,
            object: Some(Arc::new(target)),
            _lock: None,
        })
    }

    /// Called when the run ends well or badly: releases the lease, so the next start need not
    /// wait for it to expire.
    pub fn finish(&self) {
        if let Some(lease) = self.object.as_ref().and_then(|o| o.lease.get()) {
            lease.release();
        }
    }
}
