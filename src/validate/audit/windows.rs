//! `--audit` of a Delta run's aggregates table against `windows.json`.
//!
//! Process 0 writes each batch of final windows to a file of the aggregates folder, marks it in
//! `_checkpoint/windows.json` (`closed_through_ms` C; `files` W, every window file so far), then
//! commits it to the aggregates table with the `txn` `streamlake/<RUN_ID>/windows` at C
//! ([`crate::sink::delta::DeltaTables::commit_windows`]); the next start commits a batch a crash
//! left between the mark and the commit. The mark also moves on alone when windows close without
//! a row (no file, hence no commit). So, with T the table's `txn` version, a sound run has:
//!
//! - T ≤ C (*invalid* otherwise: the table holds windows the mark never closed);
//! - every file of the snapshot in W, or merged by `streamlake compact` from files of W (its
//!   `streamlake.sources`), and no file of W in the snapshot twice (*invalid*, *duplicate*);
//! - every file of W in the snapshot, but for the one batch between the mark and its commit: the
//!   newest file, while T < C, whose windows all end after T (a warning; any other missing file
//!   is *invalid*: a batch marked and committed lost its file).
//!
//! Window completeness then counts the snapshot's files only, closed through what the table
//! holds: T while a batch is pending, else C (the windows in (T, C] closed without a row).
//!
//! The snapshot is read before the mark: the mark only grows, so a job writing meanwhile can make
//! the mark look ahead of the table, never behind it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::Deserialize;

use super::super::completeness::{aggregates_dir, CommittedWindows};
use super::super::error::ValidateError;
use super::{AuditReport, Problem, ProblemKind};
use crate::format::checkpoint::WindowsEntry;
use crate::format::{self, meta};
use crate::sink::delta::{commit::windows_app_id, snapshot, DELTA_LOG_DIR};

/// Which window files of `windows.json` a file of the aggregates table holds the rows of.
#[derive(Debug, Clone, PartialEq)]
enum Holds {
    /// Its own (a window file, listed in `windows.json` or not).
    Itself,
    /// Those a merged file replaced, as its `streamlake.sources` names them.
    Merged(Vec<String>),
    /// Unknown: a merged file whose footer cannot say.
    Unreadable(String),
}

/// What the check found, before it is put into the report.
#[derive(Debug, Default)]
struct Findings {
    problems: Vec<(ProblemKind, String, Vec<String>)>,
    warnings: Vec<String>,
    /// The newest marked file is not committed yet (the batch between the mark and the commit).
    pending: bool,
}

