//! The benchmark scripts cannot rot. A small run of `scripts/bench/run.sh` (100,000 events, the raw
//! read limit and streamlake `-w 2`, no Spark) on the test broker. It checks that every contender
//! ran, read every event, and that streamlake's dataset holds exactly the events loaded. It does
//! not judge the timings: benchmarks measure, tests do not time things.

use crate::common;

use std::path::Path;
use std::process::Command;

/// Runs `scripts/bench/<script>` with `args` and `--out DIR` on the test broker and the binary
/// under test, asserts it succeeded, and returns its `results.json` and `summary.md`.
fn run_bench_script(script: &str, args: &[&str]) -> (serde_json::Value, String) {
    let brokers = common::brokers().expect("checked by the caller");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/bench").join(script))
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("KAFKA_BOOTSTRAP_SERVERS", &brokers)
        .env("STREAMLAKE_BIN", env!("CARGO_BIN_EXE_streamlake"))
        // The raw reader `cargo test` built with the binary (examples are built by `cargo test`),
        // so the script does not start a release build of its own.
        .env("RAW_CONSUME_BIN", raw_consume());
    if let Ok(py) = std::env::var("STREAMLAKE_TEST_PYTHON") {
        cmd.env("PYTHON", py);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{script} failed:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let json = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    println!("{summary}");
    (json, summary)
}

/// `examples/raw_consume` of the profile under test: beside the binary, in `examples/`.
fn raw_consume() -> std::path::PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_streamlake"));
    let raw = bin.parent().unwrap().join("examples").join("raw_consume");
    assert!(raw.is_file(), "{} is missing: `cargo test` builds the examples with the binary", raw.display());
    raw
}

#[test]
fn bench_script_smoke_run() {
    if common::brokers().is_none() {
        return;
    }
    let (json, summary) =
        run_bench_script("run.sh", &["--events", "100000", "--runs", "1", "--only", "raw,w2,w2delta"]);
    let runs = json["runs"].as_array().unwrap();
    let contenders: Vec<&str> = runs.iter().map(|r| r["contender"].as_str().unwrap()).collect();
    assert_eq!(contenders, ["raw", "w2", "w2delta"], "one run of each contender");
    for r in runs {
        assert_eq!(r["exit"], 0, "{r}");
        assert_eq!(r["events"], 100_000, "every event read: {r}");
        assert!(r["peak_rss_mb"].as_f64().unwrap() > 0.0, "memory measured: {r}");
    }
    // w2's dataset by DuckDB, w2delta's table through its Delta log.
    let counts = json["row_counts"].as_array().expect("row counts");
    assert_eq!(counts.len(), 2, "{counts:?}");
    for c in counts {
        assert_eq!(c["rows"], 100_000, "streamlake's raw dataset holds exactly the events loaded: {c}");
    }
    assert!(summary.contains("holds exactly 100,000 rows"), "{summary}");
}

/// `run.sh --output s3://…` cannot rot: streamlake `-w 2` on local disk and on the test S3 server
/// in one run, both datasets read back with exactly the events loaded (the S3 one through the S3
/// API), and the requests per commit reported. (Spark's s3a contender needs the Spark download and
/// is left to real benchmark runs.)
#[test]
fn bench_script_smoke_run_on_s3() {
    if common::brokers().is_none() {
        return;
    }
    let Some(bucket) = common::s3::bucket() else { return };
    let url = format!("s3://{bucket}/{}", common::unique("bench"));
    let (json, summary) = run_bench_script(
        "run.sh",
        &["--events", "100000", "--runs", "1", "--only", "w2,w2s3", "--output", &url],
    );
    let runs = json["runs"].as_array().unwrap();
    let contenders: Vec<&str> = runs.iter().map(|r| r["contender"].as_str().unwrap()).collect();
    assert_eq!(contenders, ["w2", "w2s3"], "one run of each contender");
    for r in runs {
        assert_eq!(r["exit"], 0, "{r}");
        assert_eq!(r["events"], 100_000, "every event read: {r}");
    }
    let counts = json["row_counts"].as_array().expect("row counts");
    assert_eq!(counts.len(), 2, "{counts:?}");
    for c in counts {
        assert_eq!(c["rows"], 100_000, "each dataset holds exactly the events loaded: {c}");
    }
    let per_commit = json["requests_per_commit_median"]["w2s3"].as_f64().expect("requests per commit");
    assert!(per_commit > 0.0, "{per_commit}");
    assert!(summary.contains("requests per commit"), "{summary}");
}

