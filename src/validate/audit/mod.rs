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
//! the records aggregated on time, dropped late, or waiting in an open window. On a Delta run the
//! aggregates are those of the aggregates table's snapshot, first checked against `windows.json`
//! ([`windows`]).

mod delta;
mod files;
mod footer;
mod partition;
mod windows;

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::completeness::{WindowCompleteness, WindowStatus};
use super::error::ValidateError;
use super::report::table;
use super::scan::Columns;

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
    /// The key column the windows are per (the dataflow's key).
    #[serde(skip)]
    pub key: String,
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

    /// The key column's name, `id` (the seed's) when not set.
    fn key_name(&self) -> &str {
        if self.key.is_empty() {
            "id"
        } else {
            &self.key
        }
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
                ["window_start", "window_end", self.key_name(), "raw", "on_time", "late_dropped", "status"]
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

/// Audits every run folder below `root`; `columns` are the dataflow's (the time column assigns
/// raw rows to windows).
pub fn audit(root: &Path, columns: &Columns) -> Result<AuditReport, ValidateError> {
    let mut report = AuditReport { key: columns.key.clone(), ..Default::default() };
    for (run, dir) in files::run_folders(root)? {
        files::audit_run(&run, &dir, columns, &mut report)?;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::completeness;
    use super::super::discover::PartValue;
    use super::*;

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
