//! Oracle tests: known events (some late, some malformed) through `run --available-now
//! --flush-windows` at 1, 2 and 4 workers and 2 processes, compared with a naive computation.
//!
//! Lateness depends on the order partitions are read in, so the oracle's late records are late
//! under every interleaving: they are produced after a first run has closed their windows (its
//! `--flush-windows` records that in the checkpoint), and read by a second run. Within a run,
//! on-time events span 20 s of event time, less than the 30 s watermark delay, so no on-time
//! event can ever be late, whatever the interleaving.
//!
//! With `--table-format delta` the tables are also read by Delta readers that know nothing of
//! streamlake; the Delta oracles run on local disk and on S3 (the local SeaweedFS: the job writes
//! through the S3 API, the files are checked on a copy read back through it, and the Delta readers,
//! Spark through s3a among them, read the store).

use crate::common;

use crate::common::delta;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use crate::common::*;

const T0_MS: i64 = 1_740_787_200_000; // 2025-03-01T00:00:00Z
const PARTITIONS: i32 = 3;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn iso(ms: i64, micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(ms * 1000 + micros).unwrap();
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

#[derive(Default)]
struct Expected {
    /// (id, ts_us, value bits) of every row that must be in the raw dataset.
    raw: Vec<(i64, i64, u64)>,
    /// (window_end_us, id) → values aggregated on time.
    windows: BTreeMap<(i64, i64), Vec<f64>>,
    quarantined: u64,
    late: u64,
}

/// A batch: `n` on-time events in [start_s, start_s + 20 s), `late` events in [2 s, 22 s) (the
/// first batch's windows), and one malformed record of every kind per partition.
fn batch(
    rng: &mut Lcg,
    start_s: i64,
    n: usize,
    late: usize,
    exp: &mut Expected,
) -> Vec<(i32, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let event = |rng: &mut Lcg, ts_ms: i64, on_time: bool, exp: &mut Expected| {
        let id = (rng.next() % 5) as i64;
        let value = (rng.next() % 100_001) as f64 / 1000.0;
        let micros = (rng.next() % 1000) as i64;
        let payload = format!(
            r#"{{"id": {id}, "ts": "{}", "value": {value:?}, "source": "oracle"}}"#,
            iso(ts_ms, micros)
        );
        let ts_us = ts_ms * 1000 + micros;
        exp.raw.push((id, ts_us, value.to_bits()));
        if on_time {
            let end_us = (ts_ms.div_euclid(10_000) * 10_000 + 10_000) * 1000;
            exp.windows.entry((end_us, id)).or_default().push(value);
        } else {
            exp.late += 1;
        }
        ((rng.next() % PARTITIONS as u64) as i32, Some(payload.into_bytes()))
    };
    for _ in 0..n {
        let ts = T0_MS + start_s * 1000 + (rng.next() % 20_000) as i64;
        out.push(event(rng, ts, true, exp));
    }
    for _ in 0..late {
        let ts = T0_MS + 2_000 + (rng.next() % 20_000) as i64;
        out.push(event(rng, ts, false, exp));
    }
    for p in 0..PARTITIONS {
        let ts = iso(T0_MS + start_s * 1000, 0);
        for bad in [
            None,
            Some(Vec::new()),
            Some(b"{not json".to_vec()),
            Some(b"\xff\xfe\xfd".to_vec()),
            Some(format!(r#"{{"ts": "{ts}", "value": 1.0}}"#).into_bytes()),
            Some(format!(r#"{{"id": null, "ts": "{ts}", "value": 1.0}}"#).into_bytes()),
            Some(format!(r#"{{"id": "three", "ts": "{ts}", "value": 1.0}}"#).into_bytes()),
            Some(br#"{"id": 1, "ts": "2025-03-01T00:00:05", "value": 1.0}"#.to_vec()),
            Some(format!(r#"{{"id": 1, "ts": "{ts}", "value": "high"}}"#).into_bytes()),
        ] {
            out.push((p, bad));
            exp.quarantined += 1;
        }
    }
    // Interleave deterministically so malformed records sit between good ones.
    let mut shuffled = Vec::with_capacity(out.len());
    while !out.is_empty() {
        let i = (rng.next() as usize) % out.len();
        shuffled.push(out.swap_remove(i));
    }
    shuffled
}

/// Where the lake is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lake {
    Local,
    S3,
}

#[derive(Clone, Copy, Debug)]
enum Cluster {
    Workers(u16),
    Processes(u16),
}

/// Runs the job into `output` (a folder or `s3://…`); `scratch` holds the host file.
fn run(
    brokers: &str,
    topic: &str,
    output: &str,
    scratch: &Path,
    cluster: Cluster,
    format: &str,
) -> Vec<Output> {
    let base = |c: &mut std::process::Command| {
        c.args(["run", "--brokers", brokers, "--topic", topic, "--starting-offsets", "earliest"])
            .args(["--available-now", "--flush-windows", "--no-console", "--run-id", "oracle"])
            .args(["--table-format", format])
            .args(["--output", output]);
    };
    match cluster {
        Cluster::Workers(w) => {
            let mut c = bin();
            base(&mut c);
            vec![run_ok(c.args(["-w", &w.to_string()]))]
        }
        Cluster::Processes(n) => {
            let hostfile = scratch.join("hosts");
            let hosts: Vec<String> = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
            std::fs::write(&hostfile, hosts.join("\n")).unwrap();
            let children: Vec<_> = (0..n)
                .map(|p| {
                    let mut c = bin();
                    base(&mut c);
                    c.args(["-n", &n.to_string(), "-p", &p.to_string()])
                        .arg("-h")
                        .arg(&hostfile)
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            children
                .into_iter()
                .map(|c| {
                    let out = c.wait_with_output().unwrap();
                    assert!(out.status.success(), "process failed: {}", String::from_utf8_lossy(&out.stderr));
                    out
                })
                .collect()
        }
    }
}

fn exact_avg(values: &[f64]) -> f64 {
    let nanos: i128 = values.iter().map(|v| (v * 1e9).round() as i128).sum();
    (nanos as f64 / 1e9) / values.len() as f64
}

fn oracle(cluster: Cluster) {
    oracle_in(cluster, "parquet", Lake::Local);
}

/// The oracle with `--table-format delta`: the files as above, and both tables as Delta readers
/// that know nothing of streamlake see them (`readers`: `deltalake`, `polars`, `spark`).
fn oracle_delta(cluster: Cluster, lake: Lake, readers: &[&str]) {
    let Some(done) = oracle_in(cluster, "delta", lake) else { return };
    let table = &format!("{}/run_oracle", done.output);
    let mut want_per_key: BTreeMap<String, u64> = BTreeMap::new();
    let mut want_windows: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for (id, ts_us, bits) in &done.exp.raw {
        *want_per_key.entry(id.to_string()).or_default() += 1;
        let end_ms = (ts_us / 1000).div_euclid(10_000) * 10_000 + 10_000;
        let w = want_windows.entry(format!("{id}|{end_ms}")).or_default();
        w.0 += 1;
        w.1 += f64::from_bits(*bits);
    }
    let produced = (done.exp.raw.len() as u64 + done.exp.quarantined) as i64;
    for reader in readers {
        let got = match *reader {
            "spark" => delta::read_spark(table),
            r => delta::read_python(table, r, &[]),
        };
        assert_eq!(got.rows, done.exp.raw.len() as u64, "{cluster:?} {reader}: rows");
        assert_eq!(got.rows_per_key, want_per_key, "{cluster:?} {reader}: rows per id");
        assert_eq!(got.windows.len(), want_windows.len(), "{cluster:?} {reader}: windows");
        for (k, (count, sum)) in &want_windows {
            let (c, s) = got.windows[k];
            assert_eq!(c, *count, "{cluster:?} {reader}: count of {k}");
            assert!(
                (s - sum).abs() <= 1e-9 * sum.abs().max(1.0),
                "{cluster:?} {reader}: sum of {k}: {s} vs {sum}"
            );
        }
        if *reader != "spark" {
            // Each partition's txn version is its next offset: together, every record produced.
            let parts: Vec<i64> =
                (0..PARTITIONS).map(|p| got.txn[&format!("streamlake/oracle/{}/{p}", done.topic)]).collect();
            assert_eq!(
                parts.iter().sum::<i64>(),
                produced,
                "{cluster:?} {reader}: txn versions {:?}",
                got.txn
            );
        }
    }
    // The aggregates table: one row per final window, and its txn at the closed-through mark.
    let (parent, name) = done.output.rsplit_once('/').unwrap();
    let aggs = format!("{parent}/aggregates/{name}/run_oracle");
    let got = delta::read_python(&aggs, "deltalake:aggregates", &[]);
    assert_eq!(got.rows as usize, done.want_windows, "{cluster:?}: aggregate rows");
    assert!(got.txn["streamlake/oracle/windows"] > 0, "{:?}", got.txn);
}

struct Done {
    _tmp: tempfile::TempDir,
    /// The job's `--output`: a folder or `s3://…`.
    output: String,
    topic: String,
    exp: Expected,
    want_windows: usize,
}

fn oracle_in(cluster: Cluster, format: &str, lake: Lake) -> Option<Done> {
    let brokers = brokers()?;
    let bucket = match lake {
        Lake::S3 => Some(common::s3::bucket()?),
        Lake::Local => None,
    };
    let topic = unique("oracle");
    create_topic(&brokers, &topic, PARTITIONS);
    let tmp = tempfile::tempdir().unwrap();
    // The lake on disk, or the copy of the one on S3 read back (same layout: `parquet/` and
    // `aggregates/` side by side).
    let out_dir = tmp.path().join("parquet");
    let prefix = bucket.as_ref().map(|b| format!("s3://{b}/{}", unique("oracle")));
    let output = match &prefix {
        Some(prefix) => format!("{prefix}/parquet"),
        None => out_dir.display().to_string(),
    };
    let mut rng = Lcg(42);
    let mut exp = Expected::default();

    let first = batch(&mut rng, 2, 3000, 0, &mut exp);
    send(&brokers, &topic, &first);
    let mut outputs = run(&brokers, &topic, &output, tmp.path(), cluster, format);

    let second = batch(&mut rng, 100, 3000, 40, &mut exp);
    send(&brokers, &topic, &second);
    outputs.extend(run(&brokers, &topic, &output, tmp.path(), cluster, format));
    if let Some(prefix) = &prefix {
        let url = streamlake::storage::ObjectUrl::parse(prefix).unwrap();
        let objects =
            common::s3::copy_to(&streamlake::storage::ObjectStoreRoot::open(&url).unwrap(), tmp.path());
        println!("[oracle {cluster:?}] read back {objects} objects from {prefix}");
    }

    // 3 partitions over 2 workers (in one process or two) split 2:1: the worker with two reads
    // each on a thread of its own (src/ingest/lanes.rs), so these clusters check that path.
    let splits = matches!(cluster, Cluster::Workers(2) | Cluster::Processes(2));
    let split_said =
        outputs.iter().any(|o| String::from_utf8_lossy(&o.stderr).contains("on a thread of its own"));
    assert_eq!(split_said, splits, "{cluster:?}: whether a worker split its partitions over threads");

    let run_dir = out_dir.join("run_oracle");
    // Raw rows: exactly the produced events minus the quarantined ones.
    let mut want = exp.raw.clone();
    want.sort();
    let got = read_raw(&run_dir);
    assert_eq!(got.len(), want.len(), "{cluster:?}: raw row count");
    assert_eq!(got, want, "{cluster:?}: raw rows differ");

    // Final windows: exactly the oracle's, each once.
    let aggs = read_aggregates(&aggregates_of(&out_dir, "run_oracle"));
    let want_windows: BTreeMap<(i64, i64), (f64, i64)> =
        exp.windows.iter().map(|(k, vals)| (*k, (exact_avg(vals), vals.len() as i64))).collect();
    assert_eq!(
        aggs.keys().collect::<Vec<_>>(),
        want_windows.keys().collect::<Vec<_>>(),
        "{cluster:?}: window set"
    );
    for (k, (avg, count)) in &want_windows {
        let (got_avg, got_count) = aggs[k];
        assert_eq!(got_count, *count, "{cluster:?}: count of window {k:?}");
        assert_eq!(got_avg, *avg, "{cluster:?}: avg of window {k:?}");
        let naive = exp.windows[k].iter().sum::<f64>() / *count as f64;
        assert!(
            (got_avg - naive).abs() <= 1e-9 * naive.abs().max(1.0),
            "{cluster:?}: {got_avg} vs naive {naive}"
        );
    }

    // Quarantine and late counts: in the checkpoint, in the run summaries, and in the files.
    assert_eq!(checkpoint_total(&run_dir, "total_quarantined"), exp.quarantined, "{cluster:?}: quarantined");
    assert_eq!(checkpoint_total(&run_dir, "total_late"), exp.late, "{cluster:?}: late");
    let totals = run_totals(&outputs);
    assert_eq!(totals["quarantined"], exp.quarantined);
    assert_eq!(totals["late"], exp.late);
    assert_eq!(totals["rows"], exp.raw.len() as u64);
    let q_rows: usize = data_files_including_hidden(&run_dir.join("_quarantine"))
        .iter()
        .map(|f| {
            parquet::file::reader::FileReader::metadata(
                &parquet::file::serialized_reader::SerializedFileReader::new(std::fs::File::open(f).unwrap())
                    .unwrap(),
            )
            .file_metadata()
            .num_rows() as usize
        })
        .sum();
    assert_eq!(q_rows as u64, exp.quarantined, "{cluster:?}: quarantine dataset rows");
    Some(Done { _tmp: tmp, output, topic, want_windows: want_windows.len(), exp })
}

fn data_files_including_hidden(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn oracle_one_worker() {
    oracle(Cluster::Workers(1));
}

#[test]
fn oracle_two_workers() {
    oracle(Cluster::Workers(2));
}

#[test]
fn oracle_four_workers() {
    oracle(Cluster::Workers(4));
}

#[test]
fn oracle_two_processes() {
    oracle(Cluster::Processes(2));
}

#[test]
fn oracle_delta_one_worker() {
    oracle_delta(Cluster::Workers(1), Lake::Local, &["deltalake", "spark"]);
}

#[test]
fn oracle_delta_two_workers() {
    oracle_delta(Cluster::Workers(2), Lake::Local, &["deltalake", "polars"]);
}

#[test]
fn oracle_delta_four_workers() {
    oracle_delta(Cluster::Workers(4), Lake::Local, &["deltalake"]);
}

#[test]
fn oracle_delta_two_processes() {
    oracle_delta(Cluster::Processes(2), Lake::Local, &["deltalake"]);
}

#[test]
fn oracle_delta_s3_one_worker() {
    oracle_delta(Cluster::Workers(1), Lake::S3, &["deltalake", "spark"]);
}

#[test]
fn oracle_delta_s3_two_workers() {
    oracle_delta(Cluster::Workers(2), Lake::S3, &["deltalake", "polars"]);
}

#[test]
fn oracle_delta_s3_four_workers() {
    oracle_delta(Cluster::Workers(4), Lake::S3, &["deltalake"]);
}

#[test]
fn oracle_delta_s3_two_processes() {
    oracle_delta(Cluster::Processes(2), Lake::S3, &["deltalake"]);
}
