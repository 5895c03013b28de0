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
use super::raw::meta_keys::{self, RUN_UID};
use super::{io_err, SinkError};
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

/// The aggregates folder's name inside the run folder.
pub const AGGREGATES_DIR: &str = "_aggregates";

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
    let name = format!("windows-{first:015}-{last:015}.parquet");
    let dst = dir.join(&name);
    let tmp: PathBuf = dir.join(format!(".{name}.u{}.inprogress", owner.run_uid));
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("window_start", ts(), false),
        ArrowField::new("window_end", ts(), false),
        ArrowField::new(&key.name, key_arrow_type(key.ty), false),
        ArrowField::new("avg_value", DataType::Float64, false),
        ArrowField::new("count", DataType::Int64, false),
        ArrowField::new("sum", DataType::Float64, false),
        ArrowField::new("worker", DataType::Int32, false),
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
        ("streamlake.kind", "aggregates".to_string()),
        ("streamlake.run_id", owner.run_id.clone()),
        (RUN_UID, owner.run_uid.clone()),
        ("streamlake.topic", owner.topic.clone()),
        ("streamlake.first_window_end_ms", first.to_string()),
        ("streamlake.last_window_end_ms", last.to_string()),
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
    let ours_in_progress = format!(".u{run_uid}.inprogress");
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let leftover = name.starts_with(".windows-") && name.ends_with(&ours_in_progress);
        let unmarked = name.starts_with("windows-") && name.ends_with(".parquet") && !listed.contains(&name);
        let ours = leftover
            || (unmarked
                && meta_keys::read(&path)
                    .is_ok_and(|kv| kv.iter().any(|(k, v)| k == RUN_UID && v == run_uid)));
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
    fn fixed_point_sums_are_exact_for_decimals() {
        let vals = [0.1, 0.2, 99.999, 42.125, 7.0];
        let a: i128 = vals.iter().map(|&v| to_nanos(v)).sum();
        let b: i128 = vals.iter().rev().map(|&v| to_nanos(v)).sum();
        assert_eq!(a, b);
        assert_eq!(a, 149_424_000_000);
    }
}
