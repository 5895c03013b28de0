//! `streamlake validate`: reads the Parquet output back and reports on it — the job of the
//! original platform's Airflow DAG `spark_parquet_validation_dag`, without Airflow or pandas.
//!
//! One run lists the committed data files ([`discover`]), previews the first rows and folds count
//! and mean of `value` per `id` from per-file aggregates read in parallel ([`scan`]), optionally
//! reusing what earlier runs read ([`incremental`]) and auditing exactly-once delivery from file
//! metadata and checkpoint entries ([`audit`]). The [`report::Report`] is printed as tables or
//! JSON and saved to `<DIR>/_reports/`. [`schedule`] repeats runs on a wall-clock grid (`--every`).
//!
//! Exit codes: 0 fine (also: path missing, no files yet, as the DAG), 1 a file could not be read,
//! 2 the `id` or `value` column is missing, 3 the audit found a problem; the highest applies.

pub mod args;
pub mod audit;
pub mod completeness;
pub mod discover;
pub mod error;
pub mod incremental;
pub mod report;
pub mod scan;
pub mod schedule;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

pub use args::ValidateArgs;
use discover::DataFile;
pub use error::ValidateError;
use report::FileProblem;
pub use report::{Report, Status};
use scan::{FileAggregate, ID_COLUMN, VALUE_COLUMN};

/// Folder (inside the dataset) where reports and the incremental state are kept.
pub const REPORTS_DIR: &str = "_reports";
/// Rows in the preview, as the DAG's `df.head(10)`.
pub const HEAD_ROWS: usize = 10;

/// Runs `streamlake validate` as the command line asked: once, or on the `--every` grid until
/// `shutdown_requested()` is true. Prints the report(s) on stdout and returns the exit code (of
/// the last run, with `--every`).
pub fn run(args: &ValidateArgs, shutdown_requested: &dyn Fn() -> bool) -> anyhow::Result<i32> {
    let Some(period) = args.every else { return run_once(args) };
    let code = schedule::run_every(
        period,
        shutdown_requested,
        || {
            run_once(args).unwrap_or_else(|err| {
                // One failed run does not stop the schedule, as one failed DAG run does not.
                eprintln!("[validate] run failed: {err:#}");
                1
            })
        },
        |next| {
            let next: DateTime<Utc> = next.into();
            tracing::info!(next = %next.to_rfc3339_opts(SecondsFormat::Millis, true), "next validate run");
        },
    );
    Ok(code)
}

/// One run: validate, print, return the exit code.
fn run_once(args: &ValidateArgs) -> anyhow::Result<i32> {
    let report = validate(args, Utc::now())?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(report.exit_code)
}

/// Validates the dataset at `args.path` once, as of `now`, and saves the report (unless the path
/// does not exist). Problems with data files are in the report; only problems with the folder or
/// the report itself are errors.
pub fn validate(args: &ValidateArgs, now: DateTime<Utc>) -> Result<Report, ValidateError> {
    let root = args.path.as_path();
    let mut report = Report::new(root, now.to_rfc3339_opts(SecondsFormat::Secs, true));
    match fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.raise(Status::PathMissing);
            report.messages.push(format!("[validate] Path does not exist yet: {}", root.display()));
            return Ok(report);
        }
        Err(source) => return Err(ValidateError::ListDir { path: root.to_path_buf(), source }),
        Ok(meta) if !meta.is_dir() => return Err(ValidateError::NotAFolder { path: root.to_path_buf() }),
        Ok(_) => {}
    }
    let listing = discover::list_data_files(root)?;
    report.files = listing.files.len() as u64;
    report.ignored_files = listing.ignored;
    if listing.files.is_empty() {
        report.raise(Status::NoFiles);
        report.messages.push(format!("[validate] No .parquet files found under: {}", root.display()));
    } else {
        scan_files(args, root, &listing.files, &mut report)?;
    }
    if args.audit {
        let audit = audit::audit(root)?;
        if !audit.ok {
            report.raise(Status::AuditFailed);
        }
        report.audit = Some(audit);
    }
    save_report(root, &mut report, now)?;
    Ok(report)
}

