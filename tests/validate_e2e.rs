//! Whole-program tests of `streamlake validate` on datasets written by the streaming job itself:
//! `streamlake produce` into a fresh 3-partition topic, `streamlake run --available-now
//! --flush-windows`, then the real binary's `validate` (report, `--json`, `--audit`, `--every`,
//! `--incremental`). The reference for counts and means is the original platform's pandas code
//! (`tests/py/dag_validate.py`), run on the same folder with `STREAMLAKE_TEST_PYTHON`.

use std::cell::Cell as StdCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::validate_cli::fixture::{self, args, assert_matches_oracle, audit_args, close, run_validate};
use crate::validate_cli::*;
use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use serde_json::Value;
use streamlake::sink::raw::part_file_name;
use streamlake::validate::audit::ProblemKind;
use streamlake::validate::scan::Cell;
use streamlake::validate::{self, Status, ValidateArgs};

const PARTITIONS: i32 = 3;
const RUN_ID: &str = "e2e";

/// A topic and an output folder of its own.
struct Lake {
    tmp: tempfile::TempDir,
    brokers: String,
    topic: String,
}

impl Lake {
    fn new(brokers: &str, name: &str) -> Lake {
        let topic = unique(name);
        create_topic(brokers, &topic, PARTITIONS);
        Lake { tmp: tempfile::tempdir().unwrap(), brokers: brokers.to_string(), topic }
    }

    /// The dataset folder `validate --path` reads (`DIR/parquet`).
    fn parquet(&self) -> PathBuf {
        self.tmp.path().join("parquet")
    }

    fn run_dir(&self) -> PathBuf {
        self.parquet().join(format!("run_{RUN_ID}"))
    }

    /// `streamlake produce --count N --rate max --seed S` (with `--ids K`).
    fn produce(&self, count: u64, seed: u64, ids: u32) {
        run_ok(bin().args(["produce", "--brokers", &self.brokers, "--topic", &self.topic]).args([
            "--count",
            &count.to_string(),
            "--rate",
            "max",
            "--seed",
            &seed.to_string(),
            "--ids",
            &ids.to_string(),
        ]));
    }

    /// The streaming job over everything in the topic, as a command (to add options or spawn).
    fn run_cmd(&self) -> Command {
        let mut c = bin();
        c.args(["run", "--brokers", &self.brokers, "--topic", &self.topic])
            .args(["--starting-offsets", "earliest", "--available-now", "--flush-windows", "--no-console"])
            .arg("--output")
            .arg(self.parquet())
            .args(["--run-id", RUN_ID]);
        c
    }

    fn run(&self) -> Output {
        run_ok(&mut self.run_cmd())
    }
}

/// Asserts that `validate --json` and the DAG's pandas code report the same total, the same ids
/// with the same counts and means, and the same first rows.
fn assert_agrees_with_dag(report: &Value, dag: &Value) {
    assert_eq!(dag["status"], "ok", "{dag}");
    assert_eq!(report["status"], "ok", "{report:#}");
    assert_eq!(report["total_rows"], dag["total"], "total rows");
    let dag_ids = dag["per_id"].as_object().unwrap();
    let ours = report["per_id"].as_array().unwrap();
    assert_eq!(ours.len(), dag_ids.len(), "ids: validate {ours:?} vs pandas {dag_ids:?}");
    for s in ours {
        let id = s["id"].to_string();
        let d = dag_ids.get(&id).unwrap_or_else(|| panic!("pandas has no id {id}: {dag_ids:?}"));
        assert_eq!(s["count"], d["count"], "count of id {id}");
        let (m, dm) = (s["mean"].as_f64().unwrap(), d["mean"].as_f64().unwrap());
        assert!(close(m, dm), "mean of id {id}: validate {m} vs pandas {dm}");
    }
    // The preview: the same rows (ids, instants, values) in the same order.
    let head = &report["head"];
    let col = |name: &str| head["columns"].as_array().unwrap().iter().position(|c| c == name).unwrap();
    let (id_c, ts_c, value_c) = (col("id"), col("ts"), col("value"));
    let rows = head["rows"].as_array().unwrap();
    let dag_head = dag["head"].as_array().unwrap();
    assert_eq!(rows.len(), dag_head.len(), "head rows");
    let instant = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    for (row, d) in rows.iter().zip(dag_head) {
        assert_eq!(row[id_c], d["id"], "head: {row} vs {d}");
        assert_eq!(instant(&row[ts_c]), instant(&d["ts"]), "head: {row} vs {d}");
        assert!(close(row[value_c].as_f64().unwrap(), d["value"].as_f64().unwrap()), "head: {row} vs {d}");
    }
}

/// `validate`'s text output shows `count` and `mean` for every id and the total, as the DAG's log.
fn assert_text_matches(text: &str, report: &Value) {
    assert!(text.contains("=== Count per id ==="), "{text}");
    for s in report["per_id"].as_array().unwrap() {
        let line = format!("{}  {}  {:.6}", s["id"], s["count"], s["mean"].as_f64().unwrap());
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().join("  ") == line),
            "no line `{line}` in:\n{text}"
        );
    }
    let total = format!("[validate] Total rows: {} in {} files", report["total_rows"], report["files"]);
    assert!(text.contains(&total), "no `{total}` in:\n{text}");
}

