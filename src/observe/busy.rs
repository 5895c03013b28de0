//! Per-worker busy time: wall time the timely worker was not parked, from timely's own park
//! events, so no clock is read on the hot path beyond what timely's logging already does.

use std::sync::Arc;
use std::time::Duration;

use timely::logging::{ParkEvent, TimelyEvent, TimelyEventBuilder};
use timely::worker::Worker;

use super::telemetry::Telemetry;

/// Registers a `timely` event logger on `worker` that sums its parked time and publishes
/// `elapsed − parked` to the telemetry whenever timely flushes the log (at least at every park).
pub fn track(worker: &Worker, telemetry: Arc<Telemetry>) {
    let index = worker.index();
    let Some(mut registry) = worker.log_register() else { return };
    let mut parked_since: Option<Duration> = None;
    let mut parked = Duration::ZERO;
    registry.insert::<TimelyEventBuilder, _>("timely", move |now, events| {
        if let Some(events) = events {
            for (at, event) in events.drain(..) {
                match event {
                    TimelyEvent::Park(ParkEvent::Park(_)) => parked_since = Some(at),
                    TimelyEvent::Park(ParkEvent::Unpark) => {
                        if let Some(since) = parked_since.take() {
                            parked += at.saturating_sub(since);
                        }
                    }
                    _ => {}
                }
            }
        }
        // While parked, the time since parking is not busy.
        let until = parked_since.unwrap_or(*now);
        telemetry.set_busy(index, until.saturating_sub(parked));
    });
}
