//! `--audit`: checks exactly-once delivery from the files alone, with no broker.
//!
//! `streamlake run` writes, per commit of Kafka partition P, one raw file per key folder and at most
//! one quarantine file, all named and tagged (Parquet key-value metadata) with the commit's offset
//! range `[START, END)` and its record count; then the checkpoint entry whose `next_offset` is END
//! (see docs/format.md). So, per run folder and partition, with `next_offset` from the newest entry:
//!
//! - every file must end at or before `next_offset` (otherwise: *outside*, an uncommitted leftover);
//! - the ranges must tile `[first offset, next_offset)`: no *gap* (records lost), no *overlap*;
//! - within one range, at most one file per folder, and raw rows + quarantined rows must equal the
//!   range's record count (more: *duplicate*; fewer: a file is missing, a *gap*);
//! - each file's `streamlake.rows` must equal its Parquet footer's row count, its name and folder
//!   must agree with its metadata (otherwise: *invalid*).
//!
//! Only footers are read (in parallel) for that. Window completeness ([`super::completeness`]) then
//! reads the timestamp column of the committed raw files and the run's aggregates: per (window, key)
//! the records aggregated on time, dropped late, or waiting in an open window.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use parquet::file::metadata::ParquetMetaDataReader;
use serde::{Deserialize, Serialize};

use super::completeness::{self, RunInput, WindowCompleteness, WindowStatus};
use super::discover::{is_hidden, list_data_files};
use super::error::ValidateError;
use super::report::table;
use super::scan::parallel_map;
use crate::sink::raw::parse_part_file_name;

const QUARANTINE_DIR: &str = "_quarantine";

/// The kinds of problem, as counted in the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Rows present twice: two files for one range in one folder, or more rows than records.
    Duplicate,
    /// Committed offsets no file covers, or a range whose files hold fewer rows than records.
    Gap,
    /// A file beyond the committed position (or of a partition with no checkpoint).
    Outside,
    /// Two ranges covering the same offsets.
    Overlap,
    /// A file or checkpoint entry that contradicts itself or cannot be read.
    Invalid,
    /// A closed window that aggregated more records than the raw files hold in it.
    Overcount,
}

/// One finding, naming the files and offsets involved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub run: String,
    pub partition: Option<i32>,
    pub message: String,
    /// Files involved, relative to the dataset root.
    pub files: Vec<String>,
}

/// What was committed for one Kafka partition of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PartitionAudit {
    pub run: String,
    pub partition: i32,
    /// First offset of the run's first commit (from the checkpoint, else the first file).
    pub first_offset: Option<i64>,
    /// Committed position: the next offset to read (newest checkpoint entry).
    pub next_offset: Option<i64>,
    /// The newest checkpoint entry, relative to the dataset root.
    pub checkpoint: Option<String>,
    pub files: u64,
    pub ranges: u64,
    /// Kafka records in the committed ranges (`streamlake.range_messages`).
    pub messages: u64,
    /// Offset ranges that were gone from the broker and skipped on purpose (`--on-data-loss=skip`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<(i64, i64)>,
    /// Raw rows in committed files.
    pub written: u64,
    /// Quarantined rows in committed files.
    pub quarantined: u64,
    /// Late records (checkpoint `total_late`, or the sum of `late` over the entries).
    pub late: u64,
}

/// Problem counts of the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProblemCounts {
    pub duplicates: u64,
    pub gaps: u64,
    pub outside: u64,
    pub overlaps: u64,
    pub invalid: u64,
    pub overcounts: u64,
}

