//! `--incremental`: remember what each file contributed, read only files not seen before.
//!
//! The state, `<DIR>/_reports/_state.json`, holds per data file its size, modification time and
//! [`FileAggregate`] (rows, and per id the count and exact sum of `value`), plus the per-id totals
//! for people reading it. A run reads the files that are new or whose size or time changed, takes
//! the others' aggregates from the state, and folds all of them in path order exactly as a full
//! scan does, so the totals are identical. Committed files are never rewritten or deleted by
//! `streamlake run`, so a file that disappeared means someone changed the dataset: the run says
//! so and reads everything again rather than trust the state.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::discover::{DataFile, PartValue};
use super::error::ValidateError;
use super::report::{IdStats, IncrementalInfo};
use super::scan::{Columns, FileAggregate};

/// File name of the state, inside `_reports/`.
pub const STATE_FILE: &str = "_state.json";
const STATE_VERSION: u32 = 1;

/// What an incremental run knows about one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileState {
    pub size: u64,
    pub mtime_ns: u64,
    #[serde(flatten)]
    pub aggregate: FileAggregate,
}

/// Per-id totals, for people reading the state (runs recompute them from the files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateTotal {
    pub id: PartValue,
    pub count: u64,
    pub sum: f64,
}

/// The content of `_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub updated_at: String,
    /// The key and value columns the aggregates are of (`--dataflow`); absent in states written
    /// before the option existed, which were all of the seed's `id` and `value`.
    #[serde(default = "seed_key")]
    pub key: String,
    #[serde(default = "seed_value")]
    pub value: String,
    pub total_rows: u64,
    pub per_id: Vec<StateTotal>,
    /// Keyed by path relative to the dataset root.
    pub files: BTreeMap<String, FileState>,
}

fn seed_key() -> String {
    "id".to_string()
}

fn seed_value() -> String {
    "value".to_string()
}

/// Which files to read and which aggregates to take from the state.
#[derive(Debug, Default)]
pub struct Plan {
    /// Indices (into the listing) of the files to read.
    pub to_read: Vec<usize>,
    /// Aggregates from the state, by listing index.
    pub reused: BTreeMap<usize, FileAggregate>,
    pub info: IncrementalInfo,
}

fn load(path: &Path) -> Result<Option<State>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let state: State = serde_json::from_str(&text)
        .map_err(|e| format!("{} is damaged ({e}); it will be rewritten", path.display()))?;
    if state.version != STATE_VERSION {
        return Err(format!(
            "{} has version {}, this program writes {STATE_VERSION}",
            path.display(),
            state.version
        ));
    }
    Ok(Some(state))
}

/// Decides what to read, given the state at `state_path` and the current listing.
pub fn plan(state_path: &Path, files: &[DataFile], columns: &Columns) -> Plan {
    let mut plan = Plan {
        info: IncrementalInfo { state_file: state_path.display().to_string(), ..Default::default() },
        ..Default::default()
    };
    let all = |plan: &mut Plan, reason: String| {
        plan.to_read = (0..files.len()).collect();
        plan.reused.clear();
        plan.info.full_scan_reason = Some(reason);
    };
    let mut state = match load(state_path) {
        Ok(Some(state)) => state,
        Ok(None) => {
            all(&mut plan, "no state yet".into());
            return plan;
        }
        Err(reason) => {
            all(&mut plan, reason);
            return plan;
        }
    };
    if (state.key.as_str(), state.value.as_str()) != (columns.key.as_str(), columns.value.as_str()) {
        let reason = format!(
            "the state counts `{}` per `{}`, this run `{}` per `{}` (another --dataflow)",
            state.value, state.key, columns.value, columns.key
        );
        all(&mut plan, reason);
        return plan;
    }
    let present: std::collections::BTreeSet<&str> = files.iter().map(|f| f.rel.as_str()).collect();
    plan.info.disappeared = state.files.keys().filter(|k| !present.contains(k.as_str())).cloned().collect();
    if !plan.info.disappeared.is_empty() {
        let n = plan.info.disappeared.len();
        let shown: Vec<&str> = plan.info.disappeared.iter().take(3).map(String::as_str).collect();
        let reason = format!(
            "{n} file(s) counted before are gone: {}{}",
            shown.join(", "),
            if n > shown.len() { format!(" and {} more", n - shown.len()) } else { String::new() }
        );
        all(&mut plan, reason);
        return plan;
    }
    for (i, file) in files.iter().enumerate() {
        match state.files.remove(&file.rel) {
            Some(seen) if seen.size == file.size && seen.mtime_ns == file.mtime_ns => {
                plan.reused.insert(i, seen.aggregate);
            }
            Some(_) => {
                plan.info.changed.push(file.rel.clone());
                plan.to_read.push(i);
            }
            None => plan.to_read.push(i),
        }
    }
    plan
}

/// Writes the state for the files whose aggregate is known (`aggregates[i]` for `files[i]`; files
/// that could not be read are left out, so the next run tries them again).
pub fn save(
    state_path: &Path,
    files: &[DataFile],
    aggregates: &[Option<&FileAggregate>],
    per_id: &[IdStats],
    total_rows: u64,
    now: &str,
    columns: &Columns,
) -> Result<(), ValidateError> {
    let state = State {
        version: STATE_VERSION,
        updated_at: now.to_string(),
        key: columns.key.clone(),
        value: columns.value.clone(),
        total_rows,
        per_id: per_id.iter().map(|s| StateTotal { id: s.id.clone(), count: s.count, sum: s.sum }).collect(),
        files: files
            .iter()
            .zip(aggregates)
            .filter_map(|(f, agg)| {
                agg.map(|a| {
                    (f.rel.clone(), FileState { size: f.size, mtime_ns: f.mtime_ns, aggregate: a.clone() })
                })
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&state).unwrap_or_default();
    super::write_atomic(state_path, &bytes)
}
