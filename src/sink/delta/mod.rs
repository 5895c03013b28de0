//! Delta Lake tables (`--table-format delta`): the raw events and the final window aggregates,
//! each a Delta table at the path the Parquet format uses (`run_<RUN_ID>/`,
//! `aggregates/<name>/run_<RUN_ID>/`), so that every Delta reader gets exactly once, snapshot
//! isolation and time travel without knowing anything of streamlake (docs/format.md, "Delta
//! Lake").
//!
//! The files are the Parquet format's, written and made durable by the same code; what changes is
//! the commit point. [`commit::DeltaCommit`] commits each partition's files of a roll with its
//! `txn` (app id: run, topic, partition; version: next offset), the partitions of all of a
//! process's workers in one commit per roll (`table::group`); the aggregates sink commits each batch of final windows with the `txn` of the run's
//! windows (version: `closed_through_ms`). delta-rs ([`table::DeltaLog`]) writes the log.

pub mod commit;
pub mod files;
pub mod maintain;
mod schema;
pub mod snapshot;
pub mod table;

use std::sync::{Arc, Mutex};

use self::commit::{windows_app_id, Sizer};
use self::files::{add_action, NewFile};
use self::table::{delta_type, Column, DeltaLog, TableLocation, TableSpec};
use super::output::PreparedOutput;
use super::SinkError;
use crate::format::{self, aggregate_columns as col};
use crate::spec::{ColumnType, Spec, TableFormat, Transform};
use crate::storage::{ObjectStoreRoot, ObjectUrl, Store};

/// The log folder of a Delta table.
pub const DELTA_LOG_DIR: &str = "_delta_log";

/// A run's two tables, opened once per process before the workers start.
pub struct DeltaTables {
    pub raw: Arc<DeltaLog>,
    pub aggregates: Arc<DeltaLog>,
    /// Sizes of raw files (relative to the run), when a commit must be completed after a crash.
    pub raw_sizer: Sizer,
    aggregates_sizer: Sizer,
    /// The windows' `txn` version as last committed.
    windows_txn: Mutex<Option<i64>>,
    run_id: String,
}

impl std::fmt::Debug for DeltaTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaTables").field("raw", &self.raw).field("aggregates", &self.aggregates).finish()
    }
}

/// The columns and partition column of the raw table: the dataflow's schema, plus the folder
/// column of a partition transform (`id_bucket`, `ts_day`, `ts_hour`), which the files do not
/// hold and readers take from the folder.
pub fn raw_table_spec(spec: &Spec, checkpoint_interval: u64) -> Result<TableSpec, SinkError> {
    let mut columns: Vec<Column> =
        spec.schema.iter().map(|f| (f.name.clone(), delta_type(f.ty), !f.required)).collect();
    let mut partition_by = Vec::new();
    if let Some(p) = &spec.partition {
        let column = p.folder_column();
        match p.transform {
            Transform::Identity => {
                let ty = spec.schema[p.col].ty;
                if matches!(ty, ColumnType::Float64 | ColumnType::Timestamp) {
                    return Err(SinkError::DeltaSchema {
                        table: "(new)".into(),
                        reason: format!(
                            "sink.partition_by `{column}` is a {} column, which a Delta partition value cannot \
                             hold exactly; use day({column}) or hour({column}) for a timestamp, or another column",
                            ty.name()
                        ),
                    });
                }
            }
            Transform::Bucket(_) => columns.push((column.clone(), delta_type(ColumnType::Int64), true)),
            Transform::Day => columns.push((
                column.clone(),
                deltalake_core::kernel::DataType::Primitive(deltalake_core::kernel::PrimitiveType::Date),
                true,
            )),
            Transform::Hour => columns.push((column.clone(), delta_type(ColumnType::String), true)),
        }
        partition_by.push(column);
    }
    Ok(TableSpec { columns, partition_by, checkpoint_interval })
}

/// The columns of the aggregates table (the window files' schema, [`crate::sink::aggregates`]).
pub fn aggregates_table_spec(spec: &Spec, checkpoint_interval: u64) -> TableSpec {
    let ts = delta_type(ColumnType::Timestamp);
    let key = spec.key_field();
    TableSpec {
        columns: vec![
            (col::WINDOW_START.into(), ts.clone(), false),
            (col::WINDOW_END.into(), ts, false),
            (key.name.clone(), delta_type(key.ty), false),
            (col::AVG_VALUE.into(), delta_type(ColumnType::Float64), false),
            (col::COUNT.into(), delta_type(ColumnType::Int64), false),
            (col::SUM.into(), delta_type(ColumnType::Float64), false),
            (col::WORKER.into(), delta_type(ColumnType::Int32), false),
        ],
        partition_by: Vec::new(),
        checkpoint_interval,
    }
}