/// The audit's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditReport {
    pub runs: Vec<String>,
    pub partitions: Vec<PartitionAudit>,
    pub messages: u64,
    pub written: u64,
    pub quarantined: u64,
    pub late: u64,
    /// Per (run, window, key), oldest first: records on time, late-dropped, open.
    pub windows: Vec<WindowCompleteness>,
    /// Records skipped on purpose with `--on-data-loss=skip` (never read).
    pub skipped: u64,
    /// Records aggregated in final window rows (sum of `on_time`).
    pub on_time: u64,
    /// Records of closed windows not aggregated (sum of `late_dropped`).
    pub late_dropped: i64,
    /// Raw rows in windows still open.
    pub open: u64,
    /// Findings that are not failures (e.g. late-dropped differing from the checkpoint's late count).
    pub warnings: Vec<String>,
    pub counts: ProblemCounts,
    pub problems: Vec<Problem>,
    pub ok: bool,
    /// `audit: partitions=… -> OK|FAILED`.
    pub summary: String,
}

impl AuditReport {
    /// The per-partition table, the problems and the summary line.
    pub fn render_text(&self) -> String {
        let mut out = String::from("=== Exactly-once audit ===\n");
        let columns: Vec<String> =
            ["run", "partition", "committed", "files", "messages", "written", "quarantined", "late"]
                .map(String::from)
                .to_vec();
        let rows: Vec<Vec<String>> = self
            .partitions
            .iter()
            .map(|p| {
                let committed = match (p.first_offset, p.next_offset) {
                    (Some(a), Some(b)) => format!("[{a}, {b})"),
                    (None, Some(b)) => format!("[?, {b})"),
                    _ => "none".to_string(),
                };
                vec![
                    p.run.clone(),
                    p.partition.to_string(),
                    committed,
                    p.files.to_string(),
                    p.messages.to_string(),
                    p.written.to_string(),
                    p.quarantined.to_string(),
                    p.late.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&columns, &rows));
        self.render_windows(&mut out);
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        if !self.problems.is_empty() {
            let _ = writeln!(out, "problems:");
            for p in &self.problems {
                let _ = writeln!(out, "  {:?}: {}", p.kind, p.message);
            }
        }
        let _ = writeln!(out, "{}", self.summary);
        out
    }

    /// The newest [`WINDOWS_SHOWN`] windows as a table, how many are left out, and the totals.
    fn render_windows(&self, out: &mut String) {
        let mut newest: Vec<&WindowCompleteness> = self.windows.iter().collect();
        newest.sort_by(|a, b| (a.window_end_ms, &a.run, &a.key).cmp(&(b.window_end_ms, &b.run, &b.key)));
        let omitted = newest.len().saturating_sub(WINDOWS_SHOWN);
        let shown = &newest[omitted..];
        let _ = writeln!(out, "=== Window completeness ===");
        if shown.is_empty() {
            let _ = writeln!(out, "no windows: no raw row has a timestamp and no window was aggregated");
        } else {
            let columns: Vec<String> =
                ["window_start", "window_end", "id", "raw", "on_time", "late_dropped", "status"]
                    .map(String::from)
                    .to_vec();
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|w| {
                    vec![
                        w.window_start.clone(),
                        w.window_end.clone(),
                        w.key.to_string(),
                        w.raw.to_string(),
                        w.on_time.to_string(),
                        w.late_dropped.map_or_else(|| "-".to_string(), |l| l.to_string()),
                        match w.status {
                            WindowStatus::Closed => "closed".to_string(),
                            WindowStatus::Open => "open".to_string(),
                        },
                    ]
                })
                .collect();
            out.push_str(&table(&columns, &rows));
            if omitted > 0 {
                let _ = writeln!(out, "({omitted} older window(s) not shown; --json lists all)");
            }
        }
        let closed = self.windows.iter().filter(|w| w.status == WindowStatus::Closed).count();
        let _ = writeln!(
            out,
            "completeness: windows={} closed={closed} open={} on_time={} late_dropped={} open_rows={} quarantined={}",
            self.windows.len(),
            self.windows.len() - closed,
            self.on_time,
            self.late_dropped,
            self.open,
            self.quarantined
        );
    }
}

/// Windows the text report lists (the newest); `--json` has all.
pub const WINDOWS_SHOWN: usize = 20;

/// The streamlake key-value metadata of one file (see docs/format.md).
#[derive(Debug, Clone)]
struct FileMeta {
    partition: i32,
    start: i64,
    end: i64,
    rows: u64,
    range_messages: u64,
    kind: String,
    run_id: Option<String>,
    /// `streamlake.worker`: the worker that wrote the file (the `w<WWW>` of its name).
    worker: Option<u64>,
    footer_rows: u64,
}

