//! The read state of one Kafka partition, and the checkpoint entry a commit of it records.

use std::time::Instant;

use super::preagg::{BatchDeltas, WindowShares};
use super::restore::Totals;
use super::watermark::PartitionClock;
use crate::format::checkpoint::{Partial, PartitionEntry, ENTRY_VERSION};
use crate::sink::commit::StagedFiles;
use crate::sink::raw::CommitStats;

/// Per-partition read state.
pub struct Part {
    pub partition: i32,
    pub files: Box<dyn StagedFiles>,
    pub next_offset: i64,
    /// Where an `--available-now` run stops (the broker's end at start).
    pub end_offset: Option<i64>,
    pub max_event_ms: Option<i64>,
    pub last_message: Instant,
    /// This partition's share of every window not yet known to be written.
    pub shares: WindowShares,
    /// Deltas of the current poll batch, flushed to `shares` and the output after the batch.
    pub batch_deltas: BatchDeltas,
    /// Late records since the last commit.
    pub late_pending: u64,
    pub totals: Totals,
    /// The newest checkpoint entry, so a commit with no new messages (the end of a flush) can
    /// update it in place without losing the file list of the commit it describes.
    pub last_entry: Option<PartitionEntry>,
    pub done: bool,
    /// Where this run started reading (for progress against `end_offset`).
    pub start_offset: i64,
}

impl Part {
    pub fn clock(&self) -> PartitionClock {
        PartitionClock { done: self.done, last_message: self.last_message, max_event_ms: self.max_event_ms }
    }

    /// Whether a commit has anything to record for this partition.
    pub fn has_pending(&self) -> bool {
        self.files.pending_messages() > 0 || self.late_pending > 0
    }

    /// The offset the checkpoint says is committed (the position before this run's first commit).
    pub fn committed_offset(&self) -> i64 {
        self.last_entry.as_ref().map_or(self.totals.first_offset, |e| e.next_offset)
    }

    /// At a roll, before the partition's files go to the commit stage: drops the windows written
    /// through `closed` and takes what the entry needs from the read side (the open window
    /// shares, the late count, the newest event time) with the committed state it builds on. The
    /// commit stage completes it once the files are durable ([`EntryDraft::complete`]), and the
    /// worker learns the result through [`Part::recorded`].
    ///
    /// The committed state (`totals`, `last_entry`) is current because a worker has at most one
    /// commit in flight and absorbs its result before it drafts the next (`ingest::commit_stage`).
    pub fn draft(&mut self, closed: u64, worker: usize) -> EntryDraft {
        self.shares.retain_open(closed);
        EntryDraft {
            partition: self.partition,
            partials: self.shares.partials().collect(),
            late: std::mem::take(&mut self.late_pending),
            max_event_ms: self.max_event_ms,
            totals: self.totals,
            last_entry: self.last_entry.clone(),
            worker,
        }
    }

    /// After step 2: `entry` is the partition's committed state, with `totals`.
    pub fn recorded(&mut self, entry: PartitionEntry, totals: Totals) {
        self.last_entry = Some(entry);
        self.totals = totals;
    }
}

/// A partition's checkpoint entry before its files are durable: everything but what step 1
/// reports ([`CommitStats`]). Owned, so it can travel to the commit stage's thread.
#[derive(Debug, Clone)]
pub struct EntryDraft {
    partition: i32,
    partials: Vec<Partial>,
    late: u64,
    max_event_ms: Option<i64>,
    totals: Totals,
    last_entry: Option<PartitionEntry>,
    worker: usize,
}

