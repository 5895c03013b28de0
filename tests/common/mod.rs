//! Helpers for whole-program tests: a real broker, unique topics, the real binary, and readers
//! for what it writes.
#![allow(dead_code)]

pub mod compose;
pub mod delta;
pub mod job;
pub mod ledger;
pub mod limits;
pub mod process;
pub mod s3;
pub mod scenario;
pub mod scratch;
pub mod secure;
pub mod windows;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use process::{output_within, python, text, wait_output_within};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::{Array, Float64Array, Int32Array, Int64Array, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// The broker the test command started. Under CI (or `STREAMLAKE_REQUIRE_KAFKA=1`) a missing
/// broker fails the test; on a developer machine without one the test says so and returns.
pub fn brokers() -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            if process::required() {
                panic!("KAFKA_BOOTSTRAP_SERVERS is not set but a broker is required: run scripts/test.sh");
            }
            eprintln!("no broker: set KAFKA_BOOTSTRAP_SERVERS or run scripts/test.sh; not running this test");
            None
        }
    }
}

pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamlake"));
    cmd.env_remove("KAFKA_TOPIC").env_remove("OUTPUT_PATH").env_remove("RUN_ID").env_remove("MSGS_PER_SEC");
    cmd.env("RUST_LOG", "streamlake=info,warn").env("RUST_BACKTRACE", "1");
    cmd
}

/// `streamlake run` on `topic` writing to `out`, run id `t`, from the earliest offsets, no console.
pub fn run_earliest(brokers: &str, topic: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["run", "--brokers", brokers, "--topic", topic, "--starting-offsets", "earliest", "--no-console"])
        .args(["--run-id", "t", "--output"])
        .arg(out)
        .args(extra);
    c
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("starting streamlake");
    assert!(
        out.status.success(),
        "command failed ({:?}): {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    run_ok(
        bin()
            .args(["topic", "create", "--brokers", brokers, "--topic", topic, "--partitions"])
            .arg(partitions.to_string()),
    );
}

/// Sends payloads to explicit partitions and waits until all are acknowledged.
pub fn send(brokers: &str, topic: &str, records: &[(i32, Option<Vec<u8>>)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (partition, payload) in records {
        let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).partition(*partition);
        if let Some(p) = payload {
            rec = rec.payload(p.as_slice());
        }
        let mut rec = rec;
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// A free TCP port on loopback (for timely cluster addresses).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every `*.parquet` file below `dir` that a reader should see (skipping hidden `_`/`.` names).
pub fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            out.extend(data_files(&p));
        } else if name.ends_with(".parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every record batch of one Parquet file.
pub fn parquet_batches(file: &Path) -> impl Iterator<Item = RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|batch| batch.unwrap())
}

/// Column `name` of `batch` as its Arrow array type `T` (the test fails if it is absent or of
/// another type).
pub fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    let col = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    col.as_any().downcast_ref::<T>().unwrap_or_else(|| panic!("column {name} is {}", col.data_type()))
}

/// A JSON event of the seed's shape for `id` at `ms`, on partition `ms % 3`.
pub fn event_at(id: i64, ms: i64, value: f64) -> (i32, Option<Vec<u8>>) {
    let ts = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    ((ms % 3) as i32, Some(format!(r#"{{"id": {id}, "ts": "{ts}", "value": {value:?}}}"#).into_bytes()))
}

/// Raw rows as (id, ts_us, value bits) from the hive-partitioned dataset.
pub fn read_raw(dir: &Path) -> Vec<(i64, i64, u64)> {
    let mut rows = Vec::new();
    for file in data_files(dir) {
        let id: i64 = file
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("id="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no id= folder for {}", file.display()));
        for batch in parquet_batches(&file) {
            let ts = column::<TimestampMicrosecondArray>(&batch, "ts");
            let v = column::<Float64Array>(&batch, "value");
            for i in 0..batch.num_rows() {
                rows.push((id, ts.value(i), v.value(i).to_bits()));
            }
        }
    }
    rows.sort();
    rows
}

/// Where `streamlake run` writes the final windows of run folder `out/<run>` (format 2):
/// `out/../aggregates/<name of out>/<run>`.
pub fn aggregates_of(out: &Path, run: &str) -> PathBuf {
    out.parent().unwrap().join("aggregates").join(out.file_name().unwrap()).join(run)
}

/// Final window rows as (window_end_us, id) → (avg, count).
pub fn read_aggregates(dir: &Path) -> BTreeMap<(i64, i64), (f64, i64)> {
    let mut out = BTreeMap::new();
    for file in data_files(dir) {
        for batch in parquet_batches(&file) {
            let end = column::<TimestampMicrosecondArray>(&batch, "window_end");
            let id_col = batch.column_by_name("id").unwrap();
            let avg = column::<Float64Array>(&batch, "avg_value");
            let count = column::<Int64Array>(&batch, "count");
            for i in 0..batch.num_rows() {
                let id = if let Some(a) = id_col.as_any().downcast_ref::<Int32Array>() {
                    a.value(i) as i64
                } else {
                    id_col.as_any().downcast_ref::<Int64Array>().unwrap().value(i)
                };
                let prev = out.insert((end.value(i), id), (avg.value(i), count.value(i)));
                assert!(
                    prev.is_none(),
                    "window ({}, {id}) was written twice (in {})",
                    end.value(i),
                    file.display()
                );
            }
        }
    }
    out
}

/// The `*.json` files of a folder, sorted (checkpoint entries: oldest first).
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

/// The checkpoint entries of one partition of run folder `run_dir`, oldest first.
pub fn checkpoint_entries(run_dir: &Path, partition: i32) -> Vec<PathBuf> {
    json_files(&run_dir.join(format!("_checkpoint/partitions/p={partition}")))
}

/// Sum of a numeric field over the newest checkpoint entry of every partition.
pub fn checkpoint_total(run_dir: &Path, field: &str) -> u64 {
    let mut total = 0;
    let parts = run_dir.join("_checkpoint").join("partitions");
    for p in std::fs::read_dir(parts).unwrap().flatten() {
        if let Some(newest) = json_files(&p.path()).last() {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap();
            total += v[field].as_u64().unwrap();
        }
    }
    total
}

/// The `key=value` pairs of the `run finished:` line(s) printed by `streamlake run`, summed over
/// processes.
pub fn run_totals(outputs: &[Output]) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for out in outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.starts_with("run finished:")).expect("a run summary line");
        for kv in line.trim_start_matches("run finished:").split_whitespace() {
            if let Some((k, v)) = kv.split_once('=') {
                if let Ok(n) = v.parse::<u64>() {
                    *totals.entry(k.to_string()).or_insert(0) += n;
                }
            }
        }
    }
    totals
}

/// A digest of a whole folder tree: every relative path (folders end in `/`) with its size and a
/// hash of its content. Two equal digests mean nothing was created, removed or changed.
pub fn tree_digest(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    use std::hash::{Hash, Hasher};
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"), (0, 0));
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.insert(rel, (bytes.len() as u64, h.finish()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Deletes a topic through the admin API and waits until the broker no longer lists it.
pub fn delete_topic(brokers: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let results = futures_executor::block_on(admin.delete_topics(&[topic], &AdminOptions::new()))
        .expect("delete_topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("deleting topic {t}: {e}"));
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).unwrap();
        let listed = meta.topics().iter().any(|t| t.name() == topic && t.error().is_none());
        if !listed {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "topic {topic} still listed 30 s after deletion");
        std::thread::sleep(Duration::from_millis(200));
    }
}
