//! The live state of one `streamlake run` process, shared by the timely workers (writers) and
//! the observer thread (reader: metrics, status page, progress lines).
//!
//! Writers publish at coarse points only — the source at most every 100 ms and per commit, the
//! window operator when windows open or close, the busy-time logger when a worker parks — so the
//! hot path never takes a lock per record. Plain counts are atomics; anything with structure
//! (per-partition state, the latest closed windows, the throughput history) sits behind one
//! mutex that is held only to copy a few values in or out.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::kafka::assignment::owned_partitions;
use crate::observe::counters::{SourceCounters, QUARANTINE_REASONS};
use crate::sink::aggregates::WindowRow;

/// How many closed window ends the status page keeps (each with all its keys).
const CLOSED_WINDOWS_KEPT: usize = 6;
/// How many keys of one closed window are kept; the page is for people, not an export.
const KEYS_PER_WINDOW_KEPT: usize = 50;
/// Throughput history: one sample per second for this long.
pub const HISTORY: Duration = Duration::from_secs(300);

/// What the process is: fixed for the whole run.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub run_id: String,
    pub topic: String,
    /// The raw dataset root (`OUTPUT_PATH`), where `validate` saves `_reports/`.
    pub output: PathBuf,
    pub process: usize,
    pub processes: usize,
    /// Workers per process.
    pub workers: usize,
    pub window_ms: u64,
    pub watermark_delay_ms: u64,
    pub idle_timeout: Duration,
    pub trigger: Duration,
    pub available_now: bool,
}

impl ClusterInfo {
    /// A small fixed cluster for unit tests: the events pipeline's 10 s windows and 30 s delay.
    #[cfg(test)]
    pub(crate) fn for_tests(processes: usize, workers: usize) -> ClusterInfo {
        ClusterInfo {
            run_id: "r".into(),
            topic: "t".into(),
            output: PathBuf::from("/tmp/x"),
            process: 0,
            processes,
            workers,
            window_ms: 10_000,
            watermark_delay_ms: 30_000,
            idle_timeout: Duration::from_secs(30),
            trigger: Duration::from_secs(10),
            available_now: false,
        }
    }

    /// The facts of a `streamlake run` invocation.
    pub fn from_run(args: &crate::cli::RunArgs, spec: &crate::spec::Spec) -> Self {
        ClusterInfo {
            run_id: args.run_id.clone(),
            topic: spec.topic.clone(),
            output: args.output.clone(),
            process: args.process as usize,
            processes: args.processes as usize,
            workers: args.workers as usize,
            window_ms: spec.window_ms,
            watermark_delay_ms: spec.watermark_ms,
            idle_timeout: args.idle_timeout,
            trigger: spec.trigger,
            available_now: args.available_now,
        }
    }

    /// Global index of this process's first worker (timely numbers workers process by process).
    pub fn first_worker(&self) -> usize {
        self.process * self.workers
    }

    pub fn peers(&self) -> usize {
        self.processes * self.workers
    }

    /// Partitions each global worker owns, when the topic has `partitions` partitions.
    pub fn ownership(&self, partitions: usize) -> Vec<Vec<i32>> {
        (0..self.peers()).map(|w| owned_partitions(w, self.peers(), partitions)).collect()
    }

    /// The partitions this process's workers own.
    pub fn local_partitions(&self, partitions: usize) -> Vec<i32> {
        let first = self.first_worker();
        let mut out: Vec<i32> = (first..first + self.workers)
            .flat_map(|w| owned_partitions(w, self.peers(), partitions))
            .collect();
        out.sort_unstable();
        out
    }
}

/// Where one partition's reader is, as its source published it (every 100 ms at most, and per commit).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionReport {
    pub partition: i32,
    /// Global index of the worker that reads it.
    pub worker: usize,
    /// The next offset to read (the consumer position as the source sees it).
    pub read_offset: i64,
    /// The next offset recorded in the checkpoint: everything before it is durable.
    pub committed_offset: i64,
    /// With `--available-now`: the end offset seen at start.
    pub end_offset: Option<i64>,
    /// Where this run started reading the partition.
    pub start_offset: i64,
    /// The partition's own watermark (max event time − delay), `None` before its first record.
    pub watermark_ms: Option<i64>,
    /// Time since the partition's last record, when published.
    pub since_last_record: Duration,
    pub done: bool,
}

/// A partition's report with the moment it was published.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub report: PartitionReport,
    pub published: Instant,
}

impl PartitionState {
    /// Time since the partition's last record, now.
    pub fn silent_for(&self) -> Duration {
        self.report.since_last_record + self.published.elapsed()
    }
}