#[derive(Debug)]
struct AuditFile {
    /// Relative to the dataset root.
    rel: String,
    /// Folder inside the run (`id=3`, `_quarantine`).
    folder: String,
    path: PathBuf,
    quarantine: bool,
}

fn read_meta(file: &AuditFile) -> Result<FileMeta, String> {
    let f = File::open(&file.path).map_err(|e| format!("cannot open {}: {e}", file.rel))?;
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&f)
        .map_err(|e| format!("cannot read the Parquet footer of {}: {e}", file.rel))?;
    let fm = meta.file_metadata();
    let kv: BTreeMap<&str, &str> = fm
        .key_value_metadata()
        .map(|kvs| kvs.iter().filter_map(|kv| Some((kv.key.as_str(), kv.value.as_deref()?))).collect())
        .unwrap_or_default();
    fn get<T: std::str::FromStr>(kv: &BTreeMap<&str, &str>, key: &str, rel: &str) -> Result<T, String> {
        let raw = kv.get(key).ok_or_else(|| {
            format!("{rel} has no `{key}` metadata: it was not written by `streamlake run`, so the audit cannot place it")
        })?;
        raw.parse().map_err(|_| format!("{rel} has `{key}` = `{raw}`, which is not a number"))
    }
    Ok(FileMeta {
        partition: get(&kv, "streamlake.partition", &file.rel)?,
        start: get(&kv, "streamlake.start_offset", &file.rel)?,
        end: get(&kv, "streamlake.end_offset", &file.rel)?,
        rows: get(&kv, "streamlake.rows", &file.rel)?,
        range_messages: get(&kv, "streamlake.range_messages", &file.rel)?,
        kind: kv.get("streamlake.kind").map_or_else(String::new, |k| k.to_string()),
        run_id: kv.get("streamlake.run_id").map(|r| r.to_string()),
        worker: kv.get("streamlake.worker").and_then(|w| w.parse().ok()),
        footer_rows: u64::try_from(fm.num_rows()).unwrap_or(0),
    })
}

/// A checkpoint entry, read leniently: the fields the audit needs, totals when the writer has them.
#[derive(Debug, Clone, Deserialize)]
struct Entry {
    partition: i32,
    start_offset: i64,
    next_offset: i64,
    #[serde(default)]
    messages: u64,
    #[serde(default)]
    late: u64,
    #[serde(default)]
    files: Vec<String>,
    first_offset: Option<i64>,
    total_messages: Option<u64>,
    total_rows: Option<u64>,
    total_quarantined: Option<u64>,
    total_late: Option<u64>,
    /// Ranges skipped on purpose with `--on-data-loss=skip` (cumulative).
    #[serde(default)]
    skipped_ranges: Vec<(i64, i64)>,
}

/// The entries of one partition folder, with the names they were read from.
fn read_entries(dir: &Path) -> Vec<(String, Result<Entry, ValidateError>)> {
    let Ok(read) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(String, Result<Entry, ValidateError>)> = read
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!is_hidden(&name) && name.ends_with(".json")).then_some((name, e.path()))
        })
        .map(|(name, path)| {
            let entry = fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str::<Entry>(&text).map_err(|e| e.to_string()))
                .map_err(|reason| ValidateError::Checkpoint { path, reason });
            (name, entry)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The run folders below `root`: `run_*` children, or `root` itself when it holds a `_checkpoint`.
fn run_folders(root: &Path) -> Result<Vec<(String, PathBuf)>, ValidateError> {
    if root.join("_checkpoint").is_dir() {
        return Ok(vec![(".".to_string(), root.to_path_buf())]);
    }
    let read =
        fs::read_dir(root).map_err(|source| ValidateError::ListDir { path: root.to_path_buf(), source })?;
    let mut runs: Vec<(String, PathBuf)> = read
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name.starts_with("run_"))
        .collect();
    runs.sort();
    Ok(runs)
}

