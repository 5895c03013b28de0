//! The streaming job against a real broker: restarts (clean and SIGKILL), readers of the output
//! (pandas as the seed DAG uses it, DuckDB), live mode, and a second dataflow with string keys.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Every message of `topic` as (id, ts_us, value), read with a plain consumer: the oracle input.
fn consume_all(brokers: &str, topic: &str, partitions: i32, expected: usize) -> Vec<(i64, i64, f64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "oracle-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < expected && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(500)) else { continue };
        let m = m.unwrap();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap().timestamp_micros();
        out.push((v["id"].as_i64().unwrap(), ts, v["value"].as_f64().unwrap()));
    }
    assert_eq!(out.len(), expected, "oracle consumer read everything");
    out
}

fn oracle_windows(events: &[(i64, i64, f64)]) -> BTreeMap<(i64, i64), (f64, i64)> {
    let mut acc: BTreeMap<(i64, i64), (i128, i64)> = BTreeMap::new();
    for &(id, ts, v) in events {
        let end_us = (ts.div_euclid(10_000_000) + 1) * 10_000_000;
        let e = acc.entry((end_us, id)).or_insert((0, 0));
        e.0 += (v * 1e9).round() as i128;
        e.1 += 1;
    }
    acc.into_iter().map(|(k, (s, c))| (k, ((s as f64 / 1e9) / c as f64, c))).collect()
}

