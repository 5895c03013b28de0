//! `streamlake validate`: reads the Parquet output back and reports on it — the job of the
//! original platform's Airflow DAG `spark_parquet_validation_dag`, without Airflow or pandas.
//!
//! One run lists the committed data files ([`discover`]), previews the first rows and folds count
//! and mean of the value column per key from per-file aggregates read in parallel ([`scan`]);
//! which columns those are comes from the dataflow file (`--dataflow`, as `run` takes it; `value`
//! per `id` for the built-in seed pipeline). Optionally it reuses
//! what earlier runs read ([`incremental`]) and audits exactly-once delivery from file
//! metadata and checkpoint entries ([`audit`]). The [`report::Report`] is printed as tables or
//! JSON and saved to `<DIR>/_reports/`. [`schedule`] repeats runs on a wall-clock grid (`--every`).
//!
//! Exit codes: 0 fine (also: path missing, no files yet, as the DAG), 1 a file could not be read,
//! 2 the key or value column is missing, 3 the audit found a problem; the highest applies.

pub mod args;
pub mod audit;
pub mod completeness;
pub mod discover;
pub mod error;
pub mod incremental;
pub mod remote;
pub mod report;
pub mod scan;
pub mod schedule;
pub mod source;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

pub use args::ValidateArgs;
use discover::DataFile;
pub use error::ValidateError;
use report::FileProblem;
pub use report::{Report, Status};
use scan::{Columns, FileAggregate};

use crate::spec::{Spec, EVENTS_TOML};
use crate::storage::Location;
use crate::util::fs::{FsError, Step};

/// Folder (inside the dataset) where reports and the incremental state are kept.
pub const REPORTS_DIR: &str = "_reports";

/// The dataflow `--dataflow` names, or the built-in seed pipeline, as `run` loads it.
pub fn load_dataflow(path: Option<&Path>) -> Result<Spec, ValidateError> {
    Ok(match path {
        Some(path) => Spec::load(path)?,
        None => Spec::parse(EVENTS_TOML, Path::new("dataflows/events.toml"))?,
    })
}
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
    // The dataflow first: a wrong --dataflow is an error even before the dataset exists.
    let columns = Columns::of(&load_dataflow(args.dataflow.as_deref())?);
    const PATH: &str = "--path (OUTPUT_PATH)";
    match Location::parse(args.path.as_os_str(), PATH)? {
        Location::Local(root) => validate_folder(args, &columns, &root, now),
        Location::S3(url) => {
            let mirror = remote::Mirror::open(&url, args.cache_dir.as_deref())?;
            mirror.sync()?;
            let mut report = validate_folder(args, &columns, &mirror.root(), now)?;
            mirror.publish(&mut report, args.incremental)?;
            Ok(report)
        }
    }
}

/// [`validate`] of the dataset in the local folder `root`.
fn validate_folder(
    args: &ValidateArgs,
    columns: &Columns,
    root: &Path,
    now: DateTime<Utc>,
) -> Result<Report, ValidateError> {
    let mut report = Report::new(root, now.to_rfc3339_opts(SecondsFormat::Secs, true));
    report.key = columns.key.clone();
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
        scan_files(args, columns, root, &listing.files, &mut report)?;
    }
    if args.audit {
        let audit = audit::audit(root, columns)?;
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
    columns: &Columns,
    root: &Path,
    files: &[DataFile],
    report: &mut Report,
) -> Result<(), ValidateError> {
    report.head = scan::read_head(files, HEAD_ROWS);

    let state_path = root.join(REPORTS_DIR).join(incremental::STATE_FILE);
    let mut plan = if args.incremental {
        incremental::plan(&state_path, files, columns)
    } else {
        incremental::Plan { to_read: (0..files.len()).collect(), ..Default::default() }
    };
    let to_read: Vec<&DataFile> = plan.to_read.iter().map(|&i| &files[i]).collect();
    let results = scan::parallel_map(&to_read, |f| scan::aggregate_file(f, columns));
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
    let mut present: Vec<String> = Vec::new();
    let mut add_column = |name: &str| {
        if !present.iter().any(|c| c == name) {
            present.push(name.to_string());
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
    report.columns = present;
    report.fold(aggregates.iter().flatten());

    if !report.unreadable.is_empty() {
        report.raise(Status::UnreadableFiles);
    }
    let read_any = aggregates.iter().any(Option::is_some);
    let missing: Vec<&str> = [columns.key.as_str(), columns.value.as_str()]
        .into_iter()
        .filter(|c| !report.columns.iter().any(|have| have == c))
        .collect();
    if read_any && !missing.is_empty() {
        report.raise(Status::MissingColumns);
        let missing: Vec<String> = missing.iter().map(|c| format!("'{c}'")).collect();
        report.messages.push(format!(
            "[validate] Expected columns '{}' and '{}' not found in the dataset (missing: {}).",
            columns.key,
            columns.value,
            missing.join(", ")
        ));
        report.messages.push(format!("[validate] Columns present: {:?}", report.columns));
        if let Some(flow) = &args.dataflow {
            report.messages.push(format!(
                "[validate] The columns come from --dataflow {}: give the dataflow file the job ran with.",
                flow.display()
            ));
        }
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
            columns,
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

/// Writes `bytes` to `dst` through a hidden temp file, fsync and rename (see
/// [`crate::util::fs::write_atomic`]), so readers never see a partial file.
pub(crate) fn write_atomic(dst: &Path, bytes: &[u8]) -> Result<(), ValidateError> {
    match crate::util::fs::write_atomic(dst, bytes, || {}) {
        // The rename is done; a failure to make it durable loses at most this report (or state,
        // which the next run rebuilds), so it is not an error.
        Ok(()) | Err(FsError { step: Step::SyncFolder, .. }) => Ok(()),
        Err(FsError { path, source, .. }) => Err(ValidateError::Write { path, source }),
    }
}
