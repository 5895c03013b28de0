//! The Kafka source: each worker reads the partitions it owns, writes their raw events to
//! Parquet, pre-aggregates window sums, and turns event time into the timely frontier.
//!
//! Why the raw sink lives here rather than downstream: a Kafka partition's offsets, its raw
//! files and its share of the window state must be committed together, and all three are local
//! to the worker that reads the partition. Writing where we read keeps the hot path free of
//! copies and channels, and makes each partition's commit a local, atomic step: files durable →
//! checkpoint entry (`sink::commit`), run by the worker's commit thread while the worker reads
//! on (`ingest::commit_stage`). Only the tiny partial sums cross workers.
//!
//! This file holds what is timely's: the capability, the phases and the activation. The reading,
//! restoring, committing and the watermark itself are in [`crate::ingest`].
//!
//! Frontier behaviour: the operator holds one capability, at the worker's watermark in ms:
//! `min over its live partitions of (max event time − watermark delay)`, never lower than the
//! restored `closed_through` ([`crate::ingest::watermark`]). A partition that received nothing for
//! `idle_timeout` stops holding it back (like Flink's `withIdleness`); when all of a worker's
//! partitions are idle its watermark follows the wall clock minus the delay. A worker that owns no
//! partition and can get none drops its capability at once ([`start`]). A record whose window
//! ends at or before the capability time is late: written raw, counted, not aggregated
//! ([`crate::ingest::preagg::is_late`]). Deltas are sent at the capability's time, which is always
//! before their window's end. At the end of input (`--available-now`) the operator commits and
//! drops its capability; with `--flush-windows` it first moves to [`FLUSH_TIME`], waits until the
//! aggregates probe shows every window written, and commits again. It never drops its
//! capability because of an error: errors stop the process instead.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use super::FLUSH_TIME;
use crate::error::SourceError;
use crate::error::WorkerError;
use crate::ingest::PreparedSource;
use crate::observe::counters::SourceCounters;
use crate::observe::telemetry::{PartitionReport, Telemetry};
use crate::parse::json::RecordParser;
use crate::sink::checkpoint::Partial;
use crate::sink::commit::Roll;

/// Where the operator is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading,
    Flushing,
    Finished,
}

/// A fatal error slot shared with the worker loop.
pub type ErrorSlot = Rc<RefCell<Option<WorkerError>>>;

/// The output a source sends its deltas on.
type DeltaOutput<'a> = OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<Partial>>>;

/// The source's first activation. A worker that will never read (`reads` false: it owns no
/// partition and none can be added) releases its capability at once, so it does not hold the
/// frontier back. A reading one sends its restored window shares at `end - 1`, before the
/// capability moves up to `restored_watermark`, so the window operator sees them as on time.
/// Returns whether the capability is still held.
pub fn start(
    cap: &mut Option<Capability<u64>>,
    reads: bool,
    restored: impl IntoIterator<Item = Partial>,
    restored_watermark: u64,
    output: &mut DeltaOutput<'_>,
) -> bool {
    let Some(c) = cap.as_mut() else { return false };
    if !reads {
        *cap = None;
        return false;
    }
    for share in restored {
        let t = share.end_ms.saturating_sub(1).max(*c.time());
        output.session(&c.delayed(&t)).give(share);
    }
    if restored_watermark > *c.time() {
        c.downgrade(&restored_watermark);
    }
    true
}

