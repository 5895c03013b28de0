//! Tests of `streamlake validate` through its library entry points, on datasets this file writes
//! itself in the docs/format.md layout: hive-style `run_<id>/id=<k>/part-p<P>-o<START>-<END>-w<W>.parquet`
//! raw files and `_quarantine/` files with the streamlake key-value metadata, and checkpoint
//! entries written by the sink's own checkpoint code. Expected numbers come from a naive oracle
//! over the same rows; `tests/py/dag_validate.py` (the DAG's pandas code) is a second oracle when
//! `STREAMLAKE_TEST_PYTHON` names a python with pandas and pyarrow.

use std::cell::Cell as StdCell;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BinaryArray, Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use streamlake::sink::checkpoint::{CheckpointDir, PartitionEntry};
use streamlake::sink::raw::part_file_name;
use streamlake::validate::audit::ProblemKind;
use streamlake::validate::discover::PartValue;
use streamlake::validate::scan::Cell;
use streamlake::validate::{self, Report, Status, ValidateArgs};

// ---------------------------------------------------------------------------------------------
// Fixture: a dataset written like `streamlake run` writes it.
// ---------------------------------------------------------------------------------------------

const BASE_TS_MICROS: i64 = 1_764_000_000_000_000;

#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: i64,
    ts: i64,
    value: f64,
    source: Option<String>,
}

/// What Kafka record `offset` of `partition` becomes: a row, or a quarantined payload.
fn record(partition: i32, offset: i64) -> Result<Row, &'static str> {
    if offset % 9 == 8 {
        return Err("parse: not JSON");
    }
    Ok(Row {
        id: (offset + i64::from(partition)) % 4,
        ts: BASE_TS_MICROS + offset * 250_000,
        value: (f64::from(partition) * 100.0 + offset as f64) * 0.37 + 0.1,
        source: (offset % 5 != 0).then(|| format!("sensor-{partition}")),
    })
}

fn raw_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
        Field::new("source", DataType::Utf8, true),
    ]))
}

fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, true),
        Field::new("ts_ingest", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]))
}

fn write_parquet(path: &Path, batch: &RecordBatch, kv: &[(String, String)]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    for (k, v) in kv {
        writer.append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
    }
    writer.close().unwrap();
}

fn raw_batch(rows: &[Row]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.value).collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|r| r.source.clone()).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(raw_schema(), columns).unwrap()
}

/// A dataset under a temp folder, plus every raw row written, for the oracle.
struct Lake {
    dir: tempfile::TempDir,
    /// (path relative to the root, row), in file write order.
    rows: Vec<(String, Row)>,
    /// Every file written, relative to the root, in write order.
    written: Vec<String>,
    /// Running totals per (run, partition), as the checkpoint keeps them.
    totals: BTreeMap<(String, i32), Totals>,
}

#[derive(Debug, Clone, Copy)]
struct Totals {
    first_offset: i64,
    messages: u64,
    rows: u64,
    quarantined: u64,
    late: u64,
}

/// What one commit wrote.
struct Commit {
    /// Files relative to the dataset root.
    files: Vec<String>,
    messages: u64,
    rows: u64,
    quarantined: u64,
    late: u64,
}

