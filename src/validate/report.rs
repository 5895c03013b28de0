//! The validation report: what one run found, as tables for people and as JSON for machines.
//!
//! The tables follow the Airflow DAG's log (head, count and mean per id, total rows) with its
//! `[validate]` message lines; the JSON is the same content, printed with `--json` and always saved
//! to `<DIR>/_reports/<UTC time>.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::audit::AuditReport;
use super::discover::PartValue;
use super::scan::{FileAggregate, Head};

/// Exit code when the dataset lacks the key or value column (`id`, `value` in the seed).
pub const EXIT_MISSING_COLUMNS: i32 = 2;
/// Exit code when a data file could not be read.
pub const EXIT_UNREADABLE: i32 = 1;
/// Exit code when the exactly-once audit found a problem.
pub const EXIT_AUDIT_FAILED: i32 = 3;

/// The outcome of a run, most severe first when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to read yet (exit 0).
    PathMissing,
    /// The folder holds no `*.parquet` file (exit 0).
    NoFiles,
    Ok,
    /// Some file could not be read (exit 1).
    UnreadableFiles,
    /// The key or value column (`id`, `value` in the seed) is not a column of the dataset (exit 2).
    MissingColumns,
    /// The exactly-once audit found a problem (exit 3).
    AuditFailed,
}

impl Status {
    pub fn exit_code(self) -> i32 {
        match self {
            Status::PathMissing | Status::NoFiles | Status::Ok => 0,
            Status::UnreadableFiles => EXIT_UNREADABLE,
            Status::MissingColumns => EXIT_MISSING_COLUMNS,
            Status::AuditFailed => EXIT_AUDIT_FAILED,
        }
    }
}

/// Count and mean of `value` for one id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdStats {
    pub id: PartValue,
    /// Non-null values (pandas' `count`).
    pub count: u64,
    /// `sum / count`; null when the id has no non-null value.
    pub mean: Option<f64>,
    pub sum: f64,
    /// Rows with this id, null values included.
    pub rows: u64,
}

/// A data file that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileProblem {
    pub file: String,
    pub reason: String,
}

/// How an `--incremental` run used its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IncrementalInfo {
    pub state_file: String,
    /// Files read in this run.
    pub files_read: u64,
    /// Files whose counts came from the state.
    pub files_reused: u64,
    /// Why everything was read again, when it was.
    pub full_scan_reason: Option<String>,
    /// Files counted before that are gone now (the reason for a full scan).
    pub disappeared: Vec<String>,
    /// Files seen before whose size or modification time changed; read again.
    pub changed: Vec<String>,
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: String,
    /// When the run started (UTC, RFC 3339).
    pub generated_at: String,
    pub status: Status,
    pub exit_code: i32,
    /// The `[validate] ...` lines explaining a status other than ok.
    pub messages: Vec<String>,
    /// Data files in the dataset.
    pub files: u64,
    /// Columns of the dataset: partition folders first, then file columns in order of appearance.
    pub columns: Vec<String>,
    pub head: Head,
    /// The key column `per_id` is grouped by (the dataflow's key: `id` in the seed pipeline).
    pub key: String,
    pub per_id: Vec<IdStats>,
    pub total_rows: u64,
    /// Rows in no id group (no `id=` folder and no `id` column, or a null id).
    pub rows_without_id: u64,
    pub unreadable: Vec<FileProblem>,
    /// Visible files below the path that are not `*.parquet`, hence not read.
    pub ignored_files: Vec<String>,
    pub incremental: Option<IncrementalInfo>,
    pub audit: Option<AuditReport>,
    /// Where this report is saved (null when the path does not exist).
    pub report_file: Option<String>,
}

impl Report {
    /// An empty report for `path`, status ok.
    pub fn new(path: &std::path::Path, generated_at: String) -> Report {
        Report {
            path: path.display().to_string(),
            generated_at,
            status: Status::Ok,
            exit_code: 0,
            messages: Vec::new(),
            files: 0,
            columns: Vec::new(),
            head: Head::default(),
            key: "id".to_string(),
            per_id: Vec::new(),
            total_rows: 0,
            rows_without_id: 0,
            unreadable: Vec::new(),
            ignored_files: Vec::new(),
            incremental: None,
            audit: None,
            report_file: None,
        }
    }

