//! `run --output s3://…` against a real S3 server (SeaweedFS, started by scripts/test.sh): the
//! dataset, checkpoint and aggregates are written through the S3 API, read back through it, and
//! checked by the same ledger and audit as on local disk. Also: a second writer of the same run
//! is refused, two processes that share no folder write one run, `validate --audit` and
//! `--incremental` read the dataset on the store, and pyarrow's S3 file system reads it unchanged.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::job::Job;
use crate::common::ledger;
use crate::common::scenario::{future_limit_ms, load, synthetic_stream};
use crate::common::*;
use streamlake::storage::{ObjectStoreRoot, ObjectUrl, Store};

/// Copies everything under `s3://bucket/prefix/` to `dest`, through the S3 API; returns how many
/// objects.
fn download(bucket: &str, prefix: &str, dest: &Path) -> usize {
    let url = ObjectUrl::parse(&format!("s3://{bucket}/{prefix}")).unwrap();
    common::s3::copy_to(&ObjectStoreRoot::open(&url).unwrap(), dest)
}

/// The Python of DuckDB with httpfs that scripts/test.sh installs
/// (`STREAMLAKE_TEST_DUCKDB_S3_PYTHON`); required under CI.
fn duckdb_s3_python() -> Option<String> {
    match std::env::var("STREAMLAKE_TEST_DUCKDB_S3_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if common::process::required() => {
            panic!("STREAMLAKE_TEST_DUCKDB_S3_PYTHON is not set under CI: run scripts/test.sh")
        }
        _ => {
            eprintln!("STREAMLAKE_TEST_DUCKDB_S3_PYTHON is not set: run scripts/test.sh; no DuckDB httpfs read-back");
            None
        }
    }
}

/// `validate --json --path URL EXTRA…`, which must succeed; its report.
fn validate_s3(url: &str, extra: &[&str]) -> serde_json::Value {
    let out = bin().args(["validate", "--json", "--path", url]).args(extra).output().unwrap();
    assert!(out.status.success(), "validate {url} {extra:?}: {}", common::process::text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::process::text(&out)))
}

fn run_s3(brokers: &str, topic: &str, url: &str, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["run", "--brokers", brokers, "--topic", topic, "--starting-offsets", "earliest", "--no-console"])
        .args(["--run-id", "t", "--output", url, "--metrics-addr", "127.0.0.1:0"])
        .args(extra);
    c
}

/// The ledger and the audit, on a copy read back through the S3 API.
fn verify(scenario: &str, bucket: &str, prefix: &str, records: &ledger::Records) -> ledger::Ledger {
    let copy = tempfile::tempdir().unwrap();
    let objects = download(bucket, prefix, copy.path());
    println!("[{scenario}] read back {objects} objects from s3://{bucket}/{prefix}/");
    let out = copy.path().join("out");
    let l = ledger::check(&out.join("run_t"), records, future_limit_ms());
    l.assert_exact(scenario);
    ledger::audit_ok(&out);
    assert!(
        !common::data_files(&aggregates_of(&out, "run_t")).is_empty(),
        "the window files are on the store too"
    );
    l
}

