//! The hot loop: one poll batch of a worker's partitions, parsed, written raw or quarantined,
//! and pre-aggregated into window deltas; then what the batch said about the broker.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::Offset;

use super::lanes::LANE_MIN_RECORDS;
use super::partition::Part;
use super::preagg::is_late;
use super::reader::{BatchCounts, PreparedSource};
use super::settings::SourceSettings;
use crate::error::SourceError;
use crate::kafka::batch::{BatchReader, Polled};
use crate::kafka::error_class::{classify, ErrorClass};
use crate::observe::counters::{SourceCounters, FUTURE_REASON, FUTURE_REASON_INDEX};
use crate::parse::json::RecordParser;
use crate::sink::aggregates::to_nanos;
use crate::sink::checkpoint::Partial;
use crate::spec::Spec;

/// What every record of a poll batch is checked against, the same for the worker's thread and
/// its lanes (`super::lanes`).
struct RecordContext<'a> {
    spec: &'a Spec,
    max_future: Duration,
    future_limit_ms: i64,
    /// The operator's capability time: a record whose window ends at or before it is late.
    time: i64,
    closed_through: u64,
    batch_now: Instant,
    counters: &'a SourceCounters,
}

impl RecordContext<'_> {
    /// One record of `part`, parsed and written raw (or quarantined), and pre-aggregated.
    #[inline]
    fn record(
        &self,
        part: &mut Part,
        parser: &mut RecordParser,
        offset: i64,
        payload: Option<&[u8]>,
        counts: &mut BatchCounts,
    ) -> Result<(), SourceError> {
        if offset < part.next_offset || part.done {
            return Ok(()); // before the resume point, or past the end of an --available-now run
        }
        if let Some(end) = part.end_offset {
            if offset >= end {
                part.done = true;
                return Ok(());
            }
        }
        counts.got += 1;
        part.next_offset = offset + 1;
        part.last_message = self.batch_now;
        counts.bytes += payload.map_or(0, |p| p.len() as u64);
        match parser.parse(payload) {
            Ok(()) => {
                let bytes = payload.unwrap_or_default();
                let ts_ms = parser.event_micros().div_euclid(1000);
                if ts_ms > self.future_limit_ms {
                    part.files.quarantine(
                        offset,
                        payload,
                        format!(
                            "{FUTURE_REASON}: event time {} is more than {:?} ahead of the wall clock",
                            ts_ms, self.max_future
                        ),
                    );
                    counts.quarantined += 1;
                    self.counters.quarantined_by_reason[FUTURE_REASON_INDEX].fetch_add(1, Ordering::Relaxed);
                } else {
                    part.files.append(parser, bytes)?;
                    part.max_event_ms = Some(part.max_event_ms.map_or(ts_ms, |m| m.max(ts_ms)));
                    let end = self.spec.window_end(ts_ms);
                    if is_late(end, self.time, self.closed_through) {
                        counts.late += 1;
                        part.late_pending += 1;
                    } else {
                        part.batch_deltas.add(end as u64, parser.key(bytes), to_nanos(parser.value_f64()));
                    }
                }
            }
            Err(reject) => {
                self.counters.quarantined_by_reason[reject.index()].fetch_add(1, Ordering::Relaxed);
                part.files.quarantine(offset, payload, reject.to_string());
                counts.quarantined += 1;
            }
        }
        if let Some(end) = part.end_offset {
            if part.next_offset >= end {
                part.done = true;
            }
        }
        Ok(())
    }
}

/// Where the consumer errors of a batch go: applied on the worker's thread, in each queue's
/// order; what is left for after the batch is kept here.
struct Errors<'a> {
    settings: &'a SourceSettings,
    lost_offsets: &'a mut bool,
    maybe_gone: &'a mut Option<(i32, i64)>,
    broker_error: Option<KafkaError>,
    unclassified: Option<LaneError>,
}