/// Checks the aggregates table of the Delta run `dir` (run id `run_id`) against its
/// `windows.json`, into `report`, and returns what window completeness counts; `None` when the
/// run has no aggregates folder to check.
pub(super) fn audit_table(
    run: &str,
    dir: &Path,
    run_id: &str,
    report: &mut AuditReport,
) -> Result<Option<CommittedWindows>, ValidateError> {
    let Some(table) = aggregates_dir(dir) else { return Ok(None) };
    let app = windows_app_id(run_id);
    let seen = if table.join(DELTA_LOG_DIR).is_dir() {
        snapshot::read(&table, std::slice::from_ref(&app))
            .map_err(|e| ValidateError::Delta { path: table.clone(), reason: e.to_string() })?
    } else {
        None
    };
    let (txn, active) = seen.map_or((None, Vec::new()), |s| (s.txn.get(&app).copied().flatten(), s.files));
    let shown = table.display().to_string();
    let mark_path = format::checkpoint_dir(dir).join(format::WINDOWS_FILE);
    let mark = match fs::read_to_string(&mark_path) {
        Ok(text) => WindowsEntry::from_json(&text).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WindowsEntry::default()),
        Err(e) => Err(e.to_string()),
    };
    let files = active.iter().map(|f| table.join(&f.rel)).collect();
    let mark = match mark {
        Ok(mark) => mark,
        Err(e) => {
            report.warnings.push(format!(
                "{run}: {} cannot be read ({e}), so the aggregates table {shown} is not checked against it; \
                 its windows count as closed through the table's windows txn",
                mark_path.display()
            ));
            return Ok(Some(CommittedWindows { files, closed_through_ms: txn }));
        }
    };
    if !table.join(DELTA_LOG_DIR).is_dir() && !mark.files.is_empty() {
        report.problems.push(Problem {
            kind: ProblemKind::Invalid,
            run: run.to_string(),
            partition: None,
            message: format!(
                "{} lists {} window file(s), but the aggregates folder {shown} is not a Delta table (no {DELTA_LOG_DIR}/): \
                 a Delta reader sees none of the run's windows (the job creates the table at its start, so it was \
                 removed since); restore the folder's {DELTA_LOG_DIR}/, or rewrite the run under a new RUN_ID",
                mark_path.display(),
                mark.files.len()
            ),
            files: vec![],
        });
        return Ok(Some(CommittedWindows::default()));
    }
    // Only the files the mark does not list have their footer read (merged files, strays).
    let marked: BTreeSet<&str> = mark.files.iter().map(String::as_str).collect();
    let listed: Vec<(String, Holds)> = active
        .iter()
        .map(|f| {
            let holds =
                if marked.contains(f.rel.as_str()) { Holds::Itself } else { holds(&table.join(&f.rel)) };
            (f.rel.clone(), holds)
        })
        .collect();
    let found = compare(&shown, &mark_path.display().to_string(), txn, &mark, &listed);
    for (kind, message, rels) in found.problems {
        let files = rels.iter().map(|r| table.join(r).display().to_string()).collect();
        report.problems.push(Problem { kind, run: run.to_string(), partition: None, message, files });
    }
    report.warnings.extend(found.warnings.into_iter().map(|w| format!("{run}: {w}")));
    let closed = i64::try_from(mark.closed_through_ms).unwrap_or(i64::MAX);
    // What a reader of the table sees closed: a pending batch's windows are not in it yet.
    let closed_through_ms = if found.pending { txn } else { Some(closed).filter(|c| *c > 0).or(txn) };
    Ok(Some(CommittedWindows { files, closed_through_ms }))
}

/// One entry of a merged file's `streamlake.sources` (its metadata is not needed here).
#[derive(Deserialize)]
struct Source {
    file: String,
}

/// What a file of the table that `windows.json` does not list holds, from its footer.
fn holds(path: &Path) -> Holds {
    let kv = match meta::read(path) {
        Ok(kv) => kv,
        Err(e) => return Holds::Unreadable(format!("its footer cannot be read ({e})")),
    };
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if get(meta::KIND) != Some(meta::KIND_COMPACTED) {
        return Holds::Itself;
    }
    let Some(text) = get(meta::SOURCES) else {
        return Holds::Unreadable(format!("it is a merged file without `{}`", meta::SOURCES));
    };
    match serde_json::from_str::<Vec<Source>>(text) {
        Ok(sources) => Holds::Merged(sources.into_iter().map(|s| s.file).collect()),
        Err(e) => Holds::Unreadable(format!("its `{}` cannot be read ({e})", meta::SOURCES)),
    }
}