/// Builds the source operator for one worker.
pub fn kafka_source<'scope>(
    scope: Scope<'scope, u64>,
    mut src: PreparedSource,
    probe: ProbeHandle<u64>,
    counters: Arc<SourceCounters>,
    telemetry: Arc<Telemetry>,
    error: ErrorSlot,
) -> Stream<'scope, u64, Vec<Partial>> {
    source(scope, "KafkaSource", move |capability: Capability<u64>, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(capability);
        let mut phase = Phase::Reading;
        let mut started = false;
        // Partition state for metrics and the status page goes out at most every
        // PUBLISH_EVERY, and only when something was read since: a trickle of one record per
        // activation must not take the telemetry lock each time.
        let mut last_published: Option<Instant> = None;
        let mut unpublished = false;
        let mut roll_clock = crate::ingest::roll::RollClock::new(src.settings().roll_interval);
        let spec = src.settings().spec.clone();
        let mut parser = RecordParser::new(spec.schema.clone(), spec.key_col, spec.value_col, spec.time_col);
        let poll_idle = Duration::from_millis(20);
        // A commit went through: say so to the telemetry, with the partitions' new state.
        let commit_telemetry = telemetry.clone();
        let committed = move |src: &PreparedSource, took: Option<Duration>| {
            if let Some(took) = took {
                commit_telemetry.committed(took);
                publish(src, &commit_telemetry);
            }
        };

        move |output| {
            if cap.is_none() || error.borrow().is_some() {
                return;
            }
            if !started {
                started = true;
                let restored: Vec<Partial> = src.parts().iter().flat_map(|p| p.shares.partials()).collect();
                if !start(&mut cap, src.has_consumer(), restored, src.restored_watermark(), output) {
                    return;
                }
            }
            let Some(c) = cap.as_mut() else { return };
            let fail = |e: SourceError| *error.borrow_mut() = Some(e.into());

            let got = match phase {
                Phase::Reading => {
                    let read = src.read_batch(&mut parser, *c.time(), &counters);
                    let mut session = output.session(&*c);
                    src.flush_deltas(|d| session.give(d));
                    drop(session);
                    match read.and_then(|n| src.between_batches(&counters).map(|took| (n, took))) {
                        Ok((n, took)) => {
                            committed(&src, took);
                            n
                        }
                        Err(e) => return fail(e),
                    }
                }
                _ => 0,
            };
            let closed = probe_closed(&probe);
            let now = Instant::now();
            unpublished |= got > 0;
            if last_published.is_none_or(|at| unpublished && now.duration_since(at) >= PUBLISH_EVERY) {
                publish(&src, &telemetry);
                last_published = Some(now);
                unpublished = false;
            }
            let all_done = src.all_done();
            let stopping = src.settings().shutdown.requested();
            let scheduled = roll_clock.due();
            let mut roll_due = scheduled || src.roll_size_reached();
            if roll_due && !scheduled && src.commit_in_flight() {
                // A size roll while the last commit runs: that commit holds part of the buffer
                // share. Wait for it (reading pauses: backpressure), then look again.
                match src.drain_commits(&counters) {
                    Ok(took) => committed(&src, took),
                    Err(e) => return fail(e),
                }
                roll_due = src.roll_size_reached();
            }

            if phase == Phase::Reading && (roll_due || all_done || stopping) {
                let roll = if scheduled && !all_done && !stopping {
                    roll_clock.scheduled()
                } else {
                    Roll::Unscheduled
                };
                match src.commit_all(closed, &counters, false, roll) {
                    Ok(took) => committed(&src, took),
                    Err(e) => return fail(e),
                }
                roll_clock.rolled();
                if all_done || stopping {
                    if src.settings().flush_windows && all_done && !stopping {
                        phase = Phase::Flushing;
                        c.downgrade(&FLUSH_TIME);
                    } else {
                        phase = Phase::Finished;
                    }
                }
            }
            if phase == Phase::Flushing && stopping {
                // Interrupted while waiting for the flush: what is committed stays valid; the
                // windows not yet written are still in the checkpoint entries.
                phase = Phase::Finished;
            }
            if phase == Phase::Flushing && !probe.less_than(&FLUSH_TIME) {
                // Every window is written: record that none stays open.
                match src.commit_all(FLUSH_TIME, &counters, true, Roll::Unscheduled) {
                    Ok(took) => committed(&src, took),
                    Err(e) => return fail(e),
                }
                phase = Phase::Finished;
            }
            if phase == Phase::Finished {
                match src.finish(&counters) {
                    Ok(took) => committed(&src, took),
                    Err(e) => return fail(e),
                }
                tracing::info!(worker = src.worker(), "source finished");
                cap = None;
                return;
            }
            if phase == Phase::Reading {
                let wm = src.watermark(*c.time());
                if wm > *c.time() {
                    c.downgrade(&wm);
                }
            }
            if got > 0 {
                activator.activate();
            } else {
                activator.activate_after(poll_idle);
            }
        }
    })
}