impl PreparedSource {
    /// Polls up to `max_batch` messages and writes them; the batch's window deltas wait in each
    /// partition for [`PreparedSource::flush_deltas`]. `time` is the operator's capability time:
    /// a record whose window ends at or before it is late. Returns how many records it read.
    ///
    /// A worker that splits its partitions over threads (`super::lanes`) reads each partition's
    /// own queue on a thread of its own; the batch ends when all are done.
    pub fn read_batch(
        &mut self,
        parser: &mut RecordParser,
        time: u64,
        counters: &SourceCounters,
    ) -> Result<usize, SourceError> {
        let Some(consumer) = self.consumer.as_ref() else { return Ok(0) };
        let spec = self.settings.spec.clone();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let ctx = RecordContext {
            spec: &spec,
            max_future: self.settings.max_future,
            future_limit_ms: now_ms + self.settings.max_future.as_millis() as i64,
            time: time as i64,
            closed_through: self.closed_through,
            // One clock read per batch: per-record clock calls showed up at 7% of a profile.
            batch_now: Instant::now(),
            counters,
        };
        let mut counts = BatchCounts::default();
        let mut any_message = false;
        let mut errors = Errors {
            settings: &self.settings,
            lost_offsets: &mut self.lost_offsets,
            maybe_gone: &mut self.maybe_gone,
            broker_error: None,
            unclassified: None,
        };
        let (parts, index) = (&mut self.parts, &self.index);
        let reader = self.reader.as_mut().expect("a consumer has a batch reader");
        // The consumer's queue: every record of a partition without a queue of its own, in queue
        // order, and the consumer's errors where they come. Read first: were a partition's
        // records ever in both queues, the ones here would be the older.
        reader.read_slice(|batch| -> Result<(), SourceError> {
            for m in batch {
                match m.polled() {
                    Polled::Record { partition, offset, payload } => {
                        any_message = true;
                        let Some(Some(pi)) = index.get(partition as usize).copied() else { continue };
                        ctx.record(&mut parts[pi], parser, offset, payload, &mut counts)?;
                    }
                    Polled::Error { error, partition, offset, detail } => {
                        errors.on(
                            error,
                            partition,
                            error_position(parts, index, partition, offset),
                            detail,
                        )?;
                    }
                }
            }
            Ok(())
        })?;
        // Not `self.split`: a partition given its own queue keeps it, also after added partitions
        // made the split even (its records never go to the consumer's queue again).
        if self.part_readers.iter().any(Option::is_some) {
            let lanes = read_lanes(&ctx, parts, &mut self.part_readers, &mut self.lane_parsers, parser)?;
            for lane in lanes {
                any_message |= lane.any_record;
                counts.merge(lane.counts);
                for (error, partition, offset, detail) in lane.errors {
                    errors.on(error, partition, error_position(parts, index, partition, offset), detail)?;
                }
            }
        }
        let Errors { mut broker_error, unclassified, .. } = errors;
        // An --available-now partition whose last offsets are not data records (transaction markers)
        // never delivers them: the consumer's position tells us it is past the end.
        if counts.got == 0 && self.settings.available_now {
            if let Ok(positions) = consumer.position() {
                for part in self.parts.iter_mut().filter(|p| !p.done) {
                    if let (Some(end), Some(el)) =
                        (part.end_offset, positions.find_partition(&self.settings.topic, part.partition))
                    {
                        if let Offset::Offset(pos) = el.offset() {
                            if pos >= end && part.files.pending_messages() == 0 || part.next_offset >= end {
                                part.done = true;
                            }
                        }
                    }
                }
            }
        }
        if !any_message && broker_error.is_none() {
            if let Some(e) = self.probe_broker_if_silent() {
                if e.rdkafka_error_code().map(classify) == Some(ErrorClass::MaybeGone) {
                    let first = self
                        .parts
                        .iter()
                        .find(|p| !p.done)
                        .map_or((-1, -1), |p| (p.partition, p.next_offset));
                    self.maybe_gone = Some(first);
                } else {
                    broker_error = Some(e);
                }
            }
        }
        if let Some((partition, offset)) = self.maybe_gone.take() {
            if let Some(unreachable) = self.check_topic_present(partition, offset)? {
                broker_error = broker_error.or(Some(unreachable));
            }
        }
        self.track_unclassified(counts.got, unclassified)?;
        if let Some(e) = broker_error {
            self.broker_lost(&e);
        } else if any_message && self.health.is_down() {
            self.broker_back();
        }
        counts.add_to(counters);
        Ok(counts.got)
    }

    /// Adds the batch's deltas to each partition's window shares and hands them to `emit`.
    pub fn flush_deltas(&mut self, mut emit: impl FnMut(Partial)) {
        for part in &mut self.parts {
            for delta in part.batch_deltas.drain() {
                part.shares.absorb(&delta);
                emit(delta);
            }
        }
    }

    /// After a poll: the rest of the reader's work between batches (lost offsets, the broker,
    /// added partitions). Returns how long a commit it made took, if it made one.
    pub fn between_batches(
        &mut self,
        counters: &SourceCounters,
    ) -> Result<Option<std::time::Duration>, SourceError> {
        let mut committed = self.poll_commits(counters)?;
        if std::mem::take(&mut self.lost_offsets) {
            committed = self.handle_lost_offsets(counters)?.or(committed);
        }
        self.check_broker();
        self.discover_partitions()?;
        Ok(committed)
    }
}