impl Lake {
    fn new() -> Lake {
        Lake {
            dir: tempfile::tempdir().unwrap(),
            rows: Vec::new(),
            written: Vec::new(),
            totals: BTreeMap::new(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Writes the files of commit `[start, end)` of `partition` (no checkpoint entry).
    fn write_files(&mut self, run: &str, partition: i32, start: i64, end: i64) -> Commit {
        let name = part_file_name(partition, start, end, 0);
        let mut by_key: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
        let mut quarantined: Vec<(i64, &str)> = Vec::new();
        for offset in start..end {
            match record(partition, offset) {
                Ok(row) => by_key.entry(row.id).or_default().push(row),
                Err(reason) => quarantined.push((offset, reason)),
            }
        }
        let messages = (end - start) as u64;
        let meta = |rows: usize, kind: &str| -> Vec<(String, String)> {
            [
                ("topic", "events".to_string()),
                ("partition", partition.to_string()),
                ("start_offset", start.to_string()),
                ("end_offset", end.to_string()),
                ("rows", rows.to_string()),
                ("range_messages", messages.to_string()),
                ("worker", "0".to_string()),
                ("run_id", run.trim_start_matches("run_").to_string()),
                ("kind", kind.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (format!("streamlake.{k}"), v))
            .collect()
        };
        let mut commit = Commit { files: vec![], messages, rows: 0, quarantined: 0, late: 0 };
        for (key, rows) in &by_key {
            let rel_in_run = format!("id={key}/{name}");
            write_parquet(
                &self.root().join(run).join(&rel_in_run),
                &raw_batch(rows),
                &meta(rows.len(), "raw"),
            );
            let rel = format!("{run}/{rel_in_run}");
            self.rows.extend(rows.iter().map(|r| (rel.clone(), r.clone())));
            commit.rows += rows.len() as u64;
            commit.files.push(rel);
        }
        if !quarantined.is_empty() {
            let n = quarantined.len();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int32Array::from(vec![partition; n])),
                Arc::new(Int64Array::from(quarantined.iter().map(|q| q.0).collect::<Vec<_>>())),
                Arc::new(StringArray::from(quarantined.iter().map(|q| q.1).collect::<Vec<_>>())),
                Arc::new(BinaryArray::from(vec![Some(b"{oops".as_slice()); n])),
                Arc::new(TimestampMicrosecondArray::from(vec![BASE_TS_MICROS; n]).with_timezone("UTC")),
            ];
            let batch = RecordBatch::try_new(quarantine_schema(), columns).unwrap();
            let rel_in_run = format!("_quarantine/{name}");
            write_parquet(&self.root().join(run).join(&rel_in_run), &batch, &meta(n, "quarantine"));
            commit.quarantined = n as u64;
            commit.files.push(format!("{run}/{rel_in_run}"));
        }
        commit.late = (start..end).filter(|o| o % 11 == 3).count() as u64;
        self.written.extend(commit.files.iter().cloned());
        commit
    }

    /// Writes a whole commit: files, then the checkpoint entry (with the sink's own code).
    fn commit(&mut self, run: &str, partition: i32, start: i64, end: i64) -> Commit {
        let c = self.write_files(run, partition, start, end);
        let t = self.totals.entry((run.to_string(), partition)).or_insert(Totals {
            first_offset: start,
            messages: 0,
            rows: 0,
            quarantined: 0,
            late: 0,
        });
        t.messages += c.messages;
        t.rows += c.rows;
        t.quarantined += c.quarantined;
        t.late += c.late;
        let prefix = format!("{run}/");
        let entry = PartitionEntry {
            version: streamlake::format::checkpoint::ENTRY_VERSION,
            partition,
            start_offset: start,
            next_offset: end,
            messages: c.messages,
            rows: c.rows,
            quarantined: c.quarantined,
            late: c.late,
            rows_per_key: BTreeMap::new(),
            quarantined_by_reason: BTreeMap::new(),
            first_offset: t.first_offset,
            total_messages: t.messages,
            total_rows: t.rows,
            total_quarantined: t.quarantined,
            total_late: t.late,
            max_event_ms: None,
            skipped: 0,
            skipped_ranges: Vec::new(),
            files: c.files.iter().map(|f| f.strip_prefix(&prefix).unwrap().to_string()).collect(),
            partials: vec![],
            worker: 0,
            committed_at: "2026-11-24T22:50:00Z".into(),
        };
        CheckpointDir::new(&self.root().join(run)).write_partition(&entry).unwrap();
        c
    }

    /// The standard dataset: run `a`, partitions 0..3, commits [0, 12) and [12, 30).
    fn standard() -> Lake {
        let mut lake = Lake::new();
        for p in 0..3 {
            lake.commit("run_a", p, 0, 12);
            lake.commit("run_a", p, 12, 30);
        }
        lake
    }

    /// (total rows, per id: (count, sum)) over every raw row written.
    fn oracle(&self) -> (u64, BTreeMap<i64, (u64, f64)>) {
        let mut per_id: BTreeMap<i64, (u64, f64)> = BTreeMap::new();
        for (_, row) in &self.rows {
            let e = per_id.entry(row.id).or_default();
            e.0 += 1;
            e.1 += row.value;
        }
        (self.rows.len() as u64, per_id)
    }

    /// The first `n` rows in sorted path order, file order within a file.
    fn oracle_head(&self, n: usize) -> Vec<&Row> {
        let mut rows: Vec<(usize, &(String, Row))> = self.rows.iter().enumerate().collect();
        rows.sort_by(|a, b| a.1 .0.cmp(&b.1 .0).then(a.0.cmp(&b.0)));
        rows.into_iter().take(n).map(|(_, (_, r))| r).collect()
    }
}

fn args(root: &Path) -> ValidateArgs {
    ValidateArgs::for_path(root)
}

fn run_validate(args: &ValidateArgs) -> Report {
    validate::validate(args, chrono::Utc::now()).expect("validate")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_matches_oracle(report: &Report, lake: &Lake) {
    let (total, per_id) = lake.oracle();
    assert_eq!(report.total_rows, total);
    let got: Vec<(PartValue, u64)> = report.per_id.iter().map(|s| (s.id.clone(), s.count)).collect();
    let want: Vec<(PartValue, u64)> = per_id.iter().map(|(k, (c, _))| (PartValue::Int(*k), *c)).collect();
    assert_eq!(got, want);
    for s in &report.per_id {
        let PartValue::Int(k) = s.id else { panic!("id {:?} is not an integer", s.id) };
        let (count, sum) = per_id[&k];
        let mean = s.mean.expect("mean");
        assert!(close(mean, sum / count as f64), "id {k}: mean {mean} vs {}", sum / count as f64);
    }
}

fn reports_in(root: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(root.join("_reports")) else { return vec![] };
    let mut v: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.starts_with('_') && !name.starts_with('.')
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

#[test]
fn report_numbers_match_the_oracle() {
    let lake = Lake::standard();
    let report = run_validate(&args(&lake.root()));
    assert_eq!(report.status, Status::Ok, "{}", report.render_text());
    assert_eq!(report.exit_code, 0);
    assert_eq!(report.files, 6 * 4, "3 partitions x 2 commits x 4 keys");
    assert_matches_oracle(&report, &lake);
    assert_eq!(report.rows_without_id, 0);
    assert!(report.unreadable.is_empty());

    // The preview: id from the folder, then the file columns, rows of the first files.
    assert_eq!(report.head.columns, ["id", "ts", "value", "source"]);
    assert_eq!(report.head.rows.len(), 10);
    for (got, want) in report.head.rows.iter().zip(lake.oracle_head(10)) {
        assert_eq!(got[0], Cell::Int(want.id));
        assert!(matches!(&got[1], Cell::Text(t) if t.starts_with("2025-11-24T")), "{:?}", got[1]);
        assert_eq!(got[2], Cell::Float(want.value));
        assert_eq!(got[3], want.source.clone().map_or(Cell::Null, Cell::Text));
    }

    // Tables, and the same report saved as JSON.
    let text = report.render_text();
    assert!(text.contains(&format!("[validate] Total rows: {} in 24 files", lake.oracle().0)), "{text}");
    assert!(text.contains("=== Count per id ===") && text.contains("=== First 10 rows ==="), "{text}");
    let saved = reports_in(&lake.root());
    assert_eq!(saved.len(), 1);
    assert_eq!(report.report_file.as_deref(), Some(saved[0].to_str().unwrap()));
    let name = saved[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.len() == "20261124T225000Z.json".len() && name.ends_with("Z.json"), "{name}");
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&saved[0]).unwrap()).unwrap();
    assert_eq!(json["total_rows"], lake.oracle().0);
    assert_eq!(json["status"], "ok");
    assert_eq!(json["per_id"][0]["id"], 0);
    assert!(json["audit"].is_null());
}

#[test]
fn missing_path_and_empty_folder_exit_zero_with_the_dags_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("not-yet");
    let report = run_validate(&args(&missing));
    assert_eq!((report.status, report.exit_code), (Status::PathMissing, 0));
    assert_eq!(report.messages, [format!("[validate] Path does not exist yet: {}", missing.display())]);
    assert!(!missing.exists(), "a missing path must not be created");
    assert_eq!(validate::run(&args(&missing), &|| false).unwrap(), 0);

    // Only hidden and in-progress entries: no data.
    let empty = tmp.path().join("empty");
    fs::create_dir_all(empty.join("run_a/id=0")).unwrap();
    fs::create_dir_all(empty.join("run_a/_checkpoint")).unwrap();
    fs::write(empty.join("run_a/id=0/.part-p000-o000000000000-w000.parquet.inprogress"), b"PAR1").unwrap();
    fs::write(empty.join("run_a/_checkpoint/windows.json"), b"{}").unwrap();
    let report = run_validate(&args(&empty));
    assert_eq!((report.status, report.exit_code), (Status::NoFiles, 0));
    assert_eq!(report.messages, [format!("[validate] No .parquet files found under: {}", empty.display())]);
    assert!(report.render_text().contains("No .parquet files found under"));
    assert_eq!(validate::run(&args(&empty), &|| false).unwrap(), 0);
}

#[test]
fn missing_value_column_names_the_columns_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(Float64Array::from(vec![1.0, 2.0]))],
    )
    .unwrap();
    write_parquet(&tmp.path().join("run_a/id=0/part-0.parquet"), &batch, &[]);
    let report = run_validate(&args(tmp.path()));
    assert_eq!((report.status, report.exit_code), (Status::MissingColumns, 2));
    assert_eq!(report.columns, ["id", "ts", "amount"]);
    let text = report.render_text();
    assert!(
        text.contains("Expected columns 'id' and 'value' not found in the dataset (missing: 'value')"),
        "{text}"
    );
    assert!(text.contains(r#"Columns present: ["id", "ts", "amount"]"#), "{text}");
    assert_eq!(validate::run(&args(tmp.path()), &|| false).unwrap(), 2);
}

#[test]
fn a_corrupt_file_is_named_and_the_rest_is_reported_with_exit_1() {
    let lake = Lake::standard();
    let bad = "run_a/id=1/part-p009-o000000000000-000000000005-w000.parquet";
    fs::write(lake.root().join(bad), b"PAR1 this is not parquet PAR1").unwrap();
    let report = run_validate(&args(&lake.root()));
    assert_eq!((report.status, report.exit_code), (Status::UnreadableFiles, 1));
    assert_eq!(report.unreadable.len(), 1);
    assert_eq!(report.unreadable[0].file, bad);
    assert!(
        report.unreadable[0].reason.contains("cannot read Parquet file"),
        "{}",
        report.unreadable[0].reason
    );
    assert_matches_oracle(&report, &lake);
    let text = report.render_text();
    assert!(text.contains("1 file(s) could not be read") && text.contains(bad), "{text}");
    assert_eq!(validate::run(&args(&lake.root()), &|| false).unwrap(), 1);
}

#[test]
fn id_can_be_a_file_column_when_there_is_no_id_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, true),
        Field::new("value", DataType::Float32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![Some(2), Some(1), Some(2), None, Some(1)])),
            Arc::new(arrow::array::Float32Array::from(vec![
                Some(1.5),
                Some(2.0),
                None,
                Some(9.0),
                Some(4.0),
            ])),
        ],
    )
    .unwrap();
    write_parquet(&tmp.path().join("flat.parquet"), &batch, &[]);
    let report = run_validate(&args(tmp.path()));
    assert_eq!(report.status, Status::Ok, "{}", report.render_text());
    assert_eq!(report.total_rows, 5);
    assert_eq!(report.rows_without_id, 1, "the null id is in no group, as in pandas");
    let got: Vec<(PartValue, u64, Option<f64>)> =
        report.per_id.iter().map(|s| (s.id.clone(), s.count, s.mean)).collect();
    assert_eq!(got, [(PartValue::Int(1), 2, Some(3.0)), (PartValue::Int(2), 1, Some(1.5))]);
}