/// The last path component of a relative path.
fn base_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// `part-p<P>-o<A>-<B>-w*.parquet`: the names of the files of commit `[a, b)` of partition `p`.
fn part_file_name_pattern(p: i32, a: i64, b: i64) -> String {
    format!("part-p{p:03}-o{a:012}-{b:012}-w*.parquet")
}

/// The worker index `WWW` of a `part-…-w<WWW>.parquet` name.
fn name_worker(name: &str) -> Option<u64> {
    name.strip_suffix(".parquet")?.rsplit_once("-w")?.1.parse().ok()
}

fn join_rel(run: &str, rel: &str) -> String {
    if run == "." {
        rel.to_string()
    } else {
        format!("{run}/{rel}")
    }
}

/// Audits every run folder below `root`.
pub fn audit(root: &Path) -> Result<AuditReport, ValidateError> {
    let mut report = AuditReport::default();
    for (run, dir) in run_folders(root)? {
        audit_run(&run, &dir, &mut report)?;
        report.runs.push(run);
    }
    for p in &report.partitions {
        for (a, b) in &p.skipped {
            report.skipped += (b - a).max(0) as u64;
            report.warnings.push(format!(
                "data loss accepted: offsets [{a}, {b}) of partition {} in run {} were gone from the broker and \
                 skipped on purpose (--on-data-loss=skip): {} records never read",
                p.partition,
                p.run,
                b - a
            ));
        }
        report.messages += p.messages;
        report.written += p.written;
        report.quarantined += p.quarantined;
        report.late += p.late;
    }
    for w in &report.windows {
        report.on_time += w.on_time;
        report.late_dropped += w.late_dropped.unwrap_or(0);
        report.open += w.open;
    }
    for p in &report.problems {
        let c = &mut report.counts;
        match p.kind {
            ProblemKind::Duplicate => c.duplicates += 1,
            ProblemKind::Gap => c.gaps += 1,
            ProblemKind::Outside => c.outside += 1,
            ProblemKind::Overlap => c.overlaps += 1,
            ProblemKind::Invalid => c.invalid += 1,
            ProblemKind::Overcount => c.overcounts += 1,
        }
    }
    report.ok = report.problems.is_empty();
    let c = report.counts;
    // `overcounts` only when there are some, so the line stays as scripts already parse it.
    let mut overcounts =
        if c.overcounts > 0 { format!(" overcounts={}", c.overcounts) } else { String::new() };
    if report.skipped > 0 {
        overcounts.push_str(&format!(" skipped={}", report.skipped));
    }
    report.summary = format!(
        "audit: partitions={} messages={} written={} quarantined={} late={} duplicates={} gaps={} outside={} \
         overlaps={} invalid={}{overcounts} -> {}",
        report.partitions.len(),
        report.messages,
        report.written,
        report.quarantined,
        report.late,
        c.duplicates,
        c.gaps,
        c.outside,
        c.overlaps,
        c.invalid,
        if report.ok { "OK" } else { "FAILED" }
    );
    Ok(report)
}

