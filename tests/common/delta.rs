//! Readers of the Delta tables that `streamlake run --table-format delta` writes, other than
//! streamlake itself: delta-rs and polars (tests/py/delta_read.py) and Spark with Delta Lake's own
//! reader (scripts/spark-delta/read.sh). A table counts as written only when independent readers
//! find in it what the topic holds, so each helper returns the same summary for a test to compare.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;

use super::process::{output_within, text};

/// A Python reader loads the log and reads every row; on a loaded 2-core machine a small table
/// takes seconds, so this only stops a hung reader.
const PYTHON_LIMIT: Duration = Duration::from_secs(300);
/// Spark took 37-55 s for one small table on 2 cores while cargo compiled next to it (a JVM,
/// Delta's log replay, a shuffle): ten times that is a hang.
const SPARK_LIMIT: Duration = Duration::from_secs(600);

/// What one reader found in a table, at one version of it (see tests/py/delta_read.py).
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaRead {
    /// The table version that was read (the newest at the time).
    pub version: i64,
    pub rows: u64,
    /// Rows per value of the key column, the value as a string (`"7"`, `"null"`).
    pub rows_per_key: BTreeMap<String, u64>,
    /// `"<key>|<window end, epoch ms>"` → (rows, sum of values) over tumbling event-time windows;
    /// sums are correctly rounded (math.fsum), so two readers of one table agree exactly.
    pub windows: BTreeMap<String, (u64, f64)>,
    /// The table's application transactions (`txn` actions): app id → version, the
    /// exactly-once marker of a streaming writer.
    pub txn: BTreeMap<String, i64>,
    /// Active data files of that version.
    pub files: u64,
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The test venv's Python: `STREAMLAKE_TEST_PYTHON` (scripts/test.sh sets it), else the venv that
/// scripts/test.sh installs at `<repo>/.venv`, so that a developer's plain `cargo test` after one
/// `scripts/test.sh --setup-only` finds deltalake and polars too.
fn python() -> String {
    match std::env::var("STREAMLAKE_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let venv = repo(".venv/bin/python");
            assert!(
                venv.exists(),
                "STREAMLAKE_TEST_PYTHON is not set and there is no {}: run scripts/test.sh --setup-only",
                venv.display()
            );
            venv.to_string_lossy().into_owned()
        }
    }
}

/// Reads `table` (a folder, or `s3://bucket/prefix` with the `AWS_*` variables of `env` or of
/// the test's environment) with `reader` (`deltalake` or `polars`). The default columns of
/// streamlake's events: key `id`, time `ts`, value `value`, windows of 10 s. Panics with the
/// reader's stderr when it cannot read the table.
///
/// `<reader>:aggregates` reads a run's aggregates table instead (one row per final window:
/// `window_start`, `window_end`, `id`, ..., `sum`) with time `window_start` and value `sum`: then
/// `windows` maps `"<id>|<window end ms>"` to (1, the window's sum), comparable key by key with
/// the windows of the raw table, and `rows` is the number of final windows.
pub fn read_python(table: &str, reader: &str, env: &[(String, String)]) -> DeltaRead {
    let mut cmd = Command::new(python());
    cmd.arg(repo("tests/py/delta_read.py")).arg(table);
    match reader.split_once(':') {
        Some((r, "aggregates")) => cmd.args(["--reader", r, "--time", "window_start", "--value", "sum"]),
        Some((_, other)) => panic!("unknown table kind {other:?} in reader {reader:?} (only `:aggregates`)"),
        None => cmd.args(["--reader", reader]),
    };
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, PYTHON_LIMIT, &format!("delta_read.py --reader {reader} {table}"))
}

/// Reads the table `table` (a folder or `s3://…`) with Spark 3.5 and delta-spark (scripts/spark-delta/read.sh),
/// same columns and windows as [`read_python`]. Runs scripts/spark-delta/setup.sh first, once per
/// test binary: silent and under a second when scripts/test.sh already installed pyspark and the
/// jars, and otherwise the install (about a minute) instead of a failure.
pub fn read_spark(table: &str) -> DeltaRead {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        let out = output_within(Command::new("bash").arg(repo("scripts/spark-delta/setup.sh")), SPARK_LIMIT);
        assert!(out.status.success(), "scripts/spark-delta/setup.sh failed: {}", text(&out));
    });
    let mut cmd = Command::new("bash");
    cmd.arg(repo("scripts/spark-delta/read.sh")).arg(table);
    run(&mut cmd, SPARK_LIMIT, &format!("spark-delta/read.sh {table}"))
}

fn run(cmd: &mut Command, limit: Duration, what: &str) -> DeltaRead {
    let out = output_within(cmd, limit);
    assert!(out.status.success(), "{what} failed: {}", text(&out));
    // The JSON is the last line: nothing else should be on stdout, but a library's stray print
    // must not turn a good read into a parse failure.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: no JSON line ({e}): {}", text(&out)));
    parse(&v).unwrap_or_else(|| panic!("{what}: unexpected JSON shape: {line}"))
}

fn parse(v: &Value) -> Option<DeltaRead> {
    let counts = |field: &str| -> Option<BTreeMap<String, u64>> {
        v[field].as_object()?.iter().map(|(k, n)| Some((k.clone(), n.as_u64()?))).collect()
    };
    Some(DeltaRead {
        version: v["version"].as_i64()?,
        rows: v["rows"].as_u64()?,
        rows_per_key: counts("rows_per_key")?,
        windows: v["windows"]
            .as_object()?
            .iter()
            .map(|(k, w)| Some((k.clone(), (w["count"].as_u64()?, w["sum"].as_f64()?))))
            .collect::<Option<_>>()?,
        txn: v["txn"]
            .as_object()?
            .iter()
            .map(|(k, n)| Some((k.clone(), n.as_i64()?)))
            .collect::<Option<_>>()?,
        files: v["files"].as_u64()?,
    })
}
