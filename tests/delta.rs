//! `--table-format delta`: exactly once through the Delta log, as readers that know nothing of
//! streamlake see it.
//!
//! - Chaos: SIGKILL at every crash point of the commit path (the Parquet points and those of the
//!   Delta commit, `crash::DELTA_POINTS`) and at random moments, under a live producer, while a
//!   reader loads the table's newest snapshot again and again. Every snapshot seen must hold, for
//!   each Kafka partition, exactly the good records below that partition's `txn` version: a prefix,
//!   none lost, none twice, no commit seen in part. The same on S3 (the local SeaweedFS), with the
//!   object-store crash points and the reader going through the S3 API.
//! - Compaction during a live run keeps the snapshot's rows equal to the ledger, before and after,
//!   and the job's commits go on.
//! - `vacuum` deletes only what compaction replaced.
//! - A run cannot change its table format half way.
//!
//! The oracle tests with Delta, on disk and on S3, are in tests/oracle.rs; a crash completed by a
//! two-process restart, compaction and vacuum on S3 in tests/s3_output.rs.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::ledger::Records;
use crate::common::scenario::*;
use crate::common::*;
use object_store::ObjectStoreExt as _;
use rand::{Rng, SeedableRng};
use streamlake::sink::delta::snapshot::{read_at, Seen};
use streamlake::sink::delta::table::TableLocation;

const RUN: &str = "run_t";
const PARTITIONS: i32 = 3;

fn app_ids(topic: &str) -> Vec<String> {
    (0..PARTITIONS).map(|p| format!("streamlake/t/{topic}/{p}")).collect()
}

/// The footer's Kafka ranges of a file in a snapshot: (partition, start, end, rows), several for
/// a file `compact` merged (its `streamlake.sources`).
fn ranges_of(kv: &BTreeMap<String, String>) -> Vec<(i32, i64, i64, u64)> {
    let one = |kv: &BTreeMap<String, String>| {
        (
            kv["streamlake.partition"].parse().unwrap(),
            kv["streamlake.start_offset"].parse().unwrap(),
            kv["streamlake.end_offset"].parse().unwrap(),
            kv["streamlake.rows"].parse().unwrap(),
        )
    };
    match kv.get("streamlake.kind").map(String::as_str) {
        Some("compacted") => {
            let sources: serde_json::Value = serde_json::from_str(&kv["streamlake.sources"]).unwrap();
            sources
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let m: BTreeMap<String, String> = s["metadata"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect();
                    one(&m)
                })
                .collect()
        }
        _ => vec![one(kv)],
    }
}

/// The raw table of run `t` under an output (a folder or `s3://…`), reached as a reader reaches it.
struct Table {
    location: TableLocation,
    rt: Arc<tokio::runtime::Runtime>,
}

impl Table {
    fn of(output: &Path) -> Table {
        let location = streamlake::sink::delta::run_tables(output, "t").unwrap().remove(0);
        Table { location, rt: streamlake::sink::delta::table::runtime().unwrap() }
    }

    fn read(&self, topic: &str) -> Result<Option<Seen>, streamlake::sink::SinkError> {
        read_at(&self.location, &app_ids(topic))
    }

    /// The footer's key-value metadata of the file `rel` of the table.
    fn footer(&self, rel: &str) -> BTreeMap<String, String> {
        let kv = match &self.location {
            TableLocation::Local(dir) => streamlake::format::meta::read(&dir.join(rel)).unwrap(),
            TableLocation::Object { url, store } => {
                let key = url.strip_prefix("s3://").and_then(|u| u.split_once('/')).unwrap().1;
                let path = object_store::path::Path::from(format!("{key}/{rel}"));
                let bytes =
                    self.rt.block_on(async { store.get(&path).await.unwrap().bytes().await.unwrap() });
                streamlake::format::meta::read_from(bytes).unwrap()
            }
        };
        kv.into_iter().collect()
    }
}

fn good(payload: &Option<Vec<u8>>) -> bool {
    payload.as_deref().is_some_and(|p| serde_json::from_slice::<serde_json::Value>(p).is_ok())
}