/// The seed DAG's reader and DuckDB's, each returning {id: (count, mean)} as JSON.
fn python_readers(py: &str, raw_root: &Path) -> (serde_json::Value, serde_json::Value) {
    let script = r#"
import json, sys
import pandas as pd, duckdb
path = sys.argv[1]
df = pd.read_parquet(path, engine="pyarrow")
counts = df.groupby("id")["value"].agg(["count", "mean"]).reset_index()
pandas = {str(int(r["id"])): [int(r["count"]), float(r["mean"])] for _, r in counts.iterrows()}
# DuckDB prints a progress bar to stdout once a query passes 2 s, into the JSON read below
duckdb.sql("set enable_progress_bar = false")
rows = duckdb.sql(f"select id, count(*), avg(value) from read_parquet('{path}/**/*.parquet', hive_partitioning=true) group by id").fetchall()
duck = {str(int(r[0])): [int(r[1]), float(r[2])] for r in rows}
print(json.dumps({"pandas": pandas, "duckdb": duck, "total": len(df)}))
"#;
    let out = Command::new(py).arg("-c").arg(script).arg(raw_root).output().unwrap();
    assert!(out.status.success(), "python readers failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["pandas"].clone(), v["duckdb"].clone())
}

/// Produce, run and get SIGKILLed mid-run (with frequent commits), restart to completion with 3
/// workers instead of 1: every
/// event exactly once in the raw data, every window once with the oracle's average, and the seed
/// DAG's pandas reader and DuckDB agree with the oracle.
#[test]
fn sigkill_mid_run_then_restart_is_exactly_once() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("kill");
    create_topic(&brokers, &topic, 3);
    let n = 400_000usize;
    run_ok(
        bin()
            .args(["produce", "--brokers", &brokers, "--topic", &topic, "--rate", "max", "--seed", "11"])
            .args(["--count", &n.to_string()]),
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");

    let mut child = run_earliest(&brokers, &topic, &out, &["--available-now", "--roll-interval", "20ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as a first commit is visible, i.e. mid-run.
    let cp = out.join("run_t/_checkpoint/partitions");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cp.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the first run was killed before it finished (status {status:?})");
    let committed = checkpoint_total(&out.join("run_t"), "total_messages");
    assert!(committed < n as u64, "killed mid-run: {committed} of {n} committed");

    // Restart with a different worker count: ownership moves, the checkpoint is per partition.
    let second =
        run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows", "-w", "3"]));
    let totals = run_totals(&[second]);
    assert_eq!(totals["messages"] + committed, n as u64, "the restart read exactly what was not committed");

    let events = consume_all(&brokers, &topic, 3, n);
    let mut want: Vec<(i64, i64, u64)> = events.iter().map(|&(id, ts, v)| (id, ts, v.to_bits())).collect();
    want.sort();
    assert_eq!(read_raw(&out.join("run_t")), want, "raw rows are exactly the produced events");
    let aggs = read_aggregates(&aggregates_of(&out, "run_t"));
    assert_eq!(aggs, oracle_windows(&events), "every window once, with the oracle's average");

    if let Some(py) = python("skipping the Python readers") {
        let (pandas, duck) = python_readers(&py, &out);
        let mut per_id: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
        for &(id, _, v) in &events {
            let e = per_id.entry(id).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += v;
        }
        for (id, (count, sum)) in per_id {
            let mean = sum / count as f64;
            for (who, got) in [("pandas", &pandas), ("duckdb", &duck)] {
                let g = &got[id.to_string()];
                assert_eq!(g[0].as_i64().unwrap(), count, "{who} count for id {id}");
                // Readers sum in their own order: float addition is not associative.
                assert!((g[1].as_f64().unwrap() - mean).abs() < 1e-9 * mean, "{who} mean for id {id}");
            }
        }
    }
}

/// Open windows survive a restart as partial state: a first run without --flush-windows leaves
/// them open, the second resumes them (not from zero), and late records produced after the
/// windows closed are counted as late, not aggregated.
#[test]
fn open_windows_resume_from_checkpoint_and_late_records_are_not_aggregated() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("resume");
    create_topic(&brokers, &topic, 3);
    let t0: i64 = 1_750_000_000_000; // ms, a multiple of 10 s
    let ev = event_at;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    // Run 1: two values in window [t0, t0+10s) for id 1; nothing closes (watermark t0-30s+).
    send(&brokers, &topic, &[ev(1, t0 + 1_000, 10.0), ev(1, t0 + 2_001, 20.0)]);
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now"]));
    assert!(read_aggregates(&aggregates_of(&out, "run_t")).is_empty(), "no window closed yet");
    // Run 2: one more value for the same window, then flush: avg over all three.
    send(&brokers, &topic, &[ev(1, t0 + 3_002, 60.0), ev(2, t0 + 15_000, 5.0)]);
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows"]));
    // Run 3: a record for the closed window is late; a new window is on time.
    send(&brokers, &topic, &[ev(1, t0 + 4_000, 1000.0), ev(1, t0 + 100_000, 7.0)]);
    let third = run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows"]));
    assert_eq!(run_totals(&[third])["late"], 1);

    let aggs = read_aggregates(&aggregates_of(&out, "run_t"));
    let end = |ms: i64| ms * 1000;
    let want: BTreeMap<(i64, i64), (f64, i64)> = [
        ((end(t0 + 10_000), 1), (30.0, 3)),
        ((end(t0 + 20_000), 2), (5.0, 1)),
        ((end(t0 + 110_000), 1), (7.0, 1)),
    ]
    .into_iter()
    .collect();
    assert_eq!(aggs, want);
    assert_eq!(read_raw(&out.join("run_t")).len(), 6, "late records are still written raw");
    assert_eq!(checkpoint_total(&out.join("run_t"), "total_late"), 1);
}

/// Live mode: with the producer running, console updates appear every trigger and final window
/// rows appear while the producer is still sending (the watermark advances with live data).
/// A dataflow with 2 s windows and a 2 s watermark keeps this short; it is otherwise the seed's.
#[test]
fn live_mode_prints_updates_and_closes_windows_while_producing() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("live");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let flow = tmp.path().join("fast.toml");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/events.toml"))
        .unwrap()
        .replace("size = \"10s\"", "size = \"2s\"")
        .replace("watermark = \"30s\"", "watermark = \"2s\"")
        .replace("trigger = \"10s\"", "trigger = \"1s\"");
    std::fs::write(&flow, text).unwrap();
    let out = tmp.path().join("parquet");
    let mut producer = bin()
        .args(["produce", "--brokers", &brokers, "--topic", &topic, "--rate", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut run = bin()
        .args(["run", "--brokers", &brokers, "--topic", &topic, "--run-id", "live", "--roll-interval", "1s"])
        .arg("--dataflow")
        .arg(&flow)
        .arg("--output")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = run.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut batches = 0;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Batch: ") {
                batches += 1;
            }
        }
        batches
    });
    let aggs = aggregates_of(&out, "run_live");
    let deadline = Instant::now() + Duration::from_secs(90);
    while data_files(&aggs).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let producer_alive = producer.try_wait().unwrap().is_none();
    let closed = read_aggregates(&aggs);
    // Stop the job first (it commits), then the producer.
    unsafe_sigterm(run.id());
    let status = run.wait().unwrap();
    unsafe_sigterm(producer.id());
    producer.wait().unwrap();
    let batches = reader.join().unwrap();
    assert!(producer_alive, "the producer was still running when windows closed");
    assert!(!closed.is_empty(), "final window rows appeared while producing");
    assert!(batches >= 2, "console printed an update table every trigger ({batches})");
    assert!(status.success(), "SIGTERM stops the job cleanly: {status:?}");
}

