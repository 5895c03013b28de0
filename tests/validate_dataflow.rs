//! `streamlake validate --dataflow FILE` on the output of a dataflow other than the seed's:
//! `dataflows/sensors.toml` (string key `sensor`, value `reading`, time `at`), written by the real
//! job from a real broker, then validated and audited by the real binary with the same file.

use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::Value;

const RECORDS: i64 = 900;
const SENSORS: [&str; 3] = ["kitchen", "a/b", "température"];

fn flow(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows").join(name)
}

/// Runs the sensors dataflow to the end over a fresh topic of `RECORDS` records; returns the
/// output folder (inside `tmp`).
fn sensors_output(brokers: &str, tmp: &Path) -> PathBuf {
    let topic = unique("validate-sensors");
    create_topic(brokers, &topic, 3);
    let t0: i64 = 1_760_000_000_000;
    let records: Vec<(i32, Option<Vec<u8>>)> = (0..RECORDS)
        .map(|i| {
            let ts = chrono::DateTime::from_timestamp_millis(t0 + (i * 17) % 15_000).unwrap().to_rfc3339();
            let payload = format!(
                r#"{{"sensor": "{}", "at": "{ts}", "reading": {:?}, "seq": {i}, "ok": {}}}"#,
                SENSORS[(i % 3) as usize],
                (i % 97) as f64 / 4.0,
                i % 2 == 0
            );
            ((i % 3) as i32, Some(payload.into_bytes()))
        })
        .collect();
    send(brokers, &topic, &records);
    let out = tmp.join("parquet");
    run_ok(
        bin()
            .args(["run", "--brokers", brokers, "--topic", &topic, "--starting-offsets", "earliest"])
            .args(["--available-now", "--flush-windows", "--no-console", "--run-id", "s", "--dataflow"])
            .arg(flow("sensors.toml"))
            .arg("--output")
            .arg(&out),
    );
    out
}

/// `streamlake validate --path PATH EXTRA...`: exit code, stdout, stderr.
fn validate(path: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = bin().arg("validate").arg("--path").arg(path).args(extra).output().unwrap();
    (
        out.status.code().expect("validate was killed by a signal"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_and_audit_the_output_of_another_dataflow() {
    let Some(brokers) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = sensors_output(&brokers, tmp.path());
    let sensors = flow("sensors.toml");
    let sensors = sensors.to_str().unwrap();

    // With the dataflow the job ran with: counted per sensor, audited, every window complete.
    let (code, text, stderr) = validate(&out, &["--dataflow", sensors, "--audit"]);
    assert_eq!(code, 0, "{text}\n{stderr}");
    assert!(text.contains("=== Count per sensor ==="), "{text}");
    assert!(text.lines().any(|l| l.starts_with("audit: ") && l.ends_with("-> OK")), "{text}");
    let (code, json, stderr) = validate(&out, &["--dataflow", sensors, "--audit", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(report["status"], "ok", "{report:#}");
    assert_eq!(report["total_rows"], RECORDS);
    assert_eq!(report["rows_without_id"], 0);
    let per: Vec<(String, u64)> = report["per_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["count"].as_u64().unwrap()))
        .collect();
    let mut want: Vec<(String, u64)> =
        SENSORS.iter().map(|s| (s.to_string(), (RECORDS / 3) as u64)).collect();
    want.sort();
    assert_eq!(per, want, "one group per sensor, the folder names decoded");
    let audit = &report["audit"];
    assert_eq!(audit["ok"], true, "{audit:#}");
    assert_eq!((&audit["messages"], &audit["written"]), (&Value::from(RECORDS), &Value::from(RECORDS)));
    assert_eq!(audit["on_time"], RECORDS, "every record is in a final window row: {audit:#}");
    assert_eq!((&audit["late_dropped"], &audit["open"]), (&Value::from(0), &Value::from(0)));

    // With the seed's columns (no --dataflow), the dataset lacks them: exit 2, naming them.
    let (code, text, _) = validate(&out, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("Expected columns 'id' and 'value' not found in the dataset (missing: 'id', 'value')"),
        "{text}"
    );
    // Given explicitly, the wrong dataflow file is named as the cause.
    let events = flow("events.toml");
    let (code, text, _) = validate(&out, &["--dataflow", events.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("The columns come from --dataflow") && text.contains("events.toml"), "{text}");

    // A dataflow file that cannot be read or is not a dataflow: an error, before anything is read.
    let missing = tmp.path().join("nope.toml");
    let (code, _, stderr) = validate(&out, &["--dataflow", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot read dataflow file") && stderr.contains("nope.toml"), "{stderr}");
    let broken = tmp.path().join("broken.toml");
    std::fs::write(&broken, "name = \"x\"\n").unwrap();
    let (code, _, stderr) = validate(&out, &["--dataflow", broken.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("broken.toml") && stderr.contains("--dataflow must name"), "{stderr}");
}
