//! The audit's inputs from one run folder: its data and quarantine files with their footers'
//! metadata, and its checkpoint entries; and the per-file checks (footer against metadata, name
//! against metadata, kind against folder) before [`super::partition`] checks each partition.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::super::completeness::{self, RunInput};
use super::super::discover::{is_hidden, list_data_files};
use super::super::error::ValidateError;
use super::super::scan::{parallel_map, Columns};
use super::footer::read_meta;
pub(super) use super::footer::FileMeta;
use super::partition::audit_partition;
use super::{AuditReport, Problem, ProblemKind};
use crate::format::checkpoint::PartitionEntry;
use crate::format::partition::decode_folder_value;
use crate::format::{self, meta, parse_part_file_name, QUARANTINE_DIR};
use crate::spec::{ColumnType, Partitioning, Transform};

#[derive(Debug, Clone)]
pub(super) struct AuditFile {
    /// Relative to the dataset root.
    pub(super) rel: String,
    /// Folder inside the run (`id=3`, `_quarantine`).
    pub(super) folder: String,
    pub(super) path: PathBuf,
    pub(super) quarantine: bool,
}

/// The names of one partition folder's entries, without reading them.
fn entry_names(dir: &Path) -> BTreeSet<String> {
    let Ok(read) = fs::read_dir(dir) else { return BTreeSet::new() };
    read.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !is_hidden(name) && name.ends_with(".json"))
        .collect()
}

/// The entries of one partition folder, with the names they were read from, in name order.
fn read_entries(dir: &Path) -> Vec<(String, Result<PartitionEntry, ValidateError>)> {
    entry_names(dir)
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let entry = fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| PartitionEntry::from_json(&text).map_err(|e| e.to_string()))
                .map_err(|reason| ValidateError::Checkpoint { path, reason });
            (name, entry)
        })
        .collect()
}

/// The run folders below `root`: `run_*` children, or `root` itself when it holds a `_checkpoint`.
pub(super) fn run_folders(root: &Path) -> Result<Vec<(String, PathBuf)>, ValidateError> {
    if format::checkpoint_dir(root).is_dir() {
        return Ok(vec![(".".to_string(), root.to_path_buf())]);
    }
    let read =
        fs::read_dir(root).map_err(|source| ValidateError::ListDir { path: root.to_path_buf(), source })?;
    let mut runs: Vec<(String, PathBuf)> = read
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name.starts_with(format::RUN_PREFIX))
        .collect();
    runs.sort();
    Ok(runs)
}

/// The last path component of a relative path.
pub(super) fn base_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// `part-p<P>-o<A>-<B>-w*.parquet`: the names of the files of commit `[a, b)` of partition `p`.
pub(super) fn part_file_name_pattern(p: i32, a: i64, b: i64) -> String {
    format!("part-p{p:03}-o{a:012}-{b:012}-w*.parquet")
}

/// The worker index `WWW` of a `part-…-w<WWW>[-s<SEQ>].parquet` name.
pub(super) fn name_worker(name: &str) -> Option<u64> {
    let worker = name.strip_suffix(".parquet")?.rsplit_once("-w")?.1;
    let worker = match worker.split_once("-s") {
        Some((w, seq)) if seq.parse::<u32>().is_ok() => w,
        _ => worker,
    };
    worker.parse().ok()
}

/// The `-s<SEQ>` of a part file name (0 for the first file of a folder in a range, and for names
/// that are not part file names).
pub(super) fn name_seq(name: &str) -> u32 {
    format::parse_part_file_name_seq(name).map_or(0, |(.., seq)| seq)
}

/// The name the first file of a folder in a range has (`-s<SEQ>` removed).
pub(super) fn first_name(name: &str) -> String {
    match (name_seq(name), name.strip_suffix(".parquet").and_then(|n| n.rsplit_once("-s"))) {
        (seq, Some((stem, _))) if seq > 0 => format!("{stem}.parquet"),
        _ => name.to_string(),
    }
}

/// `folder/name` inside a run folder; the bare name for the run folder itself (`""`, the folder of
/// a dataset partitioned by `none`).
pub(super) fn in_folder(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_string()
    } else {
        format!("{folder}/{name}")
    }
}

