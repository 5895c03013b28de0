//! The benchmark script cannot rot: a small run of `scripts/bench/run.sh` (100,000 events, the raw
//! read limit and streamlake `-w 2`, no Spark) on the test broker. It checks that every contender
//! ran, read every event, and that streamlake's dataset holds exactly the events loaded. It does
//! not judge the timings: benchmarks measure, tests do not time things.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn bench_script_smoke_run() {
    let Some(brokers) = common::brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/bench/run.sh"))
        .args(["--events", "100000", "--runs", "1", "--only", "raw,w2", "--out"])
        .arg(&out)
        .env("KAFKA_BOOTSTRAP_SERVERS", &brokers)
        .env("STREAMLAKE_BIN", env!("CARGO_BIN_EXE_streamlake"));
    if let Ok(py) = std::env::var("STREAMLAKE_TEST_PYTHON") {
        cmd.env("PYTHON", py);
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "run.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    let contenders: Vec<&str> = runs.iter().map(|r| r["contender"].as_str().unwrap()).collect();
    assert_eq!(contenders, ["raw", "w2"], "one run of each contender");
    for r in runs {
        assert_eq!(r["exit"], 0, "{r}");
        assert_eq!(r["events"], 100_000, "every event read: {r}");
        assert!(r["peak_rss_mb"].as_f64().unwrap() > 0.0, "memory measured: {r}");
    }
    let counts = json["row_counts"].as_array().expect("DuckDB row counts");
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0]["rows"], 100_000, "streamlake's raw dataset holds exactly the events loaded");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("holds exactly 100,000 rows"), "{summary}");
    println!("{summary}");
}
