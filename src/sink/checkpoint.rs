//! The checkpoint: per Kafka partition, what is durably written and where to resume.
//!
//! `_checkpoint/partitions/p=<P>/<NEXT_OFFSET>.json` is written after the files of the range it
//! describes are durable, so the newest entry's `next_offset` (Kafka's convention: the next offset
//! to read, not the last one read) never runs ahead of the data. Each entry also carries the
//! partition's share of every still-open window (`partials`) and its event-time high mark, so a
//! restart — with any worker count — rebuilds the window state exactly as it was at that offset.
//! `windows.json` records up to which window end the final rows are written. The documents
//! themselves are defined in [`crate::format::checkpoint`], which `validate` reads too.

use std::fs;
use std::path::{Path, PathBuf};

use super::durable::write_atomic;
use super::{io_err, SinkError};
use crate::format;
pub use crate::format::checkpoint::{Partial, PartitionEntry, WindowsEntry};

/// How many entries to keep per partition; older ones are pruned (the newest is what counts, the
/// rest are history for people reading the folder).
const KEEP_ENTRIES: usize = 20;

/// The `_checkpoint` folder of one run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    pub dir: PathBuf,
}

impl CheckpointDir {
    pub fn new(run_dir: &Path) -> Self {
        CheckpointDir { dir: format::checkpoint_dir(run_dir) }
    }

    fn partition_dir(&self, partition: i32) -> PathBuf {
        self.dir.join(format::PARTITIONS_DIR).join(format::partition_dir_name(partition))
    }

    fn windows_path(&self) -> PathBuf {
        self.dir.join(format::WINDOWS_FILE)
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
        let dir = self.dir.join(format::PARTITIONS_DIR);
        let Ok(read) = fs::read_dir(&dir) else { return Ok(0) };
        let mut n = 0;
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(Ok(partition)) = format::parse_partition_dir_name(&name) else {
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
        let entry = PartitionEntry::from_json(&text)
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
        let path = dir.join(format::entry_file_name(entry.next_offset));
        let bytes = entry.to_json().map_err(|e| SinkError::Io {
            doing: "serialize checkpoint entry",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
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
            Ok(text) => WindowsEntry::from_json(&text)
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::format::checkpoint::ENTRY_VERSION;
    use crate::parse::Key;

    fn entry(p: i32, next: i64) -> PartitionEntry {
        PartitionEntry {
            version: ENTRY_VERSION,
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
            seq: None,
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