/// One closed window: its end, and (key, avg, count) per key.
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    pub end_ms: u64,
    pub rows: Vec<(String, f64, u64)>,
}

/// One throughput sample (taken by the observer every second).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: SystemTime,
    pub messages: u64,
    pub rows: u64,
}

/// Per local worker, lock-free.
#[derive(Debug, Default)]
struct WorkerSlot {
    busy_micros: AtomicU64,
    open_windows: AtomicU64,
    closed_windows: AtomicU64,
}

#[derive(Debug, Default)]
struct Shared {
    partitions: BTreeMap<i32, PartitionState>,
    partition_count: Option<usize>,
    high_watermarks: BTreeMap<i32, i64>,
    last_commit: Option<(Instant, Duration)>,
    closed: VecDeque<ClosedWindow>,
    history: VecDeque<Sample>,
}

/// The shared handle; one per process, in an `Arc`.
#[derive(Debug)]
pub struct Telemetry {
    pub info: ClusterInfo,
    pub started: Instant,
    pub counters: Arc<SourceCounters>,
    /// The global frontier (watermark, ms) as the window operators see it; 0 before the first.
    global_watermark: AtomicU64,
    workers: Vec<WorkerSlot>,
    shared: Mutex<Shared>,
}

/// A consistent copy of the telemetry, for one scrape or one page.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub info: ClusterInfo,
    pub uptime: Duration,
    pub messages: u64,
    pub bytes: u64,
    pub rows: u64,
    pub files: u64,
    pub commits: u64,
    pub late: u64,
    pub quarantined: u64,
    pub quarantined_by_reason: Vec<(&'static str, u64)>,
    pub global_watermark_ms: Option<u64>,
    pub partitions: Vec<PartitionState>,
    pub partition_count: Option<usize>,
    pub high_watermarks: BTreeMap<i32, i64>,
    /// Time since the last commit, and how long it took.
    pub last_commit: Option<(Duration, Duration)>,
    /// Per local worker (global index, busy time, open windows, closed windows).
    pub workers: Vec<(usize, Duration, u64, u64)>,
    pub closed: Vec<ClosedWindow>,
    pub history: Vec<Sample>,
}

