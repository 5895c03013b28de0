//! The commit protocol: *make these files durable, then record this entry.*
//!
//! A source stages each Kafka partition's records between two commits in a [`StagedFiles`]; a
//! commit then goes through two steps, always in this order:
//!
//! 1. [`StagedFiles::make_durable`]: every staged file is closed and durable under its final name
//!    before the call returns. Names are a function of the Kafka range they cover (and never of
//!    time or chance), so a replay of the range produces the same names and overwrites, never
//!    duplicates.
//! 2. [`CommitProtocol::record`]: the partition's checkpoint entry (`next_offset`, the files,
//!    the window shares) is durable once the call returns. Only then is the range committed.
//!
//! What a crash leaves, and how a restart cleans it ([`CommitProtocol::clean`], called for every
//! partition before it is read, with the recorded `next_offset`):
//! - during step 1: in-progress files under hidden names, tagged with the run's `run_uid`; `clean`
//!   deletes them.
//! - between the steps: files under final names whose range starts at or beyond the recorded
//!   `next_offset`; `clean` deletes those that carry this run's identity, and the range is read
//!   again and produces the same names.
//! - during step 2: the new entry is written whole or not at all (an interrupted write leaves
//!   a temp file that [`CommitProtocol::load`] removes), so the previous entry stays the newest.
//!
//! The local file system ([`LocalFs`]) is the first implementation: step 1 is fsync of every file,
//! rename into place, fsync of the folders; step 2 an atomic write of
//! `_checkpoint/partitions/p=<P>/<NEXT>.json`. The crash points of [`crate::crash`]
//! (`raw.*`, `quarantine.before_rename`, `checkpoint.*`) sit inside these steps. An object store
//! or a table format implements the same two traits: a multipart upload completed in step 1, a
//! conditional put (or a table commit) in step 2.

use std::path::PathBuf;
use std::sync::Arc;

use super::checkpoint::{CheckpointDir, PartitionEntry};
use super::raw::{remove_uncommitted, CommitStats, PartitionFiles, RawLayout, SinkLimits, WorkerBudget};
use super::SinkError;
use crate::parse::json::RecordParser;

/// The records of one partition staged since its last commit. `Send`: a commit hands them to the
/// worker's commit thread (`ingest::commit_stage`).
pub trait StagedFiles: Send {
    /// Appends the record `parser` holds (parsed from `payload`).
    fn append(&mut self, parser: &RecordParser, payload: &[u8]) -> Result<(), SinkError>;
    /// Stages a message that did not fit the schema, with the reason (`code: detail`).
    fn quarantine(&mut self, offset: i64, payload: Option<&[u8]>, reason: String);
    /// Payload bytes staged since the last commit (for size-based rolling).
    fn pending_bytes(&self) -> u64;
    /// Whether the worker holds its whole memory share (`--sink-buffer-mib`): commit now.
    fn over_budget(&self) -> bool;
    /// Messages staged since the last commit.
    fn pending_messages(&self) -> u64;
    /// Step 1: makes every staged file of `[start, next_offset)` durable under its final name and
    /// returns what was written; the next range starts at `next_offset`. The files are not
    /// committed until [`CommitProtocol::record`] records an entry naming them.
    fn make_durable(&mut self, next_offset: i64) -> Result<CommitStats, SinkError>;
}

/// Where a source's partitions are staged, committed and restored from. Shared by a worker and
/// its commit thread (`ingest::commit_stage`), hence `Send + Sync`.
pub trait CommitProtocol: Send + Sync {
    /// Starts staging `partition` at `start_offset`.
    fn open(&self, partition: i32, start_offset: i64) -> Box<dyn StagedFiles>;
    /// The newest recorded entry of `partition` (`None`: never committed). A damaged newest entry
    /// is an error, never a silent start from scratch.
    fn load(&self, partition: i32) -> Result<Option<PartitionEntry>, SinkError>;
    /// Removes what a crash left of `partition` at or beyond `next_offset` (see the module doc);
    /// returns a name for each thing removed, for the log.
    fn clean(&self, partition: i32, next_offset: i64) -> Result<Vec<String>, SinkError>;
    /// Step 2: records `entry` durably; the range it describes is committed when this returns.
    fn record(&self, entry: &PartitionEntry) -> Result<(), SinkError>;
    /// Step 2 for one roll of several partitions (their files all durable): each range is
    /// committed when this returns. A format whose commit point is shared (one Delta version for
    /// them all) overrides it; the others record the entries one by one.
    /// `roll` says which roll this is (a worker with nothing to commit calls it with no entry).
    fn record_all(&self, entries: &[PartitionEntry], roll: Roll) -> Result<(), SinkError> {
        let _ = roll;
        entries.iter().try_for_each(|e| self.record(e))
    }
    /// This worker's source finished: it records nothing more.
    fn finish(&self) {}
}

