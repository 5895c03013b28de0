//! A consistent copy of a run's [`Telemetry`](super::Telemetry), taken for one scrape, one page
//! or one progress line, and what can be read from it: who holds the watermark back, lag, rates.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::telemetry::{ClosedWindow, ClusterInfo, PartitionReport, PartitionState, Sample};

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
    use std::sync::Arc;

    use super::*;
    use crate::observe::Telemetry;

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
}
