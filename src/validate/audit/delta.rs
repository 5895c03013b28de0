//! `--audit` on a run written with `--table-format delta`.
//!
//! The run folder is then a Delta table. Its files are the newest snapshot's (see
//! [`super::super::discover`]), and a Kafka partition's range is committed when the table's `txn`
//! of that partition (`streamlake/<RUN_ID>/<topic>/<partition>`) reaches the range's end: the
//! checkpoint entry is written first, so it may be one range ahead (a commit in flight, or a crash
//! that the next start rolls forward), never more and never behind; entries written after the
//! audit read the table (a running job) are ahead too, and are not counted. The audit tiles each
//! partition's snapshot files up to the `txn` version, so a file beyond it is *outside*, and a
//! range below it with no file is a *gap*.
//!
//! A file `streamlake compact` merged stands for the files it replaced: its footer lists their
//! metadata (`streamlake.sources`), and each is audited as if it were still there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::super::discover::{delta_data_files, DataFile};
use super::super::error::ValidateError;
use super::footer::{meta_from_kv, FileMeta};
use super::{Problem, ProblemKind};
use crate::format::checkpoint::PartitionEntry;
use crate::format::meta;
use crate::sink::delta::{commit::app_id, snapshot, DELTA_LOG_DIR};

/// One entry of `streamlake.sources`.
#[derive(Deserialize)]
struct Source {
    file: String,
    metadata: BTreeMap<String, String>,
}

/// The files a merged file (`rel`, `footer_rows` rows) replaced, each with its own metadata and
/// its path in the table; an error when the list is missing, unreadable or does not add up to
/// the merged file's rows.
pub(super) fn compacted_sources(
    kv: &BTreeMap<&str, &str>,
    footer_rows: u64,
    rel: &str,
) -> Result<Vec<(Option<String>, FileMeta)>, String> {
    let text = kv.get(meta::SOURCES).ok_or_else(|| {
        format!(
            "{rel} is tagged {}={} but has no `{}`: the audit cannot tell which Kafka ranges it holds",
            meta::KIND,
            meta::KIND_COMPACTED,
            meta::SOURCES
        )
    })?;
    let sources: Vec<Source> = serde_json::from_str(text)
        .map_err(|e| format!("{rel}: its `{}` cannot be read ({e})", meta::SOURCES))?;
    if sources.is_empty() {
        return Err(format!("{rel}: its `{}` lists no file", meta::SOURCES));
    }
    let mut out = Vec::with_capacity(sources.len());
    let mut rows = 0u64;
    for source in &sources {
        let kv: BTreeMap<&str, &str> =
            source.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut m = meta_from_kv(&kv, 0, &format!("{rel} (merged from {})", source.file))?;
        // The merged file's footer is checked against the sum below.
        m.footer_rows = m.rows;
        rows += m.rows;
        out.push((Some(source.file.clone()), m));
    }
    if rows != footer_rows {
        return Err(format!(
            "{rel} was merged from {} file(s) holding {rows} rows, but its footer holds {footer_rows}: the merged \
             file was rewritten or truncated",
            sources.len()
        ));
    }
    Ok(out)
}

/// A Delta run folder as one snapshot shows it: its data files and the `txn` versions of its
/// partitions (`None` for one that never committed), read together so that they agree.
pub(super) struct DeltaRun {
    pub(super) files: Vec<DataFile>,
    pub(super) txns: BTreeMap<i32, Option<i64>>,
    /// The run id of `identity.json`, which names the `txn`s (also the aggregates table's).
    pub(super) run_id: String,
}

