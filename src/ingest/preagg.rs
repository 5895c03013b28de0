//! Pre-aggregation: a source sums each poll batch per (window, key) before anything crosses
//! workers, and keeps its partition's share of every open window for the checkpoint.
//!
//! Only these small partial sums leave the worker that read the records; the window operator
//! adds them up per key.

use std::collections::BTreeMap;

use crate::parse::{Key, KeyRef};
use crate::sink::checkpoint::Partial;

/// A (sum, count) pair: an average's state, exact in 1e-9 units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Share {
    pub sum_nanos: i128,
    pub count: u64,
}

impl Share {
    pub fn add(&mut self, sum_nanos: i128, count: u64) {
        self.sum_nanos += sum_nanos;
        self.count += count;
    }
}

/// Whether a record of the window ending at `window_end` comes too late to be aggregated: its
/// window ends at or before the source's capability time (the window operator may already have
/// closed it), or an earlier run already wrote that window's final row (`closed_through`).
/// A late record is still written raw and counted; it only adds to no window.
#[inline]
pub fn is_late(window_end: i64, capability_time: i64, closed_through: u64) -> bool {
    window_end <= capability_time || window_end as u64 <= closed_through
}

/// Adds one value to the batch's deltas; a batch touches few (window, key) pairs, so a linear
/// scan beats hashing and allocates only for a new pair.
#[inline]
pub fn add_delta(deltas: &mut Vec<Partial>, end: u64, key: KeyRef<'_>, nanos: i128) {
    for d in deltas.iter_mut().rev() {
        if d.end_ms == end && key.matches(&d.key) {
            d.sum_nanos += nanos;
            d.count += 1;
            return;
        }
    }
    deltas.push(Partial::new(end, key.to_owned_key(), nanos, 1));
}

/// One partition's share of every window not yet known to be written, by (window end, key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowShares {
    open: BTreeMap<(u64, Key), Share>,
}

impl WindowShares {
    /// The shares a checkpoint entry recorded, minus the windows already written.
    pub fn restore(partials: &[Partial], closed_through: u64) -> Self {
        let mut shares = WindowShares::default();
        for p in partials.iter().filter(|p| p.end_ms > closed_through) {
            shares.absorb(p);
        }
        shares
    }

    /// Adds a batch delta to the partition's share.
    pub fn absorb(&mut self, delta: &Partial) {
        self.open.entry((delta.end_ms, delta.key.clone())).or_default().add(delta.sum_nanos, delta.count);
    }

    /// Forgets every window ending at or before `closed`: its final row is written.
    pub fn retain_open(&mut self, closed: u64) {
        self.open.retain(|(end, _), _| *end > closed);
    }

    /// The shares as checkpoint records, in (window end, key) order.
    pub fn partials(&self) -> impl Iterator<Item = Partial> + '_ {
        self.open.iter().map(|((end, key), s)| Partial::new(*end, key.clone(), s.sum_nanos, s.count))
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_sums_per_window_and_key() {
        let mut deltas = Vec::new();
        add_delta(&mut deltas, 10, KeyRef::Int(1), 5);
        add_delta(&mut deltas, 10, KeyRef::Int(2), 7);
        add_delta(&mut deltas, 20, KeyRef::Int(1), 1);
        add_delta(&mut deltas, 10, KeyRef::Int(1), 3);
        assert_eq!(
            deltas,
            vec![
                Partial::new(10, Key::Int(1), 8, 2),
                Partial::new(10, Key::Int(2), 7, 1),
                Partial::new(20, Key::Int(1), 1, 1),
            ]
        );
    }

    #[test]
    fn a_record_is_late_once_its_window_ends_at_or_before_the_capability() {
        assert!(!is_late(10_000, 9_999, 0));
        assert!(is_late(10_000, 10_000, 0), "the window operator may close it at this frontier");
        assert!(is_late(10_000, 12_000, 0));
        assert!(is_late(10_000, 0, 10_000), "an earlier run wrote it");
        assert!(!is_late(20_000, 0, 10_000));
    }

    #[test]
    fn shares_accumulate_and_closed_windows_are_dropped() {
        let mut s = WindowShares::default();
        s.absorb(&Partial::new(10, Key::Int(1), 5, 1));
        s.absorb(&Partial::new(10, Key::Int(1), 2, 3));
        s.absorb(&Partial::new(20, Key::Str("a".into()), 1, 1));
        assert_eq!(s.len(), 2);
        s.retain_open(10);
        assert_eq!(s.partials().collect::<Vec<_>>(), vec![Partial::new(20, Key::Str("a".into()), 1, 1)]);
    }

    #[test]
    fn a_restore_skips_the_windows_already_written() {
        let partials = [Partial::new(10, Key::Int(1), 5, 1), Partial::new(30, Key::Int(1), 2, 2)];
        let s = WindowShares::restore(&partials, 10);
        assert_eq!(s.partials().collect::<Vec<_>>(), vec![Partial::new(30, Key::Int(1), 2, 2)]);
        assert!(WindowShares::restore(&partials, 30).is_empty());
    }
}
