//! One Delta table of a run, as the job commits to it: open or create it, check its schema, read
//! an application's `txn` version, commit files with a `txn` action.
//!
//! delta-rs does the log: the commit file `_delta_log/<version>.json` is created with a
//! conditional create (`PutMode::Create`; a rename-if-absent on local disk), so of two writers
//! racing for one version exactly one wins and the other retries on top of it, and checkpoints
//! are written every `delta.checkpointInterval` commits by its post-commit hook.
//!
//! delta-rs does not refuse a `txn` version an application already committed
//! (delta-io/delta-rs#2580), so [`DeltaLog::commit`] checks the version itself, under the lock
//! of the process and again after a failed attempt, as kafka-delta-ingest does.

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Add, DataType, StructField, Transaction};
use deltalake_core::logstore::LogStoreRef;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore};
use url::Url;

use crate::sink::SinkError;

/// Where a table lives.
#[derive(Clone)]
pub enum TableLocation {
    Local(std::path::PathBuf),
    /// `url` is `s3://bucket/key`; `store` is rooted at the bucket.
    Object {
        url: String,
        store: Arc<dyn ObjectStore>,
    },
}

impl TableLocation {
    pub fn shown(&self) -> String {
        match self {
            TableLocation::Local(path) => path.display().to_string(),
            TableLocation::Object { url, .. } => url.clone(),
        }
    }
}

/// A column of the table: name, Delta type, nullable.
pub type Column = (String, DataType, bool);

/// What a run expects of a table.
pub struct TableSpec {
    pub columns: Vec<Column>,
    pub partition_by: Vec<String>,
    /// `delta.checkpointInterval` of a table this run creates.
    pub checkpoint_interval: u64,
}

/// One table, shared by the workers of a process (commits of one process are serialized here;
/// processes race through the log's conditional create).
pub struct DeltaLog {
    shown: String,
    runtime: Arc<tokio::runtime::Runtime>,
    log_store: LogStoreRef,
    table: Mutex<DeltaTable>,
    partition_by: Vec<String>,
    /// Says when to stop waiting for a store that does not answer.
    give_up: Arc<dyn Fn() -> bool + Send + Sync>,
    counts: Mutex<CommitCounts>,
    /// The commits of this process's workers waiting to share a version ([`group`]).
    group: group::GroupCommit,
}

/// What this process's commits to one table cost, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitCounts {
    /// Table versions this process created.
    pub commits: u64,
    /// `txn`s those versions moved: Kafka partition ranges, or the windows' mark. Above
    /// `commits` when workers' commits were grouped into one version.
    pub ranges: u64,
    /// Commit attempts that found a newer version or the store unanswering, and went again.
    pub retries: u64,
    /// Wall time of the commits, from the first check to the new version (ms).
    pub total_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Debug for DeltaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaLog").field("table", &self.shown).finish()
    }
}

/// One `txn` of a commit: `app_id` moves from `previous` (`None`: never committed) to `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMove {
    pub app_id: String,
    pub previous: Option<i64>,
    pub version: i64,
}

/// What [`DeltaLog::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// A new table version.
    Version(u64),
    /// The application's `txn` already had this version: a commit made before a crash.
    Already,
}

pub(crate) fn delta_err<'a>(
    table: &'a str,
    doing: &'static str,
) -> impl FnOnce(DeltaTableError) -> SinkError + 'a {
    move |source| SinkError::Delta { table: table.to_string(), doing, source: Box::new(source) }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The runtime delta-rs runs on: the callers are timely workers and command-line code, none of
/// which runs inside an async runtime.
pub fn runtime() -> Result<Arc<tokio::runtime::Runtime>, SinkError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("delta-log")
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|source| SinkError::Io { doing: "start the Delta client", path: "delta".into(), source })
}