/// Reads the Delta table `dir` with the `txn` versions of `partitions`; `None` when `dir` is not
/// a Delta table.
pub(super) fn read_run(dir: &Path, partitions: &BTreeSet<i32>) -> Result<Option<DeltaRun>, ValidateError> {
    if !dir.join(DELTA_LOG_DIR).is_dir() {
        return Ok(None);
    }
    let error = |reason: String| ValidateError::Delta { path: dir.to_path_buf(), reason };
    let identity = crate::sink::identity::load(dir).map_err(|e| error(e.to_string()))?.ok_or_else(|| {
        error(
            "it is a Delta table (it has a _delta_log/) but has no _checkpoint/identity.json, so the audit cannot \
             name its txn application ids (run id and topic); audit a run folder `streamlake run` wrote"
                .to_string(),
        )
    })?;
    let apps: Vec<(i32, String)> =
        partitions.iter().map(|&p| (p, app_id(&identity.run_id, &identity.topic, p))).collect();
    let names: Vec<String> = apps.iter().map(|(_, a)| a.clone()).collect();
    let Some(seen) = snapshot::read(dir, &names).map_err(|e| error(e.to_string()))? else {
        return Ok(Some(DeltaRun {
            files: Vec::new(),
            txns: apps.into_iter().map(|(p, _)| (p, None)).collect(),
            run_id: identity.run_id,
        }));
    };
    let txns = apps.into_iter().map(|(p, app)| (p, seen.txn.get(&app).copied().flatten())).collect();
    Ok(Some(DeltaRun { files: delta_data_files(dir, "", &[], seen.files), txns, run_id: identity.run_id }))
}

/// A checkpoint entry with the name it was read from.
type Named = (String, PartitionEntry);