// ---------------------------------------------------------------------------------------------
// --incremental
// ---------------------------------------------------------------------------------------------

#[test]
fn incremental_equals_a_full_scan_after_new_and_deleted_files() {
    let mut lake = Lake::new();
    for p in 0..3 {
        lake.commit("run_a", p, 0, 12);
    }
    let inc = ValidateArgs { incremental: true, ..args(&lake.root()) };
    let first = run_validate(&inc);
    let info = first.incremental.clone().unwrap();
    assert_eq!(info.full_scan_reason.as_deref(), Some("no state yet"));
    assert_eq!(info.files_read, first.files);
    assert!(lake.root().join("_reports/_state.json").is_file());

    // New commits: only their files are read, totals are a full scan's to the last bit.
    let mut new_files = 0;
    for p in 0..3 {
        new_files +=
            lake.commit("run_a", p, 12, 30).files.iter().filter(|f| !f.contains("_quarantine")).count();
    }
    new_files += lake.commit("run_b", 0, 0, 7).files.iter().filter(|f| !f.contains("_quarantine")).count();
    let second = run_validate(&inc);
    let full = run_validate(&args(&lake.root()));
    let info = second.incremental.clone().unwrap();
    assert_eq!(info.full_scan_reason, None);
    assert_eq!(info.files_read as usize, new_files);
    assert_eq!(info.files_reused, first.files);
    assert_eq!(second.total_rows, full.total_rows);
    assert_eq!(second.per_id, full.per_id);
    assert_eq!(second.head, full.head);
    assert_matches_oracle(&second, &lake);

    // Nothing new: nothing read.
    let third = run_validate(&inc);
    assert_eq!(third.incremental.as_ref().unwrap().files_read, 0);
    assert_eq!(third.per_id, full.per_id);

    // A file disappears: said so, full scan, again equal to a full scan.
    let gone = "run_b/id=1/part-p000-o000000000000-000000000007-w000.parquet";
    fs::remove_file(lake.root().join(gone)).unwrap();
    let fourth = run_validate(&inc);
    let info = fourth.incremental.clone().unwrap();
    assert_eq!(info.disappeared, [gone]);
    assert!(info.full_scan_reason.as_deref().unwrap().contains(gone), "{info:?}");
    assert_eq!(info.files_read, fourth.files);
    let full = run_validate(&args(&lake.root()));
    assert_eq!((fourth.total_rows, &fourth.per_id), (full.total_rows, &full.per_id));
    assert!(fourth.render_text().contains("Incremental: full scan (1 file(s) counted before are gone"));
}