#[test]
fn a_run_on_s3_is_exactly_once_and_refuses_a_second_writer() {
    let Some(brokers) = brokers() else { return };
    let Some(bucket) = common::s3::bucket() else { return };
    let topic = unique("s3run");
    create_topic(&brokers, &topic, 3);
    load(&brokers, &topic, 1_750_000_000_000, 20_000);
    let prefix = unique("s3run");
    let url = format!("s3://{bucket}/{prefix}/out");

    let first =
        run_ok(&mut run_s3(&brokers, &topic, &url, &["--available-now", "--flush-windows", "-w", "2"]));
    let totals = run_totals(&[first]);
    assert_eq!(totals["messages"], 20_000, "{totals:?}");
    let records = ledger::consume_topic(&brokers, &topic);
    let l = verify("s3 -w 2", &bucket, &prefix, &records);
    assert!(l.written > 19_000, "rows {}", l.written);

    // A resume with nothing new commits nothing new: the same dataset, still exactly once. (With
    // --single-writer, which skips the conditional-create probe and says so.)
    let again =
        run_ok(&mut run_s3(&brokers, &topic, &url, &["--available-now", "-w", "2", "--single-writer"]));
    assert_eq!(run_totals(std::slice::from_ref(&again))["rows"], 0);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("--single-writer: the store's conditional create is not relied on"), "{said}");
    // What the run cost on the store is printed after its summary.
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("object store requests: get=")), "{stdout}");

    // More input, and a second writer started by mistake while the first runs: refused before it
    // touches anything, naming the holder.
    load(&brokers, &topic, 1_750_000_100_000, 5_000);
    let tmp = tempfile::tempdir().unwrap();
    let mut live = Job::spawn(run_s3(&brokers, &topic, &url, &["-w", "2"]), tmp.path().join("live.log"));
    live.wait_log("the first writer's start", Duration::from_secs(60), |log| log.contains("assigned"));
    let second = run_s3(&brokers, &topic, &url, &["--available-now", "-w", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second writer must be refused:\n{stderr}");
    assert!(stderr.contains("process 0 is already running"), "{stderr}");
    assert!(stderr.contains(&format!("pid={}", live.child.id())), "names the holder:\n{stderr}");
    // SIGTERM: the first writer commits, releases its lease and exits; a restart at once is let in.
    live.signal(libc::SIGTERM);
    let status = live.wait_for(Duration::from_secs(60)).expect("the writer exits on SIGTERM");
    assert!(status.success(), "{}", live.log());
    run_ok(&mut run_s3(&brokers, &topic, &url, &["--available-now", "--flush-windows", "-w", "2"]));
    let records = ledger::consume_topic(&brokers, &topic);
    let l = verify("s3 after a refused writer", &bucket, &prefix, &records);

    // validate reads the dataset where it is: the audit passes through the S3 API, the counts are
    // the ledger's, and the report is put back into the store.
    let report = validate_s3(&url, &["--audit"]);
    assert_eq!(report["path"], url.as_str(), "the report names the URL, not the local copy");
    assert_eq!(report["total_rows"], l.written, "{report}");
    assert_eq!(report["audit"]["ok"], true, "{report}");
    let report_file = report["report_file"].as_str().unwrap().to_string();
    let report_key = report_file.strip_prefix(&format!("{url}/")).expect("the report is under the URL");
    let store = ObjectStoreRoot::open(&ObjectUrl::parse(&url).unwrap()).unwrap();
    assert!(store.get(report_key).unwrap().is_some(), "{report_file} is on the store");

    // --incremental keeps its state on the store: a second run reads nothing again, and so does
    // a run on another "host" (a new local copy), which finds the state and the copies' times.
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("a").display().to_string();
    let first = validate_s3(&url, &["--incremental", "--cache-dir", &cache_dir]);
    let files = first["files"].as_u64().unwrap();
    assert!(files > 0);
    assert_eq!(first["incremental"]["files_read"], files, "{first}");
    let second = validate_s3(&url, &["--incremental", "--cache-dir", &cache_dir]);
    assert_eq!(
        (&second["incremental"]["files_read"], &second["total_rows"]),
        (&0.into(), &l.written.into()),
        "{second}"
    );
    let elsewhere = cache.path().join("b").display().to_string();
    let third = validate_s3(&url, &["--incremental", "--cache-dir", &elsewhere]);
    assert_eq!(third["incremental"]["files_read"], 0, "{third}");
    assert_eq!(third["incremental"]["files_reused"], files, "{third}");
    assert_eq!(third["total_rows"], l.written, "{third}");

    // pyarrow's S3 file system reads the dataset as it reads a local one.
    if let Some(python) = common::process::python("pyarrow read-back") {
        let script = r#"
import os, sys
import pyarrow.dataset as ds
import pyarrow.fs as pafs
endpoint = os.environ["AWS_ENDPOINT_URL"]
fs = pafs.S3FileSystem(
    access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    endpoint_override=endpoint.split("://", 1)[1], scheme=endpoint.split("://", 1)[0],
    region=os.environ.get("AWS_REGION", "us-east-1"))
d = ds.dataset(sys.argv[1], filesystem=fs, format="parquet", partitioning="hive")
print(d.count_rows())
"#;
        let out = Command::new(python)
            .args(["-c", script, &format!("{bucket}/{prefix}/out/run_t")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        println!("[s3] pyarrow S3FileSystem read {rows} rows (the ledger: {})", l.written);
        assert_eq!(rows, l.written);
    }

    // DuckDB's httpfs reads it in place too (the extension from a wheel, so offline).
    if let Some(python) = duckdb_s3_python() {
        let script = r#"
import importlib.util, os, pathlib, sys
import duckdb
spec = importlib.util.find_spec("duckdb_extension_httpfs")
ext = pathlib.Path(spec.submodule_search_locations[0]) / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
# Never reach for DuckDB's extension site: a missing or mismatched binary must fail here.
con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
con.execute("SET enable_progress_bar = false")
con.execute(f"LOAD '{ext}'")
endpoint = os.environ["AWS_ENDPOINT_URL"]
key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
region, ssl = os.environ.get("AWS_REGION", "us-east-1"), str(endpoint.startswith("https")).lower()
con.execute(f"""CREATE SECRET lake (TYPE s3, PROVIDER config, KEY_ID '{key}', SECRET '{secret}', REGION '{region}',
    ENDPOINT '{endpoint.split("://", 1)[1]}', URL_STYLE 'path', USE_SSL {ssl})""")
rows, ids = con.sql(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('s3://{sys.argv[1]}/id=*/*.parquet', hive_partitioning=true)").fetchone()
print(rows, ids)
"#;
        let out = Command::new(python)
            .args(["-c", script, &format!("{bucket}/{prefix}/out/run_t")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::process::text(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let (rows, ids) = text.trim().split_once(' ').unwrap();
        println!("[s3] DuckDB httpfs read {rows} rows of {ids} ids (the ledger: {})", l.written);
        assert_eq!(rows.parse::<u64>().unwrap(), l.written);
        assert_eq!(ids.parse::<usize>().unwrap(), report["per_id"].as_array().unwrap().len(), "{report}");
    }
}

/// Two processes of one cluster that share no folder (each its own TMPDIR, hence its own spool):
/// the bucket is all they share.
#[test]
fn two_processes_without_a_shared_folder_write_one_run() {
    let Some(brokers) = brokers() else { return };
    let Some(bucket) = common::s3::bucket() else { return };
    let topic = unique("s3n2");
    create_topic(&brokers, &topic, 4);
    load(&brokers, &topic, 1_750_000_000_000, 12_000);
    let prefix = unique("s3n2");
    let url = format!("s3://{bucket}/{prefix}/out");
    let tmp = tempfile::tempdir().unwrap();
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let hosts_s = hosts.display().to_string();
    let procs: Vec<std::process::Child> = (0..2)
        .map(|p| {
            let host_dir = tmp.path().join(format!("host-{p}"));
            std::fs::create_dir_all(&host_dir).unwrap();
            let p = p.to_string();
            let mut cmd = run_s3(
                &brokers,
                &topic,
                &url,
                &["--available-now", "--flush-windows", "-n", "2", "-p", &p, "-h", &hosts_s],
            );
            cmd.env("TMPDIR", &host_dir).current_dir(&host_dir);
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let outputs: Vec<_> = procs
        .into_iter()
        .map(|c| common::process::wait_output_within(c, Duration::from_secs(180), "a process of the cluster"))
        .collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", common::process::text(o));
    }
    assert_eq!(run_totals(&outputs)["messages"], 12_000);
    verify("s3 -n 2", &bucket, &prefix, &ledger::consume_topic(&brokers, &topic));
}

/// `--table-format delta` on the store: a crash between the checkpoint entry and the Delta commit
/// is completed at the restart, two processes that share no folder commit to one table, and
/// delta-rs (from Python, through the S3 API) reads exactly the ledger's rows. `compact` and
/// `vacuum` work on the store too and change no row.
#[test]
fn delta_tables_on_s3_are_exactly_once_for_delta_readers() {
    let Some(brokers) = brokers() else { return };
    let Some(bucket) = common::s3::bucket() else { return };
    let topic = unique("s3delta");
    create_topic(&brokers, &topic, 3);
    load(&brokers, &topic, 1_750_000_000_000, 9_000);
    let prefix = unique("s3delta");
    let url = format!("s3://{bucket}/{prefix}/out");
    let tmp = tempfile::tempdir().unwrap();
    let delta = ["--table-format", "delta", "--object-lease", "3s"];

    // A crash after the third entry, before its Delta commit. A process commits once per roll
    // for all its partitions, so a live producer keeps the rolls coming until the third.
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = 1_750_000_000_000;
    let producer = synthetic_stream(&brokers, &topic, t0, 9_000, 300, stop.clone());
    let mut crashing =
        run_s3(&brokers, &topic, &url, &[&delta[..], &["--roll-interval", "100ms", "-w", "2"]].concat());
    crashing.env("STREAMLAKE_CRASH_AT", "delta.before_commit:3").env("TMPDIR", tmp.path());
    let mut job = Job::spawn(crashing, tmp.path().join("crash.log"));
    let crashed = job.wait_for(Duration::from_secs(120));
    stop.store(true, Ordering::SeqCst);
    let produced = 9_000 + producer.join().unwrap();
    assert!(crashed.is_some(), "the job did not reach its crash point:\n{}", job.log());
    assert!(job.log().contains("crash point delta.before_commit reached"), "{}", job.log());
    // The dead process's lease (3 s) must expire before its process index can start again.
    std::thread::sleep(Duration::from_secs(4));

    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let hosts_s = hosts.display().to_string();
    let procs: Vec<std::process::Child> = (0..2)
        .map(|p| {
            let host_dir = tmp.path().join(format!("host-{p}"));
            std::fs::create_dir_all(&host_dir).unwrap();
            let p = p.to_string();
            let extra =
                [&delta[..], &["--available-now", "--flush-windows", "-n", "2", "-p", &p, "-h", &hosts_s]]
                    .concat();
            let mut cmd = run_s3(&brokers, &topic, &url, &extra);
            cmd.env("TMPDIR", &host_dir).current_dir(&host_dir);
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let outputs: Vec<_> = procs
        .into_iter()
        .map(|c| common::process::wait_output_within(c, Duration::from_secs(180), "a process of the cluster"))
        .collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", common::process::text(o));
    }
    let completed = outputs.iter().any(|o| common::process::text(o).contains("completing a Delta commit"));
    assert!(completed, "the interrupted commit was completed at the restart");

    let l = verify("s3 delta", &bucket, &prefix, &ledger::consume_topic(&brokers, &topic));
    let table = format!("{url}/run_t");
    let got = common::delta::read_python(&table, "deltalake", &[]);
    assert_eq!(got.rows, l.written, "delta-rs reads every row once, through S3");
    let txn: i64 = (0..3).map(|p| got.txn[&format!("streamlake/t/{topic}/{p}")]).sum();
    assert_eq!(txn as u64, produced, "the partitions' txn versions are their ends: {:?}", got.txn);

    let o = run_ok(bin().args(["compact", "--run-id", "t", "--output", &url]));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("small files merged"),
        "{}",
        common::process::text(&o)
    );
    run_ok(bin().args(["vacuum", "--run-id", "t", "--retain", "0s", "--output", &url]));
    let again = common::delta::read_python(&table, "deltalake", &[]);
    assert_eq!(
        (again.rows, &again.rows_per_key),
        (got.rows, &got.rows_per_key),
        "compaction and vacuum change no row"
    );
    assert!(again.files < got.files, "{} files before compaction, {} after", got.files, again.files);
}
