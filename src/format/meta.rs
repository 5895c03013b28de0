//! The key-value metadata streamlake writes into its Parquet footers (see docs/format.md), so a
//! file says by itself which Kafka range, run and worker it holds.

use std::path::Path;

/// Kafka topic the file's records were read from.
pub const TOPIC: &str = "streamlake.topic";
/// Kafka partition of the commit.
pub const PARTITION: &str = "streamlake.partition";
/// First offset of the commit's range.
pub const START_OFFSET: &str = "streamlake.start_offset";
/// End of the commit's range, exclusive.
pub const END_OFFSET: &str = "streamlake.end_offset";
/// Rows in this file.
pub const ROWS: &str = "streamlake.rows";
/// Kafka records in the whole range: all keys plus quarantined.
pub const RANGE_MESSAGES: &str = "streamlake.range_messages";
/// Global timely worker index that wrote the file.
pub const WORKER: &str = "streamlake.worker";
/// The job's RUN_ID.
pub const RUN_ID: &str = "streamlake.run_id";
/// The run folder's `run_uid`: which run wrote the file.
pub const RUN_UID: &str = "streamlake.run_uid";
/// What the file holds: [`KIND_RAW`], [`KIND_QUARANTINE`] or [`KIND_AGGREGATES`].
pub const KIND: &str = "streamlake.kind";
/// Aggregates files: the first and last window end (ms) they hold.
pub const FIRST_WINDOW_END_MS: &str = "streamlake.first_window_end_ms";
pub const LAST_WINDOW_END_MS: &str = "streamlake.last_window_end_ms";

pub const KIND_RAW: &str = "raw";
pub const KIND_QUARANTINE: &str = "quarantine";
pub const KIND_AGGREGATES: &str = "aggregates";

/// A file's key-value metadata (footer only).
pub fn read(path: &Path) -> Result<Vec<(String, String)>, parquet::errors::ParquetError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
    let reader = SerializedFileReader::new(file)?;
    let kv = reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    Ok(kv.into_iter().filter_map(|kv| kv.value.map(|v| (kv.key, v))).collect())
}