// ---------------------------------------------------------------------------------------------
// --audit
// ---------------------------------------------------------------------------------------------

fn audit_args(root: &Path) -> ValidateArgs {
    ValidateArgs { audit: true, ..args(root) }
}

#[test]
fn audit_passes_on_a_consistent_dataset() {
    let lake = Lake::standard();
    let report = run_validate(&audit_args(&lake.root()));
    let audit = report.audit.clone().unwrap();
    assert!(audit.ok, "{}", report.render_text());
    assert_eq!(report.exit_code, 0);
    let (rows, quarantined, late): (u64, u64, u64) =
        lake.totals.values().fold((0, 0, 0), |a, t| (a.0 + t.rows, a.1 + t.quarantined, a.2 + t.late));
    assert_eq!(rows, lake.oracle().0);
    assert_eq!(
        audit.summary,
        format!(
            "audit: partitions=3 messages=90 written={rows} quarantined={quarantined} late={late} duplicates=0 \
             gaps=0 outside=0 overlaps=0 invalid=0 -> OK"
        )
    );
    for p in &audit.partitions {
        assert_eq!((p.first_offset, p.next_offset, p.ranges), (Some(0), Some(30), 2));
        assert_eq!(p.messages, p.written + p.quarantined);
    }
    assert!(report.render_text().contains(&audit.summary));
}