/// Where an error of a batch happened: its offset, or (librdkafka leaves it at -1 for some
/// errors) the partition's position, what the job was about to read.
fn error_position(parts: &[Part], index: &[Option<usize>], partition: i32, offset: i64) -> i64 {
    if offset >= 0 {
        return offset;
    }
    index.get(partition.max(0) as usize).copied().flatten().map_or(-1, |i| parts[i].next_offset)
}

impl Errors<'_> {
    /// A consumer error of a batch at `at`: noted for after the batch, or the run's end if it is
    /// permanent.
    fn on(&mut self, error: KafkaError, partition: i32, at: i64, detail: String) -> Result<(), SourceError> {
        let code = error.rdkafka_error_code();
        match code.map_or(ErrorClass::Unclassified, classify) {
            ErrorClass::OffsetOutOfRange => {
                // The error does not say reliably which partition: the caller asks the broker.
                tracing::warn!(%error, "a partition's next offset is gone from the broker");
                *self.lost_offsets = true;
            }
            ErrorClass::BrokerDown => self.broker_error = Some(error),
            ErrorClass::Transient => {
                tracing::debug!(%error, partition, "transient Kafka error; librdkafka retries")
            }
            ErrorClass::MaybeGone => *self.maybe_gone = Some((partition, at)),
            ErrorClass::Permanent(advice) => {
                return Err(SourceError::Permanent {
                    topic: self.settings.topic.clone(),
                    partition,
                    offset: if at >= 0 { at.to_string() } else { "unknown".into() },
                    code: code.unwrap_or(rdkafka::types::RDKafkaErrorCode::Unknown),
                    detail: if detail.is_empty() { error.to_string() } else { detail },
                    advice: advice.to_string(),
                });
            }
            ErrorClass::Unclassified => self.unclassified = Some((error, partition, at, detail)),
        }
        Ok(())
    }
}

/// A consumer error, as a lane reports it to the worker: (error, partition, offset, detail).
type LaneError = (KafkaError, i32, i64, String);

/// What one partition's queue gave in one poll: its counts, and its consumer errors in order.
#[derive(Default)]
struct LaneResult {
    counts: BatchCounts,
    /// Whether the queue gave any record (also one before the resume point): the broker is there.
    any_record: bool,
    errors: Vec<LaneError>,
}

/// Reads one poll batch of every partition with a queue of its own (`super::lanes`): the partitions
/// with at least `LANE_MIN_RECORDS` queued, but the first, each on a scoped thread, the rest on
/// this one. Returns when all are done.
fn read_lanes(
    ctx: &RecordContext<'_>,
    parts: &mut [Part],
    readers: &mut [Option<BatchReader>],
    parsers: &mut Vec<RecordParser>,
    parser: &mut RecordParser,
) -> Result<Vec<LaneResult>, SourceError> {
    let spec = ctx.spec;
    parsers.resize_with(parts.len(), || {
        RecordParser::new(spec.schema.clone(), spec.key_col, spec.value_col, spec.time_col)
    });
    std::thread::scope(|scope| {
        let mut here = Vec::new();
        let mut threads = Vec::new();
        for ((part, reader), lane_parser) in parts.iter_mut().zip(readers.iter_mut()).zip(parsers.iter_mut())
        {
            let Some(reader) = reader.as_mut() else { continue };
            if here.is_empty() || reader.queued() < LANE_MIN_RECORDS {
                here.push((part, reader));
                continue;
            }
            let thread = std::thread::Builder::new()
                .name(format!("lane-p{}", part.partition))
                .spawn_scoped(scope, move || read_lane(ctx, part, reader, lane_parser))
                .map_err(|source| SourceError::Thread { what: "a partition's reading lane", source })?;
            threads.push(thread);
        }
        let mut results = Vec::with_capacity(here.len() + threads.len());
        let mut failed = None;
        for (part, reader) in here {
            match read_lane(ctx, part, reader, parser) {
                Ok(r) => results.push(r),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        for thread in threads {
            match thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)) {
                Ok(r) => results.push(r),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(results),
        }
    })
}

/// One poll batch of one partition's own queue, in offset order.
fn read_lane(
    ctx: &RecordContext<'_>,
    part: &mut Part,
    reader: &mut BatchReader,
    parser: &mut RecordParser,
) -> Result<LaneResult, SourceError> {
    let mut lane = LaneResult::default();
    reader.read_slice(|batch| -> Result<(), SourceError> {
        for m in batch {
            match m.polled() {
                Polled::Record { offset, payload, .. } => {
                    lane.any_record = true;
                    ctx.record(part, parser, offset, payload, &mut lane.counts)?;
                }
                Polled::Error { error, partition, offset, detail } => {
                    lane.errors.push((error, partition, offset, detail))
                }
            }
        }
        Ok(())
    })?;
    Ok(lane)
}