pub(super) fn join_rel(run: &str, rel: &str) -> String {
    if run == "." {
        rel.to_string()
    } else {
        format!("{run}/{rel}")
    }
}

pub(super) fn audit_run(
    run: &str,
    dir: &Path,
    columns: &Columns,
    report: &mut AuditReport,
) -> Result<(), ValidateError> {
    // A Delta table's files and its txn versions come from one snapshot (a job may be
    // committing); the txn of every partition with a checkpoint folder is read.
    let (checkpoint_dirs, folder_problems) = checkpoint_dirs(run, dir);
    let checkpointed: BTreeSet<i32> = checkpoint_dirs.keys().copied().collect();
    // The entries there before the snapshot is read; a running job adds more while the audit reads.
    let listed_before: BTreeMap<i32, BTreeSet<String>> =
        checkpoint_dirs.iter().map(|(&p, d)| (p, entry_names(d))).collect();
    let delta = super::delta::read_run(dir, &checkpointed)?;
    let (listed, txns, delta_run_id) = match delta {
        Some(run) => (run.files, Some(run.txns), Some(run.run_id)),
        None => (list_data_files(dir)?.files, None, None),
    };
    let mut files: Vec<AuditFile> = listed
        .into_iter()
        .map(|f| AuditFile {
            folder: f.rel.rsplit_once('/').map_or_else(String::new, |(d, _)| d.to_string()),
            rel: join_rel(run, &f.rel),
            path: f.path,
            quarantine: false,
        })
        .collect();
    let qdir = dir.join(QUARANTINE_DIR);
    if let Ok(read) = fs::read_dir(&qdir) {
        let mut names: Vec<String> = read
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !is_hidden(n) && n.ends_with(".parquet"))
            .collect();
        names.sort();
        for name in names {
            files.push(AuditFile {
                rel: join_rel(run, &format!("{QUARANTINE_DIR}/{name}")),
                folder: QUARANTINE_DIR.to_string(),
                path: qdir.join(&name),
                quarantine: true,
            });
        }
    }
    let metas = parallel_map(&files, read_meta);
    // A merged file stands for the files it replaced: each is audited as if it were still there,
    // with the merged file's path (its rows are read once for the completeness check).
    let mut expanded: Vec<(AuditFile, Result<FileMeta, String>)> = Vec::with_capacity(files.len());
    for (file, read) in files.into_iter().zip(metas) {
        match read {
            Err(reason) => expanded.push((file, Err(reason))),
            Ok(sources) => {
                for (source, meta) in sources {
                    let mut f = file.clone();
                    if let Some(source) = source {
                        f.rel = join_rel(run, &source);
                    }
                    expanded.push((f, Ok(meta)));
                }
            }
        }
    }
    let (files, metas): (Vec<AuditFile>, Vec<Result<FileMeta, String>>) = expanded.into_iter().unzip();

    // The key folders of the run (`id=3`), also those left empty: where a commit's files can be.
    let mut key_folders: BTreeSet<String> =
        files.iter().filter(|f| !f.quarantine).map(|f| f.folder.clone()).collect();
    if let Ok(read) = fs::read_dir(dir) {
        key_folders.extend(
            read.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !is_hidden(n) && n.contains('=')),
        );
    }
    let has_quarantine = files.iter().any(|f| f.quarantine);
    let folders = Folders { keys: key_folders, quarantine: has_quarantine };

    let mut problems = Vec::new();
    let layout = recorded_partitioning(dir);
    if let Some(Err(reason)) = &layout {
        problems.push(Problem {
            kind: ProblemKind::Invalid,
            run: run.to_string(),
            partition: None,
            message: format!(
                "{}: the recorded sink.partition_by cannot be read back ({reason}), so folders are not checked",
                join_rel(run, &format!("{}/{}", format::CHECKPOINT_DIR, format::IDENTITY_FILE))
            ),
            files: vec![],
        });
    }
    let mut unreadable_raw = 0u64;
    let mut by_partition: BTreeMap<i32, Vec<(&AuditFile, FileMeta)>> = BTreeMap::new();
    let run_id = run.strip_prefix(format::RUN_PREFIX);
    for (file, meta) in files.iter().zip(metas) {
        let problem = |message: String| Problem {
            kind: ProblemKind::Invalid,
            run: run.to_string(),
            partition: None,
            message,
            files: vec![file.rel.clone()],
        };
        let meta = match meta {
            Ok(m) => m,
            Err(reason) => {
                problems.push(problem(reason));
                unreadable_raw += u64::from(!file.quarantine);
                continue;
            }
        };
        let name = file.rel.rsplit('/').next().unwrap_or(&file.rel);
        let mut bad = Vec::new();
        if meta.rows != meta.footer_rows {
            bad.push(format!(
                "its metadata says {}={} but the Parquet footer holds {} rows: the file was rewritten or \
                 truncated",
                meta::ROWS,
                meta.rows,
                meta.footer_rows
            ));
        }
        let expected_kind = if file.quarantine { meta::KIND_QUARANTINE } else { meta::KIND_RAW };
        if meta.kind != expected_kind {
            bad.push(format!(
                "it is tagged {}=`{}` but lies in a {expected_kind} folder",
                meta::KIND,
                meta.kind
            ));
        }
        if let Some((p, s, e)) = parse_part_file_name(name) {
            if (p, s, e) != (meta.partition, meta.start, meta.end) {
                bad.push(format!(
                    "its name says partition {p} offsets [{s}, {e}) but its metadata says partition {} offsets [{}, {})",
                    meta.partition, meta.start, meta.end
                ));
            }
        }
        if let (Some(folder_id), Some(file_id)) = (run_id, meta.run_id.as_deref()) {
            if folder_id != file_id {
                bad.push(format!("it was written by run `{file_id}`, not by this run `{folder_id}`"));
            }
        }
        if meta.start >= meta.end {
            bad.push(format!("its offset range [{}, {}) is empty", meta.start, meta.end));
        }
        if let (Some(Ok(layout)), false) = (&layout, file.quarantine) {
            if let Some(why) = misplaced(&file.folder, layout.as_ref()) {
                bad.push(why);
            }
        }
        for b in bad {
            let mut p = problem(format!("{}: {b}", file.rel));
            p.partition = Some(meta.partition);
            problems.push(p);
        }
        by_partition.entry(meta.partition).or_default().push((file, meta));
    }

    // Partitions with a checkpoint but no file still count (all their files may be gone).
    problems.extend(folder_problems);
    let mut committed_raw: Vec<(PathBuf, String)> = Vec::new();
    let mut checkpoint_late = 0u64;
    let all: BTreeSet<i32> = by_partition.keys().chain(checkpoint_dirs.keys()).copied().collect();
    for p in all {
        let mut files = by_partition.remove(&p).unwrap_or_default();
        let entries = checkpoint_dirs.get(&p).map(|d| read_entries(d)).unwrap_or_default();
        let rel_entry = |name: &str| {
            let dir = format!(
                "{}/{}/{}",
                format::CHECKPOINT_DIR,
                format::PARTITIONS_DIR,
                format::partition_dir_name(p)
            );
            join_rel(run, &format!("{dir}/{name}"))
        };
        let mut good: Vec<(String, PartitionEntry)> = Vec::new();
        for (name, entry) in entries {
            match entry {
                Ok(e) if e.partition == p && format::expected_entry_name(&e) == name => {
                    good.push((rel_entry(&name), e));
                }
                Ok(e) => problems.push(Problem {
                    kind: ProblemKind::Invalid,
                    run: run.to_string(),
                    partition: Some(p),
                    message: format!(
                        "checkpoint entry {} describes partition {} up to offset {}{}, which its name or folder \
                         contradicts",
                        rel_entry(&name),
                        e.partition,
                        e.next_offset,
                        e.seq.map_or_else(String::new, |s| format!(" as commit {s}"))
                    ),
                    files: vec![rel_entry(&name)],
                }),
                Err(err) => problems.push(Problem {
                    kind: ProblemKind::Invalid,
                    run: run.to_string(),
                    partition: Some(p),
                    message: err.to_string(),
                    files: vec![rel_entry(&name)],
                }),
            }
        }
        // A Delta table commits a range when its `txn` moves, after the checkpoint entry: the
        // table's versions are the committed positions.
        if let Some(txns) = &txns {
            let txn = txns.get(&p).copied().flatten();
            let before = listed_before.get(&p);
            let was_listed = |rel: &str| {
                let name = rel.rsplit('/').next().unwrap_or(rel);
                before.is_some_and(|b| b.contains(name))
            };
            let (committed, pending) = super::delta::committed_entries(
                run,
                p,
                txn,
                good,
                was_listed,
                &mut problems,
                &mut report.warnings,
            );
            good = committed;
            // The quarantine files of ranges the table has not committed yet are not counted.
            files
                .retain(|(f, m)| !(f.quarantine && pending.iter().any(|&(a, b)| m.start >= a && m.end <= b)));
        }
        let (stats, found) = audit_partition(run, p, &files, &good, &folders);
        committed_raw.extend(
            files
                .iter()
                .filter(|(f, m)| !f.quarantine && stats.next_offset.is_some_and(|n| m.end <= n))
                .map(|(f, _)| (f.path.clone(), f.folder.clone())),
        );
        checkpoint_late += stats.late;
        report.partitions.push(stats);
        problems.extend(found);
    }
    // A merged file was listed once per source.
    committed_raw.sort();
    committed_raw.dedup();
    // A Delta run's windows are those its aggregates table committed, checked against windows.json.
    let committed_windows = match &delta_run_id {
        Some(run_id) => super::windows::audit_table(run, dir, run_id, report)?,
        None => None,
    };
    let windows = completeness::run_completeness(&RunInput {
        run,
        dir,
        time_column: &columns.time,
        key_column: &columns.key,
        raw_files: committed_raw,
        unreadable_raw,
        audit_clean: problems.is_empty(),
        checkpoint_late,
        committed_windows,
    });
    report.windows.extend(windows.windows);
    report.warnings.extend(windows.warnings);
    report.problems.extend(problems);
    report.problems.extend(windows.problems);
    Ok(())
}