/// The check itself, on the table's `txn` version `txn`, the mark, and the table's files with
/// what each holds (see the module doc); `table` and `mark_path` name them in messages.
fn compare(
    table: &str,
    mark_path: &str,
    txn: Option<i64>,
    mark: &WindowsEntry,
    listed: &[(String, Holds)],
) -> Findings {
    let mut out = Findings::default();
    let closed = i64::try_from(mark.closed_through_ms).unwrap_or(i64::MAX);
    let txn_text = txn.map_or_else(|| "(none)".to_string(), |v| v.to_string());
    if let Some(t) = txn.filter(|t| *t > closed) {
        out.problems.push((
            ProblemKind::Invalid,
            format!(
                "the aggregates table {table} has its windows txn at {t}, beyond closed_through_ms {closed} of \
                 {mark_path}: the table holds windows the mark never closed (the two were changed apart, e.g. one \
                 restored from a backup); the next `streamlake run` refuses the run (DeltaDiverged)"
            ),
            vec![],
        ));
    }
    // Each marked file, with the files of the table that hold its rows.
    let mut holders: BTreeMap<&str, Vec<&str>> =
        mark.files.iter().map(|f| (f.as_str(), Vec::new())).collect();
    for (rel, holds) in listed {
        match holds {
            Holds::Itself => match holders.get_mut(rel.as_str()) {
                Some(by) => by.push(rel),
                None => out.problems.push((
                    ProblemKind::Invalid,
                    format!(
                        "{rel} is in the aggregates table {table} but {mark_path} does not list it: the table holds \
                         a window file the mark never made (a restart may emit its windows again), or one copied in \
                         from elsewhere; every reader counts its rows"
                    ),
                    vec![rel.clone()],
                )),
            },
            Holds::Merged(sources) => {
                let mut unknown = Vec::new();
                for source in sources {
                    match holders.get_mut(source.as_str()) {
                        Some(by) => by.push(rel),
                        None => unknown.push(source.as_str()),
                    }
                }
                if !unknown.is_empty() {
                    out.problems.push((
                        ProblemKind::Invalid,
                        format!(
                            "{rel} in the aggregates table {table} was merged from {}, which {mark_path} does not \
                             list: the table holds window rows the mark never made",
                            unknown.join(", ")
                        ),
                        vec![rel.clone()],
                    ));
                }
            }
            Holds::Unreadable(reason) => out.problems.push((
                ProblemKind::Invalid,
                format!(
                    "{rel} is in the aggregates table {table}, {reason}: the audit cannot tell which window files \
                     it holds"
                ),
                vec![rel.clone()],
            )),
        }
    }
    for (file, by) in holders.iter().filter(|(_, by)| by.len() > 1) {
        out.problems.push((
            ProblemKind::Duplicate,
            format!(
                "window file {file} of {mark_path} is in the aggregates table {table} {} times (as {}): every \
                 reader counts its windows twice",
                by.len(),
                by.join(", ")
            ),
            by.iter().map(|r| r.to_string()).collect(),
        ));
    }
    let missing: Vec<&str> =
        mark.files.iter().map(String::as_str).filter(|f| holders[f].is_empty()).collect();
    let newest = mark.files.last().map(String::as_str);
    match missing.as_slice() {
        [] => {}
        [file]
            if Some(*file) == newest
                && txn.is_none_or(|t| t < closed)
                && format::window_file_first_end(file).is_none_or(|e| txn.is_none_or(|t| e > t)) =>
        {
            out.pending = true;
            out.warnings.push(format!(
                "window file {file} is marked in {mark_path} (closed through {closed}) but not yet in the \
                 aggregates table {table} (windows txn {txn_text}): a commit in flight, or a crash that the next \
                 `streamlake run` completes; its windows count as open"
            ));
        }
        files => {
            // The start adds what the mark lists and the table lacks, with the txn moved to C; a
            // txn already at C is taken as that commit done.
            let repair = if txn.is_none_or(|t| t < closed) {
                "the next `streamlake run` adds them back"
            } else {
                "a restart does not add them back (the txn is already at closed_through_ms): restore the table's \
                 log, or rewrite the run under a new RUN_ID"
            };
            out.problems.push((
                ProblemKind::Invalid,
                format!(
                    "{} marked in {mark_path} (closed through {closed}) {} not in the aggregates table {table} \
                     (windows txn {txn_text}), beyond the one newest batch a crash can leave between the mark and \
                     its commit: a batch marked and committed lost its file, or the table was changed apart from \
                     the mark (e.g. restored from an older version); Delta readers miss those windows, and {repair}",
                    files.join(", "),
                    if files.len() == 1 { "is" } else { "are" }
                ),
                files.iter().map(|f| f.to_string()).collect(),
            ))
        }
    }
    out
}

// The tests live beside this file (windows/tests.rs).
#[cfg(test)]
mod tests;
