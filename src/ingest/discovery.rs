//! Partition discovery: when to look for partitions added to the topic, and which of the added
//! ones this worker owns. The metadata call itself is the source's; the decisions are here.

use std::time::{Duration, Instant};

use crate::kafka::assignment::owned_partitions;

/// When the next look for added partitions is due.
#[derive(Debug, Clone)]
pub struct DiscoveryClock {
    /// Zero: never look.
    every: Duration,
    last: Instant,
}

impl DiscoveryClock {
    /// `every` zero, or a bounded (`--available-now`) run, never looks: its input is fixed at start.
    pub fn new(every: Duration, available_now: bool, now: Instant) -> Self {
        DiscoveryClock { every: if available_now { Duration::ZERO } else { every }, last: now }
    }

    /// Whether to look now; a look is then recorded as made. Never while the broker is away: the
    /// metadata call would block the worker for its whole timeout.
    pub fn due(&mut self, broker_down: bool, now: Instant) -> bool {
        if self.every.is_zero() || broker_down || now.saturating_duration_since(self.last) < self.every {
            return false;
        }
        self.last = now;
        true
    }
}

/// The partitions this worker owns among those added when the topic grew from `known` to
/// `now` partitions (none if it did not grow).
pub fn added_partitions(worker: usize, peers: usize, known: usize, now: usize) -> Vec<i32> {
    if now <= known {
        return Vec::new();
    }
    let before = owned_partitions(worker, peers, known);
    owned_partitions(worker, peers, now).into_iter().filter(|p| !before.contains(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_looks_every_interval_and_not_while_the_broker_is_away() {
        let t0 = Instant::now();
        let every = Duration::from_secs(30);
        let mut c = DiscoveryClock::new(every, false, t0);
        assert!(!c.due(false, t0 + Duration::from_secs(29)));
        assert!(!c.due(true, t0 + every), "broker away");
        assert!(c.due(false, t0 + every));
        assert!(!c.due(false, t0 + every + Duration::from_secs(1)), "just looked");
        assert!(c.due(false, t0 + 2 * every));
    }

    #[test]
    fn zero_or_a_bounded_run_never_looks() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        assert!(!DiscoveryClock::new(Duration::ZERO, false, t0).due(false, far));
        assert!(!DiscoveryClock::new(Duration::from_secs(1), true, t0).due(false, far));
    }

    #[test]
    fn added_partitions_are_split_among_workers_without_overlap() {
        assert!(added_partitions(0, 2, 4, 4).is_empty());
        assert!(added_partitions(0, 2, 4, 3).is_empty(), "a shrink is not an addition");
        let mut all: Vec<i32> = (0..3).flat_map(|w| added_partitions(w, 3, 4, 10)).collect();
        all.sort();
        assert_eq!(all, (4..10).collect::<Vec<_>>());
        for w in 0..3 {
            let mine = added_partitions(w, 3, 4, 10);
            assert!(mine.iter().all(|p| owned_partitions(w, 3, 10).contains(p)));
        }
    }
}
