//! When a worker rolls: at each multiple of `--roll-interval` on the wall clock, rather than
//! an interval after its own last commit.
//!
//! Why the wall clock: every worker of every process then reaches its commit at nearly the same
//! moment, so on a Delta table the commits of a process's workers meet and share one table
//! version (`sink::delta::table::group`), and a reader sees all partitions move together. The
//! time between two rolls of one worker is still at most one interval (shorter once, after the
//! start). A wall clock that jumps only moves a roll earlier: any change of the interval count
//! rolls.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sink::commit::Roll;

/// The longest the workers of a process wait for each other at a scheduled roll, when their
/// format shares one commit (`sink::delta::table::group`); at most a quarter of the interval.
pub const GATHER_LIMIT: Duration = Duration::from_millis(250);

/// A worker's roll schedule.
#[derive(Debug, Clone)]
pub struct RollClock {
    interval_ms: u128,
    /// The interval count of the last roll.
    rolled_in: u128,
}

impl RollClock {
    pub fn new(interval: Duration) -> Self {
        let interval_ms = interval.as_millis().max(1);
        RollClock { interval_ms, rolled_in: count(SystemTime::now(), interval_ms) }
    }

    /// Whether a multiple of the interval has passed since the last roll.
    pub fn due(&self) -> bool {
        self.due_at(SystemTime::now())
    }

    /// The scheduled roll that is due now.
    pub fn scheduled(&self) -> Roll {
        let wait =
            Duration::from_millis((self.interval_ms / 4).min(u64::MAX as u128) as u64).min(GATHER_LIMIT);
        Roll::Scheduled { number: count(SystemTime::now(), self.interval_ms) as u64, wait }
    }

    /// Records a roll (whatever started it: the clock, the size limit, the end of input).
    pub fn rolled(&mut self) {
        self.rolled_in = count(SystemTime::now(), self.interval_ms);
    }

    fn due_at(&self, now: SystemTime) -> bool {
        count(now, self.interval_ms) != self.rolled_in
    }
}

fn count(now: SystemTime, interval_ms: u128) -> u128 {
    now.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0) / interval_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn rolls_fall_on_multiples_of_the_interval() {
        let clock = RollClock { interval_ms: 500, rolled_in: count(at(10_120), 500) };
        assert!(!clock.due_at(at(10_120)));
        assert!(!clock.due_at(at(10_499)), "still in the interval of the last roll");
        assert!(clock.due_at(at(10_500)), "the next multiple, 380 ms after the last roll");
        // Two workers that rolled at different moments of one interval roll again together.
        let other = RollClock { interval_ms: 500, rolled_in: count(at(10_007), 500) };
        assert_eq!(other.due_at(at(10_499)), clock.due_at(at(10_499)));
        assert_eq!(other.due_at(at(10_500)), clock.due_at(at(10_500)));
    }

    #[test]
    fn a_clock_that_jumps_back_rolls_early_never_late() {
        let clock = RollClock { interval_ms: 1_000, rolled_in: count(at(50_000), 1_000) };
        assert!(clock.due_at(at(20_000)));
        assert!(clock.due_at(at(51_000)));
    }

    #[test]
    fn a_zero_interval_rolls_every_millisecond() {
        let clock = RollClock::new(Duration::ZERO);
        assert_eq!(clock.interval_ms, 1);
    }
}