/// The run's `p=<partition>` checkpoint folders, and a problem for each other visible folder there.
fn checkpoint_dirs(run: &str, dir: &Path) -> (BTreeMap<i32, PathBuf>, Vec<Problem>) {
    let (mut dirs, mut problems) = (BTreeMap::new(), Vec::new());
    let Ok(read) = fs::read_dir(format::partitions_dir(dir)) else { return (dirs, problems) };
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        match name.strip_prefix("p=").map(str::parse::<i32>) {
            Some(Ok(p)) => {
                dirs.insert(p, e.path());
            }
            _ if is_hidden(&name) => {}
            _ => problems.push(Problem {
                kind: ProblemKind::Invalid,
                run: run.to_string(),
                partition: None,
                message: format!("{}: not a `p=<partition>` checkpoint folder", e.path().display()),
                files: vec![],
            }),
        }
    }
    (dirs, problems)
}

/// The run's partitioning as its `identity.json` records it, with the schema's types: `None` for a
/// run folder without one (format 1, or a folder `validate` was pointed at by hand).
fn recorded_partitioning(dir: &Path) -> Option<Result<Option<(Partitioning, ColumnType)>, String>> {
    let identity = crate::sink::identity::load(dir).ok()??;
    let flow = &identity.dataflow;
    Some(flow.partitioning().map(|p| {
        p.map(|p| {
            let ty = flow.schema.get(p.col).map(|f| f.ty.as_str()).unwrap_or_default();
            let ty = serde_json::from_value(serde_json::Value::String(ty.to_string()))
                .unwrap_or(ColumnType::String);
            (p, ty)
        })
    }))
}

