//! The commit protocol on a Delta table: the files and the checkpoint entry as the Parquet
//! format writes them (local disk or object store, [`crate::sink::commit`]), then one Delta
//! commit that adds the files and sets each partition's `txn` to its next offset: one per roll
//! for all the partitions of a process's workers ([`DeltaLog::commit_grouped`]). The Delta
//! commit is the commit point: a reader of the table sees the range then, and not before; a
//! restart resumes from the `txn` version.
//!
//! What a crash leaves, and how [`CommitProtocol::load`] (called for every partition before it
//! is read) makes it whole:
//! - before the entry: files that no entry names, removed by `clean` as on plain Parquet;
//! - entry written, table not committed (`delta.before_commit`): the `txn` version is the entry's
//!   `start_offset` (or absent for a partition's first entry). The entry is a complete promise
//!   (its files are durable), so the commit is made now, with the same files and version:
//!   rolled forward, never lost and never read twice;
//! - table committed (`delta.after_commit`): the `txn` version equals the entry's `next_offset`;
//!   nothing to do. A commit whose reply was lost is recognised the same way
//!   ([`DeltaLog::commit`] checks the version before every attempt).
//!
//! Any other combination (a `txn` version that no entry explains) is refused, by name, rather
//! than guessed at.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::files::{add_action, NewFile};
use super::table::{Committed, DeltaLog, TxnMove};
use crate::format;
use crate::parse::json::RecordParser;
use crate::sink::checkpoint::PartitionEntry;
use crate::sink::commit::{CommitProtocol, Roll, StagedFiles};
use crate::sink::raw::CommitStats;
use crate::sink::SinkError;

/// Learns the sizes of committed files (relative to the table) when the protocol below did not
/// say: a stat on local disk, a listing on a store.
pub type Sizer = Arc<dyn Fn(&[String]) -> Result<Vec<u64>, SinkError> + Send + Sync>;

/// The `txn` application id of a Kafka partition's range in a run: the run, the topic and the
/// partition, so two runs or topics writing one table never share a version line.
pub fn app_id(run_id: &str, topic: &str, partition: i32) -> String {
    format!("streamlake/{run_id}/{topic}/{partition}")
}

/// The `txn` application id of a run's window aggregates; its version is `closed_through_ms`.
pub fn windows_app_id(run_id: &str) -> String {
    format!("streamlake/{run_id}/windows")
}

type Pending = Arc<Mutex<HashMap<(i32, i64), Vec<NewFile>>>>;

/// One worker's partitions on a Delta table.
pub struct DeltaCommit {
    /// The worker (its index in the cluster), as the process's group commit knows it.
    worker: usize,
    inner: Box<dyn CommitProtocol>,
    log: Arc<DeltaLog>,
    run_id: String,
    topic: String,
    sizer: Sizer,
    /// Files made durable and not yet committed, by (partition, next offset).
    pending: Pending,
    /// Each partition's `txn` version as this worker last committed or read it.
    positions: Mutex<HashMap<i32, Option<i64>>>,
}

impl DeltaCommit {
    pub fn new(
        worker: usize,
        inner: Box<dyn CommitProtocol>,
        log: Arc<DeltaLog>,
        run_id: &str,
        topic: &str,
        sizer: Sizer,
    ) -> Self {
        DeltaCommit {
            worker,
            inner,
            log,
            run_id: run_id.to_string(),
            topic: topic.to_string(),
            sizer,
            pending: Arc::new(Mutex::new(HashMap::new())),
            positions: Mutex::new(HashMap::new()),
        }
    }

    fn app(&self, partition: i32) -> String {
        app_id(&self.run_id, &self.topic, partition)
    }