fn audit_run(run: &str, dir: &Path, report: &mut AuditReport) -> Result<(), ValidateError> {
    let mut files: Vec<AuditFile> = list_data_files(dir)?
        .files
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
    let mut unreadable_raw = 0u64;
    let mut by_partition: BTreeMap<i32, Vec<(&AuditFile, FileMeta)>> = BTreeMap::new();
    let run_id = run.strip_prefix("run_");
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
                "its metadata says streamlake.rows={} but the Parquet footer holds {} rows: the file was rewritten \
                 or truncated",
                meta.rows, meta.footer_rows
            ));
        }
        let expected_kind = if file.quarantine { "quarantine" } else { "raw" };
        if meta.kind != expected_kind {
            bad.push(format!(
                "it is tagged streamlake.kind=`{}` but lies in a {expected_kind} folder",
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
        for b in bad {
            let mut p = problem(format!("{}: {b}", file.rel));
            p.partition = Some(meta.partition);
            problems.push(p);
        }
        by_partition.entry(meta.partition).or_default().push((file, meta));
    }

    // Partitions with a checkpoint but no file still count (all their files may be gone).
    let partitions_dir = dir.join("_checkpoint").join("partitions");
    let mut checkpoint_dirs: BTreeMap<i32, PathBuf> = BTreeMap::new();
    if let Ok(read) = fs::read_dir(&partitions_dir) {
        for e in read.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_prefix("p=").map(str::parse::<i32>) {
                Some(Ok(p)) => {
                    checkpoint_dirs.insert(p, e.path());
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
    }
    let mut committed_raw: Vec<(PathBuf, String)> = Vec::new();
    let mut checkpoint_late = 0u64;
    let all: BTreeSet<i32> = by_partition.keys().chain(checkpoint_dirs.keys()).copied().collect();
    for p in all {
        let files = by_partition.remove(&p).unwrap_or_default();
        let entries = checkpoint_dirs.get(&p).map(|d| read_entries(d)).unwrap_or_default();
        let rel_entry = |name: &str| join_rel(run, &format!("_checkpoint/partitions/p={p}/{name}"));
        let mut good: Vec<(String, Entry)> = Vec::new();
        for (name, entry) in entries {
            match entry {
                Ok(e) if e.partition == p && format!("{:020}.json", e.next_offset) == name => {
                    good.push((rel_entry(&name), e));
                }
                Ok(e) => problems.push(Problem {
                    kind: ProblemKind::Invalid,
                    run: run.to_string(),
                    partition: Some(p),
                    message: format!(
                        "checkpoint entry {} describes partition {} up to offset {}, which its name or folder \
                         contradicts",
                        rel_entry(&name),
                        e.partition,
                        e.next_offset
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
    let windows = completeness::run_completeness(&RunInput {
        run,
        dir,
        raw_files: committed_raw,
        unreadable_raw,
        audit_clean: problems.is_empty(),
        checkpoint_late,
    });
    report.windows.extend(windows.windows);
    report.warnings.extend(windows.warnings);
    report.problems.extend(problems);
    report.problems.extend(windows.problems);
    Ok(())
}

/// Where the files of one commit can lie in a run folder.
struct Folders {
    /// Key folders (`id=3`), relative to the run folder.
    keys: BTreeSet<String>,
    /// Whether the run has quarantine files at all.
    quarantine: bool,
}

/// Checks one partition of one run; `entries` are its readable checkpoint entries.
fn audit_partition(
    run: &str,
    partition: i32,
    files: &[(&AuditFile, FileMeta)],
    entries: &[(String, Entry)],
    folders: &Folders,
) -> (PartitionAudit, Vec<Problem>) {
    let mut problems = Vec::new();
    let add = |problems: &mut Vec<Problem>, kind: ProblemKind, message: String, files: Vec<String>| {
        problems.push(Problem { kind, run: run.to_string(), partition: Some(partition), message, files });
    };
    let newest = entries.iter().max_by_key(|(_, e)| e.next_offset);
    let next = newest.map(|(_, e)| e.next_offset);
    let mut stats = PartitionAudit {
        run: run.to_string(),
        partition,
        next_offset: next,
        checkpoint: newest.map(|(name, _)| name.clone()),
        late: match newest.and_then(|(_, e)| e.total_late) {
            Some(total) => total,
            None => entries.iter().map(|(_, e)| e.late).sum(),
        },
        ..Default::default()
    };

    // Files beyond the committed position.
    let mut ranges: BTreeMap<(i64, i64), Vec<&(&AuditFile, FileMeta)>> = BTreeMap::new();
    for item in files {
        let (file, meta) = item;
        match next {
            None => add(
                &mut problems,
                ProblemKind::Outside,
                format!(
                    "{} covers offsets [{}, {}) of partition {partition}, which has no checkpoint entry: it was never \
                     committed (a crash before the first commit); `streamlake run` deletes it on its next start",
                    file.rel, meta.start, meta.end
                ),
                vec![file.rel.clone()],
            ),
            Some(n) if meta.end > n => add(
                &mut problems,
                ProblemKind::Outside,
                format!(
                    "{} covers offsets [{}, {}) of partition {partition}, beyond the committed position \
                     next_offset={n}: an uncommitted leftover of a crash; `streamlake run` deletes it on its next start",
                    file.rel, meta.start, meta.end
                ),
                vec![file.rel.clone()],
            ),
            Some(_) if meta.start < meta.end => ranges.entry((meta.start, meta.end)).or_default().push(item),
            Some(_) => {}
        }
    }

    // Within each range: one commit, so one file per folder and rows adding up to the records.
    let entry_for = |s: i64, e: i64| entries.iter().find(|(_, x)| x.start_offset == s && x.next_offset == e);
    for (&(s, e), group) in &ranges {
        stats.ranges += 1;
        stats.files += group.len() as u64;
        let names = |g: &[&(&AuditFile, FileMeta)]| g.iter().map(|(f, _)| f.rel.clone()).collect::<Vec<_>>();
        let expected: BTreeSet<u64> = group.iter().map(|(_, m)| m.range_messages).collect();
        let expected_max = expected.iter().copied().max().unwrap_or(0);
        if expected.len() > 1 {
            add(
                &mut problems,
                ProblemKind::Invalid,
                format!(
                    "the files of range [{s}, {e}) of partition {partition} disagree on its record count \
                     (streamlake.range_messages {:?}): {}",
                    expected,
                    names(group).join(", ")
                ),
                names(group),
            );
        }
        stats.messages += expected_max;
        let mut by_folder: BTreeMap<&str, Vec<&(&AuditFile, FileMeta)>> = BTreeMap::new();
        for item in group {
            by_folder.entry(item.0.folder.as_str()).or_default().push(item);
            if item.0.quarantine {
                stats.quarantined += item.1.rows;
            } else {
                stats.written += item.1.rows;
            }
        }
        let mut duplicated = false;
        let listed: BTreeSet<String> = entry_for(s, e)
            .map(|(_, x)| x.files.iter().map(|f| join_rel(run, f)).collect())
            .unwrap_or_default();
        for (folder, dup) in by_folder.iter().filter(|(_, g)| g.len() > 1) {
            duplicated = true;
            let keep: Vec<String> = names(dup).into_iter().filter(|f| listed.contains(f)).collect();
            // Without the commit's checkpoint entry (pruned, or replaced by a later empty commit with
            // the same next_offset), the writer's worker index tells the original from a renamed copy.
            let named_right: Vec<(String, u64)> = dup
                .iter()
                .filter_map(|(f, m)| {
                    let w = m.worker?;
                    (name_worker(base_name(&f.rel)) == Some(w)).then(|| (f.rel.clone(), w))
                })
                .collect();
            let advice = match (keep.as_slice(), named_right.as_slice()) {
                ([one], _) => format!("the checkpoint lists {one}: keep it and move the others away"),
                ([], [(one, w)]) => format!(
                    "only {one} is named after the worker that wrote it (streamlake.worker={w}), the others are \
                     copies: keep it and move the others away"
                ),
                _ => "keep one and move the others away".to_string(),
            };
            add(
                &mut problems,
                ProblemKind::Duplicate,
                format!(
                    "duplicate: {} files in {folder}/ cover the same range [{s}, {e}) of partition {partition}, so \
                     their rows count twice: {}; {advice}",
                    dup.len(),
                    names(dup).join(", ")
                ),
                names(dup),
            );
        }
        if duplicated {
            continue;
        }
        let rows: u64 = group.iter().map(|(_, m)| m.rows).sum();
        if rows > expected_max {
            add(
                &mut problems,
                ProblemKind::Duplicate,
                format!(
                    "duplicate: the files of range [{s}, {e}) of partition {partition} hold {rows} rows but the range \
                     has {expected_max} records: {}",
                    names(group).join(", ")
                ),
                names(group),
            );
        } else if rows < expected_max {
            let present: BTreeSet<String> = group.iter().map(|(f, _)| f.rel.clone()).collect();
            let entry = entry_for(s, e);
            let mut missing: Vec<String> = entry
                .map(|(_, x)| {
                    x.files.iter().map(|f| join_rel(run, f)).filter(|f| !present.contains(f)).collect()
                })
                .unwrap_or_default();
            let mut which = if missing.is_empty() {
                "a file of this commit is missing".to_string()
            } else {
                format!("missing: {}", missing.join(", "))
            };
            if entry.is_none() {
                // The commit's checkpoint entry is gone (pruned, or replaced by a later empty commit
                // with the same next_offset): all files of one commit share one name, so the missing
                // one is that name in a folder that has none for this range.
                let name = base_name(&group[0].0.rel);
                let have: BTreeSet<&str> = group.iter().map(|(f, _)| f.folder.as_str()).collect();
                let mut guess: Vec<String> = folders
                    .keys
                    .iter()
                    .filter(|k| !have.contains(k.as_str()))
                    .map(|k| join_rel(run, &format!("{k}/{name}")))
                    .collect();
                if guess.is_empty() && folders.quarantine && !have.contains(QUARANTINE_DIR) {
                    guess.push(join_rel(run, &format!("{QUARANTINE_DIR}/{name}")));
                }
                if !guess.is_empty() {
                    which = format!(
                        "probably missing, as no file of this range is in its folder: {}",
                        guess.join(", ")
                    );
                    missing = guess;
                }
            }
            add(
                &mut problems,
                ProblemKind::Gap,
                format!(
                    "gap: the files of range [{s}, {e}) of partition {partition} hold {rows} of its {expected_max} \
                     records ({which}); present: {}",
                    names(group).join(", ")
                ),
                if missing.is_empty() { names(group) } else { missing },
            );
        }
    }

    // The ranges (plus commits that had no record, hence no file) must tile the committed offsets.
    let mut covered: Vec<(i64, i64, Vec<String>)> =
        ranges.iter().map(|(&(s, e), g)| (s, e, g.iter().map(|(f, _)| f.rel.clone()).collect())).collect();
    let skipped: Vec<(i64, i64)> = newest.map(|(_, e)| e.skipped_ranges.clone()).unwrap_or_default();
    covered.extend(
        entries
            .iter()
            .filter(|(_, x)| x.messages == 0 && x.start_offset < x.next_offset)
            .filter(|(_, x)| !ranges.contains_key(&(x.start_offset, x.next_offset)))
            .filter(|(_, x)| !skipped.contains(&(x.start_offset, x.next_offset)))
            .map(|(name, x)| (x.start_offset, x.next_offset, vec![name.clone()])),
    );
    // A deliberate skip covers its range: the loss is reported, not counted as a gap.
    covered.extend(skipped.iter().map(|&(a, b)| (a, b, vec!["(skipped: --on-data-loss=skip)".to_string()])));
    stats.skipped = skipped;
    covered.sort();
    let first = newest.and_then(|(_, e)| e.first_offset).or_else(|| covered.first().map(|c| c.0));
    stats.first_offset = first;
    if let (Some(first), Some(next)) = (first, next) {
        // Files the checkpoint entries inside [a, b) list: what a gap lost.
        let listed_in = |a: i64, b: i64| -> Vec<String> {
            entries
                .iter()
                .filter(|(_, x)| x.start_offset >= a && x.next_offset <= b)
                .flat_map(|(_, x)| x.files.iter().map(|f| join_rel(run, f)))
                .collect()
        };
        let gap = |problems: &mut Vec<Problem>, a: i64, b: i64| {
            let missing = listed_in(a, b);
            let hint = if missing.is_empty() {
                format!(
                    "; if one commit covered them, its files were named {}",
                    part_file_name_pattern(partition, a, b)
                )
            } else {
                format!("; the checkpoint lists these files for them: {}", missing.join(", "))
            };
            add(
                problems,
                ProblemKind::Gap,
                format!(
                    "gap: offsets [{a}, {b}) of partition {partition} are committed (next_offset={next}) but no file \
                     covers them{hint}"
                ),
                missing,
            );
        };
        let mut cursor = first;
        let mut previous: Option<&(i64, i64, Vec<String>)> = None;
        for c in &covered {
            let (s, e, names) = c;
            if *s > cursor {
                gap(&mut problems, cursor, *s);
            } else if *s < cursor {
                let mut involved = names.clone();
                let before = match previous {
                    Some((ps, pe, pnames)) => {
                        involved.extend(pnames.iter().cloned());
                        format!("range [{ps}, {pe}) ({})", pnames.join(", "))
                    }
                    None => format!("the partition's first committed offset {first}"),
                };
                add(
                    &mut problems,
                    ProblemKind::Overlap,
                    format!(
                        "overlap: range [{s}, {e}) of partition {partition} ({}) starts before the end of {before}, so \
                         offsets [{s}, {}) are written twice",
                        names.join(", "),
                        cursor.min(*e)
                    ),
                    involved,
                );
            }
            cursor = cursor.max(*e);
            previous = Some(c);
        }
        if cursor < next {
            gap(&mut problems, cursor, next);
        }
    }

    // With the files consistent, they must also add up to the checkpoint's running totals.
    if problems.is_empty() {
        if let Some((name, e)) = newest {
            let checks = [
                ("total_messages", e.total_messages, stats.messages, "records"),
                ("total_rows", e.total_rows, stats.written, "raw rows"),
                ("total_quarantined", e.total_quarantined, stats.quarantined, "quarantined rows"),
            ];
            for (field, claimed, found, what) in checks {
                if let Some(claimed) = claimed.filter(|c| *c != found) {
                    add(
                        &mut problems,
                        ProblemKind::Invalid,
                        format!(
                            "checkpoint entry {name} says {field}={claimed} for partition {partition}, but its files \
                             hold {found} {what}"
                        ),
                        vec![name.clone()],
                    );
                }
            }
        }
    }
    (stats, problems)
}

#[cfg(test)]
mod tests {
    use super::super::discover::PartValue;
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_worker("part-p001-o000000000000-000000006667-w012.parquet"), Some(12));
        assert_eq!(name_worker("part-p001-o000000000000-000000006667-w000 (copy).parquet"), None);
        assert_eq!(name_worker("part-1.parquet"), None);
        assert_eq!(base_name("run_x/id=1/a.parquet"), "a.parquet");
        assert_eq!(base_name("a.parquet"), "a.parquet");
        assert_eq!(part_file_name_pattern(2, 5, 17), "part-p002-o000000000005-000000000017-w*.parquet");
    }

    #[test]
    fn text_lists_the_newest_windows_and_the_totals() {
        let raw: BTreeMap<(i64, PartValue), u64> =
            (1..=25).map(|i| ((i * 10_000, PartValue::Int(i % 2)), 3)).collect();
        let on_time: BTreeMap<(i64, PartValue), u64> =
            (1..=24).map(|i| ((i * 10_000, PartValue::Int(i % 2)), 2)).collect();
        let windows = completeness::tally("run_x", 10_000, Some(240_000), &raw, &on_time);
        let mut report = AuditReport { windows, ..Default::default() };
        for w in &report.windows {
            report.on_time += w.on_time;
            report.late_dropped += w.late_dropped.unwrap_or(0);
            report.open += w.open;
        }
        let text = report.render_text();
        assert!(text.contains("(5 older window(s) not shown; --json lists all)"), "{text}");
        assert!(
            text.contains("completeness: windows=25 closed=24 open=1 on_time=48 late_dropped=24 open_rows=3"),
            "{text}"
        );
        let last = text.lines().find(|l| l.starts_with("1970-01-01T00:04:00Z")).unwrap();
        assert_eq!(
            last.split_whitespace().collect::<Vec<_>>(),
            ["1970-01-01T00:04:00Z", "1970-01-01T00:04:10Z", "1", "3", "0", "-", "open"]
        );
        assert!(!text.contains("1970-01-01T00:00:40Z  "), "older windows are left out:\n{text}");
    }
}
