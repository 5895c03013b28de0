//! Window completeness for `--audit`: per (window, key), how many records were aggregated on time,
//! how many were dropped as late, and how many wait in windows still open — from the files alone.
//!
//! - On time: the `count` of the window's final row in `<P>/../aggregates/run_<ID>/windows-*.parquet`;
//!   on a Delta run, in the files of the aggregates table's snapshot only ([`CommittedWindows`]).
//! - Raw: rows of the run's committed raw files whose time column (the dataflow's) falls in the
//!   window. The key comes from the `<key>=K` folder when the run partitions by the key (identity),
//!   else from the files' key column (a transform such as `bucket(id, 16)` or `day(ts)` keeps it,
//!   and so does partitioning by another column or `none`).
//! - A window is *closed* when its end is at or before `closed_through_ms` of
//!   `run_<ID>/_checkpoint/windows.json` (on a Delta run, the closed-through the aggregates table
//!   holds: [`super::audit`]); then late-dropped = raw − on time, which can never be
//!   negative (a window aggregating rows that exist nowhere raw is a problem). Rows of a window that
//!   is still *open* are neither: they are reported as open.
//! - Quarantined records have no trustworthy timestamp, hence no window; they stay per partition.
//!
//! The window size is read from the aggregates (`window_end − window_start`), 10 s without any.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use chrono::{DateTime, SecondsFormat};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::Serialize;

use super::audit::{Problem, ProblemKind};
use super::discover::{is_hidden, PartValue};
use super::scan::parallel_map;
use super::source::ParquetSource;
use crate::format::aggregate_columns::{AVG_VALUE, COUNT, SUM, WINDOW_END, WINDOW_START};
use crate::format::checkpoint::WindowsEntry;
use crate::format::{self, IDENTITY_FILE};

/// Window size when no aggregate row tells it (the seed dataflow's `size = "10s"`).
pub const DEFAULT_WINDOW_MS: i64 = 10_000;

const AGGREGATE_VALUES: [&str; 5] = [WINDOW_START, WINDOW_END, AVG_VALUE, COUNT, SUM];

/// Whether a window's final row is written (`closed`) or it may still receive records (`open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    Closed,
    Open,
}

/// Completeness of one (window, key) of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowCompleteness {
    pub run: String,
    /// RFC 3339, UTC.
    pub window_start: String,
    pub window_end: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub key: PartValue,
    /// Rows in the committed raw files (timestamp in the window, this key).
    pub raw: u64,
    /// `count` of the window's final aggregate row (0 without one).
    pub on_time: u64,
    /// Closed windows: `raw − on_time` (negative only when the audit fails); null when open.
    pub late_dropped: Option<i64>,
    /// Open windows: the raw rows waiting in them (0 when closed).
    pub open: u64,
    pub status: WindowStatus,
}

/// What the completeness pass found for one run.
#[derive(Debug, Default)]
pub struct RunCompleteness {
    pub windows: Vec<WindowCompleteness>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// The inputs of one run folder, as the exactly-once audit established them.
pub struct RunInput<'a> {
    /// Run folder name (`run_e2e`, or `.` when `--path` is the run folder itself).
    pub run: &'a str,
    pub dir: &'a Path,
    /// The dataflow's event-time column; files without it are read by their first TIMESTAMP.
    pub time_column: &'a str,
    /// The dataflow's key column: a `<key>=K` folder, or a column of the files.
    pub key_column: &'a str,
    /// Committed raw files: path and key folder (`id=3`).
    pub raw_files: Vec<(PathBuf, String)>,
    /// Raw files whose footer could not be read (so their rows are not counted).
    pub unreadable_raw: u64,
    /// Whether the exactly-once audit found no problem in this run.
    pub audit_clean: bool,
    /// Sum over partitions of the newest checkpoint entry's `total_late`.
    pub checkpoint_late: u64,
    /// A Delta run's aggregates as its aggregates table holds them; `None`: the folder's files and
    /// `windows.json`'s mark (plain Parquet).
    pub committed_windows: Option<CommittedWindows>,
}