    /// Adds `files` (relative to the table) with `partition`'s `txn` moved from `previous` to
    /// `next_offset`.
    fn commit(
        &self,
        partition: i32,
        previous: Option<i64>,
        next_offset: i64,
        files: Vec<NewFile>,
    ) -> Result<Committed, SinkError> {
        let now = chrono::Utc::now().timestamp_millis();
        let adds = files.iter().map(|f| add_action(f, self.log.partition_by(), now)).collect();
        let done = self.log.commit(
            &self.app(partition),
            previous,
            next_offset,
            adds,
            self.log.append_operation(),
        )?;
        if let Ok(mut p) = self.positions.lock() {
            p.insert(partition, Some(next_offset));
        }
        Ok(done)
    }

    /// The data files of `entry` (not its quarantine file), with their sizes.
    fn entry_files(&self, entry: &PartitionEntry) -> Result<Vec<NewFile>, SinkError> {
        let rels: Vec<String> = entry.files.iter().filter(|f| is_data_file(f)).cloned().collect();
        let sizes = (self.sizer)(&rels)?;
        Ok(rels
            .into_iter()
            .zip(sizes)
            .map(|(rel, size)| {
                let rows = rows_of(&rel, &entry.rows_per_key, entry.rows, entry.files.len());
                NewFile { rel, size, rows }
            })
            .collect())
    }
}

/// Whether a file of an entry belongs in the table (quarantined messages have their own schema
/// and stay in `_quarantine/`, which Delta readers skip as they skip every `_` folder).
fn is_data_file(rel: &str) -> bool {
    !rel.starts_with(&format!("{}/", format::QUARANTINE_DIR))
}

/// Rows of the file `rel`: one file per folder per commit, so its folder's count.
fn rows_of(
    rel: &str,
    rows_per_key: &std::collections::BTreeMap<String, u64>,
    rows: u64,
    files: usize,
) -> Option<u64> {
    let data_files = files;
    match rel.rsplit_once('/') {
        Some((folder, _)) => {
            let value = folder.rsplit('/').next()?.split_once('=')?.1;
            rows_per_key.get(&crate::format::partition::decode_folder_value(value)).copied()
        }
        None if data_files >= 1 => Some(rows),
        None => None,
    }
}

/// A partition's files, staged by the protocol below; their Delta actions are prepared when
/// they are durable.
struct DeltaStaged {
    inner: Box<dyn StagedFiles>,
    partition: i32,
    pending: Pending,
    sizer: Sizer,
}

impl StagedFiles for DeltaStaged {
    #[inline]
    fn append(&mut self, parser: &RecordParser, payload: &[u8]) -> Result<(), SinkError> {
        self.inner.append(parser, payload)
    }

    fn quarantine(&mut self, offset: i64, payload: Option<&[u8]>, reason: String) {
        self.inner.quarantine(offset, payload, reason)
    }

    fn pending_bytes(&self) -> u64 {
        self.inner.pending_bytes()
    }

    fn over_budget(&self) -> bool {
        self.inner.over_budget()
    }

    fn pending_messages(&self) -> u64 {
        self.inner.pending_messages()
    }

    fn make_durable(&mut self, next_offset: i64) -> Result<CommitStats, SinkError> {
        let stats = self.inner.make_durable(next_offset)?;
        let sizes = if stats.sizes.len() == stats.files.len() {
            stats.sizes.clone()
        } else {
            (self.sizer)(&stats.files)?
        };
        let data_files = stats.files.iter().filter(|f| is_data_file(f)).count();
        let files = stats
            .files
            .iter()
            .zip(sizes)
            .filter(|(rel, _)| is_data_file(rel))
            .map(|(rel, size)| NewFile {
                rel: rel.clone(),
                size,
                rows: rows_of(rel, &stats.rows_per_key, stats.rows, data_files),
            })
            .collect();
        if let Ok(mut p) = self.pending.lock() {
            p.insert((self.partition, next_offset), files);
        }
        Ok(stats)
    }
}

impl CommitProtocol for DeltaCommit {
    fn open(&self, partition: i32, start_offset: i64) -> Box<dyn StagedFiles> {
        Box::new(DeltaStaged {
            inner: self.inner.open(partition, start_offset),
            partition,
            pending: self.pending.clone(),
            sizer: self.sizer.clone(),
        })
    }

