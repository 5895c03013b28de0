//! The checkpoint's documents: one entry per commit of a Kafka partition
//! (`_checkpoint/partitions/p=<P>/<NEXT_OFFSET>.json`) and the aggregates' mark
//! (`_checkpoint/windows.json`). Written by [`crate::sink::checkpoint`], read back by it on a
//! restart and by `validate --audit`.
//!
//! Both carry a `version`. Documents written before the field existed have none and read as
//! version 1, which is the layout they have; a version newer than this build knows is refused
//! by name rather than read as if it were damaged or, worse, as if it meant the same thing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::parse::Key;

/// The layout of [`PartitionEntry`] this build writes.
pub const ENTRY_VERSION: u32 = 1;
/// The layout of [`WindowsEntry`] this build writes.
pub const WINDOWS_VERSION: u32 = 1;

/// What a document without a `version` field is: the layout of version 1.
fn version_1() -> u32 {
    1
}

/// A share of one window's aggregate for one key: what a source sends the window operator (the
/// deltas of a poll batch) and what a checkpoint entry keeps of a partition's still-open windows.
/// One type for both, so a restored share and a fresh one can never disagree on a field.
///
/// On disk (and between processes) it stays the 4-element array it always was,
/// `[end_ms, key, sum_nanos, count]`: checkpoints written before this type had names still load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partial {
    /// The window's end, in event-time ms (exclusive).
    pub end_ms: u64,
    pub key: Key,
    /// Sum of the values in 1e-9 units, exact over any number of additions.
    pub sum_nanos: i128,
    pub count: u64,
}

impl Partial {
    pub fn new(end_ms: u64, key: Key, sum_nanos: i128, count: u64) -> Self {
        Partial { end_ms, key, sum_nanos, count }
    }
}

impl Serialize for Partial {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.end_ms, &self.key, self.sum_nanos, self.count).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Partial {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (end_ms, key, sum_nanos, count) = <(u64, Key, i128, u64)>::deserialize(d)?;
        Ok(Partial { end_ms, key, sum_nanos, count })
    }
}

/// One commit of a Kafka partition: written after the files of its range are durable, so the
/// newest entry's `next_offset` never runs ahead of the data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionEntry {
    /// The layout of this entry ([`ENTRY_VERSION`]); absent (hence 1) in entries written before
    /// the field was added.
    #[serde(default = "version_1")]
    pub version: u32,
    pub partition: i32,
    /// First offset of the range this commit covers.
    pub start_offset: i64,
    /// Next offset to read: everything before it is durably written or quarantined.
    pub next_offset: i64,
    /// Kafka records in this commit's range.
    pub messages: u64,
    pub rows: u64,
    pub quarantined: u64,
    pub late: u64,
    pub rows_per_key: BTreeMap<String, u64>,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Totals since the partition's first commit in this run.
    pub first_offset: i64,
    pub total_messages: u64,
    pub total_rows: u64,
    pub total_quarantined: u64,
    pub total_late: u64,
    /// Largest event time seen in the partition (ms), for the watermark.
    pub max_event_ms: Option<i64>,
    /// The files of this commit, relative to the run folder.
    pub files: Vec<String>,
    pub partials: Vec<Partial>,
    pub worker: usize,
    pub committed_at: String,
    /// Offsets of `[start_offset, next_offset)` that were gone from the broker and skipped on
    /// purpose (`--on-data-loss=skip`); such an entry lists no files.
    #[serde(default)]
    pub skipped: u64,
    /// Every range of this partition ever skipped that way, oldest first, carried forward by
    /// each later entry so that pruning old entries never turns a recorded loss into a "gap".
    #[serde(default)]
    pub skipped_ranges: Vec<(i64, i64)>,
    /// On an object store, the entry's commit sequence number, which names it
    /// (`p=<P>/<SEQ, 20 digits>.json`, see [`crate::format::sequence_entry_name`]); absent on local
    /// disk, where the name is `next_offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl PartitionEntry {
    /// The entry written before a partition's first read: nothing committed yet, resume at `offset`.
    pub fn start_of(partition: i32, offset: i64, worker: usize) -> Self {
        PartitionEntry {
            version: ENTRY_VERSION,
            partition,
            start_offset: offset,
            next_offset: offset,
            messages: 0,
            rows: 0,
            quarantined: 0,
            late: 0,
            rows_per_key: BTreeMap::new(),
            quarantined_by_reason: BTreeMap::new(),
            first_offset: offset,
            total_messages: 0,
            total_rows: 0,
            total_quarantined: 0,
            total_late: 0,
            max_event_ms: None,
            files: Vec::new(),
            partials: Vec::new(),
            worker,
            committed_at: chrono::Utc::now().to_rfc3339(),
            skipped: 0,
            skipped_ranges: Vec::new(),
            seq: None,
        }
    }

    /// Reads an entry, refusing a layout newer than this build's.
    pub fn from_json(text: &str) -> Result<Self, DocumentError> {
        check_version(text, ENTRY_VERSION)?;
        Ok(serde_json::from_str(text)?)
    }

    /// The entry as written to `_checkpoint/`: compact JSON, not pretty. An entry holds a record
    /// per open (window, key) share and a count per key, so with 100,000 keys × 4 open windows
    /// pretty printing made it 41 MB (102 bytes a share, most of it indentation) for every
    /// commit of every partition; `examples/window_state.rs` measures it.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// `_checkpoint/windows.json`: every window ending at or before `closed_through_ms` has its final