impl Telemetry {
    pub fn new(info: ClusterInfo, counters: Arc<SourceCounters>) -> Self {
        let workers = (0..info.workers).map(|_| WorkerSlot::default()).collect();
        Telemetry {
            info,
            started: Instant::now(),
            counters,
            global_watermark: AtomicU64::new(0),
            workers,
            shared: Mutex::new(Shared::default()),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        // A panicking writer cannot leave these plain values half-updated in a harmful way.
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn slot(&self, global_worker: usize) -> Option<&WorkerSlot> {
        global_worker.checked_sub(self.info.first_worker()).and_then(|i| self.workers.get(i))
    }

    /// The source's view of its partitions; called every 100 ms at most while reading, and per commit.
    pub fn publish_partitions(&self, reports: Vec<PartitionReport>) {
        let now = Instant::now();
        let mut shared = self.shared();
        for report in reports {
            shared.partitions.insert(report.partition, PartitionState { report, published: now });
        }
    }

    /// A source finished a commit that took `took`.
    pub fn committed(&self, took: Duration) {
        self.shared().last_commit = Some((Instant::now(), took));
    }

    /// The topic's partition count and the brokers' high-water marks (from the offsets watcher).
    pub fn publish_high_watermarks(&self, partitions: usize, marks: Vec<(i32, i64)>) {
        let mut shared = self.shared();
        shared.partition_count = Some(partitions);
        shared.high_watermarks.extend(marks);
    }

    /// The input frontier of a window operator: the global watermark.
    pub fn observe_watermark(&self, watermark_ms: u64) {
        // The end-of-input flush time is not an event time anyone wants to read.
        if watermark_ms < crate::ingest::watermark::FLUSH_TIME {
            self.global_watermark.fetch_max(watermark_ms, Ordering::Relaxed);
        }
    }

    /// A window operator's count of open windows.
    pub fn set_open_windows(&self, worker: usize, open: usize) {
        if let Some(slot) = self.slot(worker) {
            slot.open_windows.store(open as u64, Ordering::Relaxed);
        }
    }

    /// A window operator closed the window ending at `end_ms`, with these final rows.
    pub fn window_closed<'a>(
        &self,
        worker: usize,
        end_ms: u64,
        rows: impl IntoIterator<Item = &'a WindowRow>,
    ) {
        if let Some(slot) = self.slot(worker) {
            slot.closed_windows.fetch_add(1, Ordering::Relaxed);
        }
        let rows: Vec<(String, f64, u64)> = rows
            .into_iter()
            .take(KEYS_PER_WINDOW_KEPT)
            .map(|r| (r.key.to_string(), r.avg(), r.count))
            .collect();
        let mut shared = self.shared();
        // Keys are spread over workers: each closes its share of the same window end.
        match shared.closed.iter_mut().find(|w| w.end_ms == end_ms) {
            Some(w) => {
                w.rows.extend(rows);
                w.rows.sort_by(|a, b| a.0.cmp(&b.0));
                w.rows.truncate(KEYS_PER_WINDOW_KEPT);
            }
            None => {
                shared.closed.push_back(ClosedWindow { end_ms, rows });
                shared.closed.make_contiguous().sort_by_key(|w| w.end_ms);
                while shared.closed.len() > CLOSED_WINDOWS_KEPT {
                    shared.closed.pop_front();
                }
            }
        }
    }

    /// A worker's total busy (not parked) time so far.
    pub fn set_busy(&self, worker: usize, busy: Duration) {
        if let Some(slot) = self.slot(worker) {
            slot.busy_micros.store(busy.as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// Records one throughput sample and forgets those older than [`HISTORY`].
    pub fn sample(&self) {
        let sample = Sample {
            at: SystemTime::now(),
            messages: self.counters.messages.load(Ordering::Relaxed),
            rows: self.counters.rows.load(Ordering::Relaxed),
        };
        let mut shared = self.shared();
        shared.history.push_back(sample);
        let keep = HISTORY.as_secs() as usize + 1;
        while shared.history.len() > keep {
            shared.history.pop_front();
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let quarantined_by_reason = QUARANTINE_REASONS
            .iter()
            .zip(c.quarantined_by_reason.iter())
            .map(|(reason, n)| (*reason, load(n)))
            .collect();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    self.info.first_worker() + i,
                    Duration::from_micros(load(&s.busy_micros)),
                    load(&s.open_windows),
                    load(&s.closed_windows),
                )
            })
            .collect();
        let wm = load(&self.global_watermark);
        let shared = self.shared();
        Snapshot {
            info: self.info.clone(),
            uptime: self.started.elapsed(),
            messages: load(&c.messages),
            bytes: load(&c.bytes),
            rows: load(&c.rows),
            files: load(&c.files),
            commits: load(&c.commits),
            late: load(&c.late),
            quarantined: load(&c.quarantined),
            quarantined_by_reason,
            global_watermark_ms: (wm > 0).then_some(wm),
            partitions: shared.partitions.values().cloned().collect(),
            partition_count: shared.partition_count,
            high_watermarks: shared.high_watermarks.clone(),
            last_commit: shared.last_commit.map(|(at, took)| (at.elapsed(), took)),
            workers,
            closed: shared.closed.iter().rev().cloned().collect(),
            history: shared.history.iter().copied().collect(),
        }
    }
}

/// Why the global watermark is where it is, in the terms a person debugging "my windows do not
/// close" needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    /// No watermark yet (nothing read, or the job is starting).
    Nothing,
    /// This process's partition with the lowest watermark holds the global one back.
    Partition {
        partition: i32,
        worker: usize,
        /// No record for this long (shown as idle when it is at least [`IDLE_SHOWN_AFTER`]).
        silent_for: Duration,
        /// `None` before the partition's first record: it holds event time at the start.
        watermark_ms: Option<i64>,
    },
    /// Every partition of this process is idle past `--idle-timeout`: event time follows the
    /// wall clock here, so another process (or the clock) sets the pace.
    AllIdle,
    /// This process's partitions are all ahead: a partition of another process holds it back.
    Elsewhere,
}

/// A partition with no record for this long is shown as idle. It still holds the watermark
/// back until `--idle-timeout`; the page says so, because that is the usual reason windows do
/// not close on a quiet topic.
pub const IDLE_SHOWN_AFTER: Duration = Duration::from_secs(5);

impl Snapshot {
    /// The partition (or reason) that holds the global watermark back.
    ///
    /// The source's rule decides: a partition counts while it is not done and has had a record
    /// within `--idle-timeout`; the lowest counting watermark is the worker's. The global
    /// watermark is the lowest over workers, so when it equals (or is below) this process's
    /// lowest counting partition, that partition is the one holding it back.
    pub fn holder(&self) -> Holder {
        let counting = self
            .partitions
            .iter()
            .filter(|p| !p.report.done && p.silent_for() < self.info.idle_timeout)
            .min_by_key(|p| (p.report.watermark_ms.unwrap_or(i64::MIN), p.report.partition));
        let Some(p) = counting else {
            return if self.partitions.is_empty() { Holder::Nothing } else { Holder::AllIdle };
        };
        let wm = p.report.watermark_ms.unwrap_or(i64::MIN);
        let global = self.global_watermark_ms.map_or(0, |g| g as i64);
        if wm.max(0) <= global || self.info.processes == 1 {
            Holder::Partition {
                partition: p.report.partition,
                worker: p.report.worker,
                silent_for: p.silent_for(),
                watermark_ms: p.report.watermark_ms,
            }
        } else {
            Holder::Elsewhere
        }
    }

