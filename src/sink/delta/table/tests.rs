//! DeltaLog against a local table: schema checks and the txn rule.

use super::*;

fn spec(columns: Vec<Column>) -> TableSpec {
    TableSpec { columns, partition_by: vec!["id".into()], checkpoint_interval: 10 }
}

fn col(name: &str, ty: crate::spec::ColumnType, nullable: bool) -> Column {
    (name.into(), delta_type(ty), nullable)
}

/// A type change is refused by name; a new column is added, nullable; another partitioning
/// is refused.
#[test]
fn the_schema_may_grow_but_not_change() {
    use crate::spec::ColumnType as C;
    let tmp = tempfile::tempdir().unwrap();
    let at = TableLocation::Local(tmp.path().join("t"));
    let rt = runtime().unwrap();
    let never: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(|| false);
    let base = vec![col("id", C::Int32, false), col("value", C::Float64, false)];
    DeltaLog::open(&at, &spec(base.clone()), rt.clone(), never.clone()).unwrap();

    let changed = vec![col("id", C::Int32, false), col("value", C::String, false)];
    let err = DeltaLog::open(&at, &spec(changed), rt.clone(), never.clone()).unwrap_err();
    assert!(err.to_string().contains("column `value` is double in the table and string"), "{err}");

    let grown =
        vec![col("id", C::Int32, false), col("value", C::Float64, false), col("note", C::String, true)];
    let log = DeltaLog::open(&at, &spec(grown), rt.clone(), never.clone()).unwrap();
    let has_note = log.with_table(|t| t.snapshot().unwrap().schema().field("note").is_some()).unwrap();
    assert!(has_note, "the new column was added");

    let dropped = vec![col("value", C::Float64, false)];
    let err = DeltaLog::open(&at, &spec(dropped), rt.clone(), never.clone()).unwrap_err();
    assert!(err.to_string().contains("required column `id`"), "{err}");

    let other = TableSpec { partition_by: vec![], ..spec(base) };
    let err = DeltaLog::open(&at, &other, rt, never).unwrap_err();
    assert!(err.to_string().contains("partitioned by"), "{err}");
}

/// A new table of one `id` column in a temporary folder (kept while the first value lives).
fn one_column_table() -> (tempfile::TempDir, DeltaLog) {
    let tmp = tempfile::tempdir().unwrap();
    let at = TableLocation::Local(tmp.path().join("t"));
    let never: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(|| false);
    let columns = vec![col("id", crate::spec::ColumnType::Int32, false)];
    let log = DeltaLog::open(&at, &spec(columns), runtime().unwrap(), never).unwrap();
    (tmp, log)
}

/// A version already committed for an app id is recognised, not committed twice; a commit
/// from a stale position is fenced.
#[test]
fn a_txn_version_is_committed_once() {
    let (_tmp, log) = one_column_table();
    let op = log.append_operation();
    assert!(matches!(log.commit("a", None, 10, vec![], op.clone()).unwrap(), Committed::Version(_)));
    assert_eq!(log.commit("a", None, 10, vec![], op.clone()).unwrap(), Committed::Already);
    let err = log.commit("a", Some(5), 20, vec![], op.clone()).unwrap_err();
    assert!(matches!(err, SinkError::DeltaFenced { found: Some(10), .. }), "{err}");
    assert!(matches!(log.commit("a", Some(10), 20, vec![], op).unwrap(), Committed::Version(_)));
    assert_eq!(log.txn_version("a").unwrap(), Some(20));
    assert_eq!(log.counts().commits, 2);
}

/// Several txns in one version: they move together, a repeat is recognised, and a commit that
/// finds one of them moved (by another writer) is fenced, not half applied.
#[test]
fn txns_of_one_commit_move_together() {
    let (_tmp, log) = one_column_table();
    let op = log.append_operation();
    let mv =
        |app: &str, previous: Option<i64>, version: i64| TxnMove { app_id: app.into(), previous, version };
    let both = [mv("p0", None, 5), mv("p1", None, 7)];
    assert!(matches!(log.commit_all(&both, vec![], op.clone()).unwrap(), Committed::Version(_)));
    assert_eq!(log.commit_all(&both, vec![], op.clone()).unwrap(), Committed::Already);
    assert_eq!((log.txn_version("p0").unwrap(), log.txn_version("p1").unwrap()), (Some(5), Some(7)));
    // p1 moved on alone: a commit that still expects both at their old versions is fenced.
    log.commit("p1", Some(7), 9, vec![], op.clone()).unwrap();
    let next = [mv("p0", Some(5), 6), mv("p1", Some(7), 8)];
    let err = log.commit_all(&next, vec![], op).unwrap_err();
    assert!(matches!(err, SinkError::DeltaFenced { found: Some(9), .. }), "{err}");
    assert_eq!(log.txn_version("p0").unwrap(), Some(5), "nothing of the fenced commit was applied");
}
