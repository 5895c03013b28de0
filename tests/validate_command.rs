//! Tests of `streamlake validate` through its library entry points, on datasets this file writes
//! itself in the docs/format.md layout: hive-style `run_<id>/id=<k>/part-p<P>-o<START>-<END>-w<W>.parquet`
//! raw files and `_quarantine/` files with the streamlake key-value metadata, and checkpoint
//! entries written by the sink's own checkpoint code. Expected numbers come from a naive oracle
//! over the same rows; `tests/py/dag_validate.py` (the DAG's pandas code) is a second oracle when
//! `STREAMLAKE_TEST_PYTHON` names a python with pandas and pyarrow.

use std::fs::{self, File};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use serde_json::Value;
use streamlake::validate::audit::ProblemKind;
use streamlake::validate::discover::PartValue;
use streamlake::validate::{self, Status, ValidateArgs};

use crate::validate_cli::fixture::*;
use crate::validate_cli::{dag, report_files, validate_json, validate_text};

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_path_and_empty_folder_exit_zero_with_the_dags_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("not-yet");
    let report = run_validate(&args(&missing));
    assert_eq!((report.status, report.exit_code), (Status::PathMissing, 0));
    assert_eq!(report.messages, [format!("[validate] Path does not exist yet: {}", missing.display())]);
    assert!(!missing.exists(), "a missing path must not be created");
    assert_eq!(validate::run(&args(&missing), &|| false).unwrap(), 0);

    // Only hidden and in-progress entries: no data.
    let empty = tmp.path().join("empty");
    fs::create_dir_all(empty.join("run_a/id=0")).unwrap();
    fs::create_dir_all(empty.join("run_a/_checkpoint")).unwrap();
    fs::write(empty.join("run_a/id=0/.part-p000-o000000000000-w000.parquet.inprogress"), b"PAR1").unwrap();
    fs::write(empty.join("run_a/_checkpoint/windows.json"), b"{}").unwrap();
    let report = run_validate(&args(&empty));
    assert_eq!((report.status, report.exit_code), (Status::NoFiles, 0));
    assert_eq!(report.messages, [format!("[validate] No .parquet files found under: {}", empty.display())]);
    assert!(report.render_text().contains("No .parquet files found under"));
    assert_eq!(validate::run(&args(&empty), &|| false).unwrap(), 0);

    // The same through the binary (moved from validate_e2e.rs): text, --json, saved reports, and
    // the DAG's pandas code agrees.
    {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("parquet");
        let (code, text, _) = validate_text(&missing, &[]);
        assert_eq!(code, 0, "{text}");
        assert!(
            text.contains(&format!("[validate] Path does not exist yet: {}", missing.display())),
            "{text}"
        );
        let (code, report) = validate_json(&missing, &["--audit"]);
        assert_eq!((code, report["status"].as_str()), (0, Some("path_missing")), "{report:#}");
        assert!(!missing.exists(), "validate must not create the path it waits for");
        if let Some((dag_code, dag)) = dag(&missing) {
            assert_eq!((dag_code, dag["status"].as_str()), (0, Some("path_missing")));
        }

        let empty = tmp.path().join("empty");
        fs::create_dir_all(empty.join("run_x/id=0")).unwrap();
        let (code, text, _) = validate_text(&empty, &[]);
        assert_eq!(code, 0, "{text}");
        assert!(
            text.contains(&format!("[validate] No .parquet files found under: {}", empty.display())),
            "{text}"
        );
        let (code, report) = validate_json(&empty, &[]);
        assert_eq!(
            (code, report["status"].as_str(), &report["total_rows"]),
            (0, Some("no_files"), &Value::from(0))
        );
        assert_eq!(report_files(&empty).len(), 2, "each run saves its report");
        if let Some((dag_code, dag)) = dag(&empty) {
            assert_eq!((dag_code, dag["status"].as_str()), (0, Some("no_files")));
        }

        // A file where the folder should be is a usage error.
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let (code, _, stderr) = validate_text(&file, &[]);
        assert_eq!(code, 1);
        assert!(stderr.contains("is not a folder"), "{stderr}");
    }
}

