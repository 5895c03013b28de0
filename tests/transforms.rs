//! Partition transforms end to end: `streamlake run` with `sink.partition_by` = `bucket(id, 16)`,
//! `day(ts)`, `hour(ts)` and `none` on one topic; every row in the folder its value maps to (the
//! bucket computed independently of the sink, from the Iceberg spec's hash), the row counts per id
//! as pandas (the seed DAG's `pd.read_parquet(path)`) and DuckDB (`hive_partitioning=true`) read
//! them, and `validate` and `validate --audit` passing on each dataset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use arrow::array::{Int32Array, TimestampMicrosecondArray};
use streamlake::format::partition::{bucket_of_long, day_of, day_text, hour_of, hour_text};

const EVENTS: i64 = 3000;
const IDS: i64 = 40;
/// The events span 50 hours, so day(ts) makes three folders and hour(ts) about fifty.
const SPAN_MS: i64 = 50 * 3_600_000;

/// The seed dataflow with another `partition_by`, written to `dir`.
fn dataflow(dir: &Path, name: &str, partition_by: &str) -> PathBuf {
    let seed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/events.toml")).unwrap();
    let text = seed.replace("partition_by = \"id\"", &format!("partition_by = \"{partition_by}\""));
    assert_ne!(text, seed, "the seed dataflow partitions by id");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The folder (relative to the run folder) each transform puts a row of (id, ts µs) in.
fn expected_folder(partition_by: &str, id: i64, ts_us: i64) -> String {
    match partition_by {
        "bucket(id, 16)" => format!("id_bucket={}", bucket_of_long(id, 16)),
        "day(ts)" => format!("ts_day={}", day_text(day_of(ts_us))),
        "hour(ts)" => format!("ts_hour={}", hour_text(hour_of(ts_us))),
        "none" => String::new(),
        other => panic!("no expectation for {other}"),
    }
}

/// Every raw row of the run folder as (folder relative to it, id, ts µs).
fn raw_rows(run_dir: &Path) -> Vec<(String, i64, i64)> {
    let mut rows = Vec::new();
    for file in data_files(run_dir) {
        let folder = file.parent().unwrap().strip_prefix(run_dir).unwrap().to_string_lossy().into_owned();
        for batch in parquet_batches(&file) {
            let id = column::<Int32Array>(&batch, "id");
            let ts = column::<TimestampMicrosecondArray>(&batch, "ts");
            for i in 0..batch.num_rows() {
                rows.push((folder.clone(), i64::from(id.value(i)), ts.value(i)));
            }
        }
    }
    rows
}

/// Row counts per id as pandas and DuckDB read the dataset, per folder value as DuckDB reads the
/// partition column (`folder_column`, absent for `none`), and the columns pandas sees.
fn python_counts(py: &str, out: &Path, run_dir: &Path, folder_column: &str) -> serde_json::Value {
    let script = r#"
import json, sys
import pandas as pd, duckdb
out, run_dir, folder_column = sys.argv[1], sys.argv[2], sys.argv[3]
df = pd.read_parquet(run_dir)
pandas = {str(int(k)): int(v) for k, v in df.groupby("id", observed=True).size().items()}
glob = f"{out}/**/*.parquet"
# DuckDB prints a progress bar to stdout once a query passes 2 s, into the JSON read below
duckdb.sql("set enable_progress_bar = false")
duck = {str(r[0]): int(r[1]) for r in duckdb.sql(
    f"select id, count(*) from read_parquet('{glob}', hive_partitioning=true) group by id").fetchall()}
folders = {}
if folder_column:
    folders = {str(r[0]): int(r[1]) for r in duckdb.sql(
        f"select {folder_column}, count(*) from read_parquet('{glob}', hive_partitioning=true) group by 1").fetchall()}
print(json.dumps({"pandas": pandas, "duckdb": duck, "folders": folders, "columns": sorted(df.columns)}))
"#;
    let output =
        Command::new(py).arg("-c").arg(script).arg(out).arg(run_dir).arg(folder_column).output().unwrap();
    assert!(output.status.success(), "python readers failed: {}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn as_counts(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object().unwrap().iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap())).collect()
}

#[test]
fn bucket_day_hour_and_none_datasets_are_read_back_by_every_reader() {
    let Some(brokers) = brokers() else { return };
    let py = python("not reading back with pandas and DuckDB");
    let tmp = tempfile::tempdir().unwrap();
    let topic = unique("transforms");
    create_topic(&brokers, &topic, 3);
    let t0 = chrono::Utc::now().timestamp_millis() - SPAN_MS - 3_600_000;
    let events: Vec<(i64, i64)> = (0..EVENTS).map(|i| (i * 7 % IDS, t0 + i * (SPAN_MS / EVENTS))).collect();
    let records: Vec<_> = events.iter().map(|&(id, ms)| event_at(id, ms, (id as f64) * 0.5)).collect();
    send(&brokers, &topic, &records);
    let mut per_id: BTreeMap<String, u64> = BTreeMap::new();
    for (id, _) in &events {
        *per_id.entry(id.to_string()).or_insert(0) += 1;
    }

    for (name, partition_by, folder_column) in [
        ("bucket", "bucket(id, 16)", "id_bucket"),
        ("day", "day(ts)", "ts_day"),
        ("hour", "hour(ts)", "ts_hour"),
        ("none", "none", ""),
    ] {
        let flow = dataflow(tmp.path(), name, partition_by);
        let out = tmp.path().join(name).join("parquet");
        let run = output_within(
            run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows", "-w", "2"])
                .arg("--dataflow")
                .arg(&flow),
            Duration::from_secs(180),
        );
        assert!(run.status.success(), "{partition_by}: {}", text(&run));
        let run_dir = out.join("run_t");

        // The run folder records the normalized transform.
        let identity: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("_checkpoint/identity.json")).unwrap())
                .unwrap();
        assert_eq!(identity["dataflow"]["partition_by"], partition_by);

        // Every row lies in the folder its value maps to, and the source column stays in the files.
        let rows = raw_rows(&run_dir);
        assert_eq!(rows.len() as i64, EVENTS, "{partition_by}: every event once");
        let mut per_folder: BTreeMap<String, u64> = BTreeMap::new();
        for (folder, id, ts) in &rows {
            assert_eq!(*folder, expected_folder(partition_by, *id, *ts), "{partition_by}: id {id} at {ts}");
            *per_folder
                .entry(folder.split_once('=').map_or(String::new(), |(_, v)| v.to_string()))
                .or_insert(0) += 1;
        }
        let folders = per_folder.len();
        match partition_by {
            "bucket(id, 16)" => assert!((10..=16).contains(&folders), "{folders} buckets of 40 ids"),
            "day(ts)" => assert!((3..=4).contains(&folders), "50 hours make 3 or 4 days: {folders}"),
            "hour(ts)" => assert!((50..=52).contains(&folders), "50 hours: {folders}"),
            _ => assert_eq!(folders, 1, "none: the files sit in the run folder"),
        }
        if partition_by == "none" {
            let dirs: Vec<String> = std::fs::read_dir(&run_dir)
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
                .collect();
            assert!(dirs.is_empty(), "none writes no folders: {dirs:?}");
        }

        // validate reads the key from the files' `id` column, and the audit passes.
        let report = output_within(
            bin().args(["validate", "--json", "--dataflow"]).arg(&flow).arg("--path").arg(&out),
            Duration::from_secs(120),
        );
        assert!(report.status.success(), "{partition_by}: {}", text(&report));
        let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
        let validated: BTreeMap<String, u64> = report["per_id"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].to_string(), s["rows"].as_u64().unwrap()))
            .collect();
        assert_eq!(validated, per_id, "{partition_by}: validate's rows per id");
        assert_eq!(report["total_rows"], EVENTS);
        let audit = output_within(
            bin().args(["validate", "--audit", "--dataflow"]).arg(&flow).arg("--path").arg(&out),
            Duration::from_secs(120),
        );
        let audit_text = String::from_utf8_lossy(&audit.stdout).into_owned();
        assert!(audit.status.success(), "{partition_by}: {}", text(&audit));
        let summary = audit_text.lines().find(|l| l.starts_with("audit:")).unwrap_or_default();
        assert!(summary.ends_with("-> OK") && summary.contains(&format!("written={EVENTS}")), "{summary}");
        assert!(audit_text.contains("completeness:"), "{audit_text}");

        // pandas (the seed DAG's reader) and DuckDB see the same rows per id, and DuckDB reads the
        // folder values as the partition column.
        if let Some(py) = &py {
            let read = python_counts(py, &out, &run_dir, folder_column);
            assert_eq!(as_counts(&read["pandas"]), per_id, "{partition_by}: pandas");
            assert_eq!(as_counts(&read["duckdb"]), per_id, "{partition_by}: DuckDB");
            if !folder_column.is_empty() {
                assert_eq!(
                    as_counts(&read["folders"]),
                    per_folder,
                    "{partition_by}: DuckDB's {folder_column}"
                );
                let columns: Vec<&str> =
                    read["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
                assert!(
                    columns.contains(&folder_column) && columns.contains(&"id"),
                    "pandas sees {columns:?}"
                );
            }
        }
    }
}

/// A dataflow whose `partition_by` the sink cannot do is refused before anything is read or
/// written, naming the text, what is accepted and an example.
#[test]
fn bad_transforms_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (partition_by, says) in [
        ("bucket(id)", "bucket takes a column and a number of buckets"),
        ("bucket(id, 0)", "the number of buckets `0`"),
        ("day(value)", "`value` is float64 but this transform needs a timestamp column"),
        ("month(ts)", "`month` is not a transform streamlake knows"),
        ("nope", "`nope` is not a field of the schema"),
    ] {
        let flow = dataflow(tmp.path(), "bad", partition_by);
        let out = tmp.path().join("out");
        let run = output_within(
            bin()
                .args(["run", "--brokers", "127.0.0.1:9", "--no-console", "--output"])
                .arg(&out)
                .arg("--dataflow")
                .arg(&flow),
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{partition_by}: {}", text(&run));
        assert!(
            stderr.contains(&format!("sink.partition_by `{partition_by}`")) && stderr.contains(says),
            "{partition_by}: {stderr}"
        );
        assert!(stderr.contains("for example partition_by = \"bucket(id, 16)\""), "{stderr}");
        assert!(!out.exists(), "{partition_by}: nothing is written");
    }
}
