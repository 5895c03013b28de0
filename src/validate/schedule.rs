//! `--every`: the Airflow schedule (`*/5 * * * *`, `catchup=False`) without Airflow.
//!
//! Runs happen on a wall-clock grid: the multiples of the period since the Unix epoch, so `5m`
//! fires at :00, :05, :10 (UTC) and `2s` on even seconds. The first run starts at once (as Airflow
//! runs the latest interval when a DAG is switched on). After each run the next one is the first
//! grid point after it ends: grid points missed because a run took longer are skipped, not caught up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a sleeping scheduler looks at the shutdown flag.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// The first grid point of `period` strictly after `now`.
pub fn next_tick(now: SystemTime, period: Duration) -> SystemTime {
    let period_ms = period.as_millis().max(1);
    let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let next_ms = (now_ms / period_ms + 1) * period_ms;
    UNIX_EPOCH + Duration::from_millis(u64::try_from(next_ms).unwrap_or(u64::MAX))
}

/// Sleeps until `deadline` (wall clock), looking at `shutdown_requested` at least every
/// [`SHUTDOWN_POLL`]. Returns false when shutdown was requested.
pub fn sleep_until(deadline: SystemTime, shutdown_requested: &dyn Fn() -> bool) -> bool {
    loop {
        if shutdown_requested() {
            return false;
        }
        // Re-read the clock every time, so a clock step (NTP) only shifts the wait.
        match deadline.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => std::thread::sleep(left.min(SHUTDOWN_POLL)),
            _ => return true,
        }
    }
}

/// Calls `cycle` now and then at every following grid point of `period` until
/// `shutdown_requested()` is true; returns the exit code of the last cycle (0 if none ran).
/// `on_wait` is told when the next cycle is due.
pub fn run_every(
    period: Duration,
    shutdown_requested: &dyn Fn() -> bool,
    mut cycle: impl FnMut() -> i32,
    mut on_wait: impl FnMut(SystemTime),
) -> i32 {
    let mut last = 0;
    while !shutdown_requested() {
        last = cycle();
        let next = next_tick(SystemTime::now(), period);
        on_wait(next);
        if !sleep_until(next, shutdown_requested) {
            break;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let five_min = Duration::from_secs(300);
        // 22:47:13 → 22:50:00; exactly on the grid → the next point.
        assert_eq!(next_tick(at(1_000_000 * 300_000 + 133_000), five_min), at(1_000_001 * 300_000));
        assert_eq!(next_tick(at(1_000_000 * 300_000), five_min), at(1_000_001 * 300_000));
        assert_eq!(next_tick(at(3_001), Duration::from_secs(2)), at(4_000));
        assert_eq!(next_tick(at(4_000), Duration::from_secs(2)), at(6_000));
    }

    #[test]
    fn stops_when_asked_while_sleeping() {
        let far = SystemTime::now() + Duration::from_secs(3600);
        let calls = std::cell::Cell::new(0);
        let stop = || {
            calls.set(calls.get() + 1);
            calls.get() > 2
        };
        assert!(!sleep_until(far, &stop));
        assert_eq!(calls.get(), 3);
    }
}