fn builder(location: &TableLocation) -> Result<DeltaTableBuilder, SinkError> {
    let shown = location.shown();
    match location {
        TableLocation::Local(path) => {
            std::fs::create_dir_all(path).map_err(crate::sink::io_err("create", path))?;
            let url =
                Url::from_directory_path(path.canonicalize().map_err(crate::sink::io_err("resolve", path))?)
                    .map_err(|()| SinkError::OutputPath(format!("{shown} is not an absolute local path")))?;
            DeltaTableBuilder::from_url(url).map_err(delta_err(&shown, "open"))
        }
        TableLocation::Object { url, store } => {
            register_s3();
            let parsed = Url::parse(&format!("{}/", url.trim_end_matches('/')))
                .map_err(|e| SinkError::OutputPath(format!("{url} is not a URL: {e}")))?;
            Ok(DeltaTableBuilder::from_url(parsed.clone())
                .map_err(delta_err(&shown, "open"))?
                .with_storage_backend(store.clone(), parsed))
        }
    }
}

/// delta-rs's log store for `s3://`: its default one, which creates each commit file with a
/// conditional create (`PutMode::Create`). delta-rs's own S3 crate (deltalake-aws) would bring the
/// AWS SDK and a DynamoDB lock for stores without conditional create; streamlake checks at start
/// that the store has it (`--single-writer` aside), so the default is the right one, and the
/// object_store client is streamlake's own ([`crate::storage::ObjectStoreRoot`]).
struct ConditionalCreateLogStore;

impl deltalake_core::logstore::LogStoreFactory for ConditionalCreateLogStore {
    fn with_options(
        &self,
        prefixed_store: deltalake_core::logstore::ObjectStoreRef,
        root_store: deltalake_core::logstore::ObjectStoreRef,
        location: &Url,
        options: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<LogStoreRef> {
        Ok(deltalake_core::logstore::default_logstore(prefixed_store, root_store, location, options))
    }
}

fn register_s3() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            deltalake_core::logstore::logstore_factories()
                .insert(scheme, Arc::new(ConditionalCreateLogStore));
        }
    });
}

/// Loads the table at `location`, or `None` when there is none yet.
pub fn load(
    runtime: &tokio::runtime::Runtime,
    location: &TableLocation,
) -> Result<Option<DeltaTable>, SinkError> {
    let shown = location.shown();
    let table = builder(location)?.build().map_err(delta_err(&shown, "open"))?;
    let mut table = table;
    match runtime.block_on(table.load()) {
        Ok(()) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(delta_err(&shown, "read the log of")(e)),
    }
}

