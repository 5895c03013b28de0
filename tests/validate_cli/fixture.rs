//! A dataset written like `streamlake run` writes it, without a broker: hive-style
//! `run_<id>/id=<k>/part-p<P>-o<START>-<END>-w<W>.parquet` raw files and `_quarantine/` files with
//! the streamlake key-value metadata, and checkpoint entries written by the sink's own checkpoint
//! code (docs/format.md), plus every row written, for a naive oracle.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use streamlake::ingest::restore::Totals;

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
use streamlake::validate::discover::PartValue;
use streamlake::validate::{self, Report, ValidateArgs};

// ---------------------------------------------------------------------------------------------
// Fixture: a dataset written like `streamlake run` writes it.
// ---------------------------------------------------------------------------------------------

pub const BASE_TS_MICROS: i64 = 1_764_000_000_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub ts: i64,
    pub value: f64,
    pub source: Option<String>,
}

/// What Kafka record `offset` of `partition` becomes: a row, or a quarantined payload.
pub fn record(partition: i32, offset: i64) -> Result<Row, &'static str> {
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

pub fn raw_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
        Field::new("source", DataType::Utf8, true),
    ]))
}

pub fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, true),
        Field::new("ts_ingest", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]))
}

pub fn write_parquet(path: &Path, batch: &RecordBatch, kv: &[(String, String)]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    for (k, v) in kv {
        writer.append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
    }
    writer.close().unwrap();
}

pub fn raw_batch(rows: &[Row]) -> RecordBatch {
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
pub struct Lake {
    pub dir: tempfile::TempDir,
    /// (path relative to the root, row), in file write order.
    pub rows: Vec<(String, Row)>,
    /// Every file written, relative to the root, in write order.
    pub written: Vec<String>,
    /// Running totals per (run, partition), as the checkpoint keeps them.
    pub totals: BTreeMap<(String, i32), Totals>,
}

/// What one commit wrote.
pub struct Commit {
    /// Files relative to the dataset root.
    pub files: Vec<String>,
    pub messages: u64,
    pub rows: u64,
    pub quarantined: u64,
    pub late: u64,
}

impl Lake {
    pub fn new() -> Lake {
        Lake {
            dir: tempfile::tempdir().unwrap(),
            rows: Vec::new(),
            written: Vec::new(),
            totals: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Writes the files of commit `[start, end)` of `partition` (no checkpoint entry).
    pub fn write_files(&mut self, run: &str, partition: i32, start: i64, end: i64) -> Commit {
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
    pub fn commit(&mut self, run: &str, partition: i32, start: i64, end: i64) -> Commit {
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
            seq: None,
            files: c.files.iter().map(|f| f.strip_prefix(&prefix).unwrap().to_string()).collect(),
            partials: vec![],
            worker: 0,
            committed_at: "2026-11-24T22:50:00Z".into(),
        };
        CheckpointDir::new(&self.root().join(run)).write_partition(&entry).unwrap();
        c
    }

    /// The standard dataset: run `a`, partitions 0..3, commits [0, 12) and [12, 30).
    pub fn standard() -> Lake {
        let mut lake = Lake::new();
        for p in 0..3 {
            lake.commit("run_a", p, 0, 12);
            lake.commit("run_a", p, 12, 30);
        }
        lake
    }

    /// (total rows, per id: (count, sum)) over every raw row written.
    pub fn oracle(&self) -> (u64, BTreeMap<i64, (u64, f64)>) {
        let mut per_id: BTreeMap<i64, (u64, f64)> = BTreeMap::new();
        for (_, row) in &self.rows {
            let e = per_id.entry(row.id).or_default();
            e.0 += 1;
            e.1 += row.value;
        }
        (self.rows.len() as u64, per_id)
    }

    /// The first `n` rows in sorted path order, file order within a file.
    pub fn oracle_head(&self, n: usize) -> Vec<&Row> {
        let mut rows: Vec<(usize, &(String, Row))> = self.rows.iter().enumerate().collect();
        rows.sort_by(|a, b| a.1 .0.cmp(&b.1 .0).then(a.0.cmp(&b.0)));
        rows.into_iter().take(n).map(|(_, (_, r))| r).collect()
    }
}

pub fn args(root: &Path) -> ValidateArgs {
    ValidateArgs::for_path(root)
}

pub fn run_validate(args: &ValidateArgs) -> Report {
    validate::validate(args, chrono::Utc::now()).expect("validate")
}

/// Relative closeness for means. pandas computes a group mean with its own (Kahan-compensated,
/// row-order) summation of all rows of the group, while `validate` sums each file on its own and
/// then adds the per-file sums in path order; over a few hundred thousand values the two roundings
/// differ in the last bits (about 1e-13 relative here), so bit equality would test the summation
/// order, not the result.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

pub fn assert_matches_oracle(report: &Report, lake: &Lake) {
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

pub fn audit_args(root: &Path) -> ValidateArgs {
    ValidateArgs { audit: true, ..args(root) }
}
