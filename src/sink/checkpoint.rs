//! The checkpoint: per Kafka partition, what is durably written and where to resume.
//!
//! `_checkpoint/partitions/p=<P>/<NEXT_OFFSET>.json` is written after the files of the range it
//! describes are durable, so the newest entry's `next_offset` (Kafka's convention: the next offset
//! to read, not the last one read) never runs ahead of the data. Each entry also carries the
//! partition's share of every still-open window (`partials`) and its event-time high mark, so a
//! restart — with any worker count — rebuilds the window state exactly as it was at that offset.
//! `windows.json` records up to which window end the final rows are written.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::durable::write_atomic;
use super::{io_err, SinkError};
use crate::parse::Key;

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

/// How many entries to keep per partition; older ones are pruned (the newest is what counts, the
/// rest are history for people reading the folder).
const KEEP_ENTRIES: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionEntry {
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
}

impl PartitionEntry {
    /// The entry written before a partition's first read: nothing committed yet, resume at `offset`.
    pub fn start_of(partition: i32, offset: i64, worker: usize) -> Self {
        PartitionEntry {
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
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowsEntry {
    /// Every window ending at or before this (ms) has its final row written.
    pub closed_through_ms: u64,
    pub files: Vec<String>,
}

/// The `_checkpoint` folder of one run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    pub dir: PathBuf,
}

impl CheckpointDir {
    pub fn new(run_dir: &Path) -> Self {
        CheckpointDir { dir: run_dir.join("_checkpoint") }
    }

    fn partition_dir(&self, partition: i32) -> PathBuf {
        self.dir.join("partitions").join(format!("p={partition}"))
    }

    fn windows_path(&self) -> PathBuf {
        self.dir.join("windows.json")
    }

    /// The newest entry of `partition`, or `None` for a partition never committed.
    ///
    /// A damaged newest entry is an error, never a silent start from scratch. Leftover temp files
    /// of an interrupted entry write were never renamed into place, so they were never committed:
    /// they are removed.
    pub fn load_partition(&self, partition: i32) -> Result<Option<PartitionEntry>, SinkError> {
        self.newest_entry(partition, true)
    }

    /// Reads the newest entry of every partition that has a checkpoint, changing nothing: run
    /// calls it before any worker starts, so a damaged entry stops the whole run before any
    /// partition writes a file. Returns how many partitions have entries.
    pub fn verify_all(&self) -> Result<usize, SinkError> {
        let dir = self.dir.join("partitions");
        let Ok(read) = fs::read_dir(&dir) else { return Ok(0) };
        let mut n = 0;
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(partition) = name.strip_prefix("p=").and_then(|v| v.parse::<i32>().ok()) else {
                continue;
            };
            if self.newest_entry(partition, false)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    fn newest_entry(&self, partition: i32, clean: bool) -> Result<Option<PartitionEntry>, SinkError> {
        let dir = self.partition_dir(partition);
        let Ok(read) = fs::read_dir(&dir) else { return Ok(None) };
        let mut newest: Option<(i64, PathBuf)> = None;
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                if !clean {
                    continue;
                }
                let path = entry.path();
                tracing::warn!(path = %path.display(), "removing an uncommitted checkpoint temp file");
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else { continue };
            let offset: i64 = stem.parse().map_err(|_| SinkError::DamagedCheckpoint {
                path: entry.path(),
                reason: "the file name is not an offset".into(),
            })?;
            if newest.as_ref().is_none_or(|(o, _)| offset > *o) {
                newest = Some((offset, entry.path()));
            }
        }
        let Some((offset, path)) = newest else { return Ok(None) };
        let text = fs::read_to_string(&path).map_err(io_err("read checkpoint", &path))?;
        let entry: PartitionEntry = serde_json::from_str(&text)
            .map_err(|e| SinkError::DamagedCheckpoint { path: path.clone(), reason: e.to_string() })?;
        if entry.next_offset != offset || entry.partition != partition {
            return Err(SinkError::DamagedCheckpoint {
                path,
                reason: format!(
                    "it describes partition {} up to offset {}, but its name says partition {partition} offset {offset}",
                    entry.partition, entry.next_offset
                ),
            });
        }
        Ok(Some(entry))
    }

    /// Writes an entry durably and prunes old ones.
    pub fn write_partition(&self, entry: &PartitionEntry) -> Result<(), SinkError> {
        let dir = self.partition_dir(entry.partition);
        let path = dir.join(format!("{:020}.json", entry.next_offset));
        let bytes = serde_json::to_vec_pretty(entry).unwrap_or_default();
        write_atomic(&path, &bytes, "checkpoint.before_rename")?;
        crate::crash::point("checkpoint.after_rename");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(io_err("list", &dir))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        if names.len() > KEEP_ENTRIES {
            for old in &names[..names.len() - KEEP_ENTRIES] {
                let _ = fs::remove_file(dir.join(old));
            }
        }
        Ok(())
    }

    pub fn load_windows(&self) -> Result<WindowsEntry, SinkError> {
        let path = self.windows_path();
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| SinkError::DamagedCheckpoint { path: path.clone(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WindowsEntry::default()),
            Err(e) => Err(SinkError::Io { doing: "read checkpoint", path, source: e }),
        }
    }

    pub fn write_windows(&self, entry: &WindowsEntry) -> Result<(), SinkError> {
        write_atomic(
            &self.windows_path(),
            &serde_json::to_vec_pretty(entry).unwrap_or_default(),
            "aggregates.before_mark",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: i32, next: i64) -> PartitionEntry {
        PartitionEntry {
            partition: p,
            start_offset: 0,
            next_offset: next,
            messages: next as u64,
            rows: next as u64,
            quarantined: 0,
            late: 0,
            rows_per_key: BTreeMap::new(),
            quarantined_by_reason: BTreeMap::new(),
            first_offset: 0,
            total_messages: next as u64,
            total_rows: next as u64,
            total_quarantined: 0,
            total_late: 0,
            max_event_ms: Some(5),
            files: vec![],
            partials: vec![Partial::new(10_000, Key::Int(1), 1_500_000_000, 2)],
            worker: 0,
            committed_at: String::new(),
            skipped: 0,
            skipped_ranges: Vec::new(),
        }
    }

    #[test]
    fn a_partial_is_stored_as_the_array_it_always_was() {
        let p = Partial::new(10_000, Key::Int(1), 1_500_000_000, 2);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(text, r#"[10000,{"Int":1},1500000000,2]"#);
        assert_eq!(serde_json::from_str::<Partial>(&text).unwrap(), p);
    }

    #[test]
    fn newest_entry_wins_and_damage_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let cp = CheckpointDir::new(tmp.path());
        assert_eq!(cp.load_partition(0).unwrap(), None);
        cp.write_partition(&entry(0, 10)).unwrap();
        cp.write_partition(&entry(0, 120)).unwrap();
        assert_eq!(cp.load_partition(0).unwrap().unwrap().next_offset, 120);
        fs::write(cp.partition_dir(0).join(".00000000000000000200.json.tmp"), b"{").unwrap();
        assert_eq!(cp.load_partition(0).unwrap().unwrap().next_offset, 120);
        fs::write(cp.partition_dir(0).join("00000000000000000300.json"), b"{\"partition\": 0").unwrap();
        let err = cp.load_partition(0).unwrap_err().to_string();
        assert!(err.contains("00000000000000000300.json") && err.contains("damaged"), "{err}");
    }
}
