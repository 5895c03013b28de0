//! Partition restore and the data-loss decisions: where a partition resumes, and what happens
//! when the position its checkpoint names is no longer on the broker.
//!
//! Pure functions of the checkpoint entry and the broker's offsets, so every branch is tested
//! here; the source applies them (writes the entries, seeks, removes files).

use super::settings::{OnDataLoss, StartingOffsets};
use crate::error::SourceError;
use crate::sink::checkpoint::PartitionEntry;

/// Where a partition with no checkpoint entry starts, given the broker's `[low, high)`.
pub fn default_start(starting: StartingOffsets, low: i64, high: i64) -> i64 {
    match starting {
        StartingOffsets::Earliest => low,
        StartingOffsets::Latest => high,
    }
}

/// Checks a committed position `next` against the broker's offsets `[low, high)`.
///
/// Returns `None` when `next` is on the broker, `Some(low)` when it is gone and the policy is to
/// skip to the oldest offset still there. A position past the broker's end means the topic was
/// recreated: an error under every policy, since continuing would reuse offsets that already name
/// written files. A gone position under `fail` is an error that names the missing range.
pub fn check_position(
    topic: &str,
    partition: i32,
    next: i64,
    low: i64,
    high: i64,
    policy: OnDataLoss,
) -> Result<Option<i64>, SourceError> {
    if next > high {
        return Err(SourceError::Recreated { topic: topic.to_string(), partition, next, high });
    }
    if next >= low {
        return Ok(None);
    }
    match policy {
        OnDataLoss::Fail => Err(SourceError::DataLoss {
            topic: topic.to_string(),
            partition,
            next,
            low,
            high,
            missing: format!("{next}..{low}"),
            resume: low,
        }),
        OnDataLoss::Skip => Ok(Some(low)),
    }
}

/// The entry that records a deliberate skip of `[prev.next_offset, low)`: no files, the same
/// totals and window state, and the range counted as `skipped`.
pub fn skip_entry(prev: &PartitionEntry, low: i64, committed_at: String) -> PartitionEntry {
    let mut e = prev.clone();
    e.start_offset = prev.next_offset;
    e.next_offset = low;
    e.messages = 0;
    e.rows = 0;
    e.quarantined = 0;
    e.late = 0;
    e.rows_per_key.clear();
    e.quarantined_by_reason.clear();
    e.files.clear();
    e.skipped = (low - prev.next_offset).max(0) as u64;
    e.skipped_ranges.push((prev.next_offset, low));
    e.committed_at = committed_at;
    e
}

/// A partition's running totals since its first commit in this run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub first_offset: i64,
    pub messages: u64,
    pub rows: u64,
    pub quarantined: u64,
    pub late: u64,
}

impl Totals {
    /// The totals a restored entry carries forward.
    pub fn of(entry: &PartitionEntry) -> Self {
        Totals {
            first_offset: entry.first_offset,
            messages: entry.total_messages,
            rows: entry.total_rows,
            quarantined: entry.total_quarantined,
            late: entry.total_late,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Key;
    use crate::sink::checkpoint::Partial;

    fn committed(next: i64) -> PartitionEntry {
        let mut e = PartitionEntry::start_of(3, 0, 1);
        e.next_offset = next;
        e.messages = next as u64;
        e.rows = next as u64 - 1;
        e.quarantined = 1;
        e.late = 2;
        e.total_messages = 500;
        e.rows_per_key.insert("1".into(), 4);
        e.quarantined_by_reason.insert("bad_json".into(), 1);
        e.files = vec!["id=1/part.parquet".into()];
        e.partials = vec![Partial::new(10_000, Key::Int(1), 5, 1)];
        e.skipped_ranges = vec![(1, 2)];
        e
    }

    #[test]
    fn a_position_on_the_broker_resumes_there() {
        for policy in [OnDataLoss::Fail, OnDataLoss::Skip] {
            assert_eq!(check_position("t", 0, 10, 10, 20, policy).unwrap(), None);
            assert_eq!(check_position("t", 0, 20, 10, 20, policy).unwrap(), None, "at the end: nothing new");
        }
    }

    #[test]
    fn a_gone_position_fails_or_skips_by_policy() {
        let err = check_position("t", 4, 5, 10, 20, OnDataLoss::Fail).unwrap_err();
        assert!(
            matches!(err, SourceError::DataLoss { partition: 4, next: 5, low: 10, resume: 10, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("records 5..10 are gone"), "{err}");
        assert!(err.is_permanent());
        assert_eq!(check_position("t", 4, 5, 10, 20, OnDataLoss::Skip).unwrap(), Some(10));
    }

    #[test]
    fn a_position_past_the_end_is_a_recreated_topic_under_every_policy() {
        for policy in [OnDataLoss::Fail, OnDataLoss::Skip] {
            let err = check_position("t", 1, 30, 0, 20, policy).unwrap_err();
            assert!(matches!(err, SourceError::Recreated { next: 30, high: 20, .. }), "{err}");
        }
    }

    #[test]
    fn a_skip_entry_keeps_totals_and_window_state_but_no_files() {
        let prev = committed(40);
        let e = skip_entry(&prev, 100, "now".into());
        assert_eq!((e.start_offset, e.next_offset, e.skipped), (40, 100, 60));
        assert_eq!((e.messages, e.rows, e.quarantined, e.late), (0, 0, 0, 0));
        assert!(e.files.is_empty() && e.rows_per_key.is_empty() && e.quarantined_by_reason.is_empty());
        assert_eq!(e.total_messages, 500);
        assert_eq!(e.partials, prev.partials);
        assert_eq!(e.skipped_ranges, vec![(1, 2), (40, 100)], "earlier skips are carried forward");
        assert_eq!(e.committed_at, "now");
    }

    #[test]
    fn starting_offsets_pick_an_end_of_the_broker_range() {
        assert_eq!(default_start(StartingOffsets::Earliest, 3, 9), 3);
        assert_eq!(default_start(StartingOffsets::Latest, 3, 9), 9);
    }

    #[test]
    fn totals_come_from_the_entry() {
        let t = Totals::of(&committed(40));
        assert_eq!(t, Totals { first_offset: 0, messages: 500, rows: 0, quarantined: 0, late: 0 });
    }
}