/// row written, in one of `files`, exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowsEntry {
    /// The layout of this document ([`WINDOWS_VERSION`]); absent (hence 1) in files written
    /// before the field was added.
    #[serde(default = "version_1")]
    pub version: u32,
    /// Every window ending at or before this (ms) has its final row written.
    pub closed_through_ms: u64,
    /// The aggregates files written so far, by name. Both fields are required: a restart deletes
    /// this run's window files that the mark does not list, so a mark read as empty by mistake
    /// would delete final rows whose windows are never emitted again.
    pub files: Vec<String>,
}

impl Default for WindowsEntry {
    fn default() -> Self {
        WindowsEntry { version: WINDOWS_VERSION, closed_through_ms: 0, files: Vec::new() }
    }
}

impl WindowsEntry {
    /// Reads the mark, refusing a layout newer than this build's.
    pub fn from_json(text: &str) -> Result<Self, DocumentError> {
        check_version(text, WINDOWS_VERSION)?;
        Ok(serde_json::from_str(text)?)
    }
}

/// Why a checkpoint document cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "it is a version {found} document, newer than this streamlake reads (version {known}): read it with \
         the streamlake that wrote it or a newer one"
    )]
    Newer { found: u32, known: u32 },
}

/// The version first, so that a newer layout is named as such rather than as damage.
fn check_version(text: &str, known: u32) -> Result<(), DocumentError> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(default = "version_1")]
        version: u32,
    }
    match serde_json::from_str::<Peek>(text) {
        Ok(Peek { version }) if version > known => Err(DocumentError::Newer { found: version, known }),
        // A document that does not even parse this far is reported by the full parse.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_without_a_version_read_as_version_1_and_newer_ones_are_refused() {
        let mut e = PartitionEntry::start_of(3, 40, 1);
        let mut old = serde_json::to_value(&e).unwrap();
        old.as_object_mut().unwrap().remove("version");
        let read = PartitionEntry::from_json(&old.to_string()).unwrap();
        assert_eq!(read.version, 1);
        assert_eq!(read, e);
        e.version = ENTRY_VERSION + 1;
        let err = PartitionEntry::from_json(&serde_json::to_string(&e).unwrap()).unwrap_err();
        assert!(matches!(err, DocumentError::Newer { found: 2, known: 1 }), "{err}");
        assert!(PartitionEntry::from_json("{\"partition\": 0").is_err());

        let w = WindowsEntry::from_json(r#"{"closed_through_ms": 20000, "files": ["a"]}"#).unwrap();
        assert_eq!(w, WindowsEntry { version: 1, closed_through_ms: 20_000, files: vec!["a".into()] });
        assert!(WindowsEntry::from_json(r#"{"version": 9}"#).is_err());
        let written = serde_json::to_value(WindowsEntry::default()).unwrap();
        assert_eq!(written["version"], 1, "new documents carry their version");
    }
}
