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
/// What the file holds: [`KIND_RAW`], [`KIND_QUARANTINE`], [`KIND_AGGREGATES`] or [`KIND_COMPACTED`].
pub const KIND: &str = "streamlake.kind";
/// Aggregates files: the first and last window end (ms) they hold.
pub const FIRST_WINDOW_END_MS: &str = "streamlake.first_window_end_ms";
pub const LAST_WINDOW_END_MS: &str = "streamlake.last_window_end_ms";

pub const KIND_RAW: &str = "raw";
pub const KIND_QUARANTINE: &str = "quarantine";
pub const KIND_AGGREGATES: &str = "aggregates";
/// A file `streamlake compact` merged from others (Delta tables); [`SOURCES`] says which.
pub const KIND_COMPACTED: &str = "compacted";
/// A compacted file's sources: a JSON array of `{"file": <path in the table>, "metadata":
/// {<the source's streamlake.* keys>}}`, one per original file, flat however often it was merged.
pub const SOURCES: &str = "streamlake.sources";

/// A file's key-value metadata (footer only).
pub fn read(path: &Path) -> Result<Vec<(String, String)>, parquet::errors::ParquetError> {
    let file = std::fs::File::open(path).map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
    read_from(file)
}

/// Whether the metadata `kv` says its file is run `run_uid`'s, of `topic` and `partition`: what
/// a cleanup checks before it deletes a file.
pub fn written_by(kv: &[(String, String)], run_uid: &str, topic: &str, partition: i32) -> bool {
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    get(RUN_UID) == Some(run_uid)
        && get(TOPIC) == Some(topic)
        && get(PARTITION) == Some(partition.to_string().as_str())
}

/// The key-value metadata of a Parquet file held by `reader` (a `File`, or the `Bytes` of an
/// object).
pub fn read_from<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
) -> Result<Vec<(String, String)>, parquet::errors::ParquetError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(reader)?;
    let kv = reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    Ok(kv.into_iter().filter_map(|kv| kv.value.map(|v| (kv.key, v))).collect())
}