/// The freshness script cannot rot either: `scripts/bench/freshness.sh` at 1,000 events/s for 8 s,
/// streamlake only. Its watcher must have seen exactly the events produced in committed files, with
/// latency percentiles. No window is countable in 8 s (a window needs its end + the 30 s watermark
/// before the last event), and no timing is judged.
#[test]
fn freshness_script_smoke_run() {
    if common::brokers().is_none() {
        return;
    }
    let (json, summary) = run_bench_script(
        "freshness.sh",
        &["--rates", "1000", "--duration", "8", "--no-spark", "--drain-timeout", "120"],
    );
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run: streamlake at 1,000 events/s");
    let r = &runs[0];
    assert_eq!(r["contender"], "streamlake", "{r}");
    assert_eq!(r["status"], "complete", "{r}");
    assert_eq!(r["events_produced"], 8_000, "{r}");
    assert_eq!(r["rows_seen"], 8_000, "the watcher saw every produced event committed: {r}");
    assert_eq!(r["quarantined"], 0, "{r}");
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    let e = &r["event_to_committed"];
    assert_eq!(e["count"], 8_000, "{e}");
    for p in ["p50_ms", "p90_ms", "p99_ms", "max_ms"] {
        assert!(e[p].as_f64().is_some_and(|v| v > 0.0), "{p} present and positive: {e}");
    }
    assert!(summary.contains("| streamlake |"), "{summary}");
}

/// The scaling script too: two small sizes, streamlake `-w 2` only, one run each. Each size's
/// dataset must hold exactly its events, and the series must carry the cost per event and memory
/// of both sizes.
#[test]
fn scaling_script_smoke_run() {
    if common::brokers().is_none() {
        return;
    }
    let (json, summary) =
        run_bench_script("scaling.sh", &["--sizes", "20000,40000", "--runs", "1", "--only", "w2"]);
    assert_eq!(json["sizes"], serde_json::json!([20_000, 40_000]));
    let points = json["series"]["w2"].as_array().expect("a w2 series");
    assert_eq!(points.len(), 2, "{points:?}");
    for (p, n) in points.iter().zip([20_000, 40_000]) {
        assert_eq!(p["events"], n, "{p}");
        assert_eq!(p["rows_ok"], true, "the dataset holds exactly {n} rows: {p}");
        assert!(p["cpu_ns_per_event"].as_f64().is_some_and(|v| v > 0.0), "{p}");
        assert!(p["peak_rss_mb"].as_f64().is_some_and(|v| v > 0.0), "{p}");
    }
    assert!(summary.contains("| streamlake `-w 2` | 40,000 |"), "{summary}");
}

/// `scripts/bench/slow_commit.sh` cannot rot: one run of each mode on 20,000 events, with the
/// binary under test (the flag it needs, `--commit-delay`, exists only with `crash-points`, the
/// feature the test command builds with). The script's verdict is a benchmark's and not judged
/// here (exit 0 for PASS, 1 for FAIL); that both modes ran, read every event and committed is.
#[cfg(feature = "crash-points")]
#[test]
fn slow_commit_script_smoke_run() {
    let Some(brokers) = common::brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new("bash")
        .arg(root.join("scripts/bench/slow_commit.sh"))
        .args(["--events", "20000", "--runs", "1", "--delay", "50ms", "--roll", "200ms", "--out"])
        .arg(&out)
        .env("KAFKA_BOOTSTRAP_SERVERS", &brokers)
        .env("STREAMLAKE_DEBUG_BIN", env!("CARGO_BIN_EXE_streamlake"))
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(matches!(o.status.code(), Some(0 | 1)), "slow_commit.sh did not finish its runs:\n{text}");
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let modes: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(modes, ["normal", "slow"], "{csv}");
    for r in &rows {
        assert_eq!(r[2], "20000", "every event read: {csv}");
        assert!(r[8].parse::<u64>().is_ok_and(|c| c >= 1), "the run committed: {csv}");
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("read rate slow / normal"), "{summary}");
}