impl DeltaLog {
    /// Opens the table at `location`, creating it with `spec` if there is none (several
    /// processes may race to: the loser loads the winner's). An existing table must have the
    /// dataflow's columns with the same types and the same partition columns; a column the
    /// dataflow adds is added to the table, nullable (schema evolution).
    pub fn open(
        location: &TableLocation,
        spec: &TableSpec,
        runtime: Arc<tokio::runtime::Runtime>,
        give_up: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Result<DeltaLog, SinkError> {
        let shown = location.shown();
        let mut table = match load(&runtime, location)? {
            Some(table) => table,
            None => create(&runtime, location, spec)?,
        };
        let added = check_schema(&table, spec, &shown)?;
        if !added.is_empty() {
            tracing::info!(table = %shown, columns = ?added.iter().map(|f| f.name().to_string()).collect::<Vec<_>>(), "adding the dataflow's new columns to the Delta table");
            table = runtime
                .block_on(table.add_columns().with_fields(added).into_future())
                .map_err(delta_err(&shown, "add columns to"))?;
        }
        Ok(DeltaLog {
            shown,
            log_store: table.log_store(),
            runtime,
            table: Mutex::new(table),
            partition_by: spec.partition_by.clone(),
            give_up,
            counts: Mutex::new(CommitCounts::default()),
            group: group::GroupCommit::default(),
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn counts(&self) -> CommitCounts {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// The newest `txn` version of `app_id` in the table (`None`: it never committed).
    pub fn txn_version(&self, app_id: &str) -> Result<Option<i64>, SinkError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut table)?;
        self.version_in(&table, app_id)
    }

    fn refresh(&self, table: &mut DeltaTable) -> Result<(), SinkError> {
        self.patiently("read the log of", || self.runtime.block_on(table.update_state()))
    }

    fn version_in(&self, table: &DeltaTable, app_id: &str) -> Result<Option<i64>, SinkError> {
        let state = table.snapshot().map_err(delta_err(&self.shown, "read"))?;
        self.runtime
            .block_on(state.transaction_version(self.log_store.as_ref(), app_id))
            .map_err(delta_err(&self.shown, "read the txn versions of"))
    }

    /// Runs `op` until it succeeds or fails for a reason other than an unreachable store; a
    /// store that does not answer is waited for (1 s to 30 s between attempts) unless a stop
    /// was asked for.
    fn patiently<T>(
        &self,
        doing: &'static str,
        mut op: impl FnMut() -> Result<T, DeltaTableError>,
    ) -> Result<T, SinkError> {
        let mut wait = Duration::from_secs(1);
        let mut waiting_since = None;
        loop {
            match op() {
                Ok(v) => {
                    if waiting_since.is_some() {
                        tracing::info!(table = %self.shown, "the Delta table's store answers again");
                    }
                    return Ok(v);
                }
                Err(e) if transient(&e) && !(self.give_up)() => {
                    if waiting_since.is_none() {
                        tracing::warn!(table = %self.shown, error = %e, "the Delta table's store does not answer; waiting for it");
                        waiting_since = Some(std::time::Instant::now());
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(delta_err(&self.shown, doing)(e)),
            }
        }
    }

    /// Commits `files` with `app_id`'s `txn` set to `version`, if its current version is
    /// `previous` (`None`: never committed). Returns [`Committed::Already`] when the table
    /// already has `version` for `app_id` (a commit that went through before a crash or a lost
    /// reply), and [`SinkError::DeltaFenced`] when another writer moved `app_id` elsewhere.
    pub fn commit(
        &self,
        app_id: &str,
        previous: Option<i64>,
        version: i64,
        files: Vec<Add>,
        operation: DeltaOperation,
    ) -> Result<Committed, SinkError> {
        self.commit_all(&[TxnMove { app_id: app_id.to_string(), previous, version }], files, operation)
    }

    /// [`Self::commit`] for several `txn`s in one table version: all move, or none. (One commit
    /// for several Kafka partitions; `examples/delta_commit_shapes.rs` measures it against one
    /// commit per partition.)
    pub fn commit_all(
        &self,
        txns: &[TxnMove],
        files: Vec<Add>,
        operation: DeltaOperation,
    ) -> Result<Committed, SinkError> {
        let started = std::time::Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut actions: Vec<Action> = files.into_iter().map(Action::Add).collect();
        let now = now_ms();
        actions.extend(
            txns.iter()
                .map(|t| Action::Txn(Transaction::new_with_last_update(&t.app_id, t.version, Some(now)))),
        );
        loop {
            self.refresh(&mut table)?;
            // One version moves them all, so a commit seen in part is another writer's.
            let mut already = None;
            let mut pending = 0;
            for t in txns {
                match self.version_in(&table, &t.app_id)? {
                    Some(v) if v == t.version => already = already.or(Some((t, v))),
                    current if current == t.previous => pending += 1,
                    current => return Err(self.fenced(t, current)),
                }
            }
            match already {
                Some(_) if pending == 0 => return Ok(Committed::Already),
                Some((t, v)) => return Err(self.fenced(t, Some(v))),
                None => {}
            }
            crate::crash::point("delta.before_commit");
            let state = table.snapshot().map_err(delta_err(&self.shown, "read"))?.clone();
            let attempt = self.runtime.block_on(
                CommitBuilder::from(CommitProperties::default())
                    .with_actions(actions.clone())
                    .build(Some(&state), self.log_store.clone(), operation.clone())
                    .into_future(),
            );
            match attempt {
                Ok(done) => {
                    crate::crash::point("delta.after_commit");
                    let version = done.version();
                    table.state = Some(done.snapshot());
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
                    c.commits += 1;
                    c.ranges += txns.len() as u64;
                    c.total_ms += ms;
                    c.max_ms = c.max_ms.max(ms);
                    return Ok(Committed::Version(version));
                }
                // Another writer's commit on the same app id (a fenced process), or a store that
                // did not answer: the check above, made again, tells which.
                Err(e) if conflict(&e) || transient(&e) => {
                    self.counts.lock().unwrap_or_else(|p| p.into_inner()).retries += 1;
                    if transient(&e) {
                        if (self.give_up)() {
                            return Err(delta_err(&self.shown, "commit to")(e));
                        }
                        tracing::warn!(table = %self.shown, error = %e, "a Delta commit failed; checking the log and trying again");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                Err(e) => return Err(delta_err(&self.shown, "commit to")(e)),
            }
        }
    }

    fn fenced(&self, t: &TxnMove, found: Option<i64>) -> SinkError {
        SinkError::DeltaFenced {
            table: self.shown.clone(),
            app_id: t.app_id.clone(),
            expected: t.previous,
            found,
        }
    }

    /// The write operation recorded in the commit info.
    pub fn append_operation(&self) -> DeltaOperation {
        DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: (!self.partition_by.is_empty()).then(|| self.partition_by.clone()),
            predicate: None,
        }
    }

    pub fn partition_by(&self) -> &[String] {
        &self.partition_by
    }

    /// The table as last read (for the compaction and the readers of the snapshot).
    pub fn with_table<T>(&self, f: impl FnOnce(&DeltaTable) -> T) -> Result<T, SinkError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut table)?;
        Ok(f(&table))
    }
}

fn conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction { source: TransactionError::CommitConflict(_) }
            | DeltaTableError::Transaction { source: TransactionError::MaxCommitAttempts(_) }
            | DeltaTableError::Transaction { source: TransactionError::VersionAlreadyExists(_) }
            | DeltaTableError::VersionAlreadyExists(_)
    )
}

/// An error a retry may cure: the store did not answer, or answered 5xx.
fn transient(e: &DeltaTableError) -> bool {
    let store = match e {
        DeltaTableError::ObjectStore { source } => source,
        DeltaTableError::Transaction { source: TransactionError::ObjectStore { source } } => source,
        _ => return false,
    };
    matches!(store, deltalake_core::ObjectStoreError::Generic { .. })
}

fn create(
    runtime: &tokio::runtime::Runtime,
    location: &TableLocation,
    spec: &TableSpec,
) -> Result<DeltaTable, SinkError> {
    let shown = location.shown();
    let table = builder(location)?.build().map_err(delta_err(&shown, "open"))?;
    let columns: Vec<StructField> = spec
        .columns
        .iter()
        .map(|(name, ty, nullable)| StructField::new(name.clone(), ty.clone(), *nullable))
        .collect();
    let created = runtime.block_on(async {
        deltalake_core::operations::create::CreateBuilder::new()
            .with_log_store(table.log_store())
            .with_columns(columns)
            .with_partition_columns(spec.partition_by.clone())
            .with_configuration_property(
                deltalake_core::TableProperty::CheckpointInterval,
                Some(spec.checkpoint_interval.to_string()),
            )
            .with_save_mode(SaveMode::ErrorIfExists)
            .await
    });
    match created {
        Ok(table) => {
            tracing::info!(table = %shown, "created the Delta table");
            Ok(table)
        }
        // Another process of the run created it first.
        Err(e) => match load(runtime, location)? {
            Some(table) => Ok(table),
            None => Err(delta_err(&shown, "create")(e)),
        },
    }
}

use super::schema::check_schema;
pub use super::schema::delta_type;

mod group;
#[cfg(test)]
mod tests;