/// The aggregates a Delta reader sees of a run: the files of the aggregates table's snapshot and
/// the windows they close. A window file marked in `windows.json` but not yet committed is not
/// among them, so its rows are never counted as on time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommittedWindows {
    pub files: Vec<PathBuf>,
    /// Every window ending at or before this (ms) is closed; `None`: none is.
    pub closed_through_ms: Option<i64>,
}

/// Where `streamlake run` put the aggregates of the run folder `dir` (`P/run_X`): format 2
/// (`_checkpoint/identity.json` exists) `P/../aggregates/<name of P>/run_X`, as
/// `sink::aggregates::aggregates_dir`; format 1 `P/../aggregates/run_X`, so that old run folders
/// stay auditable.
pub fn aggregates_dir(dir: &Path) -> Option<PathBuf> {
    if format::checkpoint_dir(dir).join(IDENTITY_FILE).is_file() {
        let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        return crate::sink::aggregates::aggregates_dir(&dir);
    }
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = dir.file_name()?;
    Some(dir.parent()?.parent()?.join(format::AGGREGATES_DIR).join(name))
}

/// One aggregate row: window bounds (ms), key, count.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    pub start_ms: i64,
    pub end_ms: i64,
    pub key: PartValue,
    pub count: u64,
}

/// Per-(window end ms, key) totals and the window size, from raw counts and aggregate rows; the
/// arithmetic of the pass, without files. `closed_through` None: no window is closed yet.
pub fn tally(
    run: &str,
    size_ms: i64,
    closed_through: Option<i64>,
    raw: &BTreeMap<(i64, PartValue), u64>,
    on_time: &BTreeMap<(i64, PartValue), u64>,
) -> Vec<WindowCompleteness> {
    let mut keys: Vec<&(i64, PartValue)> = raw.keys().chain(on_time.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let (end, key) = k;
            let raw_rows = raw.get(k).copied().unwrap_or(0);
            let aggregated = on_time.get(k).copied().unwrap_or(0);
            let closed = closed_through.is_some_and(|c| *end <= c);
            let start = end - size_ms;
            WindowCompleteness {
                run: run.to_string(),
                window_start: instant_text(start),
                window_end: instant_text(*end),
                window_start_ms: start,
                window_end_ms: *end,
                key: key.clone(),
                raw: raw_rows,
                on_time: aggregated,
                late_dropped: closed.then(|| raw_rows as i64 - aggregated as i64),
                open: if closed { 0 } else { raw_rows },
                status: if closed { WindowStatus::Closed } else { WindowStatus::Open },
            }
        })
        .collect()
}

/// The end (ms) of the window of size `size_ms` holding the instant `ts_us` (µs): windows are
/// `[k·size, (k+1)·size)`, as the dataflow assigns them.
pub fn window_end_ms(ts_us: i64, size_ms: i64) -> i64 {
    let size_us = size_ms * 1000;
    ts_us.div_euclid(size_us) * size_ms + size_ms
}