/// Why a worker commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roll {
    /// The roll numbered `number` of the wall-clock schedule (`ingest::roll`): every worker has
    /// one at about the same moment, and a format with a shared commit point may `wait` that long
    /// for the others of the process.
    Scheduled { number: u64, wait: std::time::Duration },
    /// Any other (size limit, end of input, stop, flush): nobody is waited for.
    Unscheduled,
}

/// The local file system: Parquet files in the run folder, the checkpoint in `_checkpoint/`.
pub struct LocalFs {
    layout: Arc<RawLayout>,
    checkpoint: CheckpointDir,
    /// One worker's file and memory bounds, shared by its partitions.
    budget: Arc<WorkerBudget>,
}

impl LocalFs {
    pub fn new(layout: RawLayout, limits: SinkLimits) -> Self {
        let checkpoint = CheckpointDir::new(&layout.run_dir);
        LocalFs { layout: Arc::new(layout), checkpoint, budget: Arc::new(WorkerBudget::new(limits)) }
    }
}

impl StagedFiles for PartitionFiles {
    #[inline]
    fn append(&mut self, parser: &RecordParser, payload: &[u8]) -> Result<(), SinkError> {
        PartitionFiles::append(self, parser, payload)
    }

    fn quarantine(&mut self, offset: i64, payload: Option<&[u8]>, reason: String) {
        PartitionFiles::quarantine(self, offset, payload, reason)
    }

    fn pending_bytes(&self) -> u64 {
        PartitionFiles::pending_bytes(self)
    }

    fn pending_messages(&self) -> u64 {
        PartitionFiles::pending_messages(self)
    }

    fn over_budget(&self) -> bool {
        PartitionFiles::over_budget(self)
    }

    fn make_durable(&mut self, next_offset: i64) -> Result<CommitStats, SinkError> {
        self.commit(next_offset)
    }
}

impl CommitProtocol for LocalFs {
    fn open(&self, partition: i32, start_offset: i64) -> Box<dyn StagedFiles> {
        Box::new(PartitionFiles::new(self.layout.clone(), self.budget.clone(), partition, start_offset))
    }

    fn load(&self, partition: i32) -> Result<Option<PartitionEntry>, SinkError> {
        self.checkpoint.load_partition(partition)
    }

    fn clean(&self, partition: i32, next_offset: i64) -> Result<Vec<String>, SinkError> {
        let removed: Vec<PathBuf> = remove_uncommitted(&self.layout, partition, next_offset)?;
        Ok(removed.into_iter().map(|p| p.display().to_string()).collect())
    }