#[test]
fn missing_value_column_names_the_columns_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(Float64Array::from(vec![1.0, 2.0]))],
    )
    .unwrap();
    write_parquet(&tmp.path().join("run_a/id=0/part-0.parquet"), &batch, &[]);
    let report = run_validate(&args(tmp.path()));
    assert_eq!((report.status, report.exit_code), (Status::MissingColumns, 2));
    assert_eq!(report.columns, ["id", "ts", "amount"]);
    let text = report.render_text();
    assert!(
        text.contains("Expected columns 'id' and 'value' not found in the dataset (missing: 'value')"),
        "{text}"
    );
    assert!(text.contains(r#"Columns present: ["id", "ts", "amount"]"#), "{text}");
    assert_eq!(validate::run(&args(tmp.path()), &|| false).unwrap(), 2);

    // The same through the binary on a dataset partitioned at its root (moved from
    // validate_e2e.rs), with the DAG's pandas code agreeing.
    {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("parquet");
        let file = root.join("id=0/part-0.parquet");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("reading", DataType::Float64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let mut w = ArrowWriter::try_new(fs::File::create(&file).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let (code, text, _) = validate_text(&root, &[]);
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains(
                "[validate] Expected columns 'id' and 'value' not found in the dataset (missing: 'value')"
            ),
            "{text}"
        );
        assert!(text.contains(r#"[validate] Columns present: ["id", "ts", "reading"]"#), "{text}");
        assert!(!text.contains("=== Count per id ==="), "no aggregate without the column:\n{text}");
        let (code, report) = validate_json(&root, &[]);
        assert_eq!((code, report["status"].as_str()), (2, Some("missing_columns")));
        assert_eq!(report["total_rows"], 3);
        if let Some((dag_code, dag)) = dag(&root) {
            assert_eq!((dag_code, dag["status"].as_str()), (2, Some("missing_columns")), "{dag}");
            assert_eq!(dag["total"], report["total_rows"]);
            let mut theirs: Vec<String> =
                dag["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
            let mut ours: Vec<String> = report["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            theirs.sort();
            ours.sort();
            assert_eq!(ours, theirs, "the same columns (pandas puts partition columns last)");
        }
    }
}

#[test]
fn id_can_be_a_file_column_when_there_is_no_id_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, true),
        Field::new("value", DataType::Float32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![Some(2), Some(1), Some(2), None, Some(1)])),
            Arc::new(arrow::array::Float32Array::from(vec![
                Some(1.5),
                Some(2.0),
                None,
                Some(9.0),
                Some(4.0),
            ])),
        ],
    )
    .unwrap();
    write_parquet(&tmp.path().join("flat.parquet"), &batch, &[]);
    let report = run_validate(&args(tmp.path()));
    assert_eq!(report.status, Status::Ok, "{}", report.render_text());
    assert_eq!(report.total_rows, 5);
    assert_eq!(report.rows_without_id, 1, "the null id is in no group, as in pandas");
    let got: Vec<(PartValue, u64, Option<f64>)> =
        report.per_id.iter().map(|s| (s.id.clone(), s.count, s.mean)).collect();
    assert_eq!(got, [(PartValue::Int(1), 2, Some(3.0)), (PartValue::Int(2), 1, Some(1.5))]);
}

// ---------------------------------------------------------------------------------------------
// --incremental
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// --audit
// ---------------------------------------------------------------------------------------------

#[test]
fn audit_names_a_file_beyond_next_offset() {
    let mut lake = Lake::standard();
    // Files of a commit whose checkpoint entry was never written (a crash in between).
    let leftover = lake.write_files("run_a", 1, 30, 41).files;
    let report = run_validate(&audit_args(&lake.root()));
    assert_eq!(report.exit_code, 3);
    let audit = report.audit.unwrap();
    assert_eq!(audit.counts.outside as usize, leftover.len(), "{:#?}", audit.problems);
    assert_eq!(audit.problems.len(), leftover.len());
    for (p, file) in audit.problems.iter().zip(&leftover) {
        assert_eq!(p.kind, ProblemKind::Outside);
        assert_eq!(p.files, [file.as_str()]);
        assert!(p.message.contains("[30, 41)") && p.message.contains("next_offset=30"), "{}", p.message);
    }
}

#[test]
fn audit_flags_metadata_that_contradicts_the_footer() {
    let lake = Lake::standard();
    let victim = "run_a/id=0/part-p000-o000000000012-000000000030-w000.parquet";
    let path = lake.root().join(victim);
    let (batch, mut kv) = {
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&path).unwrap(),
        )
        .unwrap();
        let kv: Vec<(String, String)> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .filter(|kv| kv.key.starts_with("streamlake."))
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap()))
            .collect();
        (builder.build().unwrap().next().unwrap().unwrap(), kv)
    };
    // Same rows, but the metadata claims one more.
    for (k, v) in &mut kv {
        if k == "streamlake.rows" {
            *v = (v.parse::<u64>().unwrap() + 1).to_string();
        }
    }
    write_parquet(&path, &batch, &kv);
    let audit = run_validate(&audit_args(&lake.root())).audit.unwrap();
    assert!(!audit.ok);
    let invalid: Vec<_> = audit.problems.iter().filter(|p| p.kind == ProblemKind::Invalid).collect();
    assert_eq!(invalid.len(), 1, "{:#?}", audit.problems);
    assert_eq!(invalid[0].files, [victim]);
    assert!(invalid[0].message.contains("the Parquet footer holds"), "{}", invalid[0].message);
}

// ---------------------------------------------------------------------------------------------
// --every
// ---------------------------------------------------------------------------------------------

#[test]
fn help_names_the_variables_and_units() {
    use clap::{CommandFactory, Parser};
    /// Stand-in for the `validate` subcommand.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        validate: ValidateArgs,
    }
    Cli::command().debug_assert();
    let help = Cli::command().render_long_help().to_string();
    println!("{help}");
    for needle in [
        "--path <DIR>",
        "[env: OUTPUT_PATH=",
        "--dataflow <FILE>",
        "dataflows/events.toml",
        "--every <DURATION>",
        "ms, s, m, h",
        "--incremental",
        "--audit",
        "--json",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
}

// ---------------------------------------------------------------------------------------------
// The DAG's pandas code as a second oracle
// ---------------------------------------------------------------------------------------------
