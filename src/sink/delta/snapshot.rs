//! A Delta table as its readers see it: the files of its newest snapshot. `validate` counts
//! these and only these, so a file a crash left before its commit, or one that `compact`
//! replaced and `vacuum` has not yet deleted, is never counted.

use std::path::Path;

use super::table::{load, runtime, TableLocation};
use crate::sink::SinkError;

/// One active file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFile {
    /// Relative to the table root, decoded (as on disk).
    pub rel: String,
    pub size: u64,
    /// The `add` action's modification time (ms since the epoch).
    pub modified_ms: i64,
    pub partition_values: std::collections::BTreeMap<String, Option<String>>,
    pub rows: Option<u64>,
}

/// The active files of the newest version of the table at `dir` (empty for a table with none).
pub fn active_files(dir: &Path) -> Result<Vec<ActiveFile>, SinkError> {
    let runtime = runtime()?;
    let Some(table) = load(&runtime, &TableLocation::Local(dir.to_path_buf()))? else {
        return Ok(Vec::new());
    };
    files_of(&table, &dir.display().to_string())
}

/// The active files of a loaded table.
pub fn files_of(table: &deltalake_core::DeltaTable, shown: &str) -> Result<Vec<ActiveFile>, SinkError> {
    let state = table.snapshot().map_err(super::table::delta_err(shown, "read"))?;
    let mut files: Vec<ActiveFile> = state
        .log_data()
        .iter()
        .map(|f| ActiveFile {
            rel: f.path().to_string(),
            size: f.size().max(0) as u64,
            modified_ms: f.modification_time(),
            partition_values: f.partition_values_map().into_iter().collect(),
            rows: f.num_records().map(|n| n as u64),
        })
        .collect();
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

/// A table as one reader saw it at one moment: its version, files and the `txn` versions of
/// `app_ids` (all from the same loaded snapshot).
#[derive(Debug, Clone)]
pub struct Seen {
    pub version: u64,
    pub files: Vec<ActiveFile>,
    pub txn: std::collections::BTreeMap<String, Option<i64>>,
}

/// Loads the newest version of the table at `dir` once and reports it (`None`: no table yet).
pub fn read(dir: &Path, app_ids: &[String]) -> Result<Option<Seen>, SinkError> {
    read_at(&TableLocation::Local(dir.to_path_buf()), app_ids)
}

/// [`read`] for a table on local disk or an object store.
pub fn read_at(location: &TableLocation, app_ids: &[String]) -> Result<Option<Seen>, SinkError> {
    let runtime = runtime()?;
    let shown = location.shown();
    let Some(table) = load(&runtime, location)? else {
        return Ok(None);
    };
    let state = table.snapshot().map_err(super::table::delta_err(&shown, "read"))?;
    let mut txn = std::collections::BTreeMap::new();
    for app in app_ids {
        let v = runtime
            .block_on(state.transaction_version(table.log_store().as_ref(), app))
            .map_err(super::table::delta_err(&shown, "read the txn versions of"))?;
        txn.insert(app.clone(), v);
    }
    Ok(Some(Seen { version: table.version().unwrap_or(0), files: files_of(&table, &shown)?, txn }))
}
