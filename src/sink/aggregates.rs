//! The aggregates sink's file format: final window rows, append only, one file per batch of
//! windows that closed together, named by the range of window ends it holds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::durable::{create_dir_durable, publish};
use super::raw::key_arrow_type;
use super::{io_err, SinkError};
use crate::format::aggregate_columns as col;
use crate::format::{self, meta};
use crate::parse::Key;
use crate::spec::{ColumnType, Field};

/// One final window row, as the window operator emits it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct WindowRow {
    pub end_ms: u64,
    pub key: Key,
    /// Sum of values in units of 1e-9 (exact, order independent).
    pub sum_nanos: i128,
    pub count: u64,
    /// Global index of the worker whose window operator owned the key (shows the spread).
    pub worker: u32,
}

pub const SUM_SCALE: f64 = 1e9;

impl WindowRow {
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        (self.sum_nanos as f64 / SUM_SCALE) / self.count as f64
    }
}

/// Converts a value to the exact fixed-point unit used for sums.
#[inline]
pub fn to_nanos(v: f64) -> i128 {
    (v * SUM_SCALE).round() as i128
}

/// The marker file that says which run folder owns an aggregates folder.
pub use crate::format::OWNER_FILE;

/// The aggregates folder of the run folder `run_dir` (`OUTPUT_PATH/run_<RUN_ID>`), format 2:
/// `OUTPUT_PATH/../aggregates/<name of OUTPUT_PATH>/run_<RUN_ID>/`.
///
/// Why there: outside OUTPUT_PATH, because readers glob it (`read_parquet('out/**/*.parquet')`)
/// and must see only raw rows, as in the seed's layout (`OUTPUT_PATH/../aggregates/run_<RUN_ID>`);
/// and keyed by OUTPUT_PATH's name as well as the RUN_ID, because the seed's path is shared by
/// every OUTPUT_PATH of one parent folder with the same RUN_ID (two such jobs destroyed each
/// other's windows). The few paths that could still meet (an OUTPUT_PATH named like another
/// job's aggregates folder) are caught by the owner marker ([`check_owner`]).
pub fn aggregates_dir(run_dir: &Path) -> Option<PathBuf> {
    let run_dir = normalize(run_dir);
    let run = run_dir.file_name()?;
    let output = run_dir.parent()?;
    let name = output.file_name()?;
    Some(output.parent()?.join(format::AGGREGATES_DIR).join(name).join(run))
}

/// An absolute path without `.` and `..` (no file-system access: the folders may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `_owner.json` of an aggregates folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AggregatesOwnerMark {
    pub run_dir: PathBuf,
    pub run_uid: String,
}

/// Why an aggregates folder cannot be used by this run folder.
#[derive(Debug, thiserror::Error)]
#[error(
    "the aggregates folder {dir} of run folder {run_dir} {reason}. Nothing was written. Choose an OUTPUT_PATH \
     or RUN_ID whose aggregates folder (OUTPUT_PATH/../aggregates/<name of OUTPUT_PATH>/run_<RUN_ID>) is free"
)]
pub struct OwnerConflict {
    pub dir: PathBuf,
    pub run_dir: PathBuf,
    pub reason: String,
}

