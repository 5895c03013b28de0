//! The commit protocol on an object store (docs/format.md, "Object storage").
//!
//! 1. [`StagedFiles::make_durable`]: the partition's files are finished in the local spool, as
//!    the local sink finishes them, then put under their final keys, all at once (crash points
//!    `object.before_upload`, `object.after_upload`). The names are the local sink's: a function
//!    of the Kafka range, so a replay puts the same keys with the same rows.
//! 2. [`CommitProtocol::record`]: the entry is created at
//!    `_checkpoint/partitions/p=<P>/<SEQ, 20 digits>.json` with a conditional create, SEQ being
//!    the previous entry's plus one (crash points `object.before_entry`, `object.after_entry`).
//!    Two writers that resume from one entry race for one key and exactly one wins; the loser
//!    deletes the objects it put that the winner's entry does not name, and stops.
//!
//! A start lists the run's objects once per worker and deletes this run's files of a partition
//! that start at or beyond its committed position (put, but never named by an entry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::ObjectTarget;
use crate::format::{self, meta};
use crate::parse::json::RecordParser;
use crate::sink::checkpoint::PartitionEntry;
use crate::sink::commit::{CommitProtocol, StagedFiles};
use crate::sink::raw::{
    parse_part_file_name, remove_uncommitted, CommitStats, PartitionFiles, RawLayout, SinkLimits,
    WorkerBudget,
};
use crate::sink::SinkError;
use crate::storage::{Created, Listed, Store};

/// Entries kept per partition; older ones are deleted (the newest is what counts).
const KEEP_ENTRIES: u64 = 20;

/// One worker's partitions on an object store.
pub struct ObjectCommit {
    target: Arc<ObjectTarget>,
    layout: Arc<RawLayout>,
    budget: Arc<WorkerBudget>,
    /// The sequence number of each partition's newest entry (0: none yet).
    seqs: Mutex<HashMap<i32, u64>>,
    /// The run's objects, listed once at the first clean.
    listing: OnceLock<Vec<Listed>>,
}

impl ObjectCommit {
    /// `layout.run_dir` is the spool's raw folder.
    pub fn new(target: Arc<ObjectTarget>, layout: RawLayout, limits: SinkLimits) -> Self {
        ObjectCommit {
            target,
            layout: Arc::new(layout),
            budget: Arc::new(WorkerBudget::new(limits)),
            seqs: Mutex::new(HashMap::new()),
            listing: OnceLock::new(),
        }
    }

    fn entries_dir(&self, partition: i32) -> String {
        self.target.run(&format!(
            "{}/{}/{}/",
            format::CHECKPOINT_DIR,
            format::PARTITIONS_DIR,
            format::partition_dir_name(partition)
        ))
    }

    fn seq_of(&self, partition: i32) -> u64 {
        self.seqs.lock().map(|s| s.get(&partition).copied().unwrap_or(0)).unwrap_or(0)
    }

    fn damaged(&self, key: &str, reason: String) -> SinkError {
        SinkError::DamagedCheckpoint {
            path: format!("{}/{key}", self.target.store.describe()).into(),
            reason,
        }
    }

    /// Whether the object at `key` says it is this run's file of `partition`.
    fn ours(&self, key: &str, partition: i32) -> Result<bool, SinkError> {
        let Some(bytes) = self.target.store.get(key)? else { return Ok(false) };
        Ok(meta::read_from(bytes)
            .is_ok_and(|kv| meta::written_by(&kv, &self.layout.run_uid, &self.layout.topic, partition)))
    }
}

/// A partition's files: staged in the spool, uploaded at commit.
struct ObjectStaged {
    files: PartitionFiles,
    target: Arc<ObjectTarget>,
    spool: std::path::PathBuf,
}

impl StagedFiles for ObjectStaged {
    #[inline]
    fn append(&mut self, parser: &RecordParser, payload: &[u8]) -> Result<(), SinkError> {
        self.files.append(parser, payload)
    }

    fn quarantine(&mut self, offset: i64, payload: Option<&[u8]>, reason: String) {
        self.files.quarantine(offset, payload, reason)
    }

    fn pending_bytes(&self) -> u64 {
        self.files.pending_bytes()
    }

    fn over_budget(&self) -> bool {
        self.files.over_budget()
    }

    fn pending_messages(&self) -> u64 {
        self.files.pending_messages()
    }

    fn make_durable(&mut self, next_offset: i64) -> Result<CommitStats, SinkError> {
        let mut stats = self.files.commit(next_offset)?;
        stats.sizes = stats
            .files
            .iter()
            .map(|f| {
                let path = self.spool.join(f);
                std::fs::metadata(&path)
                    .map(|m| m.len())
                    .map_err(crate::sink::io_err("stat staged file", &path))
            })
            .collect::<Result<_, _>>()?;
        crate::crash::point("object.before_upload");
        self.target.upload(&self.spool, &stats.files, &self.target.run_key)?;
        crate::crash::point("object.after_upload");
        Ok(stats)
    }
}

