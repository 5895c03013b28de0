//! Finding the data files of a dataset, the way pyarrow's dataset discovery does for the DAG.
//!
//! Every `*.parquet` file below the root is data, in any folder, except hidden ones: an entry whose
//! name starts with `_` or `.` (`_checkpoint`, `_quarantine`, `_reports`, in-progress
//! `.part-*.inprogress` files) is skipped with everything below it. Hive-style `name=value` folders
//! give each file its partition values (`id=3` → column `id` = 3). Other visible files are listed as
//! ignored so that nothing is dropped without a word.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::error::ValidateError;

use crate::format::partition::{decode_folder_value, HIVE_NULL};

/// A partition (or key) value. Integers compare as numbers, so `id=10` sorts after `id=9`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PartValue {
    Null,
    Int(i64),
    Str(String),
}

impl PartValue {
    /// Parses the value part of a `name=value` folder: percent-decoded, an integer when it is one.
    pub fn from_folder(raw: &str) -> PartValue {
        if raw == HIVE_NULL {
            return PartValue::Null;
        }
        let text = decode_folder_value(raw);
        match text.parse::<i64>() {
            Ok(n) => PartValue::Int(n),
            Err(_) => PartValue::Str(text),
        }
    }
}

impl std::fmt::Display for PartValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartValue::Null => f.write_str("null"),
            PartValue::Int(n) => write!(f, "{n}"),
            PartValue::Str(s) => f.write_str(s),
        }
    }
}

/// One committed data file.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Path relative to the dataset root, with `/` separators (`run_x/id=0/part-….parquet`); the
    /// sort key and the name used in reports.
    pub rel: String,
    pub path: PathBuf,
    /// `name=value` folders on the way from the root, outermost first.
    pub partitions: Vec<(String, PartValue)>,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (0 when the file system has none).
    pub mtime_ns: u64,
}

impl DataFile {
    /// The value of partition column `name`, if the file lies in a `name=value` folder.
    pub fn partition(&self, name: &str) -> Option<&PartValue> {
        self.partitions.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// What a walk of the dataset found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Data files, sorted by relative path.
    pub files: Vec<DataFile>,
    /// Visible files that are not `*.parquet` (relative paths), sorted.
    pub ignored: Vec<String>,
}

/// True for names that are never data: hidden (`.x`) or internal (`_x`) entries.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// A folder still to walk: its path, its path relative to the root, its partition values.
type Pending = (PathBuf, String, Vec<(String, PartValue)>);

/// Lists the data files below `root` (see the module docs for the rules).
pub fn list_data_files(root: &Path) -> Result<Listing, ValidateError> {
    let mut listing = Listing::default();
    let mut stack: Vec<Pending> = vec![(root.to_path_buf(), String::new(), vec![])];
    while let Some((dir, rel_dir, partitions)) = stack.pop() {
        // A Delta table: its files are the ones its newest snapshot holds, whatever else lies in
        // the folder (files a crash left before their commit, files compaction replaced).
        if dir.join(crate::sink::delta::DELTA_LOG_DIR).is_dir() {
            let active = crate::sink::delta::snapshot::active_files(&dir)
                .map_err(|e| ValidateError::Delta { path: dir.clone(), reason: e.to_string() })?;
            listing.files.extend(delta_data_files(&dir, &rel_dir, &partitions, active));
            continue;
        }
        let read =
            fs::read_dir(&dir).map_err(|source| ValidateError::ListDir { path: dir.clone(), source })?;
        for entry in read {
            let entry = entry.map_err(|source| ValidateError::ListDir { path: dir.clone(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_hidden(&name) {
                continue;
            }
            let path = entry.path();
            let rel = if rel_dir.is_empty() { name.clone() } else { format!("{rel_dir}/{name}") };
            // Follows symlinks to files; symlinked folders are not walked (no cycles).
            let meta = match entry.file_type() {
                Ok(t) if t.is_symlink() => fs::metadata(&path),
                _ => entry.metadata(),
            };
            let meta = meta.map_err(|source| ValidateError::Open { path: path.clone(), source })?;
            if meta.is_dir() && !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                let mut parts = partitions.clone();
                if let Some((col, value)) = name.split_once('=') {
                    if !col.is_empty() {
                        parts.push((col.to_string(), PartValue::from_folder(value)));
                    }
                }
                stack.push((path, rel, parts));
            } else if meta.is_file() && name.ends_with(".parquet") {
                let mtime_ns = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                listing.files.push(DataFile {
                    rel,
                    path,
                    partitions: partitions.clone(),
                    size: meta.len(),
                    mtime_ns,
                });
            } else {
                listing.ignored.push(rel);
            }
        }
    }
    listing.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    listing.ignored.sort();
    Ok(listing)
}

/// The data files of a Delta table at `dir` (`rel_dir` below the root, inside `partitions`'
/// folders), from the `active` files of one of its snapshots.
pub fn delta_data_files(
    dir: &Path,
    rel_dir: &str,
    partitions: &[(String, PartValue)],
    active: Vec<crate::sink::delta::snapshot::ActiveFile>,
) -> Vec<DataFile> {
    active
        .into_iter()
        .map(|file| {
            let mut parts = partitions.to_vec();
            let mut folders: Vec<&str> = file.rel.split('/').collect();
            folders.pop();
            for folder in folders {
                if let Some((col, value)) = folder.split_once('=') {
                    parts.push((col.to_string(), PartValue::from_folder(value)));
                }
            }
            DataFile {
                rel: if rel_dir.is_empty() { file.rel.clone() } else { format!("{rel_dir}/{}", file.rel) },
                path: dir.join(&file.rel),
                partitions: parts,
                size: file.size,
                mtime_ns: file.modified_ms.max(0) as u64 * 1_000_000,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_values() {
        assert_eq!(PartValue::from_folder("7"), PartValue::Int(7));
        assert_eq!(PartValue::from_folder("-3"), PartValue::Int(-3));
        assert_eq!(PartValue::from_folder("a%2Fb"), PartValue::Str("a/b".into()));
        assert_eq!(PartValue::from_folder("50%"), PartValue::Str("50%".into()));
        assert_eq!(PartValue::from_folder("%zz"), PartValue::Str("%zz".into()));
        assert_eq!(PartValue::from_folder(HIVE_NULL), PartValue::Null);
        assert!(PartValue::Int(9) < PartValue::Int(10));
        assert!(PartValue::Int(10) < PartValue::Str("a".into()));
    }

    #[test]
    fn walk_skips_hidden_and_lists_others() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for dir in ["run_a/id=1", "run_a/id=10", "run_a/_quarantine", "run_a/_checkpoint/partitions/p=0"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "run_a/id=1/part-1.parquet",
            "run_a/id=10/part-2.parquet",
            "run_a/id=10/.part-3.parquet.inprogress",
            "run_a/_quarantine/part-1.parquet",
            "run_a/_checkpoint/partitions/p=0/00000000000000000010.json",
            "run_a/notes.txt",
        ] {
            fs::write(root.join(file), b"x").unwrap();
        }
        let listing = list_data_files(root).unwrap();
        let rels: Vec<&str> = listing.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["run_a/id=1/part-1.parquet", "run_a/id=10/part-2.parquet"]);
        assert_eq!(listing.files[1].partition("id"), Some(&PartValue::Int(10)));
        assert_eq!(listing.ignored, ["run_a/notes.txt"]);
    }
}
