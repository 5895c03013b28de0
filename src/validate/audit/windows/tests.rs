//! Unit tests of `audit::windows`: the rules on their own, then a real aggregates table.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::format::checkpoint::WindowsEntry;
use crate::parse::Key;
use crate::sink::aggregates::{write_windows, AggregatesOwner, WindowRow};
use crate::sink::checkpoint::CheckpointDir;
use crate::sink::delta::files::{add_action, NewFile};
use crate::sink::delta::table::{runtime, DeltaLog, TableLocation};
use crate::sink::delta::{aggregates_table_spec, maintain};
use crate::spec::{Spec, EVENTS_TOML};
use crate::validate::completeness::{run_completeness, RunInput, WindowStatus};

const T0: i64 = 1_750_000_000_000;

/// `windows-<first>-<last>.parquet` of windows ending T0 + `first`·10 s … T0 + `last`·10 s.
fn name(first: i64, last: i64) -> String {
    format::window_file_name((T0 + first * 10_000) as u64, (T0 + last * 10_000) as u64)
}

fn mark(closed: i64, files: &[&str]) -> WindowsEntry {
    let files = files.iter().map(|f| f.to_string()).collect();
    WindowsEntry { closed_through_ms: (T0 + closed * 10_000) as u64, files, ..Default::default() }
}

fn txn(closed: i64) -> Option<i64> {
    Some(T0 + closed * 10_000)
}

fn plain(files: &[&str]) -> Vec<(String, Holds)> {
    files.iter().map(|f| (f.to_string(), Holds::Itself)).collect()
}

fn kinds(found: &Findings) -> Vec<ProblemKind> {
    found.problems.iter().map(|(k, ..)| *k).collect()
}

#[test]
fn a_sound_table_holds_every_marked_file_up_to_the_mark() {
    let (a, b) = (name(1, 1), name(2, 3));
    let found = compare("agg", "windows.json", txn(3), &mark(3, &[&a, &b]), &plain(&[&a, &b]));
    assert!(found.problems.is_empty() && found.warnings.is_empty() && !found.pending, "{found:?}");
    // The mark moved on alone (windows closed without a row): nothing is pending.
    let found = compare("agg", "windows.json", txn(1), &mark(5, &[&a]), &plain(&[&a]));
    assert!(found.problems.is_empty() && found.warnings.is_empty() && !found.pending, "{found:?}");
    // Before the first window: no table version, an empty mark.
    let found = compare("agg", "windows.json", None, &WindowsEntry::default(), &[]);
    assert!(found.problems.is_empty() && found.warnings.is_empty(), "{found:?}");
}

#[test]
fn a_txn_beyond_the_mark_is_invalid() {
    let a = name(1, 1);
    let found = compare("agg", "windows.json", txn(4), &mark(3, &[&a]), &plain(&[&a]));
    assert_eq!(kinds(&found), [ProblemKind::Invalid]);
    let message = &found.problems[0].1;
    assert!(message.contains(&format!("windows txn at {}", T0 + 40_000)), "{message}");
    assert!(message.contains(&format!("beyond closed_through_ms {}", T0 + 30_000)), "{message}");
}

#[test]
fn a_committed_file_the_mark_does_not_list_is_invalid() {
    let (a, stray) = (name(1, 1), name(2, 2));
    let found = compare("agg", "windows.json", txn(2), &mark(2, &[&a]), &plain(&[&a, &stray]));
    assert_eq!(kinds(&found), [ProblemKind::Invalid]);
    assert!(found.problems[0].1.starts_with(&format!("{stray} is in the aggregates table agg")), "{found:?}");
    assert_eq!(found.problems[0].2, [stray]);
}