impl CommitProtocol for ObjectCommit {
    fn open(&self, partition: i32, start_offset: i64) -> Box<dyn StagedFiles> {
        Box::new(ObjectStaged {
            files: PartitionFiles::new(self.layout.clone(), self.budget.clone(), partition, start_offset),
            target: self.target.clone(),
            spool: self.layout.run_dir.clone(),
        })
    }

    fn load(&self, partition: i32) -> Result<Option<PartitionEntry>, SinkError> {
        let dir = self.entries_dir(partition);
        let newest = self
            .target
            .store
            .list(&dir)?
            .into_iter()
            .filter_map(|l| {
                let seq = l.key.strip_prefix(&dir)?.strip_suffix(".json")?.parse::<u64>().ok()?;
                Some((seq, l.key))
            })
            .max();
        let Some((seq, key)) = newest else { return Ok(None) };
        let bytes = self
            .target
            .store
            .get(&key)?
            .ok_or_else(|| self.damaged(&key, "it vanished while read".into()))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| self.damaged(&key, e.to_string()))?;
        let entry = PartitionEntry::from_json(text).map_err(|e| self.damaged(&key, e.to_string()))?;
        if entry.partition != partition {
            return Err(self.damaged(&key, format!("it describes partition {}", entry.partition)));
        }
        if let Ok(mut seqs) = self.seqs.lock() {
            seqs.insert(partition, seq);
        }
        Ok(Some(entry))
    }

    fn clean(&self, partition: i32, next_offset: i64) -> Result<Vec<String>, SinkError> {
        let listing = match self.listing.get() {
            Some(l) => l,
            None => {
                let listed = self.target.store.list(&format!("{}/", self.target.run_key))?;
                self.listing.get_or_init(|| listed)
            }
        };
        let checkpoint = self.target.run(&format!("{}/", format::CHECKPOINT_DIR));
        // The spool is emptied at start, but a partition reassigned within a run may leave its
        // in-progress files there.
        let mut removed: Vec<String> = remove_uncommitted(&self.layout, partition, next_offset)?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        for l in listing.iter().filter(|l| !l.key.starts_with(&checkpoint)) {
            let name = l.key.rsplit('/').next().unwrap_or_default();
            let beyond = parse_part_file_name(name)
                .is_some_and(|(p, start, _)| p == partition && start >= next_offset);
            if !beyond {
                continue;
            }
            if !self.ours(&l.key, partition)? {
                tracing::warn!(key = %l.key, partition, next_offset, "an object beyond the committed position does not carry this run's identity; it was left alone");
                continue;
            }
            self.target.store.delete(&l.key)?;
            removed.push(format!("{}/{}", self.target.store.describe(), l.key));
        }
        Ok(removed)
    }

    fn record(&self, entry: &PartitionEntry) -> Result<(), SinkError> {
        let partition = entry.partition;
        let seq = self.seq_of(partition) + 1;
        let key = format!("{}{}", self.entries_dir(partition), format::sequence_entry_name(seq));
        let entry = &PartitionEntry { seq: Some(seq), ..entry.clone() };
        let bytes = Bytes::from(entry.to_json().map_err(|e| SinkError::Io {
            doing: "serialize checkpoint entry",
            path: key.clone().into(),
            source: std::io::Error::other(e),
        })?);
        crate::crash::point("object.before_entry");
        // A process whose lease lapsed may have been replaced: it must not race the new holder.
        match self
            .target
            .holder_write("create the checkpoint entry", &key, |s| s.create(&key, bytes.clone()))?
        {
            Created::New => {}
            // Our own earlier attempt, applied but its answer lost (see `Store::create`).
            Created::Exists if self.target.store.get(&key)?.as_ref() == Some(&bytes) => {}
            Created::Exists => {
                let theirs: Vec<String> = self
                    .target
                    .store
                    .get(&key)?
                    .and_then(|b| PartitionEntry::from_json(std::str::from_utf8(&b).ok()?).ok())
                    .map(|e| e.files)
                    .unwrap_or_default();
                for file in entry.files.iter().filter(|f| !theirs.contains(f)) {
                    if let Err(e) = self.target.store.delete(&self.target.run(file)) {
                        tracing::warn!(error = %e, file, "cannot delete an object of a commit that lost its race");
                    }
                }
                return Err(SinkError::Fenced {
                    run: self.target.run_url.clone(),
                    partition,
                    key: format!("{}/{key}", self.target.store.describe()),
                });
            }
        }
        crate::crash::point("object.after_entry");
        if let Ok(mut seqs) = self.seqs.lock() {
            seqs.insert(partition, seq);
        }
        if seq > KEEP_ENTRIES {
            let old =
                format!("{}{}", self.entries_dir(partition), format::sequence_entry_name(seq - KEEP_ENTRIES));
            if let Err(e) = self.target.store.delete(&old) {
                tracing::warn!(error = %e, key = old, "cannot prune an old checkpoint entry");
            }
        }
        Ok(())
    }
}