/// A sizer of files under a local folder.
fn local_sizer(dir: std::path::PathBuf) -> Sizer {
    Arc::new(move |rels: &[String]| {
        rels.iter()
            .map(|r| {
                let path = dir.join(r);
                std::fs::metadata(&path).map(|m| m.len()).map_err(super::io_err("stat", &path))
            })
            .collect()
    })
}

/// A sizer of objects under `prefix` (one listing per call: only a crash's leftovers need it).
fn store_sizer(store: Arc<dyn Store>, prefix: String) -> Sizer {
    Arc::new(move |rels: &[String]| {
        let listed = store.list(&format!("{prefix}/"))?;
        rels.iter()
            .map(|r| {
                let key = format!("{prefix}/{r}");
                listed.iter().find(|l| l.key == key).map(|l| l.size).ok_or_else(|| SinkError::Io {
                    doing: "find the committed file",
                    path: key.clone().into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })
            })
            .collect()
    })
}

/// Whether a run's output already holds a Delta log, and whether it holds checkpoint entries.
fn existing(prepared: &PreparedOutput) -> Result<(bool, bool), SinkError> {
    match &prepared.object {
        None => {
            let log = prepared.run_dir.join(DELTA_LOG_DIR);
            let has_log = std::fs::read_dir(&log).is_ok_and(|mut d| d.next().is_some());
            let entries = format::checkpoint_dir(&prepared.run_dir).join(format::PARTITIONS_DIR);
            let has_entries = std::fs::read_dir(&entries).is_ok_and(|mut d| d.next().is_some());
            Ok((has_log, has_entries))
        }
        Some(target) => {
            let log = target.run(&format!("{DELTA_LOG_DIR}/"));
            let entries = target.run(&format!("{}/{}/", format::CHECKPOINT_DIR, format::PARTITIONS_DIR));
            Ok((!target.store.list(&log)?.is_empty(), !target.store.list(&entries)?.is_empty()))
        }
    }
}

/// Refuses to continue a run in the other format than the one it was written in: plain Parquet
/// files after Delta commits would be invisible to Delta readers, and a Delta log started late
/// would miss the files before it.
pub fn check_format(prepared: &PreparedOutput, format: TableFormat, run: &str) -> Result<(), SinkError> {
    let (has_log, has_entries) = existing(prepared)?;
    match format {
        TableFormat::Parquet if has_log => Err(SinkError::TableFormat(format!(
            "{run} is a Delta table (it has {DELTA_LOG_DIR}/), and this run was asked for plain Parquet; nothing was \
             written. Resume it with --table-format delta (or sink.table_format = \"delta\"), or use another RUN_ID"
        ))),
        TableFormat::Delta if has_entries && !has_log => Err(SinkError::TableFormat(format!(
            "{run} was written as plain Parquet (it has checkpoint entries and no {DELTA_LOG_DIR}/), and this run was \
             asked for --table-format delta; nothing was written. A Delta log started now would not hold the files \
             already committed: resume it with --table-format parquet, or start a new RUN_ID"
        ))),
        _ => Ok(()),
    }
}