#[test]
fn audit_names_both_files_of_a_copied_file_as_duplicate() {
    let lake = Lake::standard();
    let original = "run_a/id=2/part-p001-o000000000012-000000000030-w000.parquet";
    let copy = "run_a/id=2/part-p001-o000000000012-000000000030-w000 (copy).parquet";
    fs::copy(lake.root().join(original), lake.root().join(copy)).unwrap();
    let report = run_validate(&audit_args(&lake.root()));
    assert_eq!((report.status, report.exit_code), (Status::AuditFailed, 3));
    let audit = report.audit.unwrap();
    assert_eq!(audit.counts.duplicates, 1, "{:#?}", audit.problems);
    assert_eq!(audit.problems.len(), 1, "{:#?}", audit.problems);
    let p = &audit.problems[0];
    assert_eq!((p.kind, p.partition), (ProblemKind::Duplicate, Some(1)));
    assert_eq!(p.files, [copy, original], "both, in path order");
    assert!(p.message.contains("[12, 30)"), "{}", p.message);
    assert!(p.message.contains(&format!("the checkpoint lists {original}: keep it")), "{}", p.message);
    assert!(
        audit.summary.ends_with("duplicates=1 gaps=0 outside=0 overlaps=0 invalid=0 -> FAILED"),
        "{}",
        audit.summary
    );
    assert_eq!(validate::run(&audit_args(&lake.root()), &|| false).unwrap(), 3);
}

