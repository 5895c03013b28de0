//! Parquet output and the commit protocol that makes it exactly once.
//!
//! [`raw::PartitionFiles`] writes the raw events of one Kafka partition, one file per key folder
//! per commit; [`checkpoint`] records what is committed; [`commit`] is the protocol that ties the
//! two (files durable, then the entry), with the local file system as its first implementation;
//! [`durable`] holds the fsync/rename steps every commit goes through; [`aggregates`] writes final
//! window rows.

pub mod aggregates;
pub mod checkpoint;
pub mod commit;
pub mod delta;
pub mod durable;
pub mod identity;
pub mod lock;
pub mod object;
pub mod output;
pub mod raw;

/// Errors writing output.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The commit stage's thread ended without a result: it panicked (`ingest::commit_stage`).
    #[error(
        "worker {worker}'s commit thread stopped without reporting its commit: it panicked (the panic is in the \
         log above). What it had not recorded is not committed: a restart resumes at the last checkpoint entry \
         and removes the files it left"
    )]
    CommitThreadStopped { worker: usize },
    #[error(
        "cannot {doing} {path}: {source}; check that the output folder is writable and the disk has room"
    )]
    Io {
        doing: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write Parquet file {path}: {source}; check that the output folder is writable and the disk has room")]
    Parquet {
        path: std::path::PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error(
        "cannot create {path}: the process has no file descriptor left ({source}; `ulimit -n` is {}). \
         The sink had {open} of its {max_open} files open, and partition {partition} had {folders} folders in this \
         commit interval. Lower --max-open-files (folders beyond it are buffered and written one file at a time at \
         commit), or raise the limit (`ulimit -n`)",
        nofile.map_or_else(|| "unknown".to_string(), |n| n.to_string())
    )]
    OutOfFiles {
        path: std::path::PathBuf,
        /// Files the worker's sink had open.
        open: usize,
        /// The worker's share of `--max-open-files`.
        max_open: usize,
        folders: usize,
        partition: i32,
        /// The process's soft `RLIMIT_NOFILE`.
        nofile: Option<u64>,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build Arrow batch for {path}: {source}")]
    Arrow {
        path: std::path::PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error(
        "checkpoint file {path} is damaged ({reason}); nothing was started. To recover, move the damaged \
         file away: the partition then resumes from the previous entry and the files after it are rewritten. \
         Never delete the whole _checkpoint folder unless you also delete the run's output"
    )]
    DamagedCheckpoint { path: std::path::PathBuf, reason: String },
    #[error(
        "run folder {run_dir} is already being written by another streamlake process ({holder}; lock {path}). \
         Two writers on one RUN_ID would interleave their files. Stop the other one first (SIGTERM to its pid \
         lets it commit and exit), or use another RUN_ID"
    )]
    Locked { run_dir: std::path::PathBuf, path: std::path::PathBuf, holder: String },
    /// An object-store operation failed (its message says what to check).
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    #[error(
        "partition {partition} of {run} was committed by another writer (entry {key} already exists and is not \
         this process's); this process stopped without committing, so the output stays exactly once. Two \
         `streamlake run` on one RUN_ID and process index write the same partitions: stop the other one, or use \
         another RUN_ID"
    )]
    Fenced { run: String, partition: i32, key: String },
    #[error(
        "{run}: process {process} is already running ({holder}; lock {key}, renewed {age_s} s ago). Two writers on one \
         RUN_ID would commit the same partitions. Stop the other one first (SIGTERM lets it commit and exit), or use \
         another RUN_ID. If it died, its lock expires {lease_s} s after its last renewal; start again then"
    )]
    LeaseHeld { run: String, process: usize, key: String, holder: String, age_s: u64, lease_s: u64 },
    #[error(
        "{run}: this process's lock {key} {reason}; it stopped before committing anything more, so the output stays \
         exactly once. Start it again once the store is reachable and no other process holds the run"
    )]
    LeaseLost { run: String, key: String, reason: String },
    #[error("cannot {doing} the Delta table {table}: {source}")]
    Delta {
        table: String,
        doing: &'static str,
        #[source]
        source: Box<deltalake_core::DeltaTableError>,
    },
    #[error(
        "Delta table {table}: application {app_id} was expected at version {expected:?} and is at {found:?}: another \
         writer committed this partition; this process stopped without committing, so the table stays exactly once. \
         Two `streamlake run` on one RUN_ID and process index write the same partitions: stop the other one"
    )]
    DeltaFenced { table: String, app_id: String, expected: Option<i64>, found: Option<i64> },
    #[error(
        "Delta table {table} does not fit the dataflow: {reason}. Nothing was written. Write to another OUTPUT_PATH \
         or RUN_ID, or change the dataflow back"
    )]
    DeltaSchema { table: String, reason: String },
    #[error(
        "Delta table {table}: partition {partition}'s checkpoint entry covers {entry:?} (start, next offset) but the \
         table's txn version is {txn:?}, which no commit of this run explains; nothing was started. The table or the \
         _checkpoint folder was changed by hand or restored from a backup: restore both from the same moment, or \
         start a new RUN_ID"
    )]
    DeltaDiverged { table: String, partition: i32, entry: Option<(i64, i64)>, txn: Option<i64> },
    /// The run's existing output is in the other table format (the message says which).
    #[error("{0}")]
    TableFormat(String),
    /// OUTPUT_PATH cannot hold a run (the message names it and says what to use instead).
    #[error("{0}")]
    OutputPath(String),
}

pub(crate) fn io_err<'a>(
    doing: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> SinkError + 'a {
    move |source| SinkError::Io { doing, path: path.to_path_buf(), source }
}