/// Checks one snapshot against the topic: per partition, the rows of its files are exactly the
/// good records below its `txn` version, and no range is there twice.
fn check_prefix(what: &str, seen: &Seen, table: &Table, records: &Records, topic: &str) {
    let mut rows = BTreeMap::<i32, u64>::new();
    let mut ranges = std::collections::BTreeSet::new();
    for f in &seen.files {
        for (p, start, end, n) in ranges_of(&table.footer(&f.rel)) {
            let folder = f.rel.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            assert!(
                ranges.insert((p, start, end, folder.clone())),
                "{what}: range {p} [{start}, {end}) of {folder} twice"
            );
            let version = seen.txn[&app_ids(topic)[p as usize]];
            assert!(
                version.is_some_and(|v| end <= v),
                "{what}: a file of partition {p} ends at {end}, beyond the txn version {version:?}"
            );
            *rows.entry(p).or_default() += n;
        }
    }
    for (p, app) in app_ids(topic).iter().enumerate() {
        let below = seen.txn[app].unwrap_or(0);
        let want = records
            .get(&(p as i32))
            .map_or(0, |r| r.iter().filter(|(o, payload)| *o < below && good(payload)).count() as u64);
        assert_eq!(rows.get(&(p as i32)).copied().unwrap_or(0), want, "{what}: partition {p} below {below}");
    }
}