/// Splits partition `p`'s checkpoint entries at the table's `txn` version: those the table has
/// committed, and the ranges of those it has not yet. A job writes a partition's next entry only
/// after the table committed the previous one, so of the entries that existed when the snapshot
/// was read (`listed_before`, by name) at most one may be beyond the `txn`; entries written since
/// (the job kept going while the audit read the table) are beyond it too, and are not counted.
/// A `txn` no entry ends at, or more than one earlier entry beyond it, is a problem.
pub(super) fn committed_entries(
    run: &str,
    p: i32,
    txn: Option<i64>,
    entries: Vec<Named>,
    listed_before: impl Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> (Vec<Named>, Vec<(i64, i64)>) {
    // An entry of an empty range (written before a partition's first read) commits nothing, so
    // the table has no version for it.
    let (committed, pending): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(_, e)| e.start_offset == e.next_offset || txn.is_some_and(|v| e.next_offset <= v));
    let mut problem = |message: String, files: Vec<String>| {
        problems.push(Problem {
            kind: ProblemKind::Invalid,
            run: run.to_string(),
            partition: Some(p),
            message,
            files,
        })
    };
    if let Some(v) = txn {
        if !committed.iter().any(|(_, e)| e.next_offset == v) {
            problem(
                format!(
                    "the Delta table's txn of partition {p} is at offset {v}, but no checkpoint entry of the partition \
                     ends there: the table holds a commit the checkpoint never made"
                ),
                vec![],
            );
        }
    }
    let ranges = pending.iter().map(|(_, e)| (e.start_offset, e.next_offset)).collect();
    let (earlier, since): (Vec<&Named>, Vec<&Named>) =
        pending.iter().partition(|(name, _)| listed_before(name));
    match earlier.as_slice() {
        [] => {}
        [(name, e)] => warnings.push(format!(
            "partition {p} of run {run}: offsets [{}, {}) are in the checkpoint ({name}) but not yet in the Delta \
             table (a commit in flight, or a crash that the next `streamlake run` completes); they are not counted",
            e.start_offset, e.next_offset
        )),
        more => problem(
            format!(
                "{} checkpoint entries of partition {p} lie beyond the Delta table's txn version {}: the table \
                 fell behind the checkpoint by more than the one commit a restart completes",
                more.len(),
                txn.map_or_else(|| "(none)".to_string(), |v| v.to_string())
            ),
            more.iter().map(|(name, _)| name.clone()).collect(),
        ),
    }
    if let (Some((_, first)), Some((_, last))) = (since.first(), since.last()) {
        warnings.push(format!(
            "partition {p} of run {run}: {} checkpoint entries, offsets [{}, {}), were written while the audit \
             read the Delta table (the job is running); they are not counted",
            since.len(),
            first.start_offset,
            last.next_offset
        ));
    }
    (committed, ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(start: i64, next: i64) -> (String, PartitionEntry) {
        let mut e = PartitionEntry::start_of(0, start, 0);
        e.next_offset = next;
        (format!("{next:020}.json"), e)
    }

    #[test]
    fn entries_split_at_the_txn() {
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let all = vec![entry(0, 10), entry(10, 20), entry(20, 30)];
        let every = |_: &str| true;
        let (c, pending) =
            committed_entries("r", 0, Some(20), all.clone(), every, &mut problems, &mut warnings);
        assert_eq!((c.len(), pending), (2, vec![(20, 30)]));
        assert!(problems.is_empty() && warnings.len() == 1, "{problems:?}");

        let (c, pending) =
            committed_entries("r", 0, Some(10), all.clone(), every, &mut problems, &mut warnings);
        assert_eq!((c.len(), pending), (1, vec![(10, 20), (20, 30)]));
        assert!(problems[0].message.contains("beyond the Delta table's txn version 10"), "{problems:?}");

        problems.clear();
        let (_, pending) =
            committed_entries("r", 0, Some(15), all[..2].to_vec(), every, &mut problems, &mut warnings);
        assert_eq!(pending, vec![(10, 20)]);
        assert!(problems[0].message.contains("at offset 15"), "{problems:?}");

        // Before the table's first commit: the empty entry of the start is committed, the first
        // range pending.
        problems.clear();
        let first = vec![entry(0, 0), entry(0, 10)];
        let (c, pending) = committed_entries("r", 0, None, first, every, &mut problems, &mut warnings);
        assert_eq!((c.len(), pending), (1, vec![(0, 10)]));
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// A running job: the audit read the table at txn 10, and by the time it listed the entries
    /// the job had written two more. Only one of the entries it had seen before may be pending.
    #[test]
    fn entries_written_while_the_audit_ran_are_not_a_problem() {
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let all = vec![entry(0, 10), entry(10, 20), entry(20, 30), entry(30, 40)];
        let before = |name: &str| name <= format!("{:020}.json", 20).as_str();
        let (c, pending) =
            committed_entries("r", 0, Some(10), all.clone(), before, &mut problems, &mut warnings);
        assert_eq!((c.len(), pending), (1, vec![(10, 20), (20, 30), (30, 40)]));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            warnings.iter().any(|w| w.contains("2 checkpoint entries, offsets [20, 40)")),
            "{warnings:?}"
        );

        // Two entries the table had not committed when its snapshot was read: a real gap.
        warnings.clear();
        let before = |name: &str| name <= format!("{:020}.json", 30).as_str();
        committed_entries("r", 0, Some(10), all, before, &mut problems, &mut warnings);
        assert!(
            problems[0].message.contains("2 checkpoint entries of partition 0 lie beyond"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_merged_file_stands_for_its_sources() {
        let source = |file: &str, start: i64, end: i64, rows: u64| {
            serde_json::json!({"file": file, "metadata": {
                meta::PARTITION: "1", meta::START_OFFSET: start.to_string(), meta::END_OFFSET: end.to_string(),
                meta::ROWS: rows.to_string(), meta::RANGE_MESSAGES: "9", meta::KIND: meta::KIND_RAW,
            }})
        };
        let sources =
            serde_json::json!([source("id=3/a.parquet", 0, 9, 4), source("id=3/b.parquet", 9, 18, 5)]);
        let text = sources.to_string();
        let kv: BTreeMap<&str, &str> =
            [(meta::KIND, meta::KIND_COMPACTED), (meta::SOURCES, text.as_str())].into_iter().collect();
        let out = compacted_sources(&kv, 9, "run_x/id=3/m.parquet").unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].0.as_deref(), Some("id=3/b.parquet"));
        assert_eq!((out[1].1.start, out[1].1.end, out[1].1.rows, out[1].1.footer_rows), (9, 18, 5, 5));
        let err = compacted_sources(&kv, 8, "run_x/id=3/m.parquet").unwrap_err();
        assert!(err.contains("holding 9 rows, but its footer holds 8"), "{err}");
        let bare: BTreeMap<&str, &str> = [(meta::KIND, meta::KIND_COMPACTED)].into_iter().collect();
        assert!(compacted_sources(&bare, 0, "m").unwrap_err().contains("has no `streamlake.sources`"));
    }
}