/// Read-only: refuses an aggregates folder that is a run folder itself, or that belongs to
/// another run folder (`run_uid` is `None` for a run folder not yet created).
pub fn check_owner(dir: &Path, run_dir: &Path, run_uid: Option<&str>) -> Result<(), OwnerConflict> {
    let conflict =
        |reason: String| OwnerConflict { dir: dir.to_path_buf(), run_dir: run_dir.to_path_buf(), reason };
    if dir.join(format::CHECKPOINT_DIR).exists() {
        return Err(conflict("is another job's run folder".into()));
    }
    if run_dir.join(OWNER_FILE).exists() {
        return Err(conflict(format!(
            "cannot be used: {} is another job's aggregates folder",
            run_dir.display()
        )));
    }
    match std::fs::read(dir.join(OWNER_FILE)) {
        Ok(bytes) => {
            let mark: AggregatesOwnerMark = serde_json::from_slice(&bytes)
                .map_err(|e| conflict(format!("has a damaged {OWNER_FILE} ({e})")))?;
            if Some(mark.run_uid.as_str()) != run_uid {
                return Err(conflict(format!(
                    "belongs to run folder {} (run_uid {})",
                    mark.run_dir.display(),
                    mark.run_uid
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let foreign = std::fs::read_dir(dir).is_ok_and(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet")))
            });
            if foreign {
                Err(conflict(
                    "already holds window files of a job of an older format (no owner marker)".into(),
                ))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(conflict(format!("cannot be read ({e})"))),
    }
}

/// Under the run lock: marks `dir` as owned by this run folder (once).
pub fn claim(dir: &Path, run_dir: &Path, run_uid: &str) -> Result<(), SinkError> {
    let path = dir.join(OWNER_FILE);
    if path.exists() {
        return Ok(());
    }
    create_dir_durable(dir)?;
    let mark = AggregatesOwnerMark { run_dir: normalize(run_dir), run_uid: run_uid.to_string() };
    super::durable::write_atomic(
        &path,
        &serde_json::to_vec_pretty(&mark).unwrap_or_default(),
        "aggregates.claim",
    )
}

/// Which run writes an aggregates folder: recorded in every window file's metadata, so that the
/// start-up cleanup deletes only this run's own unmarked files.
#[derive(Debug, Clone)]
pub struct AggregatesOwner {
    pub run_id: String,
    pub run_uid: String,
    pub topic: String,
}

/// Writes `rows` (final windows of `size_ms` length) to `dir/windows-<first>-<last>.parquet`
/// durably and returns the file name.
pub fn write_windows(
    dir: &Path,
    owner: &AggregatesOwner,
    key: &Field,
    size_ms: u64,
    rows: &[WindowRow],
) -> Result<String, SinkError> {
    create_dir_durable(dir)?;
    let first = rows.iter().map(|r| r.end_ms).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.end_ms).max().unwrap_or(0);
    let name = format::window_file_name(first, last);
    let dst = dir.join(&name);
    let tmp: PathBuf = dir.join(format::in_progress_name(&name, &owner.run_uid));
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new(col::WINDOW_START, ts(), false),
        ArrowField::new(col::WINDOW_END, ts(), false),
        ArrowField::new(&key.name, key_arrow_type(key.ty), false),
        ArrowField::new(col::AVG_VALUE, DataType::Float64, false),
        ArrowField::new(col::COUNT, DataType::Int64, false),
        ArrowField::new(col::SUM, DataType::Float64, false),
        ArrowField::new(col::WORKER, DataType::Int32, false),
    ]));
    let mut start_b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut end_b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut avg_b = Float64Builder::new();
    let mut count_b = Int64Builder::new();
    let mut sum_b = Float64Builder::new();
    let mut worker_b = Int32Builder::new();
    for r in rows {
        start_b.append_value((r.end_ms - size_ms) as i64 * 1000);
        end_b.append_value(r.end_ms as i64 * 1000);
        avg_b.append_value(r.avg());
        count_b.append_value(r.count as i64);
        sum_b.append_value(r.sum_nanos as f64 / SUM_SCALE);
        worker_b.append_value(r.worker as i32);
    }
    let key_col: ArrayRef = match key.ty {
        ColumnType::Int32 => {
            let mut b = Int32Builder::new();
            rows.iter().for_each(|r| b.append_value(if let Key::Int(v) = r.key { v as i32 } else { 0 }));
            Arc::new(b.finish())
        }
        ColumnType::Int64 => {
            let mut b = Int64Builder::new();
            rows.iter().for_each(|r| b.append_value(if let Key::Int(v) = r.key { v } else { 0 }));
            Arc::new(b.finish())
        }
        ColumnType::Bool => {
            let mut b = BooleanBuilder::new();
            rows.iter().for_each(|r| b.append_value(matches!(r.key, Key::Bool(true))));
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::new();
            rows.iter().for_each(|r| b.append_value(r.key.to_string()));
            Arc::new(b.finish())
        }
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(start_b.finish()),
        Arc::new(end_b.finish()),
        key_col,
        Arc::new(avg_b.finish()),
        Arc::new(count_b.finish()),
        Arc::new(sum_b.finish()),
        Arc::new(worker_b.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|source| SinkError::Arrow { path: tmp.clone(), source })?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
    writer.write(&batch).map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
    for (k, v) in [
        (meta::KIND, meta::KIND_AGGREGATES.to_string()),
        (meta::RUN_ID, owner.run_id.clone()),
        (meta::RUN_UID, owner.run_uid.clone()),
        (meta::TOPIC, owner.topic.clone()),
        (meta::FIRST_WINDOW_END_MS, first.to_string()),
        (meta::LAST_WINDOW_END_MS, last.to_string()),
    ] {
        writer.append_key_value_metadata(KeyValue::new(k.to_string(), v));
    }
    let inner = writer.into_inner().map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
    inner.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(inner);
    crate::crash::point("aggregates.before_rename");
    publish(&tmp, &dst)?;
    Ok(name)
}

/// Deletes what a crash may have left in the aggregates folder: this run's in-progress files,
/// and this run's window files that `windows.json` does not list. Those were written, but the mark
/// that says so was not, so their windows are still open in the partition checkpoints and will be
/// emitted again; keeping the old file would emit them twice.
///
/// "This run's" is decided by the file, never by the folder: an in-progress name ending in
/// `.u<run_uid>.inprogress`, or a footer whose `streamlake.run_uid` is this run's. Any other file is
/// left alone and reported: deleting files because `windows.json` does not know them is exactly
/// how two jobs sharing a folder once emptied each other's aggregates. Returns the paths removed.
pub fn remove_unmarked(dir: &Path, run_uid: &str, listed: &[String]) -> Result<Vec<PathBuf>, SinkError> {
    let mut removed = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else { return Ok(removed) };
    let ours_in_progress = format::in_progress_suffix(run_uid);
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let leftover = name.strip_prefix('.').is_some_and(|n| n.starts_with(format::WINDOW_FILE_PREFIX))
            && name.ends_with(&ours_in_progress);
        let unmarked = name.starts_with(format::WINDOW_FILE_PREFIX)
            && name.ends_with(".parquet")
            && !listed.contains(&name);
        let ours = leftover
            || (unmarked
                && meta::read(&path)
                    .is_ok_and(|kv| kv.iter().any(|(k, v)| k == meta::RUN_UID && v == run_uid)));
        if ours {
            std::fs::remove_file(&path).map_err(io_err("remove unmarked window file", &path))?;
            removed.push(path);
        } else if unmarked {
            tracing::warn!(path = %path.display(), "a window file that this run did not write is in its aggregates folder; it was left alone");
        }
    }
    if !removed.is_empty() {
        super::durable::sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_folders_are_per_output_path_and_owned() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::path::absolute(tmp.path()).unwrap();
        let (a, b) = (root.join("lake/a/run_r"), root.join("lake/b/./run_r"));
        let (da, db) = (aggregates_dir(&a).unwrap(), aggregates_dir(&b).unwrap());
        assert_eq!(da, root.join("lake/aggregates/a/run_r"));
        assert_eq!(db, root.join("lake/aggregates/b/run_r"));
        // Free, then claimed: only the owner may use it.
        check_owner(&da, &a, None).unwrap();
        claim(&da, &a, "uid-a").unwrap();
        check_owner(&da, &a, Some("uid-a")).unwrap();
        let err = check_owner(&da, &b, Some("uid-b")).unwrap_err().to_string();
        assert!(err.contains("belongs to run folder") && err.contains("uid-a"), "{err}");
        // An OUTPUT_PATH that is another job's aggregates folder is refused both ways.
        let nested = root.join("lake/aggregates/a/run_r");
        std::fs::create_dir_all(a.join(format::CHECKPOINT_DIR)).unwrap();
        let err = check_owner(&aggregates_dir(&root.join("lake/a/run_r")).unwrap(), &nested, None);
        assert!(err.is_err());
        let err = check_owner(&a, &root.join("x/y/run_r"), None).unwrap_err().to_string();
        assert!(err.contains("another job's run folder"), "{err}");
    }

    #[test]
    fn fixed_point_sums_are_exact_for_decimals() {
        let vals = [0.1, 0.2, 99.999, 42.125, 7.0];
        let a: i128 = vals.iter().map(|&v| to_nanos(v)).sum();
        let b: i128 = vals.iter().rev().map(|&v| to_nanos(v)).sum();
        assert_eq!(a, b);
        assert_eq!(a, 149_424_000_000);
    }
}
