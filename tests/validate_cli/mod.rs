//! Helpers of the `validate` tests (`validate_command.rs`, `validate_e2e.rs`): the real binary's
//! `validate`, its saved reports, and the DAG's pandas code (`tests/py/dag_validate.py`) as a
//! second oracle.
#![allow(dead_code)]

pub mod fixture;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use serde_json::Value;

use crate::common::bin;

/// `streamlake validate --path PATH --json EXTRA...`: exit code and the printed report.
pub fn validate_json(path: &Path, extra: &[&str]) -> (i32, Value) {
    let out = bin().arg("validate").arg("--path").arg(path).arg("--json").args(extra).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "validate --json printed no JSON ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["exit_code"], exit_code(out.status), "{report:#}");
    (exit_code(out.status), report)
}

/// `streamlake validate --path PATH EXTRA...` as people see it: exit code, stdout, stderr.
pub fn validate_text(path: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = bin().arg("validate").arg("--path").arg(path).args(extra).output().unwrap();
    (
        exit_code(out.status),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| panic!("killed by a signal: {status:?}"))
}

/// Report files in `<dataset>/_reports/` (not the incremental state or temp files).
pub fn report_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root.join("_reports"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.ends_with(".json") && !name.starts_with('_') && !name.starts_with('.')
    });
    v.sort();
    v
}

/// The DAG's pandas code on `path`: exit code and its JSON line (None without a python).
pub fn dag(path: &Path) -> Option<(i32, Value)> {
    let python = crate::common::python("not comparing with pandas")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/dag_validate.py");
    let out = Command::new(python).arg(script).arg(path).output().expect("running python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "dag_validate.py printed no JSON ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Some((exit_code(out.status), json))
}