/// Why a raw file's folder (relative to the run folder) is not one the run's partitioning writes,
/// if it is not.
pub(super) fn misplaced(folder: &str, layout: Option<&(Partitioning, ColumnType)>) -> Option<String> {
    let Some((p, source)) = layout else {
        return (!folder.is_empty()).then(|| {
            format!("it lies in `{folder}/`, but the run is partitioned by `none` (identity.json): its files sit in the run folder")
        });
    };
    let column = p.folder_column();
    let fits = folder
        .split_once('=')
        .filter(|(name, value)| *name == column && !value.contains('/'))
        .and_then(|(_, value)| p.parse_folder_value(&decode_folder_value(value), *source));
    if fits.is_some() {
        return None;
    }
    let expected = match p.transform {
        Transform::Identity => format!("`{column}=<value>/`"),
        Transform::Bucket(n) => format!("`{column}=<0..{}>/`", n - 1),
        Transform::Day => format!("`{column}=<YYYY-MM-DD>/`"),
        Transform::Hour => format!("`{column}=<YYYY-MM-DD-HH>/`"),
    };
    let place = if folder.is_empty() { "the run folder itself".to_string() } else { format!("`{folder}/`") };
    Some(format!(
        "it lies in {place}, which is not a folder of sink.partition_by `{p}` (identity.json): its files lie in {expected}"
    ))
}

