//! The source's questions to the broker between polls: is it still there, does the topic still
//! exist, has it grown. The decisions (when to ask, what an answer means for the watermark) are
//! in [`super::health`] and [`super::discovery`]; this file makes the calls.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::discovery::added_partitions;
use super::health::Unclassified;
use super::reader::PreparedSource;
use super::settings::StartingOffsets;
use crate::error::{KafkaError, SourceError};
use crate::kafka::client::partition_count;
use crate::kafka::error_class::{topic_absent, UNCLASSIFIED_LIMIT};

/// An unclassified consumer error seen in a batch: the error, its partition, offset and detail.
pub(super) type UnclassifiedError = (rdkafka::error::KafkaError, i32, i64, String);

impl PreparedSource {
    /// Picks up partitions added to the topic since the last look: the ones this worker owns are
    /// read from their earliest offset. Runs every `partition_discovery`, never while the broker
    /// is away (see [`super::discovery::DiscoveryClock`]).
    pub(super) fn discover_partitions(&mut self) -> Result<(), SourceError> {
        if !self.discovery.due(self.health.is_down(), Instant::now()) {
            return Ok(());
        }
        let Some(consumer) = self.consumer.as_ref() else { return Ok(()) };
        let topic = self.settings.topic.clone();
        let Ok(meta) = consumer.fetch_metadata(Some(&topic), Duration::from_secs(2)) else { return Ok(()) };
        if topic_absent(&meta, &topic) {
            // The broker answered and does not list the topic.
            let first = self.parts.first().map_or((-1, -1), |p| (p.partition, p.next_offset));
            return Err(SourceError::TopicGone {
                topic,
                brokers: self.settings.brokers.clone(),
                partition: first.0,
                offset: first.1,
            });
        }
        let Some(now) = partition_count(&meta, &topic) else { return Ok(()) };
        let known = self.index.len();
        if now <= known {
            return Ok(());
        }
        let mine = added_partitions(self.worker(), self.peers, known, now);
        self.index.resize(now, None);
        // The balance may have changed with the count (`super::lanes`): the added partitions get
        // their own queues if the worker splits now; the others keep how they are read (a queue
        // of its own stays one, and `read_batch` reads every such queue whatever the split).
        self.split = super::lanes::split_by_partition(now, self.peers, self.parts.len() + mine.len());
        tracing::info!(worker = self.worker(), topic = %topic, from = known, to = now, mine = ?mine, "partitions added to the topic");
        let mut tpl = TopicPartitionList::new();
        for p in mine {
            let start = self.open_partition(p, StartingOffsets::Earliest)?;
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))
                .map_err(|e| KafkaError::client("assigning added partitions", e))?;
        }
        if tpl.count() > 0 {
            if let Some(consumer) = self.consumer.as_ref() {
                consumer
                    .incremental_assign(&tpl)
                    .map_err(|e| KafkaError::client("assigning added partitions", e))?;
            }
        }
        Ok(())
    }

    /// Says, at most every 10 s, that the broker is away and what the job waits for; probes it
    /// and, once it answers, lets the partitions start their idle clocks afresh (a partition was
    /// not idle while nobody could read it).
    pub(super) fn check_broker(&mut self) {
        if !self.health.is_down() {
            return;
        }
        if let Some(down_for) = self.health.reminder(Instant::now()) {
            tracing::warn!(
                brokers = %self.settings.brokers, down_for_s = down_for.as_secs(),
                "waiting for the Kafka broker to come back; the watermark is held, nothing is skipped"
            );
        }
        let Some(consumer) = self.consumer.as_ref() else { return };
        let Some(p) = self.parts.first().map(|p| p.partition) else { return };
        if consumer.fetch_watermarks(&self.settings.topic, p, Duration::from_millis(500)).is_ok() {
            self.broker_back();
        }
    }

    /// A batch read does not report librdkafka's global errors (see `kafka::batch`), so a lost
    /// broker shows only as silence. After a second without any message on the partitions still
    /// to read, ask the broker for one's offsets, at most every 2 s: a failure is the lost broker.
    /// (While it is down, `check_broker` probes for its return.)
    pub(super) fn probe_broker_if_silent(&mut self) -> Option<rdkafka::error::KafkaError> {
        let live = || self.parts.iter().filter(|p| !p.done);
        let last_message = live().map(|p| p.last_message).max();
        let p = live().next()?.partition;
        self.consumer.as_ref()?;
        if !self.health.probe_silence(last_message, Instant::now()) {
            return None;
        }
        let consumer = self.consumer.as_ref()?;
        consumer.fetch_watermarks(&self.settings.topic, p, Duration::from_millis(500)).err()
    }

    /// After an "unknown topic or partition": asks the broker's metadata whether the topic and
    /// the partition still exist. Gone is a permanent error; present (a leader moving, a topic
    /// being created) is not. No answer means the broker is away: that is returned, and the
    /// caller waits for it as for any lost broker (librdkafka says "unknown partition" when it
    /// cannot reach the partition's leader).
    pub(super) fn check_topic_present(
        &self,
        partition: i32,
        offset: i64,
    ) -> Result<Option<rdkafka::error::KafkaError>, SourceError> {
        let Some(consumer) = self.consumer.as_ref() else { return Ok(None) };
        let topic = &self.settings.topic;
        let meta = match consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            Ok(meta) => meta,
            Err(e) => return Ok(Some(e)),
        };
        let listed = partition_count(&meta, topic);
        match listed {
            _ if !topic_absent(&meta, topic) && listed.is_none() => Ok(None), // listed, no leader yet
            Some(n) if partition < 0 || (partition as usize) < n => {
                tracing::debug!(topic = %topic, partition, "unknown topic or partition, but the broker lists it; retrying");
                Ok(None)
            }
            _ => Err(SourceError::TopicGone {
                topic: topic.clone(),
                brokers: self.settings.brokers.clone(),
                partition,
                offset,
            }),
        }
    }

    /// An error code the classification does not list: retried, logged every 10 s, and after
    /// [`UNCLASSIFIED_LIMIT`] with no record read, a permanent error.
    pub(super) fn track_unclassified(
        &mut self,
        got: usize,
        seen: Option<UnclassifiedError>,
    ) -> Result<(), SourceError> {
        let verdict = self.health.unclassified(got > 0, seen.is_some(), UNCLASSIFIED_LIMIT, Instant::now());
        let Some((error, partition, offset, detail)) = seen else { return Ok(()) };
        match verdict {
            Unclassified::Retry => Ok(()),
            Unclassified::Warn { repeating } => {
                tracing::warn!(%error, partition, offset, repeating_s = repeating.as_secs(), "Kafka consumer error; retrying");
                Ok(())
            }
            Unclassified::GiveUp => Err(SourceError::Permanent {
                topic: self.settings.topic.clone(),
                partition,
                offset: offset.to_string(),
                code: error.rdkafka_error_code().unwrap_or(rdkafka::types::RDKafkaErrorCode::Unknown),
                detail: if detail.is_empty() { error.to_string() } else { detail },
                advice: format!(
                    "this error is not one streamlake knows to be transient, and it repeated for {}s with no \
                     record read; check the broker and the client settings",
                    UNCLASSIFIED_LIMIT.as_secs()
                ),
            }),
        }
    }

    pub(super) fn broker_back(&mut self) {
        let now = Instant::now();
        if let Some(after) = self.health.back(now) {
            tracing::info!(brokers = %self.settings.brokers, after_s = after.as_secs(), "the Kafka broker is back; reading resumes");
            self.parts.iter_mut().for_each(|p| p.last_message = now);
        }
    }

    pub(super) fn broker_lost(&mut self, error: &rdkafka::error::KafkaError) {
        if self.health.lost(Instant::now()) {
            tracing::warn!(
                brokers = %self.settings.brokers, %error,
                "lost the Kafka broker; waiting for it (the watermark is held, nothing is skipped)"
            );
        }
    }
}