impl EntryDraft {
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// After step 1 (the files of `stats` are durable): the entry that records the range, and
    /// the partition's totals once it is recorded.
    pub fn complete(self, stats: CommitStats, now: String) -> (PartitionEntry, Totals) {
        let mut totals = self.totals;
        totals.messages += stats.messages;
        totals.rows += stats.rows;
        totals.quarantined += stats.quarantined;
        totals.late += self.late;
        let skipped_ranges = self.last_entry.as_ref().map(|e| e.skipped_ranges.clone()).unwrap_or_default();
        let entry = match self.last_entry {
            // Nothing new since the last entry: it keeps describing its range and files; only
            // the window state, the watermark and the late count move.
            Some(mut prev) if stats.messages == 0 && prev.next_offset == stats.next_offset => {
                prev.late += self.late;
                prev.total_late = totals.late;
                prev.partials = self.partials;
                prev.max_event_ms = self.max_event_ms;
                prev.committed_at = now;
                // rewritten by this build, so in this build's layout
                prev.version = ENTRY_VERSION;
                prev
            }
            _ => PartitionEntry {
                version: ENTRY_VERSION,
                partition: self.partition,
                start_offset: stats.start_offset,
                next_offset: stats.next_offset,
                messages: stats.messages,
                rows: stats.rows,
                quarantined: stats.quarantined,
                late: self.late,
                rows_per_key: stats.rows_per_key,
                quarantined_by_reason: stats.quarantined_by_reason,
                first_offset: totals.first_offset,
                total_messages: totals.messages,
                total_rows: totals.rows,
                total_quarantined: totals.quarantined,
                total_late: totals.late,
                max_event_ms: self.max_event_ms,
                files: stats.files,
                partials: self.partials,
                worker: self.worker,
                committed_at: now,
                skipped: 0,
                skipped_ranges,
                seq: None,
            },
        };
        (entry, totals)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::parse::json::RecordParser;
    use crate::parse::Key;
    use crate::sink::SinkError;

    /// Staged files that write nothing: the entry logic does not look at them.
    struct Nothing;

    impl StagedFiles for Nothing {
        fn append(&mut self, _: &RecordParser, _: &[u8]) -> Result<(), SinkError> {
            Ok(())
        }
        fn quarantine(&mut self, _: i64, _: Option<&[u8]>, _: String) {}
        fn pending_bytes(&self) -> u64 {
            0
        }
        fn over_budget(&self) -> bool {
            false
        }
        fn pending_messages(&self) -> u64 {
            0
        }
        fn make_durable(&mut self, next_offset: i64) -> Result<CommitStats, SinkError> {
            Ok(CommitStats { start_offset: next_offset, next_offset, ..Default::default() })
        }
    }

    fn part(last: Option<PartitionEntry>) -> Part {
        let mut shares = WindowShares::default();
        shares.absorb(&Partial::new(10_000, Key::Int(1), 5, 1));
        shares.absorb(&Partial::new(20_000, Key::Int(1), 7, 2));
        Part {
            partition: 2,
            files: Box::new(Nothing),
            next_offset: 10,
            end_offset: None,
            max_event_ms: Some(15_000),
            last_message: Instant::now(),
            shares,
            batch_deltas: BatchDeltas::default(),
            late_pending: 3,
            totals: Totals { first_offset: 0, messages: 10, rows: 8, quarantined: 1, late: 1 },
            last_entry: last,
            done: false,
            start_offset: 0,
        }
    }

    /// A partition `partition` with open window shares and some late records, never committed.
    pub(crate) fn part_at(partition: i32) -> Part {
        Part { partition, ..part(None) }
    }

    fn stats(start: i64, next: i64) -> CommitStats {
        CommitStats {
            start_offset: start,
            next_offset: next,
            messages: (next - start) as u64,
            rows: ((next - start) as u64).saturating_sub(1),
            quarantined: 1,
            files: vec![format!("id=1/part-{start}.parquet")],
            ..Default::default()
        }
    }

    #[test]
    fn a_commit_with_new_messages_records_a_new_entry() {
        let mut p = part(Some(PartitionEntry::start_of(2, 0, 1)));
        let (e, totals) = p.draft(10_000, 1).complete(stats(10, 20), "t".into());
        assert_eq!((e.start_offset, e.next_offset, e.messages, e.rows, e.late), (10, 20, 10, 9, 3));
        assert_eq!((e.total_messages, e.total_rows, e.total_quarantined, e.total_late), (20, 17, 2, 4));
        assert_eq!(
            e.partials,
            vec![Partial::new(20_000, Key::Int(1), 7, 2)],
            "the written window is dropped"
        );
        assert_eq!(e.files, vec!["id=1/part-10.parquet".to_string()]);
        assert_eq!((e.max_event_ms, e.worker), (Some(15_000), 1));
        assert_eq!(p.late_pending, 0, "the late count went into the draft");
        assert_eq!(p.totals.messages, 10, "the totals move when the entry is recorded");
        p.recorded(e.clone(), totals);
        assert_eq!(p.committed_offset(), 20);
        assert_eq!(p.totals, totals);
    }

    #[test]
    fn a_commit_with_nothing_new_updates_the_last_entry_in_place() {
        let mut prev = PartitionEntry::start_of(2, 0, 1);
        prev.next_offset = 10;
        prev.files = vec!["id=1/old.parquet".into()];
        prev.late = 1;
        prev.skipped_ranges = vec![(3, 4)];
        let mut p = part(Some(prev));
        let (e, _) = p.draft(u64::MAX - 1, 1).complete(stats(10, 10), "t2".into());
        assert_eq!(e.files, vec!["id=1/old.parquet".to_string()], "it keeps describing its files");
        assert_eq!((e.late, e.total_late, e.next_offset), (4, 4, 10));
        assert!(e.partials.is_empty(), "a flush closes every window");
        assert_eq!(e.skipped_ranges, vec![(3, 4)]);
        assert_eq!(e.committed_at, "t2");
    }

    #[test]
    fn skipped_ranges_are_carried_into_a_new_entry() {
        let mut prev = PartitionEntry::start_of(2, 0, 1);
        prev.skipped_ranges = vec![(0, 5)];
        let mut p = part(Some(prev));
        let (e, _) = p.draft(0, 1).complete(stats(10, 12), "t".into());
        assert_eq!(e.skipped_ranges, vec![(0, 5)]);
        assert_eq!(e.skipped, 0);
    }
}