/// Copies a folder tree (the dataset), to damage the copy.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Committed raw files of `run_dir`, relative to the dataset root `root`.
fn raw_files(root: &Path, run_dir: &Path) -> Vec<String> {
    data_files(run_dir)
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"))
        .collect()
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn problems(report: &Value) -> &Vec<Value> {
    report["audit"]["problems"].as_array().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Report: the same numbers as the DAG's pandas code.
// ---------------------------------------------------------------------------------------------

#[test]
fn report_matches_the_dags_pandas_code() {
    // On a dataset written by the fixture, through the library, no broker needed (moved from
    // validate_command.rs `report_numbers_match_the_oracle`).
    {
        let lake = fixture::Lake::standard();
        let report = run_validate(&args(&lake.root()));
        assert_eq!(report.status, Status::Ok, "{}", report.render_text());
        assert_eq!(report.exit_code, 0);
        assert_eq!(report.files, 6 * 4, "3 partitions x 2 commits x 4 keys");
        assert_matches_oracle(&report, &lake);
        assert_eq!(report.rows_without_id, 0);
        assert!(report.unreadable.is_empty());

        // The preview: id from the folder, then the file columns, rows of the first files.
        assert_eq!(report.head.columns, ["id", "ts", "value", "source"]);
        assert_eq!(report.head.rows.len(), 10);
        for (got, want) in report.head.rows.iter().zip(lake.oracle_head(10)) {
            assert_eq!(got[0], Cell::Int(want.id));
            assert!(matches!(&got[1], Cell::Text(t) if t.starts_with("2025-11-24T")), "{:?}", got[1]);
            assert_eq!(got[2], Cell::Float(want.value));
            assert_eq!(got[3], want.source.clone().map_or(Cell::Null, Cell::Text));
        }

        // Tables, and the same report saved as JSON.
        let text = report.render_text();
        assert!(text.contains(&format!("[validate] Total rows: {} in 24 files", lake.oracle().0)), "{text}");
        assert!(text.contains("=== Count per id ===") && text.contains("=== First 10 rows ==="), "{text}");
        let saved = report_files(&lake.root());
        assert_eq!(saved.len(), 1);
        assert_eq!(report.report_file.as_deref(), Some(saved[0].to_str().unwrap()));
        let name = saved[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() == "20261124T225000Z.json".len() && name.ends_with("Z.json"), "{name}");
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&saved[0]).unwrap()).unwrap();
        assert_eq!(json["total_rows"], lake.oracle().0);
        assert_eq!(json["status"], "ok");
        assert_eq!(json["per_id"][0]["id"], 0);
        assert!(json["audit"].is_null());
    }
    // On a dataset written by the fixture, through the library, no broker needed (moved from
    // validate_command.rs `validate_agrees_with_the_dags_pandas_code`).
    {
        // Without a python the comparison is left out, and the rest of the test still runs.
        if let Some(python) = python("not comparing with pandas") {
            let lake = fixture::Lake::standard();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/dag_validate.py");
            let out = std::process::Command::new(&python)
                .arg(&script)
                .arg(lake.root())
                .output()
                .expect("running python");
            assert!(out.status.success(), "dag_validate.py failed: {}", String::from_utf8_lossy(&out.stderr));
            let dag: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("dag_validate.py prints JSON");

            let report = run_validate(&args(&lake.root()));
            assert_eq!(dag["total"], report.total_rows);
            let per_id = dag["per_id"].as_object().unwrap();
            assert_eq!(per_id.len(), report.per_id.len());
            for s in &report.per_id {
                let d = &per_id[&s.id.to_string()];
                assert_eq!(d["count"], s.count, "id {}", s.id);
                let (m, dm) = (s.mean.unwrap(), d["mean"].as_f64().unwrap());
                assert!(close(m, dm), "id {}: validate {m} vs pandas {dm}", s.id);
            }
            let head = dag["head"].as_array().unwrap();
            assert_eq!(head.len(), report.head.rows.len());
            for (d, row) in head.iter().zip(&report.head.rows) {
                // serde_json parses floats only to within an ulp (no `float_roundtrip`): compare closely.
                let (Some(dv), Cell::Float(v)) = (d["value"].as_f64(), &row[2]) else {
                    panic!("{d} vs {row:?}")
                };
                assert!(close(dv, *v), "head: pandas {dv} vs validate {v}");
                assert_eq!(d["id"], serde_json::json!(row[0]));
            }
        }
    }
    let Some(brokers) = brokers() else { return };
    let lake = Lake::new(&brokers, "validate-dag");
    // 12 ids: `id=10` and `id=11` sort before `id=2` as folder names, after it as numbers.
    lake.produce(30_000, 11, 12);
    lake.run();
    let root = lake.parquet();

    let (code, report) = validate_json(&root, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["total_rows"], 30_000);
    assert_eq!(report["per_id"].as_array().unwrap().len(), 12);
    assert_eq!(report["files"], raw_files(&root, &lake.run_dir()).len());
    assert_eq!(report["columns"], serde_json::json!(["id", "ts", "value", "source"]));
    let counted: u64 =
        report["per_id"].as_array().unwrap().iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 30_000);
    // The saved report is the printed one.
    let saved: Value =
        serde_json::from_str(&fs::read_to_string(report["report_file"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(saved["per_id"], report["per_id"]);

    let (code, text, _) = validate_text(&root, &[]);
    assert_eq!(code, 0, "{text}");
    assert_text_matches(&text, &report);

    // `_reports/` (written above), `_checkpoint/` and the aggregates next door are not data to pandas.
    if let Some((dag_code, dag)) = dag(&root) {
        assert_eq!(dag_code, 0, "{dag}");
        assert_agrees_with_dag(&report, &dag);
    }
}

// ---------------------------------------------------------------------------------------------
// What goes wrong: messages and exit codes.
// ---------------------------------------------------------------------------------------------

#[test]
fn corrupt_files_exit_1_naming_the_file() {
    // On a dataset written by the fixture, through the library, no broker needed (moved from
    // validate_command.rs `a_corrupt_file_is_named_and_the_rest_is_reported_with_exit_1`).
    {
        let lake = fixture::Lake::standard();
        let bad = "run_a/id=1/part-p009-o000000000000-000000000005-w000.parquet";
        fs::write(lake.root().join(bad), b"PAR1 this is not parquet PAR1").unwrap();
        let report = run_validate(&args(&lake.root()));
        assert_eq!((report.status, report.exit_code), (Status::UnreadableFiles, 1));
        assert_eq!(report.unreadable.len(), 1);
        assert_eq!(report.unreadable[0].file, bad);
        assert!(
            report.unreadable[0].reason.contains("cannot read Parquet file"),
            "{}",
            report.unreadable[0].reason
        );
        assert_matches_oracle(&report, &lake);
        let text = report.render_text();
        assert!(text.contains("1 file(s) could not be read") && text.contains(bad), "{text}");
        assert_eq!(validate::run(&args(&lake.root()), &|| false).unwrap(), 1);
    }
    let Some(brokers) = brokers() else { return };
    let lake = Lake::new(&brokers, "validate-corrupt");
    lake.produce(20_000, 5, 5);
    lake.run();
    let (code, clean) = validate_json(&lake.parquet(), &[]);
    assert_eq!(code, 0);

    // A committed file cut in half (in a copy of the dataset).
    let root = lake.tmp.path().join("truncated");
    copy_tree(&lake.parquet(), &root);
    let victim = raw_files(&lake.parquet(), &lake.run_dir())[2].clone();
    let len = fs::metadata(root.join(&victim)).unwrap().len();
    fs::OpenOptions::new().write(true).open(root.join(&victim)).unwrap().set_len(len / 2).unwrap();
    let (code, text, _) = validate_text(&root, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("[validate] 1 file(s) could not be read:"), "{text}");
    assert!(text.contains(&format!("  {victim}: cannot read Parquet file")), "{text}");
    let (code, report) = validate_json(&root, &[]);
    assert_eq!((code, report["status"].as_str()), (1, Some("unreadable_files")));
    let unreadable = report["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    assert_eq!(unreadable[0]["file"], victim.as_str());
    assert!(unreadable[0]["reason"].as_str().unwrap().contains("truncated"), "{unreadable:?}");
    // The other files still count.
    let lost = clean["total_rows"].as_u64().unwrap() - report["total_rows"].as_u64().unwrap();
    assert!(lost > 0 && lost < 20_000, "lost {lost} rows");
    // The audit names it too; its exit code (3) is the more severe one.
    let (code, report) = validate_json(&root, &["--audit"]);
    assert_eq!((code, report["status"].as_str()), (3, Some("audit_failed")), "{report:#}");
    assert!(
        problems(&report).iter().any(|p| p["kind"] == "invalid" && p["files"] == serde_json::json!([victim])),
        "{:#?}",
        problems(&report)
    );

    // Garbage with a `.parquet` name.
    let root = lake.tmp.path().join("garbage");
    copy_tree(&lake.parquet(), &root);
    let garbage = format!("run_{RUN_ID}/id=0/notes.parquet");
    fs::write(root.join(&garbage), b"this is not a parquet file\n").unwrap();
    let (code, text, _) = validate_text(&root, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("  {garbage}: cannot read Parquet file")), "{text}");
    let (code, report) = validate_json(&root, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["unreadable"][0]["file"], garbage.as_str());
    assert_eq!(report["total_rows"], clean["total_rows"], "every real file is still read");
    assert_eq!(report["per_id"], clean["per_id"]);
    // (The DAG's pandas code dies on such a file: pyarrow cannot build the dataset at all.)
    if let Some(python) = python("not comparing with pandas") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/dag_validate.py");
        let out = Command::new(python).arg(script).arg(&root).output().unwrap();
        assert!(!out.status.success(), "pandas read a garbage file?");
    }
}

// ---------------------------------------------------------------------------------------------
// Exactly-once audit.
// ---------------------------------------------------------------------------------------------

#[test]
fn audit_passes_on_a_clean_run() {
    // On a dataset written by the fixture, through the library, no broker needed (moved from
    // validate_command.rs `audit_passes_on_a_consistent_dataset`).
    {
        let lake = fixture::Lake::standard();
        let report = run_validate(&audit_args(&lake.root()));
        let audit = report.audit.clone().unwrap();
        assert!(audit.ok, "{}", report.render_text());
        assert_eq!(report.exit_code, 0);
        let (rows, quarantined, late): (u64, u64, u64) =
            lake.totals.values().fold((0, 0, 0), |a, t| (a.0 + t.rows, a.1 + t.quarantined, a.2 + t.late));
        assert_eq!(rows, lake.oracle().0);
        assert_eq!(
            audit.summary,
            format!(
                "audit: partitions=3 messages=90 written={rows} quarantined={quarantined} late={late} duplicates=0 \
                 gaps=0 outside=0 overlaps=0 invalid=0 -> OK"
            )
        );
        for p in &audit.partitions {
            assert_eq!((p.first_offset, p.next_offset, p.ranges), (Some(0), Some(30), 2));
            assert_eq!(p.messages, p.written + p.quarantined);
        }
        assert!(report.render_text().contains(&audit.summary));
    }
    let Some(brokers) = brokers() else { return };
    let lake = Lake::new(&brokers, "validate-audit-clean");
    lake.produce(20_000, 3, 5);
    // Malformed records go to the quarantine, which the audit counts and the report does not.
    let bad: Vec<(i32, Option<Vec<u8>>)> = (0..PARTITIONS)
        .flat_map(|p| [(p, None), (p, Some(b"{not json".to_vec())), (p, Some(br#"{"id": 1}"#.to_vec()))])
        .collect();
    send(&brokers, &lake.topic, &bad);
    lake.produce(1_000, 4, 5);
    let out = lake.run();
    let totals = run_totals(&[out]);
    assert_eq!((totals["messages"], totals["rows"], totals["quarantined"]), (21_009, 21_000, 9));

    let (code, text, _) = validate_text(&lake.parquet(), &["--audit"]);
    assert_eq!(code, 0, "{text}");
    let summary =
        "audit: partitions=3 messages=21009 written=21000 quarantined=9 late=0 duplicates=0 gaps=0 \
                   outside=0 overlaps=0 invalid=0 -> OK";
    assert!(text.lines().any(|l| l == summary), "no `{summary}` in:\n{text}");
    let (code, report) = validate_json(&lake.parquet(), &["--audit"]);
    assert_eq!(code, 0);
    assert_eq!(report["total_rows"], 21_000);
    assert_eq!(report["audit"]["ok"], true);
    assert_eq!(report["audit"]["summary"], summary);
    let parts = report["audit"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for p in parts {
        assert_eq!(p["first_offset"], 0, "{p}");
        assert_eq!(p["messages"], p["next_offset"], "every offset of {p} is accounted for");
    }
    // pandas does not read `_quarantine/` either.
    if let Some((_, dag)) = dag(&lake.parquet()) {
        assert_agrees_with_dag(&report, &dag);
    }
}

#[test]
fn audit_passes_after_a_killed_run_is_restarted() {
    const COUNT: u64 = 2_000_000;
    let Some(brokers) = brokers() else { return };
    let lake = Lake::new(&brokers, "validate-audit-kill");
    let t = Instant::now();
    lake.produce(COUNT, 21, 5);
    eprintln!("produced {COUNT} events in {:.1?}", t.elapsed());

    // Commit often, and SIGKILL the job once it has committed something.
    let t = Instant::now();
    let mut child = lake
        .run_cmd()
        .args(["--roll-interval", "200ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partitions = lake.run_dir().join("_checkpoint/partitions");
    let committed_any = || {
        fs::read_dir(&partitions).into_iter().flatten().flatten().any(|p| {
            fs::read_dir(p.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
    };
    while !committed_any() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first commit");
        assert!(t.elapsed() < Duration::from_secs(120), "no commit after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    // About 1 s in, and some time after the first commit so that more commits follow.
    std::thread::sleep(
        Duration::from_millis(1000).saturating_sub(t.elapsed()).max(Duration::from_millis(300)),
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished within {:.1?}, before it could be killed: produce more events",
        t.elapsed()
    );
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    let killed_after = t.elapsed();
    let committed = checkpoint_total(&lake.run_dir(), "total_messages");
    eprintln!("killed after {killed_after:.1?} with {committed} of {COUNT} messages committed");
    assert!(committed > 0 && committed < COUNT, "killed mid-run: {committed} of {COUNT} committed");

    // The crashed state: files beyond the checkpoint are uncommitted leftovers, and nothing else
    // may be wrong.
    let (_, crashed) = validate_json(&lake.parquet(), &["--audit"]);
    let c = &crashed["audit"]["counts"];
    assert_eq!(
        (&c["duplicates"], &c["gaps"], &c["overlaps"], &c["invalid"]),
        (&Value::from(0), &Value::from(0), &Value::from(0), &Value::from(0)),
        "{:#?}",
        problems(&crashed)
    );
    eprintln!("after the kill: {}", crashed["audit"]["summary"]);
    assert_eq!(crashed["audit"]["messages"], committed);
    for p in problems(&crashed) {
        assert_eq!(p["kind"], "outside", "{p}");
    }

    // Restarted, the job reads exactly what was not committed, and the audit passes.
    let t = Instant::now();
    let out = lake.run_cmd().args(["--roll-interval", "200ms"]).output().unwrap();
    assert!(out.status.success(), "restart failed:\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("restarted run took {:.1?}", t.elapsed());
    let totals = run_totals(&[out]);
    assert_eq!(totals["messages"] + committed, COUNT, "the restart re-read or skipped records");

    let (code, text, _) = validate_text(&lake.parquet(), &["--audit"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" duplicates=0 gaps=0 outside=0 overlaps=0 invalid=0 -> OK"), "{text}");
    let (code, report) = validate_json(&lake.parquet(), &["--audit"]);
    assert_eq!(code, 0, "{:#?}", problems(&report));
    assert_eq!(report["total_rows"], COUNT);
    assert_eq!(report["audit"]["messages"], COUNT);
    assert_eq!(report["audit"]["written"], COUNT);
    if let Some((dag_code, dag)) = dag(&lake.parquet()) {
        assert_eq!(dag_code, 0);
        assert_eq!(dag["total"], COUNT);
        assert_agrees_with_dag(&report, &dag);
    }
}

#[test]
fn audit_names_a_duplicated_file_and_a_deleted_file() {
    // On a dataset written by the fixture, through the library, no broker needed (moved from
    // validate_command.rs `audit_names_both_files_of_a_copied_file_as_duplicate`).
    {
        let lake = fixture::Lake::standard();
        let original = "run_a/id=2/part-p001-o000000000012-000000000030-w000.parquet";
        let copy = "run_a/id=2/part-p001-o000000000012-000000000030-w000 (copy).parquet";
        fs::copy(lake.root().join(original), lake.root().join(copy)).unwrap();
        let report = run_validate(&audit_args(&lake.root()));
        assert_eq!((report.status, report.exit_code), (Status::AuditFailed, 3));
        let audit = report.audit.unwrap();
        assert_eq!(audit.counts.duplicates, 1, "{:#?}", audit.problems);
        assert_eq!(audit.problems.len(), 1, "{:#?}", audit.problems);
        let p = &audit.problems[0];
        assert_eq!((p.kind, p.partition), (ProblemKind::Duplicate, Some(1)));
        assert_eq!(p.files, [copy, original], "both, in path order");
        assert!(p.message.contains("[12, 30)"), "{}", p.message);
        assert!(p.message.contains(&format!("the checkpoint lists {original}: keep it")), "{}", p.message);
        assert!(
            audit.summary.ends_with("duplicates=1 gaps=0 outside=0 overlaps=0 invalid=0 -> FAILED"),
            "{}",
            audit.summary
        );
        assert_eq!(validate::run(&audit_args(&lake.root()), &|| false).unwrap(), 3);
    }
    // On a dataset written by the fixture, through the library, no broker needed (moved from
    // validate_command.rs `audit_names_a_deleted_file_as_a_gap`).
    {
        // One key file of a range: the range holds fewer rows than records.
        let lake = fixture::Lake::standard();
        let deleted = "run_a/id=3/part-p002-o000000000000-000000000012-w000.parquet";
        fs::remove_file(lake.root().join(deleted)).unwrap();
        let audit = run_validate(&audit_args(&lake.root())).audit.unwrap();
        assert_eq!((audit.counts.gaps, audit.problems.len()), (1, 1), "{:#?}", audit.problems);
        let p = &audit.problems[0];
        assert_eq!((p.kind, p.partition), (ProblemKind::Gap, Some(2)));
        assert_eq!(p.files, [deleted]);
        assert!(
            p.message.contains(&format!("missing: {deleted}")) && p.message.contains("[0, 12)"),
            "{}",
            p.message
        );

        // Every file of a range: the committed offsets are not tiled.
        let lake = fixture::Lake::standard();
        let range = part_file_name(0, 0, 12, 0);
        let c: Vec<String> = lake.written.iter().filter(|f| f.ends_with(&range)).cloned().collect();
        assert_eq!(c.len(), 5, "4 key files and a quarantine file: {c:?}");
        for f in &c {
            fs::remove_file(lake.root().join(f)).unwrap();
        }
        let report = run_validate(&audit_args(&lake.root()));
        assert_eq!(report.exit_code, 3);
        let audit = report.audit.unwrap();
        assert_eq!((audit.counts.gaps, audit.problems.len()), (1, 1), "{:#?}", audit.problems);
        let p = &audit.problems[0];
        assert!(
            p.message.contains("offsets [0, 12) of partition 0 are committed (next_offset=30)"),
            "{}",
            p.message
        );
        assert_eq!(p.files, c, "the checkpoint entry names the lost files");
    }
    let Some(brokers) = brokers() else { return };
    let lake = Lake::new(&brokers, "validate-audit-damage");
    lake.produce(20_000, 8, 5);
    lake.run();
    let files = raw_files(&lake.parquet(), &lake.run_dir());
    let (code, _) = validate_json(&lake.parquet(), &["--audit"]);
    assert_eq!(code, 0);

    // A committed raw file copied to a second name in the same folder (as another worker's file).
    let root = lake.tmp.path().join("duplicate");
    copy_tree(&lake.parquet(), &root);
    let original = files.iter().find(|f| f.contains("/id=1/part-p000-")).unwrap().clone();
    assert!(original.ends_with("-w000.parquet"), "{original}");
    let copy = original.replace("-w000.parquet", "-w001.parquet");
    fs::copy(root.join(&original), root.join(&copy)).unwrap();
    let (code, text, _) = validate_text(&root, &["--audit"]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("duplicates=1 gaps=0 outside=0 overlaps=0 invalid=0 -> FAILED"), "{text}");
    let (code, report) = validate_json(&root, &["--audit"]);
    assert_eq!((code, report["status"].as_str()), (3, Some("audit_failed")));
    let found = problems(&report);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["kind"], "duplicate");
    assert_eq!(found[0]["partition"], 0);
    assert_eq!(found[0]["files"], serde_json::json!([original, copy]));
    let message = found[0]["message"].as_str().unwrap();
    assert!(message.contains(&copy) && message.contains(&original), "{message}");
    // The newest checkpoint entry lists the commit's files, so the audit names the one to keep.
    assert!(message.contains(&format!("the checkpoint lists {original}: keep it")), "{message}");
    // The report counts the copy's rows twice, as any reader would.
    assert!(report["total_rows"].as_u64().unwrap() > 20_000);

    // One committed raw file deleted.
    let root = lake.tmp.path().join("gap");
    copy_tree(&lake.parquet(), &root);
    let deleted = files.iter().find(|f| f.contains("/id=2/part-p001-")).unwrap().clone();
    fs::remove_file(root.join(&deleted)).unwrap();
    let (code, text, _) = validate_text(&root, &["--audit"]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("duplicates=0 gaps=1 outside=0 overlaps=0 invalid=0 -> FAILED"), "{text}");
    assert!(text.contains(&deleted), "the deleted file is not named:\n{text}");
    let (code, report) = validate_json(&root, &["--audit"]);
    assert_eq!(code, 3);
    let found = problems(&report);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((&found[0]["kind"], &found[0]["partition"]), (&Value::from("gap"), &Value::from(1)));
    assert_eq!(found[0]["files"], serde_json::json!([deleted]));
}

// ---------------------------------------------------------------------------------------------
// --every and --incremental.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_runs_on_schedule_and_stops_on_sigterm() {
    // On a dataset written by the fixture, through the library, no broker needed (moved from
    // validate_command.rs `scheduler_runs_cycles_until_shutdown`).
    {
        let cycles = StdCell::new(0);
        let code = validate::schedule::run_every(
            Duration::from_secs(1),
            &|| cycles.get() >= 2,
            || {
                cycles.set(cycles.get() + 1);
                cycles.get()
            },
            |_| {},
        );
        assert_eq!((cycles.get(), code), (2, 2));

        // The real command: two reports written, then stopped by the flag.
        let lake = fixture::Lake::standard();
        let root = lake.root();
        let every = ValidateArgs { every: Some(Duration::from_secs(1)), json: true, ..args(&root) };
        let code = validate::run(&every, &|| report_files(&root).len() >= 2).unwrap();
        assert_eq!(code, 0);
        assert_eq!(report_files(&root).len(), 2);
    }
    let Some(brokers) = brokers() else { return };
    let lake = Lake::new(&brokers, "validate-every");
    lake.produce(10_000, 13, 5);
    lake.run();
    let root = lake.parquet();
    let stdout_path = lake.tmp.path().join("every.out");
    let mut child = bin()
        .arg("validate")
        .arg("--path")
        .arg(&root)
        .args(["--every", "1s", "--json"])
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while report_files(&root).len() < 2 {
        assert!(child.try_wait().unwrap().is_none(), "validate --every exited by itself");
        assert!(t.elapsed() < Duration::from_secs(30), "fewer than two reports after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let two_after = t.elapsed();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let t = Instant::now();
    let status = wait_with_timeout(&mut child, Duration::from_secs(10)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("validate --every did not stop within 10 s of SIGTERM");
    });
    let stop_after = t.elapsed();
    eprintln!("two reports after {two_after:.1?}; stopped {stop_after:.2?} after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(stop_after < Duration::from_secs(3), "slow to stop: {stop_after:?}");

    let printed = fs::read_to_string(&stdout_path).unwrap();
    let reports: Vec<Value> = printed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(reports.len() >= 2, "{printed}");
    let saved = report_files(&root);
    assert_eq!(saved.len(), reports.len(), "one saved report per printed one: {saved:?}");
    for r in &reports {
        assert_eq!(r["total_rows"], 10_000);
        assert_eq!(r["per_id"], reports[0]["per_id"]);
        assert!(saved.iter().any(|s| Path::new(r["report_file"].as_str().unwrap()) == s));
    }
}

#[test]
fn incremental_after_a_second_run_matches_a_full_scan() {
    // On a dataset written by the fixture, through the library, no broker needed (moved from
    // validate_command.rs `incremental_equals_a_full_scan_after_new_and_deleted_files`).
    {
        let mut lake = fixture::Lake::new();
        for p in 0..3 {
            lake.commit("run_a", p, 0, 12);
        }
        let inc = ValidateArgs { incremental: true, ..args(&lake.root()) };
        let first = run_validate(&inc);
        let info = first.incremental.clone().unwrap();
        assert_eq!(info.full_scan_reason.as_deref(), Some("no state yet"));
        assert_eq!(info.files_read, first.files);
        assert!(lake.root().join("_reports/_state.json").is_file());

        // New commits: only their files are read, totals are a full scan's to the last bit.
        let mut new_files = 0;
        for p in 0..3 {
            new_files +=
                lake.commit("run_a", p, 12, 30).files.iter().filter(|f| !f.contains("_quarantine")).count();
        }
        new_files +=
            lake.commit("run_b", 0, 0, 7).files.iter().filter(|f| !f.contains("_quarantine")).count();
        let second = run_validate(&inc);
        let full = run_validate(&args(&lake.root()));
        let info = second.incremental.clone().unwrap();
        assert_eq!(info.full_scan_reason, None);
        assert_eq!(info.files_read as usize, new_files);
        assert_eq!(info.files_reused, first.files);
        assert_eq!(second.total_rows, full.total_rows);
        assert_eq!(second.per_id, full.per_id);
        assert_eq!(second.head, full.head);
        assert_matches_oracle(&second, &lake);

        // Nothing new: nothing read.
        let third = run_validate(&inc);
        assert_eq!(third.incremental.as_ref().unwrap().files_read, 0);
        assert_eq!(third.per_id, full.per_id);

        // A file disappears: said so, full scan, again equal to a full scan.
        let gone = "run_b/id=1/part-p000-o000000000000-000000000007-w000.parquet";
        fs::remove_file(lake.root().join(gone)).unwrap();
        let fourth = run_validate(&inc);
        let info = fourth.incremental.clone().unwrap();
        assert_eq!(info.disappeared, [gone]);
        assert!(info.full_scan_reason.as_deref().unwrap().contains(gone), "{info:?}");
        assert_eq!(info.files_read, fourth.files);
        let full = run_validate(&args(&lake.root()));
        assert_eq!((fourth.total_rows, &fourth.per_id), (full.total_rows, &full.per_id));
        assert!(fourth.render_text().contains("Incremental: full scan (1 file(s) counted before are gone"));
    }
    let Some(brokers) = brokers() else { return };
    let lake = Lake::new(&brokers, "validate-incremental");
    let root = lake.parquet();
    lake.produce(20_000, 31, 5);
    lake.run();
    let first_files = raw_files(&root, &lake.run_dir()).len() as u64;
    let (code, first) = validate_json(&root, &["--incremental"]);
    assert_eq!(code, 0);
    assert_eq!(first["incremental"]["full_scan_reason"], "no state yet");
    assert_eq!(first["incremental"]["files_read"], first_files);

    lake.produce(25_000, 32, 5);
    lake.run();
    let all_files = raw_files(&root, &lake.run_dir()).len() as u64;
    assert!(all_files > first_files);
    let (code, inc) = validate_json(&root, &["--incremental", "--audit"]);
    assert_eq!(code, 0, "{inc:#}");
    let info = &inc["incremental"];
    assert_eq!(info["full_scan_reason"], Value::Null, "{info}");
    assert_eq!(info["files_reused"], first_files, "{info}");
    assert_eq!(info["files_read"], all_files - first_files, "{info}");
    assert_eq!(inc["total_rows"], 45_000);

    let (code, full) = validate_json(&root, &[]);
    assert_eq!(code, 0);
    assert_eq!(full["incremental"], Value::Null);
    // Bit for bit: both fold the same per-file sums in the same (path) order.
    for field in ["per_id", "total_rows", "files", "columns", "head", "rows_without_id", "status"] {
        assert_eq!(inc[field], full[field], "{field}");
    }
    if let Some((_, dag)) = dag(&root) {
        assert_agrees_with_dag(&inc, &dag);
    }
}

// ---------------------------------------------------------------------------------------------
// --audit: window completeness (on time, late-dropped, open) from the files alone.
// ---------------------------------------------------------------------------------------------

#[test]
fn audit_reports_on_time_late_and_open_records_per_window() {
    let Some(brokers) = brokers() else { return };
    let lake = Lake::new(&brokers, "validate-late");
    let root = lake.parquet();
    let t0: i64 = 1_750_000_000_000; // ms, a multiple of 10 s
    let ev = event_at;
    // Run 1: three records of id 1 in [t0, t0+10s); the flush closes the window.
    send(&brokers, &lake.topic, &[ev(1, t0 + 1_000, 10.0), ev(1, t0 + 2_001, 20.0), ev(1, t0 + 3_002, 60.0)]);
    lake.run();
    // Run 2: two more for that (closed) window are late; one in a new window is on time.
    send(
        &brokers,
        &lake.topic,
        &[ev(1, t0 + 4_000, 1000.0), ev(1, t0 + 5_000, 1.0), ev(1, t0 + 100_000, 7.0)],
    );
    lake.run();
    // Run 3, no flush: a record of id 2 in a window that stays open.
    send(&brokers, &lake.topic, &[ev(2, t0 + 200_000, 3.0)]);
    let mut no_flush = bin();
    no_flush
        .args(["run", "--brokers", &lake.brokers, "--topic", &lake.topic])
        .args(["--starting-offsets", "earliest", "--available-now", "--no-console", "--run-id", RUN_ID])
        .arg("--output")
        .arg(&root);
    run_ok(&mut no_flush);
    let checkpoint_late = checkpoint_total(&lake.run_dir(), "total_late");
    assert_eq!(checkpoint_late, 2);

    let (code, report) = validate_json(&root, &["--audit"]);
    assert_eq!((code, report["status"].as_str()), (0, Some("ok")), "{report:#}");
    let audit = &report["audit"];
    let windows = audit["windows"].as_array().unwrap();
    let brief: Vec<(i64, i64, u64, u64, Value, u64, &str)> = windows
        .iter()
        .map(|w| {
            (
                w["window_end_ms"].as_i64().unwrap() - t0,
                w["key"].as_i64().unwrap(),
                w["raw"].as_u64().unwrap(),
                w["on_time"].as_u64().unwrap(),
                w["late_dropped"].clone(),
                w["open"].as_u64().unwrap(),
                w["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        vec![
            (10_000, 1, 5, 3, Value::from(2), 0, "closed"),
            (110_000, 1, 1, 1, Value::from(0), 0, "closed"),
            (210_000, 2, 1, 0, Value::Null, 1, "open"),
        ],
        "{windows:#?}"
    );
    let start = chrono::DateTime::from_timestamp_millis(t0).unwrap();
    assert_eq!(windows[0]["window_start"], start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    assert_eq!((audit["on_time"].as_u64(), audit["late_dropped"].as_i64()), (Some(4), Some(2)));
    assert_eq!(audit["late_dropped"], checkpoint_late);
    assert_eq!(audit["late"], checkpoint_late);
    assert_eq!(audit["open"], 1);
    assert_eq!(audit["warnings"], serde_json::json!([]), "late-dropped agrees with the checkpoint");

    let (code, text, _) = validate_text(&root, &["--audit"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("=== Window completeness ==="), "{text}");
    let row = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let start_text = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let line = text.lines().map(row).find(|r| r.first() == Some(&start_text)).expect("the late window's row");
    assert_eq!(line[2..], ["1", "5", "3", "2", "closed"], "{text}");
    assert!(
        text.contains(
            "completeness: windows=3 closed=2 open=1 on_time=4 late_dropped=2 open_rows=1 quarantined=0"
        ),
        "{text}"
    );

    // A final row counting records that are not in the raw files: an overcount, exit 3.
    let copy = lake.tmp.path().join("overcount");
    copy_tree(&root, &copy.join("parquet"));
    copy_tree(&lake.tmp.path().join("aggregates"), &copy.join("aggregates"));
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("window_start", ts.clone(), false),
        Field::new("window_end", ts, false),
        Field::new("id", DataType::Int32, false),
        Field::new("avg_value", DataType::Float64, false),
        Field::new("count", DataType::Int64, false),
        Field::new("sum", DataType::Float64, false),
    ]));
    let us = |ms: i64| ms * 1000;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(vec![us(t0 + 20_000)]).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(vec![us(t0 + 30_000)]).with_timezone("UTC")),
        Arc::new(Int32Array::from(vec![1])),
        Arc::new(Float64Array::from(vec![1.0])),
        Arc::new(Int64Array::from(vec![2])),
        Arc::new(Float64Array::from(vec![2.0])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let forged = copy.join(format!("aggregates/parquet/run_{RUN_ID}/windows-forged.parquet"));
    let mut w = ArrowWriter::try_new(fs::File::create(&forged).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let (code, report) = validate_json(&copy.join("parquet"), &["--audit"]);
    assert_eq!((code, report["status"].as_str()), (3, Some("audit_failed")), "{report:#}");
    let found = problems(&report);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["kind"], "overcount");
    assert!(found[0]["message"]
        .as_str()
        .unwrap()
        .contains("aggregated 2 records but the raw files hold only 0"));
    assert!(report["audit"]["summary"].as_str().unwrap().ends_with("invalid=0 overcounts=1 -> FAILED"));
    // Late-dropped (now 2 - 2 = 0) no longer matches the checkpoint: a warning, not a failure.
    let warnings = report["audit"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].as_str().unwrap().contains("differ from the checkpoint's total_late (2)"));
}