/// The window end the aggregates probe has passed: every window ending before it is written.
fn probe_closed(probe: &ProbeHandle<u64>) -> u64 {
    probe.with_frontier(|f| f.iter().min().copied().map(|t| t.saturating_sub(1)).unwrap_or(0))
}

/// How often, at most, a source publishes its partitions' state while reading (commits always do).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Publishes every partition's position and watermark for metrics and the status page: at most
/// every [`PUBLISH_EVERY`] while reading and after each commit, never per record.
fn publish(src: &PreparedSource, telemetry: &Telemetry) {
    let now = Instant::now();
    let delay = src.settings().spec.watermark_ms as i64;
    let reports = src
        .parts()
        .iter()
        .map(|p| PartitionReport {
            partition: p.partition,
            worker: src.worker(),
            read_offset: p.next_offset,
            committed_offset: p.committed_offset(),
            end_offset: p.end_offset,
            start_offset: p.start_offset,
            watermark_ms: p.max_event_ms.map(|m| m - delay),
            since_last_record: now.saturating_duration_since(p.last_message),
            done: p.done,
        })
        .collect();
    telemetry.publish_partitions(reports);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Key;
    use timely::dataflow::operators::capture::Event;
    use timely::dataflow::operators::{Capture, Concat, Probe};
    use timely::dataflow::InputHandleVec;

    /// A source with the Kafka part taken out: its first activation is the real [`start`], after
    /// which a reading one keeps its capability where `start` left it.
    fn test_source<'s>(
        scope: Scope<'s, u64>,
        reads: bool,
        restored: Vec<Partial>,
        restored_watermark: u64,
    ) -> Stream<'s, u64, Vec<Partial>> {
        source(scope, "TestSource", move |capability, _info| {
            let mut cap = Some(capability);
            let mut restored = Some(restored);
            move |output| {
                if let Some(restored) = restored.take() {
                    start(&mut cap, reads, restored, restored_watermark, output);
                }
            }
        })
    }

    /// Runs a source beside an input held at `other_at`; returns the frontier a probe after both
    /// sees, and what the source sent, with times.
    fn run(
        reads: bool,
        restored: Vec<Partial>,
        restored_watermark: u64,
        other_at: u64,
    ) -> (Vec<u64>, Vec<(u64, Partial)>) {
        timely::execute_directly(move |worker| {
            let mut input = InputHandleVec::<u64, Partial>::new();
            let (probe, sent) = worker.dataflow::<u64, _, _>(|scope| {
                let ours = test_source(scope, reads, restored, restored_watermark);
                let sent = ours.clone().capture();
                let (probe, _) = ours.concat(input.to_stream(scope)).probe();
                (probe, sent)
            });
            input.advance_to(other_at);
            for _ in 0..10 {
                worker.step();
            }
            let frontier = probe.with_frontier(|f| f.to_vec());
            let sent = sent
                .try_iter()
                .filter_map(|e| match e {
                    Event::Messages(stamp, data) => Some((stamp.elements()[0], data)),
                    Event::Progress(_) => None,
                })
                .flat_map(|(t, data)| data.into_iter().map(move |d| (t, d)))
                .collect();
            // Let the dataflow finish: the test source may still hold its capability.
            input.close();
            worker.drop_dataflow(worker.installed_dataflows()[0]);
            (frontier, sent)
        })
    }

    #[test]
    fn a_worker_with_no_partitions_does_not_hold_the_frontier() {
        let (frontier, sent) = run(false, vec![Partial::new(10_000, Key::Int(1), 1, 1)], 0, 5_000);
        assert_eq!(frontier, vec![5_000], "the other input alone decides the frontier");
        assert!(sent.is_empty(), "a worker that never reads sends nothing: {sent:?}");
    }

    #[test]
    fn a_reading_worker_holds_the_frontier_at_its_restored_watermark() {
        let restored = vec![Partial::new(10_000, Key::Int(1), 7, 2), Partial::new(20_000, Key::Int(2), 3, 1)];
        let (frontier, sent) = run(true, restored.clone(), 4_000, 50_000);
        assert_eq!(frontier, vec![4_000]);
        assert_eq!(
            sent,
            vec![(9_999, restored[0].clone()), (19_999, restored[1].clone())],
            "restored shares go out at end - 1, before the window can close"
        );
    }
}