/// Loads the table of `output` every ~300 ms until `stop`, keeping each distinct version seen.
fn watch(
    output: std::path::PathBuf,
    topic: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Seen>> {
    std::thread::spawn(move || {
        let table = Table::of(&output);
        let mut seen: Vec<Seen> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            // A table being created, or a checkpoint being written, may fail to load for a moment.
            if let Ok(Some(s)) = table.read(&topic) {
                if seen.last().is_none_or(|l| l.version != s.version) {
                    seen.push(s);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        seen
    })
}

#[test]
fn delta_chaos_every_snapshot_is_a_prefix_of_each_partition() {
    let Some(brokers) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lake");
    let points: Vec<&'static str> =
        streamlake::crash::POINTS.iter().chain(streamlake::crash::DELTA_POINTS).copied().collect();
    let records = chaos(&brokers, &out, &[], &points, Duration::ZERO, tmp.path());
    // The ledger reads the folder and the checkpoint, and must agree with the log.
    let run_dir = out.join(RUN);
    let l = ledger::check(&run_dir, &records, future_limit_ms());
    l.assert_exact("delta chaos");
    let text = ledger::audit_ok(&out);
    // The windows are counted from the aggregates table (checked against windows.json): the
    // catch-up run flushed them all, so each written row is in one closed window's final row.
    let counted = format!("open=0 on_time={} late_dropped=0 open_rows=0 ", l.written);
    assert!(text.contains(&counted), "the aggregates table holds every row once:\n{text}");
    // An independent reader agrees: delta-rs from Python.
    let py = delta::read_python(run_dir.to_str().unwrap(), "deltalake", &[]);
    assert_eq!(py.rows, l.written, "deltalake reads every written row once");
}

/// The same on S3 (the local SeaweedFS): the object-store crash points and the Delta ones, the
/// reader loading the table through the S3 API; then the audit of the store and deltalake
/// reading through S3.
#[test]
fn delta_chaos_on_s3_every_snapshot_is_a_prefix_of_each_partition() {
    let Some(brokers) = brokers() else { return };
    let Some(bucket) = common::s3::bucket() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/{}/out", unique("delta-chaos"));
    let points: Vec<&'static str> =
        streamlake::crash::OBJECT_POINTS.iter().chain(streamlake::crash::DELTA_POINTS).copied().collect();
    // A killed process's lease (--object-lease 3s) must lapse before the next start is let in.
    let lease = ["--object-lease", "3s"];
    let records = chaos(&brokers, Path::new(&url), &lease, &points, Duration::from_millis(3500), tmp.path());
    let audit = bin().args(["validate", "--audit", "--path", &url]).output().unwrap();
    let stdout = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "validate --audit {url}: {}", common::process::text(&audit));
    assert!(stdout.lines().any(|l| l.starts_with("audit:") && l.ends_with("OK")), "{stdout}");
    let good_total = records.values().flatten().filter(|(_, p)| good(p)).count() as u64;
    let py = delta::read_python(&format!("{url}/{RUN}"), "deltalake", &[]);
    assert_eq!(py.rows, good_total, "deltalake reads every good record once, through S3");
}

/// Kills `streamlake run --table-format delta` into `output` at each of `points` and at random
/// moments under a live producer (`extra` flags; `pause` between kills), with a reader loading every new
/// version; then catches up and checks every version seen (see the module doc). Returns the
/// topic's records.
fn chaos(
    brokers: &str,
    output: &Path,
    extra: &[&str],
    points: &[&'static str],
    pause: Duration,
    logs: &Path,
) -> Records {
    let topic = unique("delta-chaos");
    create_topic(brokers, &topic, PARTITIONS);
    let seed: u64 = std::env::var("STREAMLAKE_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    println!("[delta-chaos] {} seed={seed}", output.display());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let t0: i64 = 1_750_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = synthetic_stream(brokers, &topic, t0, 0, 500, stop.clone());
    let watching = Arc::new(AtomicBool::new(false));
    let watcher = watch(output.to_path_buf(), topic.clone(), watching.clone());
    let base = [&["--table-format", "delta"][..], extra].concat();

    // Every point of the commit path once, then random points and plain kills.
    let kills = points.len() + 4;
    let mut reached = BTreeMap::<&str, u32>::new();
    for k in 0..kills {
        std::thread::sleep(pause);
        let workers = ["1", "2", "3"][k % 3];
        let cmd = run_earliest(
            brokers,
            &topic,
            output,
            &[&base[..], &["--roll-interval", "200ms", "--trigger", "200ms", "-w", workers]].concat(),
        );
        let target = if k < points.len() {
            Some((points[k], 1 + (k % 2) as u32))
        } else if rng.random_bool(0.5) {
            Some((points[rng.random_range(0..points.len())], rng.random_range(1..4)))
        } else {
            None
        };
        if let Some(point) =
            kill_once(cmd, logs.join(format!("kill-{k}.log")), target, Duration::from_secs(30), &mut rng, k)
        {
            *reached.entry(point).or_insert(0) += 1;
        }
        println!("[delta-chaos] kill {k}: {target:?}");
    }
    stop.store(true, Ordering::SeqCst);
    let produced = producer.join().unwrap();
    std::thread::sleep(pause);
    run_ok(&mut run_earliest(
        brokers,
        &topic,
        output,
        &[&base[..], &["--available-now", "--flush-windows", "-w", "2"]].concat(),
    ));
    watching.store(true, Ordering::SeqCst);
    let mut seen = watcher.join().unwrap();
    println!(
        "[delta-chaos] points reached: {reached:?}; events sent: {produced}; snapshots seen: {}",
        seen.len()
    );
    for p in points {
        assert!(reached.contains_key(p), "crash point {p} was never reached");
    }

    let records = ledger::consume_topic(brokers, &topic);
    let table = Table::of(output);
    seen.push(table.read(&topic).unwrap().expect("the table exists"));
    assert!(seen.len() >= 5, "the reader saw only {} versions", seen.len());
    for s in &seen {
        check_prefix(&format!("version {}", s.version), s, &table, &records, &topic);
    }
    let last = seen.last().unwrap();
    let highs: Vec<i64> = (0..PARTITIONS).map(|p| records.get(&p).map_or(0, |r| r.len() as i64)).collect();
    let txn: Vec<i64> = app_ids(&topic).iter().map(|a| last.txn[a].unwrap()).collect();
    assert_eq!(txn, highs, "after the catch-up run each txn version is the partition's end");
    records
}

#[test]
fn compaction_during_a_live_run_keeps_the_rows_and_vacuum_deletes_only_what_it_replaced() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("delta-compact");
    create_topic(&brokers, &topic, PARTITIONS);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lake");
    let t0: i64 = 1_750_000_000_000;
    load(&brokers, &topic, t0, 3000);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = synthetic_stream(&brokers, &topic, t0, 3000, 300, stop.clone());
    let log = tmp.path().join("job.log");
    let mut job = job::Job::spawn(
        run_earliest(
            &brokers,
            &topic,
            &out,
            &["--table-format", "delta", "--roll-interval", "200ms", "-w", "2"],
        ),
        log,
    );
    let run_dir = out.join(RUN);
    let table = Table::of(&out);
    let compactions = Mutex::new(Vec::new());
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        let o =
            run_ok(bin().args(["compact", "--run-id", "t", "--target-size-mib", "64", "--output"]).arg(&out));
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        println!("[compact] round {round}: {text}");
        assert!(text.contains("compacted"), "{text}");
        compactions.lock().unwrap().push(text);
        // Between compactions the table, read now, is an exact prefix (the job goes on meanwhile).
        let records = ledger::consume_topic(&brokers, &topic);
        let s = table.read(&topic).unwrap().unwrap();
        check_prefix(&format!("after compaction {round}"), &s, &table, &records, &topic);
    }
    assert!(
        compactions.lock().unwrap().iter().any(|t| t.contains("small files merged")),
        "no compaction merged anything: {:?}",
        compactions.lock().unwrap()
    );
    stop.store(true, Ordering::SeqCst);
    producer.join().unwrap();
    assert!(job.wait_for(Duration::ZERO).is_none(), "the job stopped during compaction:\n{}", job.log());
    let log = job.stop();
    assert!(log.contains("run finished"), "{log}");
    // The audit reads the merged files' sources: the table, compacted, still tiles every
    // partition up to its txn version.
    ledger::audit_ok(&out);
    run_ok(&mut run_earliest(
        &brokers,
        &topic,
        &out,
        &["--table-format", "delta", "--available-now", "-w", "2"],
    ));

    let records = ledger::consume_topic(&brokers, &topic);
    let good_total: u64 = records.values().flatten().filter(|(_, p)| good(p)).count() as u64;
    let s = table.read(&topic).unwrap().unwrap();
    check_prefix("after the run", &s, &table, &records, &topic);
    let before = delta::read_python(run_dir.to_str().unwrap(), "deltalake", &[]);
    assert_eq!(before.rows, good_total);

    // Vacuum: a dry run lists the replaced files; with --retain 0s they go, and the table reads the same.
    let files_on_disk = || {
        let mut n = 0;
        for e in walk(&run_dir) {
            if e.extension().is_some_and(|x| x == "parquet") && !e.to_string_lossy().contains("/_") {
                n += 1;
            }
        }
        n
    };
    let on_disk = files_on_disk();
    assert!(on_disk > s.files.len(), "compaction left the replaced files for vacuum");
    let o = run_ok(bin().args(["vacuum", "--run-id", "t", "--retain", "0s", "--output"]).arg(&out));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("deleted"), "{text}");
    assert_eq!(files_on_disk(), s.files.len(), "vacuum left exactly the table's files: {text}");
    let after = delta::read_python(run_dir.to_str().unwrap(), "deltalake", &[]);
    assert_eq!((after.rows, &after.rows_per_key), (before.rows, &before.rows_per_key));
    // After vacuum the audit still accounts for every record of the topic, through the merged files.
    let total: u64 = records.values().map(|r| r.len() as u64).sum();
    let text = ledger::audit_ok(&out);
    assert!(text.contains(&format!("messages={total} ")), "the audit counts all {total} records:\n{text}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_run_keeps_its_table_format() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("delta-format");
    create_topic(&brokers, &topic, 1);
    load(&brokers, &topic, 1_750_000_000_000, 100);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lake");
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now"]));
    let o = run_earliest(&brokers, &topic, &out, &["--available-now", "--table-format", "delta"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("was written as plain Parquet"), "{err}");
    assert!(!out.join(RUN).join("_delta_log").exists(), "a refusal creates nothing");

    let topic2 = unique("delta-format");
    create_topic(&brokers, &topic2, 1);
    load(&brokers, &topic2, 1_750_000_000_000, 100);
    let out2 = tmp.path().join("lake2");
    run_ok(&mut run_earliest(&brokers, &topic2, &out2, &["--available-now", "--table-format", "delta"]));
    let o = run_earliest(&brokers, &topic2, &out2, &["--available-now"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("is a Delta table"), "{err}");
}
