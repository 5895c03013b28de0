//! Broker health, as a state machine with the clock passed in.
//!
//! A batch read does not report librdkafka's global errors (see `kafka::batch`), so a lost broker
//! shows as an error on a poll or as silence. The source tells this machine what it saw and when;
//! the machine says when to probe the broker, when to repeat the warning, and when an error that
//! is not classified has repeated long enough to stop the job. It does no I/O and reads no clock,
//! so every transition is tested below.

use std::time::{Duration, Instant};

/// How often a warning that the broker is away (or that an error repeats) is repeated.
pub const SAY_EVERY: Duration = Duration::from_secs(10);
/// How often, at most, the broker is probed when no message arrives.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long the partitions still to read must be silent before the broker is probed.
pub const SILENCE: Duration = Duration::from_secs(1);

/// The broker as this worker sees it.
#[derive(Debug, Clone)]
pub struct BrokerHealth {
    /// Since when the broker has been unreachable, and when that was last said.
    down: Option<(Instant, Instant)>,
    /// When the broker was last probed because no message arrived.
    last_probe: Instant,
    /// Since when an unclassified consumer error repeats with no record read, and when it was last
    /// said (`None`: not yet).
    unclassified: Option<(Instant, Option<Instant>)>,
}

/// What to do about an unclassified consumer error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclassified {
    /// Nothing to say yet: librdkafka retries.
    Retry,
    /// Say that it repeats, for how long.
    Warn { repeating: Duration },
    /// It repeated for `limit` with no record read: a permanent error.
    GiveUp,
}

impl BrokerHealth {
    pub fn new(now: Instant) -> Self {
        BrokerHealth { down: None, last_probe: now, unclassified: None }
    }

    pub fn is_down(&self) -> bool {
        self.down.is_some()
    }

    /// A read or a probe failed as a lost broker would. Returns true when the broker was up until
    /// now (the caller says so once).
    pub fn lost(&mut self, now: Instant) -> bool {
        if self.down.is_some() {
            return false;
        }
        self.down = Some((now, now));
        true
    }

    /// A message arrived or a probe answered. Returns how long the broker was away, if it was:
    /// the caller then restarts the partitions' idle clocks (a partition was not idle while nobody
    /// could read it).
    pub fn back(&mut self, now: Instant) -> Option<Duration> {
        self.down.take().map(|(since, _)| now.saturating_duration_since(since))
    }

    /// While the broker is away: how long it has been, every [`SAY_EVERY`], for the warning.
    pub fn reminder(&mut self, now: Instant) -> Option<Duration> {
        let (since, said) = self.down.as_mut()?;
        if now.saturating_duration_since(*said) < SAY_EVERY {
            return None;
        }
        *said = now;
        Some(now.saturating_duration_since(*since))
    }

    /// Whether to probe a broker that is thought up, given the newest message time over the
    /// partitions still to read (`None`: there are none). A probe is then recorded as made.
    pub fn probe_silence(&mut self, last_message: Option<Instant>, now: Instant) -> bool {
        let Some(last_message) = last_message else { return false };
        if self.down.is_some()
            || now.saturating_duration_since(last_message) < SILENCE
            || now.saturating_duration_since(self.last_probe) < PROBE_EVERY
        {
            return false;
        }
        self.last_probe = now;
        true
    }

    /// After a poll batch: `read_any` says whether it read a record, `seen` whether it saw an
    /// unclassified error. Records reset the count; an error repeating for `limit` gives up.
    pub fn unclassified(
        &mut self,
        read_any: bool,
        seen: bool,
        limit: Duration,
        now: Instant,
    ) -> Unclassified {
        if read_any {
            self.unclassified = None;
        }
        if !seen {
            return Unclassified::Retry;
        }
        let (since, said) = self.unclassified.get_or_insert((now, None));
        let repeating = now.saturating_duration_since(*since);
        if repeating >= limit {
            return Unclassified::GiveUp;
        }
        if said.is_none_or(|at| now.saturating_duration_since(at) >= SAY_EVERY) {
            *said = Some(now);
            return Unclassified::Warn { repeating };
        }
        Unclassified::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn lost_then_back_reports_the_outage_once() {
        let t0 = Instant::now();
        let mut h = BrokerHealth::new(t0);
        assert!(!h.is_down());
        assert!(h.lost(t0));
        assert!(!h.lost(t0 + S), "said once");
        assert!(h.is_down());
        assert_eq!(h.back(t0 + 5 * S), Some(5 * S));
        assert_eq!(h.back(t0 + 6 * S), None);
        assert!(!h.is_down());
    }

    #[test]
    fn the_warning_repeats_every_ten_seconds_while_down() {
        let t0 = Instant::now();
        let mut h = BrokerHealth::new(t0);
        assert_eq!(h.reminder(t0 + 20 * S), None, "not down");
        h.lost(t0);
        assert_eq!(h.reminder(t0 + 9 * S), None);
        assert_eq!(h.reminder(t0 + 10 * S), Some(10 * S));
        assert_eq!(h.reminder(t0 + 15 * S), None);
        assert_eq!(h.reminder(t0 + 21 * S), Some(21 * S));
    }

    #[test]
    fn silence_is_probed_at_most_every_two_seconds() {
        let t0 = Instant::now();
        let mut h = BrokerHealth::new(t0);
        assert!(!h.probe_silence(None, t0 + 10 * S), "nothing left to read");
        assert!(!h.probe_silence(Some(t0), t0 + S / 2), "not silent long enough");
        assert!(!h.probe_silence(Some(t0 - 5 * S), t0 + S), "probed too recently");
        assert!(h.probe_silence(Some(t0), t0 + 2 * S));
        assert!(!h.probe_silence(Some(t0), t0 + 3 * S));
        assert!(h.probe_silence(Some(t0), t0 + 4 * S));
        h.lost(t0 + 4 * S);
        assert!(!h.probe_silence(Some(t0), t0 + 10 * S), "a down broker is probed by the reminder loop");
    }

    #[test]
    fn an_unclassified_error_warns_then_gives_up_unless_records_arrive() {
        let t0 = Instant::now();
        let limit = 60 * S;
        let mut h = BrokerHealth::new(t0);
        assert_eq!(h.unclassified(false, false, limit, t0), Unclassified::Retry);
        assert_eq!(h.unclassified(false, true, limit, t0), Unclassified::Warn { repeating: Duration::ZERO });
        assert_eq!(h.unclassified(false, true, limit, t0 + 5 * S), Unclassified::Retry);
        assert_eq!(h.unclassified(false, true, limit, t0 + 10 * S), Unclassified::Warn { repeating: 10 * S });
        assert_eq!(h.unclassified(false, true, limit, t0 + 60 * S), Unclassified::GiveUp);
        // A record read resets the count.
        assert_eq!(
            h.unclassified(true, true, limit, t0 + 61 * S),
            Unclassified::Warn { repeating: Duration::ZERO }
        );
        assert_eq!(
            h.unclassified(false, true, limit, t0 + 100 * S),
            Unclassified::Warn { repeating: 39 * S }
        );
    }
}