    fn record(&self, entry: &PartitionEntry) -> Result<(), SinkError> {
        self.checkpoint.write_partition(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Spec, EVENTS_TOML};

    fn spec() -> Spec {
        Spec::parse(EVENTS_TOML, std::path::Path::new("dataflows/events.toml")).unwrap()
    }

    fn parser(spec: &Spec) -> RecordParser {
        RecordParser::new(spec.schema.clone(), spec.key_col, spec.value_col, spec.time_col)
    }

    fn stage(files: &mut dyn StagedFiles, parser: &mut RecordParser, first: i64, n: i64) {
        for i in first..first + n {
            let json = format!(r#"{{"id":{},"value":1.5,"ts":"2024-01-01T00:00:0{}Z"}}"#, i % 2, i % 10);
            parser.parse(Some(json.as_bytes())).unwrap();
            files.append(parser, json.as_bytes()).unwrap();
        }
        files.quarantine(first + n, Some(b"{"), "bad_json: not JSON".into());
    }

    fn entry_for(stats: &CommitStats, partition: i32) -> PartitionEntry {
        let mut e = PartitionEntry::start_of(partition, stats.start_offset, 0);
        e.next_offset = stats.next_offset;
        e.messages = stats.messages;
        e.files = stats.files.clone();
        e
    }

    /// The contract every implementation keeps; run against each one.
    fn protocol_suite(protocol: &dyn CommitProtocol, exists: impl Fn(&str) -> bool) {
        let spec = spec();
        let mut parser = parser(&spec);
        assert_eq!(protocol.load(0).unwrap(), None);

        // A committed range: durable files, then the entry that names them.
        let mut files = protocol.open(0, 0);
        stage(files.as_mut(), &mut parser, 0, 4);
        assert_eq!(files.pending_messages(), 5);
        let stats = files.make_durable(5).unwrap();
        assert_eq!((stats.start_offset, stats.next_offset, stats.messages), (0, 5, 5));
        assert_eq!((stats.rows, stats.quarantined), (4, 1));
        assert_eq!(stats.files.len(), 3, "one file per key and one quarantine file: {:?}", stats.files);
        assert_eq!(files.pending_messages(), 0);
        let entry = entry_for(&stats, 0);
        protocol.record(&entry).unwrap();
        // An object store adds the commit sequence that names the entry; nothing else changes.
        let loaded = |protocol: &dyn CommitProtocol| {
            protocol.load(0).unwrap().map(|e| PartitionEntry { seq: None, ..e })
        };
        assert_eq!(loaded(protocol), Some(entry.clone()));

        // A crash between the steps: durable files that no entry names are cleaned, the
        // committed ones stay.
        stage(files.as_mut(), &mut parser, 5, 2);
        let orphan = files.make_durable(8).unwrap();
        assert!(orphan.files.iter().all(|f| exists(f)));
        let removed = protocol.clean(0, entry.next_offset).unwrap();
        assert_eq!(removed.len(), orphan.files.len(), "{removed:?}");
        assert!(orphan.files.iter().all(|f| !exists(f)));
        assert!(stats.files.iter().all(|f| exists(f)), "committed files survive a clean");
        assert_eq!(loaded(protocol), Some(entry));

        // A crash during step 1: staged but never made durable leaves nothing a clean keeps.
        let mut files = protocol.open(1, 0);
        stage(files.as_mut(), &mut parser, 0, 3);
        drop(files);
        assert!(!protocol.clean(1, 0).unwrap().is_empty(), "in-progress files are removed");
        assert!(protocol.clean(1, 0).unwrap().is_empty());
    }

    #[test]
    fn the_local_file_system_keeps_the_contract() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec();
        let layout = RawLayout::new(
            tmp.path().to_path_buf(),
            "t",
            "r",
            "uid1",
            0,
            spec.schema.clone(),
            spec.partition.clone(),
        );
        let root = tmp.path().to_path_buf();
        protocol_suite(&LocalFs::new(layout, SinkLimits::default()), |rel| root.join(rel).exists());
    }

    /// A restart after a crash mid-commit of many folders: the clean runs on several threads and
    /// ends with one `syncfs` (`raw::remove_uncommitted`); it must still remove exactly the files
    /// past the committed position, in every folder.
    #[test]
    fn a_clean_of_many_folders_removes_exactly_the_uncommitted_files() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec();
        let layout = RawLayout::new(
            tmp.path().to_path_buf(),
            "t",
            "r",
            "uid1",
            0,
            spec.schema.clone(),
            spec.partition.clone(),
        );
        let protocol = LocalFs::new(layout, SinkLimits::default());
        let mut parser = parser(&spec);
        let keys = 1_500; // folders: several cleaning threads' worth
        let mut write = |files: &mut dyn StagedFiles, first: i64| {
            for i in first..first + keys {
                let json = format!(r#"{{"id":{},"value":1.5,"ts":"2024-01-01T00:00:00Z"}}"#, i - first);
                parser.parse(Some(json.as_bytes())).unwrap();
                files.append(&parser, json.as_bytes()).unwrap();
            }
        };
        let mut files = protocol.open(0, 0);
        write(files.as_mut(), 0);
        let committed = files.make_durable(keys).unwrap();
        protocol.record(&entry_for(&committed, 0)).unwrap();
        write(files.as_mut(), keys);
        let orphans = files.make_durable(2 * keys).unwrap();
        assert_eq!((committed.files.len(), orphans.files.len()), (keys as usize, keys as usize));
        let removed = protocol.clean(0, keys).unwrap();
        assert_eq!(removed.len(), orphans.files.len());
        let root = tmp.path();
        assert!(orphans.files.iter().all(|f| !root.join(f).exists()), "every orphan is gone");
        assert!(committed.files.iter().all(|f| root.join(f).exists()), "every committed file stays");
        assert!(protocol.clean(0, keys).unwrap().is_empty(), "a second clean finds nothing");
    }

    /// A writer of run `r` on `store` (a local folder standing in for the bucket), with its own
    /// spool folder.
    fn object_writer(
        store: Arc<dyn crate::storage::Store>,
        spool: std::path::PathBuf,
    ) -> (crate::sink::object::commit::ObjectCommit, Arc<crate::sink::object::ObjectTarget>) {
        use crate::sink::object::{commit::ObjectCommit, ObjectTarget};
        let spec = spec();
        let target = Arc::new(ObjectTarget {
            store: Arc::new(crate::storage::Patient::new(store, Arc::new(|| false))),
            run_key: "out/run_r".into(),
            aggregates_key: "aggregates/out/run_r".into(),
            run_url: "s3://bucket/out/run_r".into(),
            spool,
            lease: std::sync::OnceLock::new(),
        });
        let layout = RawLayout::new(
            target.raw_spool(),
            "t",
            "r",
            "uid1",
            0,
            spec.schema.clone(),
            spec.partition.clone(),
        );
        (ObjectCommit::new(target.clone(), layout, SinkLimits::default()), target)
    }

    /// The object-store protocol, on a local folder standing in for the bucket (the same
    /// `Store` contract; tests/s3_output.rs runs it against a real S3 server).
    #[test]
    fn the_object_store_protocol_keeps_the_contract() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::storage::LocalStore::new(tmp.path().join("bucket")));
        let (protocol, target) = object_writer(store, tmp.path().join("spool"));
        let root = tmp.path().join("bucket/out/run_r");
        protocol_suite(&protocol, |rel| root.join(rel).exists());
        // Entries are named by commit sequence, and carry it.
        let entries =
            crate::storage::Store::list(&*target.store, "out/run_r/_checkpoint/partitions/p=0/").unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].key.ends_with("/00000000000000000001.json"), "{entries:?}");
        assert_eq!(protocol.load(0).unwrap().unwrap().seq, Some(1));
    }

    /// Two writers that resume from one entry race for the next: one commits, the other is
    /// fenced, deletes what it put, and the committed entry is the winner's.
    #[test]
    fn a_second_writer_of_a_partition_on_an_object_store_is_fenced() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec();
        let store: Arc<dyn crate::storage::Store> =
            Arc::new(crate::storage::LocalStore::new(tmp.path().join("bucket")));
        let writer = |name: &str| object_writer(store.clone(), tmp.path().join(name)).0;
        let (a, b) = (writer("a"), writer("b"));
        let mut parser = parser(&spec);
        assert_eq!((a.load(0).unwrap(), b.load(0).unwrap()), (None, None));
        let mut fa = a.open(0, 0);
        stage(fa.as_mut(), &mut parser, 0, 4);
        let sa = fa.make_durable(5).unwrap();
        let mut fb = b.open(0, 0);
        stage(fb.as_mut(), &mut parser, 0, 2);
        let sb = fb.make_durable(3).unwrap();
        a.record(&entry_for(&sa, 0)).unwrap();
        let err = b.record(&entry_for(&sb, 0)).unwrap_err();
        assert!(matches!(err, SinkError::Fenced { partition: 0, .. }), "{err}");
        let root = tmp.path().join("bucket/out/run_r");
        assert!(sa.files.iter().all(|f| root.join(f).exists()), "the winner's files stay");
        assert!(sb.files.iter().all(|f| !root.join(f).exists()), "the loser's files are gone");
        assert_eq!(writer("c").load(0).unwrap().unwrap().next_offset, 5);
    }
}
