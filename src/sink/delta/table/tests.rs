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

fn mv(app: &str, previous: Option<i64>, version: i64) -> TxnMove {
    TxnMove { app_id: app.into(), previous, version }
}

/// Two workers at one scheduled roll: one table version holding both workers' ranges. The
/// leader's wait is long, so the test does not depend on timing: it can only end when both
/// requests are in.
#[test]
fn workers_at_one_scheduled_roll_share_a_version() {
    use crate::sink::commit::Roll;
    let (_tmp, log) = one_column_table();
    let log = Arc::new(log);
    let roll = |number| Roll::Scheduled { number, wait: Duration::from_secs(600) };
    // Both become members at roll 1 (its commit may be one version each: worker 1 is not known yet).
    log.commit_grouped(0, roll(1), vec![mv("p0", None, 1)], vec![]).unwrap();
    log.commit_grouped(1, roll(1), vec![mv("p1", None, 1)], vec![]).unwrap();
    let before = log.with_table(|t| t.version().unwrap()).unwrap();
    let threads: Vec<_> = [(0usize, "p0"), (1, "p1")]
        .into_iter()
        .map(|(w, app)| {
            let log = log.clone();
            std::thread::spawn(move || log.commit_grouped(w, roll(2), vec![mv(app, Some(1), 2)], vec![]))
        })
        .collect();
    let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
    assert_eq!(outcomes[0], outcomes[1], "both got the one version: {outcomes:?}");
    assert_eq!(outcomes[0], Some(Committed::Version(before + 1)));
    assert_eq!((log.txn_version("p0").unwrap(), log.txn_version("p1").unwrap()), (Some(2), Some(2)));
    let counts = log.counts();
    assert_eq!((counts.commits - 2, counts.ranges - 2), (1, 2), "{counts:?}");
}

/// A worker with nothing new checks in without a commit; a worker that left is not waited for;
/// a grouped commit that fails is retried by each member alone, so each gets its own outcome.
#[test]
fn check_ins_leaving_and_a_failed_group() {
    use crate::sink::commit::Roll;
    let (_tmp, log) = one_column_table();
    let log = Arc::new(log);
    let roll = |number| Roll::Scheduled { number, wait: Duration::from_secs(600) };
    log.commit_grouped(0, roll(1), vec![mv("p0", None, 1)], vec![]).unwrap();
    assert_eq!(log.commit_grouped(1, roll(1), vec![], vec![]).unwrap(), None, "a check-in commits nothing");
    log.leave_group(1);
    // Worker 1 left: worker 0 commits roll 2 without waiting 600 s for it.
    assert!(matches!(
        log.commit_grouped(0, roll(2), vec![mv("p0", Some(1), 2)], vec![]).unwrap(),
        Some(Committed::Version(_))
    ));
    // Another writer moved p9: a group with p9's stale move fails, p0's member still commits.
    log.commit("p9", None, 50, vec![], log.append_operation()).unwrap();
    let threads: Vec<_> = [(0usize, mv("p0", Some(2), 3)), (2, mv("p9", None, 3))]
        .into_iter()
        .map(|(w, m)| {
            let log = log.clone();
            std::thread::spawn(move || log.commit_grouped(w, Roll::Unscheduled, vec![m], vec![]))
        })
        .collect();
    let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(matches!(outcomes[0], Ok(Some(Committed::Version(_)))), "{:?}", outcomes[0]);
    assert!(matches!(outcomes[1], Err(SinkError::DeltaFenced { found: Some(50), .. })), "{:?}", outcomes[1]);
    assert_eq!(log.txn_version("p0").unwrap(), Some(3));
}