    /// Sets the status (and exit code) when `status` is more severe than the current one.
    pub fn raise(&mut self, status: Status) {
        if status.exit_code() > self.status.exit_code() || self.status == Status::Ok {
            self.status = status;
            self.exit_code = status.exit_code();
        }
    }

    /// Adds the per-file aggregates, in the given order, to the totals.
    pub fn fold<'a>(&mut self, aggregates: impl IntoIterator<Item = &'a FileAggregate>) {
        let mut per_id: BTreeMap<PartValue, (u64, u64, f64)> = BTreeMap::new();
        let mut grouped_rows = 0u64;
        for agg in aggregates {
            self.total_rows += agg.rows;
            for g in &agg.groups {
                let e = per_id.entry(g.id.clone()).or_insert((0, 0, 0.0));
                e.0 += g.rows;
                e.1 += g.count;
                e.2 += g.sum;
                grouped_rows += g.rows;
            }
        }
        self.rows_without_id = self.total_rows.saturating_sub(grouped_rows);
        self.per_id = per_id
            .into_iter()
            .map(|(id, (rows, count, sum))| IdStats {
                id,
                count,
                mean: (count > 0).then(|| sum / count as f64),
                sum,
                rows,
            })
            .collect();
    }

    /// The report as tables and message lines, as printed without `--json`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "[validate] {} at {}", self.path, self.generated_at);
        if self.files == 0 {
            for m in &self.messages {
                let _ = writeln!(out, "{m}");
            }
        } else {
            let _ = writeln!(out, "=== First {} rows ===", self.head.rows.len());
            let rows: Vec<Vec<String>> =
                self.head.rows.iter().map(|r| r.iter().map(ToString::to_string).collect()).collect();
            out.push_str(&table(&self.head.columns, &rows));
            for m in &self.messages {
                let _ = writeln!(out, "{m}");
            }
            if self.status != Status::MissingColumns {
                let _ = writeln!(out, "=== Count per {} ===", self.key);
                let rows: Vec<Vec<String>> = self
                    .per_id
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            s.count.to_string(),
                            s.mean.map_or_else(|| "NaN".to_string(), |m| format!("{m:.6}")),
                        ]
                    })
                    .collect();
                out.push_str(&table(&[self.key.clone(), "count".into(), "mean".into()], &rows));
                if self.rows_without_id > 0 {
                    let without =
                        if self.key == "id" { "an id".to_string() } else { format!("a `{}`", self.key) };
                    let _ = writeln!(out, "[validate] Rows without {without}: {}", self.rows_without_id);
                }
            }
            let _ = writeln!(out, "[validate] Total rows: {} in {} files", self.total_rows, self.files);
        }
        if !self.unreadable.is_empty() {
            let _ = writeln!(out, "[validate] {} file(s) could not be read:", self.unreadable.len());
            for p in &self.unreadable {
                let _ = writeln!(out, "  {}: {}", p.file, p.reason);
            }
        }
        if !self.ignored_files.is_empty() {
            let shown: Vec<&str> = self.ignored_files.iter().take(5).map(String::as_str).collect();
            let more = self.ignored_files.len().saturating_sub(shown.len());
            let _ = writeln!(
                out,
                "[validate] Not read (not *.parquet): {}{}",
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            );
        }
        if let Some(inc) = &self.incremental {
            match &inc.full_scan_reason {
                Some(reason) => {
                    let _ = writeln!(
                        out,
                        "[validate] Incremental: full scan ({reason}); read {} files",
                        inc.files_read
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "[validate] Incremental: read {} new file(s), reused counts of {}",
                        inc.files_read, inc.files_reused
                    );
                }
            }
            if !inc.changed.is_empty() {
                let _ = writeln!(
                    out,
                    "[validate] Changed since the last run, read again: {}",
                    inc.changed.join(", ")
                );
            }
        }
        if let Some(audit) = &self.audit {
            out.push_str(&audit.render_text());
        }
        if let Some(file) = &self.report_file {
            let _ = writeln!(out, "[validate] Report saved to {file}");
        }
        out
    }
}

/// A right-aligned text table (as pandas prints a DataFrame).
pub fn table(columns: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(columns);
    for row in rows {
        out.push_str(&line(row));
    }
    out
}