/// Reads the files (all, or with `--incremental` the new ones), fills in preview, totals,
/// columns and unreadable files.
fn scan_files(
    args: &ValidateArgs,
    root: &Path,
    files: &[DataFile],
    report: &mut Report,
) -> Result<(), ValidateError> {
    report.head = scan::read_head(files, HEAD_ROWS);

    let state_path = root.join(REPORTS_DIR).join(incremental::STATE_FILE);
    let mut plan = if args.incremental {
        incremental::plan(&state_path, files)
    } else {
        incremental::Plan { to_read: (0..files.len()).collect(), ..Default::default() }
    };
    let to_read: Vec<&DataFile> = plan.to_read.iter().map(|&i| &files[i]).collect();
    let results = scan::parallel_map(&to_read, |f| scan::aggregate_file(f));
    let mut fresh: BTreeMap<usize, Result<FileAggregate, ValidateError>> =
        plan.to_read.iter().copied().zip(results).collect();

    let mut aggregates: Vec<Option<FileAggregate>> = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let agg = match (plan.reused.remove(&i), fresh.remove(&i)) {
            (Some(agg), _) | (None, Some(Ok(agg))) => Some(agg),
            (None, Some(Err(err))) => {
                tracing::warn!(file = %file.rel, error = %err, "cannot read data file");
                report.unreadable.push(FileProblem { file: file.rel.clone(), reason: err.to_string() });
                None
            }
            (None, None) => None,
        };
        aggregates.push(agg);
    }

    // Columns as a dataset reader sees them: partition folders first, then file columns.
    let mut columns: Vec<String> = Vec::new();
    let mut add_column = |name: &str| {
        if !columns.iter().any(|c| c == name) {
            columns.push(name.to_string());
        }
    };
    for file in files {
        for (name, _) in &file.partitions {
            add_column(name);
        }
    }
    for agg in aggregates.iter().flatten() {
        for name in &agg.columns {
            add_column(name);
        }
    }
    report.columns = columns;
    report.fold(aggregates.iter().flatten());

    if !report.unreadable.is_empty() {
        report.raise(Status::UnreadableFiles);
    }
    let read_any = aggregates.iter().any(Option::is_some);
    let missing: Vec<&str> = [ID_COLUMN, VALUE_COLUMN]
        .into_iter()
        .filter(|c| !report.columns.iter().any(|have| have == c))
        .collect();
    if read_any && !missing.is_empty() {
        report.raise(Status::MissingColumns);
        let missing: Vec<String> = missing.iter().map(|c| format!("'{c}'")).collect();
        report.messages.push(format!(
            "[validate] Expected columns 'id' and 'value' not found in the dataset (missing: {}).",
            missing.join(", ")
        ));
        report.messages.push(format!("[validate] Columns present: {:?}", report.columns));
    }

    if args.incremental {
        plan.info.files_read = to_read.len() as u64;
        plan.info.files_reused = (files.len() - to_read.len()) as u64;
        let refs: Vec<Option<&FileAggregate>> = aggregates.iter().map(Option::as_ref).collect();
        incremental::save(
            &state_path,
            files,
            &refs,
            &report.per_id,
            report.total_rows,
            &report.generated_at,
        )?;
        report.incremental = Some(plan.info);
    }
    Ok(())
}

/// Saves `report` as `<root>/_reports/<UTC time>.json` (`-1`, `-2`, ... appended when two runs
/// share a second), recording the file name in the report itself.
fn save_report(root: &Path, report: &mut Report, now: DateTime<Utc>) -> Result<(), ValidateError> {
    let dir = root.join(REPORTS_DIR);
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let mut path = dir.join(format!("{stamp}.json"));
    let mut n = 0;
    while path.exists() {
        n += 1;
        path = dir.join(format!("{stamp}-{n}.json"));
    }
    report.report_file = Some(path.display().to_string());
    let bytes = serde_json::to_vec_pretty(report).unwrap_or_default();
    write_atomic(&path, &bytes)
}

/// Writes `bytes` to `dst` through a hidden temp file, fsync and rename, so readers never see a
/// partial file.
pub(crate) fn write_atomic(dst: &Path, bytes: &[u8]) -> Result<(), ValidateError> {
    let dir = dst.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ValidateError::Write { path, source }
    };
    fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let name = dst.file_name().map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).map_err(write_err(&tmp))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(write_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, dst).map_err(write_err(dst))?;
    // Make the rename durable; a failure here loses at most this report, so it is not an error.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
