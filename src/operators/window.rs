//! The window operator: sums partial aggregates per (window, key) and emits each window's final
//! row once the watermark has passed its end.
//!
//! Why timely and not differential-dataflow here: an event-time window is closed by the
//! *frontier*, and its state must then be dropped so memory stays bounded. In differential the
//! aggregate would be an arrangement that keeps every (window, key) until someone retracts it,
//! and "final" would need a second mechanism anyway. A frontier-driven timely operator says
//! exactly what we mean in a few lines: state per window end, a capability per window end, emit
//! and forget when `frontier > end`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::Delta;
use crate::observe::telemetry::Telemetry;
use crate::parse::Key;
use crate::sink::aggregates::WindowRow;

/// A window row on its way to the sinks: `true` for the final row of a closed window, `false`
/// for an update of an open one (console, update mode).
pub type WindowOutput = (WindowRow, bool);

/// An open window: the capability to emit its final row at its end, and (sum, count) per key.
type OpenWindow = (Capability<u64>, HashMap<Key, (i128, u64)>);

pub trait WindowAverage<'scope> {
    /// Input: partial sums `(window_end, key, sum, count)` from the sources, at a time before
    /// `window_end` (a source never sends a delta for a window its own watermark has passed).
    ///
    /// Routing: exchanged by key, so each key's windows live on one worker.
    ///
    /// Output: for every delta, the updated `(row, false)` at the delta's time; when the input
    /// frontier passes a window's end, its `(row, true)` at time `window_end`.
    ///
    /// Frontier behaviour: holds one capability per open window end (the delta's capability
    /// delayed to the end), released when the final row is emitted, together with the window's
    /// state. An empty frontier (every source stopped without `--flush-windows`) closes nothing:
    /// open windows stay in the sources' checkpoints for the next run. Windows ending at or before
    /// `closed_through` were finalized by an earlier run and are never emitted again.
    ///
    /// Telemetry: publishes its input frontier (the global watermark), its count of open windows
    /// and every closed window's rows, once per activation or window, never per record.
    fn window_average(
        self,
        closed_through: u64,
        telemetry: Arc<Telemetry>,
    ) -> Stream<'scope, u64, Vec<WindowOutput>>;
}

impl<'scope> WindowAverage<'scope> for Stream<'scope, u64, Vec<Delta>> {
    fn window_average(
        self,
        closed_through: u64,
        telemetry: Arc<Telemetry>,
    ) -> Stream<'scope, u64, Vec<WindowOutput>> {
        let route = Exchange::new(|d: &Delta| d.1.as_ref().route());
        let worker = self.scope().index() as u32;
        self.unary_frontier(route, "WindowAverage", move |_cap, _info| {
            let mut open: BTreeMap<u64, OpenWindow> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let mut updates = Vec::with_capacity(data.len());
                    for (end, key, sum, count) in data.drain(..) {
                        if end <= closed_through {
                            continue;
                        }
                        let slot = open.entry(end).or_insert_with(|| (cap.delayed(&end, 0), HashMap::new()));
                        let acc = slot.1.entry(key.clone()).or_insert((0, 0));
                        acc.0 += sum;
                        acc.1 += count;
                        updates.push((
                            WindowRow { end_ms: end, key, sum_nanos: acc.0, count: acc.1, worker },
                            false,
                        ));
                    }
                    if !updates.is_empty() {
                        output.session(&cap).give_iterator(updates.into_iter());
                    }
                });
                // Close every window whose end the frontier has reached; an empty frontier means
                // the sources stopped, not that event time ended, so nothing closes then.
                let Some(&watermark) = frontier.frontier().iter().min() else {
                    // Input ended: release the capabilities so the dataflow can finish; the open
                    // windows' state lives on in the sources' checkpoint entries.
                    open.clear();
                    telemetry.set_open_windows(worker as usize, 0);
                    return;
                };
                telemetry.observe_watermark(watermark);
                while let Some(entry) = open.first_entry() {
                    if *entry.key() > watermark {
                        break;
                    }
                    let (end, (cap, keys)) = entry.remove_entry();
                    let mut rows: Vec<WindowOutput> = keys
                        .into_iter()
                        .map(|(key, (sum, count))| {
                            (WindowRow { end_ms: end, key, sum_nanos: sum, count, worker }, true)
                        })
                        .collect();
                    rows.sort();
                    telemetry.window_closed(worker as usize, end, rows.iter().map(|(row, _)| row));
                    output.session(&cap).give_iterator(rows.into_iter());
                }
                telemetry.set_open_windows(worker as usize, open.len());
            }
        })
    }
}
