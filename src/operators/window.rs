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

use crate::ingest::preagg::Share;
use crate::observe::telemetry::Telemetry;
use crate::parse::Key;
use crate::sink::aggregates::WindowRow;
use crate::sink::checkpoint::Partial;

/// A window row on its way to the sinks: `true` for the final row of a closed window, `false`
/// for an update of an open one (console, update mode).
pub type WindowOutput = (WindowRow, bool);

/// An open window: the capability to emit its final row at its end, and (sum, count) per key.
type OpenWindow = (Capability<u64>, HashMap<Key, Share>);

pub trait WindowAverage<'scope> {
    /// Input: partial sums ([`Partial`]) from the sources, at a time before
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

impl<'scope> WindowAverage<'scope> for Stream<'scope, u64, Vec<Partial>> {
    fn window_average(
        self,
        closed_through: u64,
        telemetry: Arc<Telemetry>,
    ) -> Stream<'scope, u64, Vec<WindowOutput>> {
        let route = Exchange::new(|d: &Partial| d.key.as_ref().route());
        let worker = self.scope().index() as u32;
        self.unary_frontier(route, "WindowAverage", move |_cap, _info| {
            let mut open: BTreeMap<u64, OpenWindow> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let mut updates = Vec::with_capacity(data.len());
                    for Partial { end_ms: end, key, sum_nanos, count } in data.drain(..) {
                        if end <= closed_through {
                            continue;
                        }
                        let slot = open.entry(end).or_insert_with(|| (cap.delayed(&end, 0), HashMap::new()));
                        let acc = slot.1.entry(key.clone()).or_default();
                        acc.add(sum_nanos, count);
                        updates.push((
                            WindowRow {
                                end_ms: end,
                                key,
                                sum_nanos: acc.sum_nanos,
                                count: acc.count,
                                worker,
                            },
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
                        .map(|(key, s)| {
                            (
                                WindowRow {
                                    end_ms: end,
                                    key,
                                    sum_nanos: s.sum_nanos,
                                    count: s.count,
                                    worker,
                                },
                                true,
                            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::counters::SourceCounters;
    use crate::observe::telemetry::ClusterInfo;
    use timely::dataflow::operators::capture::Event;
    use timely::dataflow::operators::{Capture, Probe};
    use timely::dataflow::InputHandleVec;

    /// What the window operator emitted after each step of a script: `(advance the input to,
    /// deltas to send before)`. Returns, per step, the rows it emitted then, with their times.
    fn run(closed_through: u64, script: Vec<(Vec<Partial>, u64)>) -> Vec<Vec<(u64, WindowOutput)>> {
        timely::execute_directly(move |worker| {
            let telemetry =
                Arc::new(Telemetry::new(ClusterInfo::for_tests(1, 1), Arc::new(SourceCounters::default())));
            let mut input = InputHandleVec::<u64, Partial>::new();
            let (probe, out) = worker.dataflow::<u64, _, _>(|scope| {
                let rows = input.to_stream(scope).window_average(closed_through, telemetry);
                let out = rows.clone().capture();
                let (probe, _) = rows.probe();
                (probe, out)
            });
            let mut steps = Vec::new();
            for (deltas, advance_to) in script {
                for d in deltas {
                    input.send(d);
                }
                input.flush();
                input.advance_to(advance_to);
                // Until the frontier has caught up, and a few steps more for data sent at a time the
                // frontier had already reached.
                while probe.less_than(input.time()) {
                    worker.step();
                }
                for _ in 0..5 {
                    worker.step();
                }
                let emitted = out
                    .try_iter()
                    .filter_map(|e| match e {
                        Event::Messages(stamp, data) => Some((stamp.elements()[0], data)),
                        Event::Progress(_) => None,
                    })
                    .flat_map(|(t, data)| data.into_iter().map(move |d| (t, d)))
                    .collect();
                steps.push(emitted);
            }
            steps
        })
    }

    fn finals(step: &[(u64, WindowOutput)]) -> Vec<(u64, u64, Key, i128, u64)> {
        step.iter()
            .filter(|(_, (_, is_final))| *is_final)
            .map(|(t, (r, _))| (*t, r.end_ms, r.key.clone(), r.sum_nanos, r.count))
            .collect()
    }

    #[test]
    fn a_window_closes_exactly_when_the_frontier_reaches_its_end() {
        let steps = run(
            0,
            vec![
                (
                    vec![Partial::new(10_000, Key::Int(1), 5, 1), Partial::new(20_000, Key::Int(1), 1, 1)],
                    9_999,
                ),
                (vec![Partial::new(10_000, Key::Int(1), 7, 2)], 9_999),
                (vec![], 10_000),
                (vec![], 19_999),
                (vec![], 20_000),
            ],
        );
        assert!(finals(&steps[0]).is_empty() && finals(&steps[1]).is_empty(), "{steps:?}");
        assert_eq!(steps[1].len(), 1, "an update per delta: {:?}", steps[1]);
        assert_eq!(steps[1][0].1 .0.sum_nanos, 12, "the update carries the running sum");
        assert_eq!(finals(&steps[2]), vec![(10_000, 10_000, Key::Int(1), 12, 3)], "at the window's end");
        assert!(steps[3].is_empty(), "nothing more before the next window's end: {:?}", steps[3]);
        assert_eq!(finals(&steps[4]), vec![(20_000, 20_000, Key::Int(1), 1, 1)]);
    }

    #[test]
    fn a_late_share_of_a_window_written_by_an_earlier_run_is_not_aggregated() {
        let steps = run(
            10_000,
            vec![
                (
                    vec![Partial::new(10_000, Key::Int(1), 5, 1), Partial::new(20_000, Key::Int(1), 3, 1)],
                    15_000,
                ),
                (vec![], 20_000),
            ],
        );
        let updates: Vec<u64> = steps[0].iter().map(|(_, (r, _))| r.end_ms).collect();
        assert_eq!(updates, vec![20_000], "the closed window gets no update");
        assert_eq!(finals(&steps[1]), vec![(20_000, 20_000, Key::Int(1), 3, 1)]);
        assert!(
            steps.iter().flatten().all(|(_, (r, _))| r.end_ms != 10_000),
            "never emitted again: {steps:?}"
        );
    }

    #[test]
    fn a_record_late_at_the_source_reaches_no_window() {
        // The source's rule, then the window operator: a record whose window ends at or before
        // the source's capability adds no delta, so that window's final row does not count it.
        let capability: u64 = 10_000;
        let records = [(9_000i64, 10_000u64, 4i128), (12_000, 20_000, 6), (10_500, 20_000, 1)];
        let mut deltas = crate::ingest::preagg::BatchDeltas::default();
        for (_ts, end, nanos) in records {
            if !crate::ingest::preagg::is_late(end as i64, capability as i64, 0) {
                deltas.add(end, crate::parse::KeyRef::Int(1), nanos);
            }
        }
        let steps = run(0, vec![(deltas.drain().collect(), capability), (vec![], 20_000)]);
        assert!(finals(&steps[0]).is_empty());
        assert_eq!(finals(&steps[1]), vec![(20_000, 20_000, Key::Int(1), 7, 2)]);
    }
}