    /// Lag of a partition in records: the broker's high-water mark minus the committed offset
    /// (Kafka's consumer-lag convention: what a restart would still have to read).
    pub fn lag(&self, p: &PartitionReport) -> Option<i64> {
        self.high_watermarks.get(&p.partition).map(|high| (high - p.committed_offset).max(0))
    }

    /// Records per second over the history, one value per sample interval.
    pub fn rates(&self) -> Vec<(SystemTime, f64)> {
        self.history
            .windows(2)
            .map(|w| {
                let secs = w[1].at.duration_since(w[0].at).unwrap_or_default().as_secs_f64().max(1e-3);
                (w[1].at, w[1].messages.saturating_sub(w[0].messages) as f64 / secs)
            })
            .collect()
    }

    /// Messages the run still has to read with `--available-now` (None when unknown or live).
    pub fn target_messages(&self) -> Option<u64> {
        if !self.info.available_now || self.partitions.is_empty() {
            return None;
        }
        let mut total = 0u64;
        for p in &self.partitions {
            total += (p.report.end_offset? - p.report.start_offset).max(0) as u64;
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(processes: usize) -> ClusterInfo {
        ClusterInfo::for_tests(processes, 1)
    }

    fn report(partition: i32, watermark_ms: Option<i64>, silent: u64) -> PartitionReport {
        PartitionReport {
            partition,
            worker: 0,
            read_offset: 10,
            committed_offset: 5,
            end_offset: None,
            start_offset: 0,
            watermark_ms,
            since_last_record: Duration::from_secs(silent),
            done: false,
        }
    }

    #[test]
    fn the_lowest_counting_partition_holds_the_watermark_back() {
        let t = Telemetry::new(info(1), Arc::default());
        t.publish_partitions(vec![report(0, Some(90_000), 0), report(1, Some(40_000), 0)]);
        t.observe_watermark(40_000);
        match t.snapshot().holder() {
            Holder::Partition { partition, .. } => assert_eq!(partition, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_silent_partition_holds_it_back_until_the_idle_timeout() {
        let t = Telemetry::new(info(1), Arc::default());
        // Partition 2 never had a record and has been silent for 10 s (< 30 s idle timeout).
        t.publish_partitions(vec![report(0, Some(90_000), 0), report(2, None, 10)]);
        match t.snapshot().holder() {
            Holder::Partition { partition, silent_for, watermark_ms, .. } => {
                assert_eq!(partition, 2);
                assert!(silent_for >= IDLE_SHOWN_AFTER);
                assert_eq!(watermark_ms, None);
            }
            other => panic!("{other:?}"),
        }
        // Past the idle timeout it no longer counts.
        t.publish_partitions(vec![report(2, None, 31)]);
        match t.snapshot().holder() {
            Holder::Partition { partition, .. } => assert_eq!(partition, 0),
            other => panic!("{other:?}"),
        }
        t.publish_partitions(vec![report(0, Some(90_000), 31)]);
        assert_eq!(t.snapshot().holder(), Holder::AllIdle);
    }

    #[test]
    fn closed_windows_merge_workers_and_keep_the_latest() {
        let t = Telemetry::new(info(1), Arc::default());
        let row = |end_ms, key: i64| WindowRow {
            end_ms,
            key: crate::parse::Key::Int(key),
            sum_nanos: 3_000_000_000,
            count: 2,
            worker: 0,
        };
        for end in 1..=10u64 {
            t.window_closed(0, end * 10_000, &[row(end * 10_000, 1)]);
            t.window_closed(0, end * 10_000, [&row(end * 10_000, 0)]);
        }
        let s = t.snapshot();
        assert_eq!(s.closed.len(), CLOSED_WINDOWS_KEPT);
        assert_eq!(s.closed[0].end_ms, 100_000, "newest first");
        assert_eq!(s.closed[0].rows, vec![("0".to_string(), 1.5, 2), ("1".to_string(), 1.5, 2)]);
        assert_eq!(s.workers[0].3, 20);
    }
}