    fn load(&self, partition: i32) -> Result<Option<PartitionEntry>, SinkError> {
        let entry = self.inner.load(partition)?;
        let version = self.log.txn_version(&self.app(partition))?;
        let set = |v: Option<i64>| {
            if let Ok(mut p) = self.positions.lock() {
                p.insert(partition, v);
            }
        };
        match (entry, version) {
            (None, None) => {
                set(None);
                Ok(None)
            }
            (Some(e), Some(v)) if v == e.next_offset => {
                set(Some(v));
                Ok(Some(e))
            }
            // A partition that never moved: its entries are recorded, the table is not told
            // (see `record`).
            (Some(e), None) if e.next_offset == e.first_offset => {
                set(None);
                Ok(Some(e))
            }
            (Some(e), v)
                if v == Some(e.start_offset) || (v.is_none() && e.start_offset == e.first_offset) =>
            {
                let files = self.entry_files(&e)?;
                tracing::warn!(
                    table = %self.log.shown(), partition, start = e.start_offset, next = e.next_offset, files = files.len(),
                    "completing a Delta commit that a crash interrupted (its files and checkpoint entry were durable)"
                );
                self.commit(partition, v, e.next_offset, files)?;
                Ok(Some(e))
            }
            (e, v) => Err(SinkError::DeltaDiverged {
                table: self.log.shown().to_string(),
                partition,
                entry: e.map(|e| (e.start_offset, e.next_offset)),
                txn: v,
            }),
        }
    }

    fn clean(&self, partition: i32, next_offset: i64) -> Result<Vec<String>, SinkError> {
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|(part, _), _| *part != partition);
        }
        self.inner.clean(partition, next_offset)
    }

    fn record(&self, entry: &PartitionEntry) -> Result<(), SinkError> {
        self.record_all(std::slice::from_ref(entry), Roll::Unscheduled)
    }

    /// The entries, then one Delta commit for all of them, shared with the process's other
    /// workers at a scheduled roll ([`DeltaLog::commit_grouped`]).
    fn record_all(&self, entries: &[PartitionEntry], roll: Roll) -> Result<(), SinkError> {
        self.inner.record_all(entries, roll)?;
        let mut txns = Vec::with_capacity(entries.len());
        let mut moved = Vec::with_capacity(entries.len());
        let mut adds = Vec::new();
        let now = chrono::Utc::now().timestamp_millis();
        for entry in entries {
            let partition = entry.partition;
            let files =
                match self.pending.lock().ok().and_then(|mut p| p.remove(&(partition, entry.next_offset))) {
                    Some(files) => files,
                    None => self.entry_files(entry)?,
                };
            // An entry of a partition that has not moved since its first (a start on an empty or
            // idle partition) changes nothing a reader could see: no Delta commit, no empty version.
            if entry.next_offset == entry.first_offset && files.is_empty() {
                continue;
            }
            let previous = self.positions.lock().ok().and_then(|p| p.get(&partition).copied()).unwrap_or(
                if entry.start_offset == entry.first_offset { None } else { Some(entry.start_offset) },
            );
            txns.push(TxnMove { app_id: self.app(partition), previous, version: entry.next_offset });
            moved.push((partition, entry.next_offset));
            adds.extend(files.iter().map(|f| add_action(f, self.log.partition_by(), now)));
        }
        self.log.commit_grouped(self.worker, roll, txns, adds)?;
        if let Ok(mut p) = self.positions.lock() {
            for (partition, next) in moved {
                p.insert(partition, Some(next));
            }
        }
        Ok(())
    }

    fn finish(&self) {
        self.log.leave_group(self.worker);
    }
}

impl Drop for DeltaCommit {
    /// A worker that stops for any reason (an error included) is not waited for again.
    fn drop(&mut self) {
        self.log.leave_group(self.worker);
    }
}