/// Where the files of one commit can lie in a run folder.
pub(super) struct Folders {
    /// Key folders (`id=3`), relative to the run folder.
    pub(super) keys: BTreeSet<String>,
    /// Whether the run has quarantine files at all.
    pub(super) quarantine: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_worker("part-p001-o000000000000-000000006667-w012.parquet"), Some(12));
        assert_eq!(name_worker("part-p001-o000000000000-000000006667-w000 (copy).parquet"), None);
        assert_eq!(name_worker("part-1.parquet"), None);
        assert_eq!(base_name("run_x/id=1/a.parquet"), "a.parquet");
        assert_eq!(base_name("a.parquet"), "a.parquet");
        assert_eq!(part_file_name_pattern(2, 5, 17), "part-p002-o000000000005-000000000017-w*.parquet");
        let second = "part-p001-o000000000000-000000006667-w012-s002.parquet";
        assert_eq!(name_worker(second), Some(12));
        assert_eq!(name_seq(second), 2);
        assert_eq!(name_seq("part-p001-o000000000000-000000006667-w012.parquet"), 0);
        assert_eq!(first_name(second), "part-p001-o000000000000-000000006667-w012.parquet");
        assert_eq!(first_name("copy-s1.parquet"), "copy-s1.parquet");
        assert_eq!(in_folder("", "a.parquet"), "a.parquet");
        assert_eq!(in_folder("id=1", "a.parquet"), "id=1/a.parquet");
    }

    #[test]
    fn folders_must_be_those_of_the_recorded_partitioning() {
        let schema = vec![
            crate::spec::Field { name: "id".into(), ty: ColumnType::Int32, required: true },
            crate::spec::Field { name: "ts".into(), ty: ColumnType::Timestamp, required: true },
        ];
        let layout = |text: &str, ty| Partitioning::parse(text, &schema).unwrap().map(|p| (p, ty));
        let bucket = layout("bucket(id, 16)", ColumnType::Int32);
        assert_eq!(misplaced("id_bucket=15", bucket.as_ref()), None);
        let why = misplaced("id_bucket=16", bucket.as_ref()).unwrap();
        assert!(why.contains("`id_bucket=16/`") && why.contains("`id_bucket=<0..15>/`"), "{why}");
        assert!(misplaced("id=3", bucket.as_ref()).is_some());
        assert!(misplaced("", bucket.as_ref()).unwrap().contains("the run folder itself"));
        let day = layout("day(ts)", ColumnType::Timestamp);
        assert_eq!(misplaced("ts_day=2026-12-02", day.as_ref()), None);
        assert!(misplaced("ts_day=2026-12-02/x=1", day.as_ref()).is_some());
        let hour = layout("hour(ts)", ColumnType::Timestamp);
        assert_eq!(misplaced("ts_hour=2026-12-02-23", hour.as_ref()), None);
        assert!(misplaced("ts_hour=2026-12-02", hour.as_ref()).unwrap().contains("<YYYY-MM-DD-HH>"));
        let id = layout("id", ColumnType::Int32);
        assert_eq!(misplaced("id=-3", id.as_ref()), None);
        assert!(misplaced("id=x", id.as_ref()).is_some(), "an int column's folder holds an int");
        assert_eq!(misplaced("", None), None);
        assert!(misplaced("id=3", None).unwrap().contains("partitioned by `none`"));
    }
}