#[test]
fn the_newest_marked_file_may_wait_for_its_commit_while_the_txn_is_behind() {
    let (a, b) = (name(1, 1), name(2, 3));
    let found = compare("agg", "windows.json", txn(1), &mark(3, &[&a, &b]), &plain(&[&a]));
    assert!(found.problems.is_empty() && found.pending, "{found:?}");
    assert_eq!(found.warnings.len(), 1);
    assert!(found.warnings[0].starts_with(&format!("window file {b} is marked")), "{:?}", found.warnings);
    // The first batch, before the table's first commit.
    let found = compare("agg", "windows.json", None, &mark(1, &[&a]), &[]);
    assert!(found.problems.is_empty() && found.pending, "{found:?}");

    // The same file missing with the txn at the mark: it was committed, and lost.
    let found = compare("agg", "windows.json", txn(3), &mark(3, &[&a, &b]), &plain(&[&a]));
    assert_eq!(kinds(&found), [ProblemKind::Invalid]);
    assert!(found.problems[0].1.contains("a restart does not add them back"), "{found:?}");
    assert!(!found.pending);
    // Missing an older file, or a file whose windows the txn already passed: lost.
    let found = compare("agg", "windows.json", txn(1), &mark(3, &[&a, &b]), &plain(&[&b]));
    assert_eq!(kinds(&found), [ProblemKind::Invalid]);
    assert!(found.problems[0].1.contains("the next `streamlake run` adds them back"), "{found:?}");
    let found = compare("agg", "windows.json", txn(2), &mark(3, &[&a, &b]), &plain(&[&a]));
    assert_eq!(kinds(&found), [ProblemKind::Invalid]);
    // Two batches behind.
    let found = compare("agg", "windows.json", txn(0), &mark(3, &[&a, &b]), &[]);
    assert_eq!(kinds(&found), [ProblemKind::Invalid]);
    assert!(found.warnings.is_empty());
}

#[test]
fn a_merged_file_stands_for_its_sources_once() {
    let (a, b, c) = (name(1, 1), name(2, 2), name(3, 3));
    let marked = mark(3, &[&a, &b, &c]);
    let merged = ("compacted-v1.parquet".to_string(), Holds::Merged(vec![a.clone(), b.clone()]));
    let found =
        compare("agg", "windows.json", txn(3), &marked, &[merged.clone(), (c.clone(), Holds::Itself)]);
    assert!(found.problems.is_empty() && found.warnings.is_empty(), "{found:?}");
    // A source committed again beside the merged file: its windows are in the table twice.
    let again = [merged.clone(), (a.clone(), Holds::Itself), (c.clone(), Holds::Itself)];
    let found = compare("agg", "windows.json", txn(3), &marked, &again);
    assert_eq!(kinds(&found), [ProblemKind::Duplicate]);
    assert!(found.problems[0].1.contains("2 times"), "{found:?}");
    // Merged from a file the mark never made; a merged file whose footer cannot tell.
    let foreign = ("compacted-v2.parquet".to_string(), Holds::Merged(vec![c.clone(), name(9, 9)]));
    let found = compare("agg", "windows.json", txn(3), &marked, &[merged.clone(), foreign]);
    assert_eq!(kinds(&found), [ProblemKind::Invalid]);
    assert!(found.problems[0].1.contains(&format!("was merged from {}", name(9, 9))), "{found:?}");
    let unknown = ("compacted-v3.parquet".to_string(), Holds::Unreadable("its footer cannot be read".into()));
    let found = compare("agg", "windows.json", txn(3), &marked, &[merged, unknown, (c, Holds::Itself)]);
    assert_eq!(kinds(&found), [ProblemKind::Invalid]);
}

