//! The hot loop: one poll batch of a worker's partitions, parsed, written raw or quarantined,
//! and pre-aggregated into window deltas; then what the batch said about the broker.

use std::sync::atomic::Ordering;

use rdkafka::consumer::Consumer;
use rdkafka::Offset;

use super::preagg::is_late;
use super::reader::{BatchCounts, PreparedSource};
use crate::error::SourceError;
use crate::kafka::batch::Polled;
use crate::kafka::error_class::{classify, ErrorClass};
use crate::observe::counters::{SourceCounters, FUTURE_REASON, FUTURE_REASON_INDEX};
use crate::parse::json::RecordParser;
use crate::sink::aggregates::to_nanos;
use crate::sink::checkpoint::Partial;

impl PreparedSource {
    /// Polls up to `max_batch` messages and writes them; the batch's window deltas wait in each
    /// partition for [`PreparedSource::flush_deltas`]. `time` is the operator's capability time:
    /// a record whose window ends at or before it is late. Returns how many records it read.
    pub fn read_batch(
        &mut self,
        parser: &mut RecordParser,
        time: u64,
        counters: &SourceCounters,
    ) -> Result<usize, SourceError> {
        let Some(consumer) = self.consumer.as_ref() else { return Ok(0) };
        let spec = self.settings.spec.clone();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let future_limit_ms = now_ms + self.settings.max_future.as_millis() as i64;
        let time = time as i64;
        // One clock read per batch: per-record clock calls showed up at 7% of a profile.
        let batch_now = std::time::Instant::now();
        let mut counts = BatchCounts::default();
        let mut broker_error = None;
        let mut any_message = false;
        let closed_through = self.closed_through;
        let settings = &self.settings;
        let (parts, index, lost_offsets, maybe_gone) =
            (&mut self.parts, &self.index, &mut self.lost_offsets, &mut self.maybe_gone);
        let mut unclassified = None;
        let reader = self.reader.as_mut().expect("a consumer has a batch reader");
        reader.read(|item| -> Result<(), SourceError> {
            let (partition, offset, payload) = match item {
                Polled::Record { partition, offset, payload } => (partition, offset, payload),
                Polled::Error { error, partition, offset, detail } => {
                    let code = error.rdkafka_error_code();
                    // librdkafka leaves the offset at -1 for some errors: the partition's position
                    // is what the job was about to read.
                    let at = if offset >= 0 {
                        offset
                    } else {
                        index
                            .get(partition.max(0) as usize)
                            .copied()
                            .flatten()
                            .map_or(-1, |i| parts[i].next_offset)
                    };
                    match code.map_or(ErrorClass::Unclassified, classify) {
                        ErrorClass::OffsetOutOfRange => {
                            // The error does not say reliably which partition: the caller asks the broker.
                            tracing::warn!(%error, "a partition's next offset is gone from the broker");
                            *lost_offsets = true;
                        }
                        ErrorClass::BrokerDown => broker_error = Some(error),
                        ErrorClass::Transient => {
                            tracing::debug!(%error, partition, "transient Kafka error; librdkafka retries")
                        }
                        ErrorClass::MaybeGone => *maybe_gone = Some((partition, at)),
                        ErrorClass::Permanent(advice) => {
                            return Err(SourceError::Permanent {
                                topic: settings.topic.clone(),
                                partition,
                                offset: if at >= 0 { at.to_string() } else { "unknown".into() },
                                code: code.unwrap_or(rdkafka::types::RDKafkaErrorCode::Unknown),
                                detail: if detail.is_empty() { error.to_string() } else { detail },
                                advice: advice.to_string(),
                            });
                        }
                        ErrorClass::Unclassified => unclassified = Some((error, partition, at, detail)),
                    }
                    return Ok(());
                }
            };
            any_message = true;
            let Some(Some(pi)) = index.get(partition as usize).copied() else { return Ok(()) };
            let part = &mut parts[pi];
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
            part.last_message = batch_now;
            counts.bytes += payload.map_or(0, |p| p.len() as u64);
            match parser.parse(payload) {
                Ok(()) => {
                    let bytes = payload.unwrap_or_default();
                    let ts_ms = parser.event_micros().div_euclid(1000);
                    if ts_ms > future_limit_ms {
                        part.files.quarantine(
                            offset,
                            payload,
                            format!(
                                "{FUTURE_REASON}: event time {} is more than {:?} ahead of the wall clock",
                                ts_ms, settings.max_future
                            ),
                        );
                        counts.quarantined += 1;
                        counters.quarantined_by_reason[FUTURE_REASON_INDEX].fetch_add(1, Ordering::Relaxed);
                    } else {
                        part.files.append(parser, bytes)?;
                        part.max_event_ms = Some(part.max_event_ms.map_or(ts_ms, |m| m.max(ts_ms)));
                        let end = spec.window_end(ts_ms);
                        if is_late(end, time, closed_through) {
                            counts.late += 1;
                            part.late_pending += 1;
                        } else {
                            part.batch_deltas.add(
                                end as u64,
                                parser.key(bytes),
                                to_nanos(parser.value_f64()),
                            );
                        }
                    }
                }
                Err(reject) => {
                    counters.quarantined_by_reason[reject.index()].fetch_add(1, Ordering::Relaxed);
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
        })?;
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