#[test]
fn audit_names_a_deleted_file_as_a_gap() {
    // One key file of a range: the range holds fewer rows than records.
    let lake = Lake::standard();
    let deleted = "run_a/id=3/part-p002-o000000000000-000000000012-w000.parquet";
    fs::remove_file(lake.root().join(deleted)).unwrap();
    let audit = run_validate(&audit_args(&lake.root())).audit.unwrap();
    assert_eq!((audit.counts.gaps, audit.problems.len()), (1, 1), "{:#?}", audit.problems);
    let p = &audit.problems[0];
    assert_eq!((p.kind, p.partition), (ProblemKind::Gap, Some(2)));
    assert_eq!(p.files, [deleted]);
    assert!(
        p.message.contains(&format!("missing: {deleted}")) && p.message.contains("[0, 12)"),
        "{}",
        p.message
    );

    // Every file of a range: the committed offsets are not tiled.
    let lake = Lake::standard();
    let range = part_file_name(0, 0, 12, 0);
    let c: Vec<String> = lake.written.iter().filter(|f| f.ends_with(&range)).cloned().collect();
    assert_eq!(c.len(), 5, "4 key files and a quarantine file: {c:?}");
    for f in &c {
        fs::remove_file(lake.root().join(f)).unwrap();
    }
    let report = run_validate(&audit_args(&lake.root()));
    assert_eq!(report.exit_code, 3);
    let audit = report.audit.unwrap();
    assert_eq!((audit.counts.gaps, audit.problems.len()), (1, 1), "{:#?}", audit.problems);
    let p = &audit.problems[0];
    assert!(
        p.message.contains("offsets [0, 12) of partition 0 are committed (next_offset=30)"),
        "{}",
        p.message
    );
    assert_eq!(p.files, c, "the checkpoint entry names the lost files");
}

#[test]
fn audit_names_a_file_beyond_next_offset() {
    let mut lake = Lake::standard();
    // Files of a commit whose checkpoint entry was never written (a crash in between).
    let leftover = lake.write_files("run_a", 1, 30, 41).files;
    let report = run_validate(&audit_args(&lake.root()));
    assert_eq!(report.exit_code, 3);
    let audit = report.audit.unwrap();
    assert_eq!(audit.counts.outside as usize, leftover.len(), "{:#?}", audit.problems);
    assert_eq!(audit.problems.len(), leftover.len());
    for (p, file) in audit.problems.iter().zip(&leftover) {
        assert_eq!(p.kind, ProblemKind::Outside);
        assert_eq!(p.files, [file.as_str()]);
        assert!(p.message.contains("[30, 41)") && p.message.contains("next_offset=30"), "{}", p.message);
    }
}