impl DeltaTables {
    /// Opens (or creates) the run's two tables, and completes an aggregates commit that a crash
    /// interrupted (process 0, which alone writes them).
    pub fn open(
        prepared: &PreparedOutput,
        spec: &Spec,
        run_id: &str,
        process: usize,
        checkpoint_interval: u64,
        give_up: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Result<DeltaTables, SinkError> {
        let runtime = table::runtime()?;
        let (raw_at, agg_at, raw_sizer, aggregates_sizer) = match &prepared.object {
            None => (
                TableLocation::Local(prepared.run_dir.clone()),
                TableLocation::Local(prepared.agg_dir.clone()),
                local_sizer(prepared.run_dir.clone()),
                local_sizer(prepared.agg_dir.clone()),
            ),
            Some(target) => {
                // The run's URL ends with its key below the store's root.
                let root = target.run_url.strip_suffix(&target.run_key).unwrap_or(&target.run_url);
                let root = root.trim_end_matches('/');
                let url = ObjectUrl::parse(root).map_err(SinkError::Store)?;
                let store = ObjectStoreRoot::open(&url).map_err(SinkError::Store)?.bucket_store();
                let at = |key: &str| {
                    let prefix =
                        if url.prefix.is_empty() { String::new() } else { format!("{}/", url.prefix) };
                    TableLocation::Object {
                        url: format!("s3://{}/{prefix}{key}", url.bucket),
                        store: store.clone(),
                    }
                };
                let shared: Arc<dyn Store> = target.store.clone();
                (
                    at(&target.run_key),
                    at(&target.aggregates_key),
                    store_sizer(shared.clone(), target.run_key.clone()),
                    store_sizer(shared, target.aggregates_key.clone()),
                )
            }
        };
        let raw = DeltaLog::open(
            &raw_at,
            &raw_table_spec(spec, checkpoint_interval)?,
            runtime.clone(),
            give_up.clone(),
        )?;
        let aggregates =
            DeltaLog::open(&agg_at, &aggregates_table_spec(spec, checkpoint_interval), runtime, give_up)?;
        let tables = DeltaTables {
            raw: Arc::new(raw),
            aggregates: Arc::new(aggregates),
            raw_sizer,
            aggregates_sizer,
            windows_txn: Mutex::new(None),
            run_id: run_id.to_string(),
        };
        let version = tables.aggregates.txn_version(&windows_app_id(run_id))?;
        *tables.windows_txn.lock().unwrap_or_else(|p| p.into_inner()) = version;
        if process == 0 {
            tables.complete_windows(&prepared.windows)?;
        }
        Ok(tables)
    }

    /// Adds the window files `windows.json` lists and the table lacks (marked, then a crash
    /// before their Delta commit), with the windows' `txn` set to `closed_through_ms`.
    fn complete_windows(&self, windows: &crate::sink::checkpoint::WindowsEntry) -> Result<(), SinkError> {
        let app = windows_app_id(&self.run_id);
        let version = *self.windows_txn.lock().unwrap_or_else(|p| p.into_inner());
        let closed = windows.closed_through_ms as i64;
        if version.is_some_and(|v| v > closed) {
            return Err(SinkError::DeltaDiverged {
                table: self.aggregates.shown().to_string(),
                partition: -1,
                entry: Some((0, closed)),
                txn: version,
            });
        }
        let present: std::collections::HashSet<String> = self.aggregates.with_table(|t| {
            t.snapshot()
                .map(|s| s.log_data().iter().map(|f| f.path().to_string()).collect())
                .unwrap_or_default()
        })?;
        // A file whose windows end at or before the txn was committed: if the table lacks it now,
        // `compact` merged it into another, and adding it again would count its rows twice.
        let missing: Vec<String> = windows
            .files
            .iter()
            .filter(|f| !present.contains(*f))
            .filter(|f| version.is_none_or(|v| format::window_file_first_end(f).is_none_or(|end| end > v)))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        tracing::warn!(table = %self.aggregates.shown(), files = missing.len(), closed_through_ms = closed, "completing a Delta commit of window files that a crash interrupted");
        let sizes = (self.aggregates_sizer)(&missing)?;
        let files: Vec<NewFile> =
            missing.into_iter().zip(sizes).map(|(rel, size)| NewFile { rel, size, rows: None }).collect();
        self.commit_windows_files(&app, version, closed, files)
    }

    fn commit_windows_files(
        &self,
        app: &str,
        previous: Option<i64>,
        closed: i64,
        files: Vec<NewFile>,
    ) -> Result<(), SinkError> {
        let now = chrono::Utc::now().timestamp_millis();
        let adds = files.iter().map(|f| add_action(f, &[], now)).collect();
        self.aggregates.commit(app, previous, closed, adds, self.aggregates.append_operation())?;
        *self.windows_txn.lock().unwrap_or_else(|p| p.into_inner()) = Some(closed);
        Ok(())
    }

    /// Commits one window file (marked in `windows.json` up to `closed_through_ms`).
    pub fn commit_windows(&self, file: NewFile, closed_through_ms: u64) -> Result<(), SinkError> {
        let app = windows_app_id(&self.run_id);
        let previous = *self.windows_txn.lock().unwrap_or_else(|p| p.into_inner());
        self.commit_windows_files(&app, previous, closed_through_ms as i64, vec![file])
    }
}

/// The two tables of run `run_id` under `output` (a folder or `s3://…`), as `compact` and
/// `vacuum` take them: the raw events, then the window aggregates.
pub fn run_tables(output: &std::path::Path, run_id: &str) -> Result<Vec<TableLocation>, SinkError> {
    match crate::storage::Location::parse(output.as_os_str(), "--output (OUTPUT_PATH)")
        .map_err(|e| SinkError::OutputPath(e.to_string()))?
    {
        crate::storage::Location::Local(path) => {
            let run = path.join(format!("{}{run_id}", format::RUN_PREFIX));
            let aggs = super::aggregates::aggregates_dir(&run).ok_or_else(|| {
                SinkError::OutputPath(format!("{} has no parent folder for the aggregates", path.display()))
            })?;
            Ok(vec![TableLocation::Local(run), TableLocation::Local(aggs)])
        }
        crate::storage::Location::S3(url) => {
            let (root, run_key, aggregates_key) = super::object::ObjectTarget::keys(&url, run_id)
                .ok_or_else(|| {
                    SinkError::OutputPath(format!("{} needs a prefix below the bucket", url.given))
                })?;
            let store = ObjectStoreRoot::open(&root).map_err(SinkError::Store)?.bucket_store();
            let prefix = if root.prefix.is_empty() { String::new() } else { format!("{}/", root.prefix) };
            let at = |key: &str| TableLocation::Object {
                url: format!("s3://{}/{prefix}{key}", root.bucket),
                store: store.clone(),
            };
            Ok(vec![at(&run_key), at(&aggregates_key)])
        }
    }
}