fn instant_text(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Completeness of one run folder.
pub fn run_completeness(input: &RunInput<'_>) -> RunCompleteness {
    let mut out = RunCompleteness::default();
    let run = input.run;
    let problem = |kind: ProblemKind, message: String, files: Vec<String>| Problem {
        kind,
        run: run.to_string(),
        partition: None,
        message,
        files,
    };

    let (closed_through, paths) = match &input.committed_windows {
        Some(c) => (c.closed_through_ms, c.files.clone()),
        None => (marked_closed_through(input.dir, run, &mut out.warnings), folder_window_files(input.dir)),
    };
    let key_name = Some(input.key_column);
    let mut rows: Vec<AggregateRow> = Vec::new();
    for (path, read) in paths.iter().zip(parallel_map(&paths, |p| read_aggregates(p, key_name))) {
        match read {
            Ok(r) => rows.extend(r),
            Err(e) => out.problems.push(problem(
                ProblemKind::Invalid,
                format!("aggregate file {}: {e}", path.display()),
                vec![path.display().to_string()],
            )),
        }
    }
    let size_ms = rows.iter().map(|r| r.end_ms - r.start_ms).find(|s| *s > 0).unwrap_or(DEFAULT_WINDOW_MS);
    let mut on_time: BTreeMap<(i64, PartValue), u64> = BTreeMap::new();
    for r in &rows {
        if r.end_ms - r.start_ms != size_ms {
            out.problems.push(problem(
                ProblemKind::Invalid,
                format!(
                    "aggregate row of key {} spans [{}, {}), not one window of {size_ms} ms as the others",
                    r.key,
                    instant_text(r.start_ms),
                    instant_text(r.end_ms)
                ),
                vec![],
            ));
        }
        if on_time.insert((r.end_ms, r.key.clone()), r.count).is_some() {
            out.problems.push(problem(
                ProblemKind::Duplicate,
                format!(
                    "the window [{}, {}) of key {} has more than one final aggregate row",
                    instant_text(r.start_ms),
                    instant_text(r.end_ms),
                    r.key
                ),
                vec![],
            ));
        }
    }

    let mut raw: BTreeMap<(i64, PartValue), u64> = BTreeMap::new();
    let counted = parallel_map(&input.raw_files, |(path, folder)| {
        let folder_key = folder_key(folder, input.key_column);
        let key_column = if folder_key.is_some() { None } else { Some(input.key_column) };
        window_counts(path, input.time_column, key_column, size_ms).map(|counts| (folder_key, counts))
    });
    let mut unreadable = input.unreadable_raw;
    for ((path, folder), counts) in input.raw_files.iter().zip(counted) {
        // Files without the key column in a `name=value` folder (a dataset read with another
        // dataflow's key): the folder's value, as before transforms existed.
        let any_folder =
            folder.rsplit('/').find_map(|p| p.split_once('=')).map(|(_, v)| PartValue::from_folder(v));
        match counts {
            Ok((folder_key, counts)) => {
                for ((end, file_key), n) in counts {
                    let key = folder_key
                        .clone()
                        .or(file_key)
                        .or_else(|| any_folder.clone())
                        .unwrap_or(PartValue::Null);
                    *raw.entry((end, key)).or_insert(0) += n;
                }
            }
            Err(e) => {
                unreadable += 1;
                out.warnings.push(format!("{run}: {}: {e}; its rows are not counted", path.display()));
            }
        }
    }

    out.windows = tally(run, size_ms, closed_through, &raw, &on_time);
    let trusted = input.audit_clean && unreadable == 0;
    let over: Vec<&WindowCompleteness> =
        out.windows.iter().filter(|w| w.late_dropped.is_some_and(|l| l < 0)).collect();
    if trusted {
        for w in over {
            out.problems.push(problem(
                ProblemKind::Overcount,
                format!(
                    "window [{}, {}) of key {} aggregated {} records but the raw files hold only {} in it: {} \
                     record(s) were counted without being written raw (or raw files are missing)",
                    w.window_start,
                    w.window_end,
                    w.key,
                    w.on_time,
                    w.raw,
                    w.on_time - w.raw
                ),
                vec![],
            ));
        }
    } else if !over.is_empty() {
        out.warnings.push(format!(
            "{run}: {} closed window(s) aggregated more records than the raw files hold; not counted as \
             problems since the raw files are incomplete or failed the exactly-once audit",
            over.len()
        ));
    }
    // Late-dropped counted from the files and the checkpoint's late counter should agree. They can
    // differ legitimately: a crash after a window's final row was emitted but before its
    // partition's commit replays the partition's records, and a replayed record of that (now
    // closed) window is counted late although it was aggregated. So a mismatch is a warning.
    let late: i64 = out.windows.iter().filter_map(|w| w.late_dropped).sum();
    if late != input.checkpoint_late as i64 {
        out.warnings.push(format!(
            "{run}: late-dropped rows counted from the files ({late}) differ from the checkpoint's total_late \
             ({}); a crash between a window's emission and its partition's commit can count a replayed record \
             as late",
            input.checkpoint_late
        ));
    }
    out
}

/// `closed_through_ms` of the run's `windows.json` (`None`: no window closed yet, or a mark that
/// cannot be read, which is warned about).
fn marked_closed_through(dir: &Path, run: &str, warnings: &mut Vec<String>) -> Option<i64> {
    let path = format::checkpoint_dir(dir).join(format::WINDOWS_FILE);
    let text = fs::read_to_string(&path).ok()?;
    match WindowsEntry::from_json(&text) {
        Ok(w) => Some(i64::try_from(w.closed_through_ms).unwrap_or(i64::MAX)),
        Err(e) => {
            warnings
                .push(format!("{run}: {} cannot be read ({e}); every window counts as open", path.display()));
            None
        }
    }
}

/// The window files in the run's aggregates folder, by name (plain Parquet: every one counts).
fn folder_window_files(dir: &Path) -> Vec<PathBuf> {
    let Some(agg_dir) = aggregates_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = fs::read_dir(&agg_dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !is_hidden(n) && n.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.iter().map(|n| agg_dir.join(n)).collect()
}

/// Values of a timestamp column in microseconds.
fn micros(column: &ArrayRef) -> Option<Vec<Option<i64>>> {
    let DataType::Timestamp(unit, _) = column.data_type() else { return None };
    let ints = arrow::compute::cast(column, &DataType::Int64).ok()?;
    let (mul, div) = match unit {
        TimeUnit::Second => (1_000_000, 1),
        TimeUnit::Millisecond => (1000, 1),
        TimeUnit::Microsecond => (1, 1),
        TimeUnit::Nanosecond => (1, 1000),
    };
    Some(ints.as_primitive::<Int64Type>().iter().map(|v| v.map(|v| (v * mul).div_euclid(div))).collect())
}

fn reader(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<ParquetSource>, String> {
    let f = super::source::open(path).map_err(|e| format!("cannot open: {e}"))?;
    ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| format!("cannot read Parquet: {e}"))
}

/// The key a raw file's folder gives its rows: the value of a `<key_column>=K` folder (the last
/// one on the path); `None` when the folders are not the key's (a transform, another column, none).
fn folder_key(folder: &str, key_column: &str) -> Option<PartValue> {
    folder
        .rsplit('/')
        .filter_map(|part| part.split_once('='))
        .find(|(name, _)| *name == key_column)
        .map(|(_, v)| PartValue::from_folder(v))
}

/// Rows per (window end ms, key) of one raw file, by its `time_column` (or, in files without it,
/// its first TIMESTAMP column) and, when `key_column` is given, the key in that column of the
/// file (`None` for rows without one, or when not asked).
fn window_counts(
    path: &Path,
    time_column: &str,
    key_column: Option<&str>,
    size_ms: i64,
) -> Result<BTreeMap<(i64, Option<PartValue>), u64>, String> {
    let builder = reader(path)?;
    let fields = builder.schema().fields();
    let is_time = |f: &arrow::datatypes::FieldRef| matches!(f.data_type(), DataType::Timestamp(..));
    let Some(ts) = fields
        .iter()
        .position(|f| f.name() == time_column && is_time(f))
        .or_else(|| fields.iter().position(is_time))
    else {
        return Err("no TIMESTAMP column, so its rows have no window".to_string());
    };
    let key = key_column.and_then(|k| fields.iter().position(|f| f.name() == k));
    let mask = ProjectionMask::roots(builder.parquet_schema(), [Some(ts), key].into_iter().flatten());
    let ts_name = fields[ts].name().clone();
    let key_name = key.map(|k| fields[k].name().clone());
    let batches = builder.with_projection(mask).build().map_err(|e| format!("cannot read Parquet: {e}"))?;
    let mut out = BTreeMap::new();
    for batch in batches {
        let batch = batch.map_err(|e| format!("cannot decode: {e}"))?;
        let column = batch.column_by_name(&ts_name).ok_or("the timestamp column cannot be read")?;
        let values = micros(column).ok_or("the timestamp column cannot be read")?;
        let keys: Vec<Option<PartValue>> = match key_name.as_ref().and_then(|k| batch.column_by_name(k)) {
            Some(c) => keys_of(c).into_iter().map(|k| (k != PartValue::Null).then_some(k)).collect(),
            None => vec![None; values.len()],
        };
        for (v, k) in values.into_iter().zip(keys) {
            if let Some(v) = v {
                *out.entry((window_end_ms(v, size_ms), k)).or_insert(0) += 1;
            }
        }
    }
    Ok(out)
}

/// A key cell as the raw folder names it (`id=3` → 3): integers as numbers, text that is one too.
fn keys_of(column: &ArrayRef) -> Vec<PartValue> {
    if column.data_type().is_integer() {
        if let Ok(ints) = arrow::compute::cast(column, &DataType::Int64) {
            return ints
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map_or(PartValue::Null, PartValue::Int))
                .collect();
        }
    }
    match arrow::compute::cast(column, &DataType::Utf8) {
        Ok(text) => text
            .as_string::<i32>()
            .iter()
            .map(|v| {
                v.map_or(PartValue::Null, |s| {
                    s.parse().map_or_else(|_| PartValue::Str(s.to_string()), PartValue::Int)
                })
            })
            .collect(),
        Err(_) => vec![PartValue::Null; column.len()],
    }
}

/// The rows of one aggregate file. The key column is `key_name` (the raw folder's), else the one
/// column that is not a window bound or a statistic.
fn read_aggregates(path: &Path, key_name: Option<&str>) -> Result<Vec<AggregateRow>, String> {
    let builder = reader(path)?;
    let schema = builder.schema().clone();
    let key = key_name
        .filter(|k| schema.index_of(k).is_ok())
        .map(str::to_string)
        .or_else(|| {
            schema
                .fields()
                .iter()
                .map(|f| f.name())
                .find(|n| !AGGREGATE_VALUES.contains(&n.as_str()))
                .cloned()
        })
        .ok_or("no key column")?;
    for need in [WINDOW_START, WINDOW_END, COUNT] {
        schema.index_of(need).map_err(|_| format!("no `{need}` column"))?;
    }
    let batches = builder.build().map_err(|e| format!("cannot read Parquet: {e}"))?;
    let mut out = Vec::new();
    for batch in batches {
        let batch = batch.map_err(|e| format!("cannot decode: {e}"))?;
        let column = |name: &str| batch.column_by_name(name).cloned().ok_or(format!("no `{name}` column"));
        let starts = micros(&column(WINDOW_START)?).ok_or("`window_start` is not a TIMESTAMP")?;
        let ends = micros(&column(WINDOW_END)?).ok_or("`window_end` is not a TIMESTAMP")?;
        let counts = arrow::compute::cast(&column(COUNT)?, &DataType::Int64).map_err(|e| e.to_string())?;
        let counts = counts.as_primitive::<Int64Type>();
        let keys = keys_of(&column(&key)?);
        for i in 0..batch.num_rows() {
            let (Some(s), Some(e)) = (starts[i], ends[i]) else { return Err("a null window bound".into()) };
            out.push(AggregateRow {
                start_ms: s.div_euclid(1000),
                end_ms: e.div_euclid(1000),
                key: keys[i].clone(),
                count: u64::try_from(counts.value(i)).map_err(|_| "a negative count")?,
            });
        }
    }
    Ok(out)
}

// The tests live beside this file (completeness/tests.rs) to keep it under 500 lines.
#[cfg(test)]
mod tests;
