//! A source's watermark, as pure functions of its partitions' state and the clocks passed in.
//!
//! The watermark is `min over live partitions of (max event time − watermark delay)`, never lower
//! than where it already is. A partition that received nothing for `idle_timeout` stops holding
//! it back (like Flink's `withIdleness`); when every partition is idle, event time follows the
//! wall clock minus the delay. While the broker is away nothing moves: silence is not idleness.

use std::time::{Duration, Instant};

/// The time sources move to with `--flush-windows` at the end of input: past every real window,
/// so every open window closes, yet distinguishable from "the dataflow has ended".
pub const FLUSH_TIME: u64 = u64::MAX - 1;

/// What the watermark needs of one partition.
#[derive(Debug, Clone, Copy)]
pub struct PartitionClock {
    /// Read to its end (`--available-now`): it holds nothing back.
    pub done: bool,
    pub last_message: Instant,
    /// Largest event time read (ms), if any.
    pub max_event_ms: Option<i64>,
}

/// What the watermark needs of the source and the clocks, read once by the caller.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkInputs {
    pub broker_down: bool,
    pub idle_timeout: Duration,
    pub available_now: bool,
    pub delay_ms: u64,
    pub now: Instant,
    /// The wall clock, ms since the epoch.
    pub wall_ms: i64,
}

/// The worker's watermark in ms, given its partitions, where it is now (`current`) and the
/// inputs; it never goes back and stays below [`FLUSH_TIME`].
pub fn watermark(
    parts: impl IntoIterator<Item = PartitionClock>,
    inputs: &WatermarkInputs,
    current: u64,
) -> u64 {
    if inputs.broker_down {
        // Nobody can read while the broker is away: silence is not idleness.
        return current;
    }
    let delay = inputs.delay_ms as i64;
    let mut wm: Option<i64> = None;
    let mut any_live = false;
    for p in parts.into_iter().filter(|p| !p.done) {
        if inputs.now.duration_since(p.last_message) >= inputs.idle_timeout {
            continue;
        }
        any_live = true;
        let w = p.max_event_ms.map_or(i64::MIN, |m| m - delay);
        wm = Some(wm.map_or(w, |x| x.min(w)));
    }
    let wm = if any_live {
        wm.unwrap_or(i64::MIN)
    } else if inputs.available_now {
        // Finished partitions wait for the end-of-input commit; nothing to advance here.
        i64::MIN
    } else {
        // Every partition is idle: event time follows the wall clock.
        inputs.wall_ms - delay
    };
    (wm.max(0) as u64).max(current).min(FLUSH_TIME - 1)
}

/// Where a restored source starts: the lowest restored partition watermark, never below the
/// windows an earlier run already wrote (`closed_through`).
pub fn restored_watermark(
    max_event_ms: impl IntoIterator<Item = i64>,
    delay_ms: u64,
    closed_through: u64,
) -> u64 {
    let restored = max_event_ms.into_iter().map(|m| (m - delay_ms as i64).max(0) as u64).min().unwrap_or(0);
    restored.max(closed_through)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(now: Instant) -> WatermarkInputs {
        WatermarkInputs {
            broker_down: false,
            idle_timeout: Duration::from_secs(10),
            available_now: false,
            delay_ms: 1_000,
            now,
            wall_ms: 1_000_000,
        }
    }

    fn live(at: Instant, max: Option<i64>) -> PartitionClock {
        PartitionClock { done: false, last_message: at, max_event_ms: max }
    }

    #[test]
    fn the_slowest_live_partition_holds_the_watermark() {
        let now = Instant::now();
        let parts = [live(now, Some(50_000)), live(now, Some(20_000))];
        assert_eq!(watermark(parts, &inputs(now), 0), 19_000);
        let silent = [live(now, Some(50_000)), live(now, None)];
        assert_eq!(
            watermark(silent, &inputs(now), 7),
            7,
            "a live partition with no event holds it at its place"
        );
    }

    #[test]
    fn an_idle_partition_stops_holding_it_back() {
        let now = Instant::now();
        let long_ago = now - Duration::from_secs(11);
        let parts = [live(now, Some(50_000)), live(long_ago, Some(20_000))];
        assert_eq!(watermark(parts, &inputs(now), 0), 49_000);
    }

    #[test]
    fn all_idle_follows_the_wall_clock_unless_bounded() {
        let now = Instant::now();
        let long_ago = now - Duration::from_secs(11);
        let parts = [live(long_ago, Some(20_000))];
        assert_eq!(watermark(parts, &inputs(now), 0), 999_000);
        let bounded = WatermarkInputs { available_now: true, ..inputs(now) };
        assert_eq!(watermark(parts, &bounded, 5), 5);
        assert_eq!(watermark([], &inputs(now), 0), 999_000, "no partition at all counts as all idle");
    }

    #[test]
    fn it_never_goes_back_and_holds_while_the_broker_is_away() {
        let now = Instant::now();
        let parts = [live(now, Some(20_000))];
        assert_eq!(watermark(parts, &inputs(now), 30_000), 30_000);
        let down = WatermarkInputs { broker_down: true, ..inputs(now) };
        let long_ago = [live(now - Duration::from_secs(60), Some(20_000))];
        assert_eq!(watermark(long_ago, &down, 3), 3, "silence while the broker is down is not idleness");
    }

    #[test]
    fn done_partitions_do_not_count_and_the_flush_time_is_never_reached() {
        let now = Instant::now();
        let done = PartitionClock { done: true, last_message: now, max_event_ms: Some(1) };
        assert_eq!(watermark([done, live(now, Some(50_000))], &inputs(now), 0), 49_000);
        assert_eq!(watermark([live(now, Some(i64::MAX))], &inputs(now), FLUSH_TIME), FLUSH_TIME - 1);
    }

    #[test]
    fn a_restore_starts_at_the_lowest_partition_and_not_below_closed_windows() {
        assert_eq!(restored_watermark([5_000, 3_000], 1_000, 0), 2_000);
        assert_eq!(restored_watermark([5_000, 3_000], 1_000, 10_000), 10_000);
        assert_eq!(restored_watermark([500], 1_000, 0), 0);
        assert_eq!(restored_watermark([], 1_000, 0), 0);
    }
}