fn unsafe_sigterm(pid: u32) {
    Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
}

/// The engine is generic: a second dataflow with a string key, int64 and bool columns.
#[test]
fn string_key_dataflow() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("sensors");
    create_topic(&brokers, &topic, 3);
    let t0: i64 = 1_760_000_000_000;
    let sensors = ["kitchen", "a/b", "température"];
    let mut records = Vec::new();
    let mut oracle: BTreeMap<(i64, String), (i128, i64)> = BTreeMap::new();
    for i in 0..900i64 {
        let s = sensors[(i % 3) as usize];
        let ms = t0 + (i * 17) % 15_000;
        let v = (i % 97) as f64 / 4.0;
        let ts = chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339();
        let payload = format!(
            r#"{{"sensor": "{s}", "at": "{ts}", "reading": {v:?}, "seq": {i}, "ok": {}}}"#,
            i % 2 == 0
        );
        records.push(((i % 3) as i32, Some(payload.into_bytes())));
        let e = oracle.entry(((ms / 10_000 + 1) * 10_000_000, s.to_string())).or_insert((0, 0));
        e.0 += (v * 1e9).round() as i128;
        e.1 += 1;
    }
    send(&brokers, &topic, &records);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/sensors.toml");
    run_ok(
        bin()
            .args([
                "run",
                "--brokers",
                &brokers,
                "--topic",
                &topic,
                "--starting-offsets",
                "earliest",
                "-w",
                "2",
            ])
            .args(["--available-now", "--flush-windows", "--no-console", "--run-id", "s", "--dataflow"])
            .arg(&flow)
            .arg("--output")
            .arg(&out),
    );
    let run_dir = out.join("run_s");
    assert!(run_dir.join("sensor=a%2Fb").is_dir(), "unsafe characters are percent-encoded");
    assert!(run_dir.join("sensor=kitchen").is_dir());
    let mut got: BTreeMap<(i64, String), (f64, i64)> = BTreeMap::new();
    for file in data_files(&aggregates_of(&out, "run_s")) {
        for b in parquet_batches(&file) {
            let end = column::<TimestampMicrosecondArray>(&b, "window_end");
            let key = column::<StringArray>(&b, "sensor");
            let avg = column::<Float64Array>(&b, "avg_value");
            let cnt = column::<Int64Array>(&b, "count");
            for i in 0..b.num_rows() {
                got.insert((end.value(i), key.value(i).to_string()), (avg.value(i), cnt.value(i)));
            }
        }
    }
    let want: BTreeMap<(i64, String), (f64, i64)> =
        oracle.into_iter().map(|(k, (s, c))| (k, ((s as f64 / 1e9) / c as f64, c))).collect();
    assert_eq!(got, want);
    let rows: usize = data_files(&run_dir)
        .iter()
        .map(|f| {
            let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap()).unwrap();
            assert!(r.schema().field_with_name("sensor").is_err(), "the key lives only in the folder name");
            r.metadata().file_metadata().num_rows() as usize
        })
        .sum();
    assert_eq!(rows, 900);
}
