//! Pre-aggregation: a source sums each poll batch per (window, key) before anything crosses
//! workers, and keeps its partition's share of every open window for the checkpoint.
//!
//! Only these small partial sums leave the worker that read the records; the window operator
//! adds them up per key.

use std::collections::BTreeMap;
use std::hash::Hasher;

use crate::parse::{Key, KeyRef};
use crate::sink::checkpoint::Partial;
use crate::util::hash::FastHasher;

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

/// One partition's window deltas of the current poll batch, summed per (window end, key) in
/// first-seen order.
///
/// A batch of few pairs (the seed's 5 ids) is summed by a scan, which beats hashing and
/// allocates only for a new pair. Past [`SCAN_LIMIT`] pairs an open-addressing index of positions
/// takes over: with 100,000 ids a 4,096-record batch holds thousands of pairs, and the scan alone
/// cost O(records × pairs) per batch. The index keeps its capacity from batch to batch.
#[derive(Debug, Default)]
pub struct BatchDeltas {
    deltas: Vec<Partial>,
    /// Position + 1 in `deltas` by hash of (end, key), 0 for a free slot; a power of two at least
    /// twice `deltas.len()` long, or empty while the scan suffices.
    slots: Vec<u32>,
}

/// The pair count up to which a batch is summed by a scan.
const SCAN_LIMIT: usize = 16;

impl BatchDeltas {
    /// Adds one value to the (window, key) pair's delta.
    #[inline]
    pub fn add(&mut self, end: u64, key: KeyRef<'_>, nanos: i128) {
        if self.slots.is_empty() {
            for d in self.deltas.iter_mut().rev() {
                if d.end_ms == end && key.matches(&d.key) {
                    d.sum_nanos += nanos;
                    d.count += 1;
                    return;
                }
            }
            self.deltas.push(Partial::new(end, key.to_owned_key(), nanos, 1));
            if self.deltas.len() > SCAN_LIMIT {
                self.reindex(4 * SCAN_LIMIT);
            }
            return;
        }
        let mask = self.slots.len() - 1;
        let mut i = pair_hash(end, key) as usize & mask;
        while let Some(pos) = self.slots[i].checked_sub(1) {
            let d = &mut self.deltas[pos as usize];
            if d.end_ms == end && key.matches(&d.key) {
                d.sum_nanos += nanos;
                d.count += 1;
                return;
            }
            i = (i + 1) & mask;
        }
        self.deltas.push(Partial::new(end, key.to_owned_key(), nanos, 1));
        self.slots[i] = self.deltas.len() as u32;
        if 2 * self.deltas.len() > self.slots.len() {
            self.reindex(2 * self.slots.len());
        }
    }

    /// Rebuilds the index with `capacity` (a power of two) slots.
    fn reindex(&mut self, capacity: usize) {
        self.slots.clear();
        self.slots.resize(capacity, 0);
        let mask = capacity - 1;
        for (pos, d) in self.deltas.iter().enumerate() {
            let mut i = pair_hash(d.end_ms, d.key.as_ref()) as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = pos as u32 + 1;
        }
    }

    /// The batch's deltas, in first-seen order; the batch is empty afterwards.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Partial> {
        self.slots.clear();
        self.deltas.drain(..)
    }

    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }
}

#[inline]
fn pair_hash(end: u64, key: KeyRef<'_>) -> u64 {
    let mut h = FastHasher::default();
    h.write_u64(end);
    match key {
        KeyRef::Int(v) => h.write_i64(v),
        KeyRef::Str(s) => h.write(s.as_bytes()),
        KeyRef::Bool(b) => h.write_u8(b as u8),
    }
    h.finish()
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
        let mut deltas = BatchDeltas::default();
        deltas.add(10, KeyRef::Int(1), 5);
        deltas.add(10, KeyRef::Int(2), 7);
        deltas.add(20, KeyRef::Int(1), 1);
        deltas.add(10, KeyRef::Int(1), 3);
        assert_eq!(
            deltas.drain().collect::<Vec<_>>(),
            vec![
                Partial::new(10, Key::Int(1), 8, 2),
                Partial::new(10, Key::Int(2), 7, 1),
                Partial::new(20, Key::Int(1), 1, 1),
            ]
        );
    }

    /// Thousands of pairs (the index), mixed key kinds and windows, over several batches that
    /// shrink and grow: each batch equals a plain map's sums, in first-seen order.
    #[test]
    fn a_large_batch_sums_like_a_map_in_first_seen_order() {
        let mut deltas = BatchDeltas::default();
        let mut seed = 7u64;
        for (batch, records) in [5_000usize, 3, 40, 20_000, 17].into_iter().enumerate() {
            let mut expected: Vec<Partial> = Vec::new();
            let mut at: std::collections::HashMap<(u64, Key), usize> = std::collections::HashMap::new();
            let strs: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
            for _ in 0..records {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let end = 10_000 * (1 + (seed >> 60));
                let key = match (seed >> 20) % 10 {
                    0 => KeyRef::Str(&strs[((seed >> 30) % 50) as usize]),
                    1 => KeyRef::Bool(seed & 1 == 1),
                    _ => KeyRef::Int(((seed >> 33) % (1 + batch as u64 * 3_000)) as i64 - 100),
                };
                let nanos = (seed >> 40) as i128 - 1_000;
                deltas.add(end, key, nanos);
                let pos = *at.entry((end, key.to_owned_key())).or_insert_with(|| {
                    expected.push(Partial::new(end, key.to_owned_key(), 0, 0));
                    expected.len() - 1
                });
                expected[pos].sum_nanos += nanos;
                expected[pos].count += 1;
            }
            assert_eq!(deltas.len(), expected.len(), "batch {batch}");
            assert_eq!(deltas.drain().collect::<Vec<_>>(), expected, "batch {batch}");
            assert!(deltas.is_empty());
        }
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