/// A format-2 run folder `lake/run_r` with its identity, the aggregates table beside it, and a
/// writer of window files into that table.
struct Fixture {
    _tmp: tempfile::TempDir,
    run_dir: PathBuf,
    agg_dir: PathBuf,
    spec: Spec,
    log: DeltaLog,
    txn: Option<i64>,
    mark: WindowsEntry,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let spec = Spec::parse(EVENTS_TOML, Path::new("events.toml")).unwrap();
        let run_dir = tmp.path().join("lake/run_r");
        let identity = crate::sink::identity::RunIdentity::expected(&spec, "r", None);
        crate::sink::identity::establish(&run_dir, identity).unwrap();
        let agg_dir = aggregates_dir(&run_dir).unwrap();
        let never: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(|| false);
        let at = TableLocation::Local(agg_dir.clone());
        let log = DeltaLog::open(&at, &aggregates_table_spec(&spec, 100), runtime().unwrap(), never).unwrap();
        Fixture { _tmp: tmp, run_dir, agg_dir, spec, log, txn: None, mark: WindowsEntry::default() }
    }

    /// Writes the final rows of windows `ends` (×10 s after T0; key 1, count 2 each) and marks
    /// them closed through the last; commits them when `commit`, as the job does.
    fn batch(&mut self, ends: &[i64], commit: bool) -> String {
        let rows: Vec<WindowRow> = ends
            .iter()
            .map(|e| WindowRow {
                end_ms: (T0 + e * 10_000) as u64,
                key: Key::Int(1),
                sum_nanos: 3_000_000_000,
                count: 2,
                worker: 0,
            })
            .collect();
        let owner = AggregatesOwner { run_id: "r".into(), run_uid: "u".into(), topic: "events".into() };
        let file = write_windows(&self.agg_dir, &owner, self.spec.key_field(), 10_000, &rows).unwrap();
        self.mark.files.push(file.clone());
        self.mark.closed_through_ms = rows.last().unwrap().end_ms;
        self.write_mark();
        if commit {
            self.commit(&file, self.mark.closed_through_ms as i64);
        }
        file
    }

    fn commit(&mut self, file: &str, version: i64) {
        let size = fs::metadata(self.agg_dir.join(file)).unwrap().len();
        let add = add_action(&NewFile { rel: file.to_string(), size, rows: None }, &[], 0);
        let op = self.log.append_operation();
        self.log.commit(&windows_app_id("r"), self.txn, version, vec![add], op).unwrap();
        self.txn = Some(version);
    }

    fn write_mark(&self) {
        CheckpointDir::new(&self.run_dir).write_windows(&self.mark).unwrap();
    }

    fn audit(&self) -> (AuditReport, CommittedWindows) {
        let mut report = AuditReport::default();
        let committed = audit_table("run_r", &self.run_dir, "r", &mut report).unwrap().unwrap();
        (report, committed)
    }

    /// (window end ×10 s after T0, on time, closed) per window, as completeness counts them.
    fn windows(&self, committed: CommittedWindows) -> Vec<(i64, u64, bool)> {
        let found = run_completeness(&RunInput {
            run: "run_r",
            dir: &self.run_dir,
            time_column: "ts",
            key_column: "id",
            raw_files: Vec::new(),
            unreadable_raw: 0,
            // No raw file here: aggregated rows without raw ones are not problems then.
            audit_clean: false,
            checkpoint_late: 0,
            committed_windows: Some(committed),
        });
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        found
            .windows
            .iter()
            .map(|w| ((w.window_end_ms - T0) / 10_000, w.on_time, w.status == WindowStatus::Closed))
            .collect()
    }
}

#[test]
fn the_aggregates_table_is_audited_against_the_mark() {
    let mut f = Fixture::new();
    f.batch(&[1], true);
    f.batch(&[2, 3], true);
    let (report, committed) = f.audit();
    assert!(report.problems.is_empty() && report.warnings.is_empty(), "{report:?}");
    assert_eq!(committed.closed_through_ms, txn(3));
    assert_eq!(f.windows(committed), [(1, 2, true), (2, 2, true), (3, 2, true)]);

    // Marked, not committed (the crash point `aggregates.after_mark`): a warning, and its window
    // counts neither as on time nor as closed.
    let pending = f.batch(&[4], false);
    let (report, committed) = f.audit();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.warnings.len() == 1 && report.warnings[0].contains(&pending), "{:?}", report.warnings);
    assert_eq!(committed.closed_through_ms, txn(3));
    assert_eq!(f.windows(committed), [(1, 2, true), (2, 2, true), (3, 2, true)]);
    f.commit(&pending, T0 + 40_000);

    // Compacted: the merged file stands for the three, whose files stay on disk until vacuum
    // and are not counted again.
    let merged = maintain::compact(&TableLocation::Local(f.agg_dir.clone()), 1 << 30).unwrap();
    assert_eq!(merged.replaced, 3);
    let (report, committed) = f.audit();
    assert!(report.problems.is_empty() && report.warnings.is_empty(), "{report:?}");
    assert_eq!(committed.files.len(), 1);
    assert_eq!(f.windows(committed), [(1, 2, true), (2, 2, true), (3, 2, true), (4, 2, true)]);

    // A window file committed without its mark (here: the mark rewritten without it).
    let stray = f.batch(&[5], true);
    f.mark.files.pop();
    f.write_mark();
    let (report, _) = f.audit();
    let messages: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].starts_with(&format!("{stray} is in the aggregates table")), "{messages:?}");
    assert_eq!(report.problems[0].files, [f.agg_dir.join(&stray).display().to_string()]);

    // A mark older than the table's txn.
    f.mark.files.push(stray);
    f.mark.closed_through_ms = (T0 + 40_000) as u64;
    f.write_mark();
    let (report, _) = f.audit();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].message.contains("beyond closed_through_ms"), "{:?}", report.problems);
}