#[test]
fn audit_flags_metadata_that_contradicts_the_footer() {
    let lake = Lake::standard();
    let victim = "run_a/id=0/part-p000-o000000000012-000000000030-w000.parquet";
    let path = lake.root().join(victim);
    let (batch, mut kv) = {
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&path).unwrap(),
        )
        .unwrap();
        let kv: Vec<(String, String)> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .filter(|kv| kv.key.starts_with("streamlake."))
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap()))
            .collect();
        (builder.build().unwrap().next().unwrap().unwrap(), kv)
    };
    // Same rows, but the metadata claims one more.
    for (k, v) in &mut kv {
        if k == "streamlake.rows" {
            *v = (v.parse::<u64>().unwrap() + 1).to_string();
        }
    }
    write_parquet(&path, &batch, &kv);
    let audit = run_validate(&audit_args(&lake.root())).audit.unwrap();
    assert!(!audit.ok);
    let invalid: Vec<_> = audit.problems.iter().filter(|p| p.kind == ProblemKind::Invalid).collect();
    assert_eq!(invalid.len(), 1, "{:#?}", audit.problems);
    assert_eq!(invalid[0].files, [victim]);
    assert!(invalid[0].message.contains("the Parquet footer holds"), "{}", invalid[0].message);
}

// ---------------------------------------------------------------------------------------------
// --every
// ---------------------------------------------------------------------------------------------

#[test]
fn scheduler_runs_cycles_until_shutdown() {
    let cycles = StdCell::new(0);
    let code = validate::schedule::run_every(
        Duration::from_secs(1),
        &|| cycles.get() >= 2,
        || {
            cycles.set(cycles.get() + 1);
            cycles.get()
        },
        |_| {},
    );
    assert_eq!((cycles.get(), code), (2, 2));

    // The real command: two reports written, then stopped by the flag.
    let lake = Lake::standard();
    let root = lake.root();
    let every = ValidateArgs { every: Some(Duration::from_secs(1)), json: true, ..args(&root) };
    let code = validate::run(&every, &|| reports_in(&root).len() >= 2).unwrap();
    assert_eq!(code, 0);
    assert_eq!(reports_in(&root).len(), 2);
}

#[test]
fn help_names_the_variables_and_units() {
    use clap::{CommandFactory, Parser};
    /// Stand-in for the `validate` subcommand.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        validate: ValidateArgs,
    }
    Cli::command().debug_assert();
    let help = Cli::command().render_long_help().to_string();
    println!("{help}");
    for needle in [
        "--path <DIR>",
        "[env: OUTPUT_PATH=",
        "--every <DURATION>",
        "ms, s, m, h",
        "--incremental",
        "--audit",
        "--json",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
}

// ---------------------------------------------------------------------------------------------
// The DAG's pandas code as a second oracle
// ---------------------------------------------------------------------------------------------

fn python() -> Option<String> {
    match std::env::var("STREAMLAKE_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("STREAMLAKE_TEST_PYTHON is not set under CI: run scripts/test.sh");
            }
            eprintln!(
                "STREAMLAKE_TEST_PYTHON is not set (python with pandas + pyarrow); not running this test"
            );
            None
        }
    }
}

#[test]
fn validate_agrees_with_the_dags_pandas_code() {
    let Some(python) = python() else { return };
    let lake = Lake::standard();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/dag_validate.py");
    let out =
        std::process::Command::new(&python).arg(&script).arg(lake.root()).output().expect("running python");
    assert!(out.status.success(), "dag_validate.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let dag: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dag_validate.py prints JSON");

    let report = run_validate(&args(&lake.root()));
    assert_eq!(dag["total"], report.total_rows);
    let per_id = dag["per_id"].as_object().unwrap();
    assert_eq!(per_id.len(), report.per_id.len());
    for s in &report.per_id {
        let d = &per_id[&s.id.to_string()];
        assert_eq!(d["count"], s.count, "id {}", s.id);
        let (m, dm) = (s.mean.unwrap(), d["mean"].as_f64().unwrap());
        assert!(close(m, dm), "id {}: validate {m} vs pandas {dm}", s.id);
    }
    let head = dag["head"].as_array().unwrap();
    assert_eq!(head.len(), report.head.rows.len());
    for (d, row) in head.iter().zip(&report.head.rows) {
        // serde_json parses floats only to within an ulp (no `float_roundtrip`): compare closely.
        let (Some(dv), Cell::Float(v)) = (d["value"].as_f64(), &row[2]) else { panic!("{d} vs {row:?}") };
        assert!(close(dv, *v), "head: pandas {dv} vs validate {v}");
        assert_eq!(d["id"], serde_json::json!(row[0]));
    }
}
