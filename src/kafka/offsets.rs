//! The brokers' high-water marks, for lag: a client of its own, outside the timely workers.
//!
//! The source's consumer could ask too, but `fetch_watermarks` blocks on a broker round trip,
//! and the workers must not wait for a number that only people and dashboards read.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::client::{base_config, partition_count, ClientSettings};
use super::context::KafkaContext;
use super::error::KafkaError;

/// A metadata-only client (no group, no assignment): it never reads records.
pub struct OffsetsClient {
    consumer: BaseConsumer<KafkaContext>,
    topic: String,
}

impl OffsetsClient {
    pub fn new(settings: &ClientSettings, topic: &str) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer<KafkaContext> = base_config(settings)
            .create_with_context(KafkaContext::new(settings))
            .map_err(|e| KafkaError::client("creating an offsets client", e))?;
        Ok(OffsetsClient { consumer, topic: topic.to_string() })
    }

    /// The topic's partition count, or `None` when the broker does not answer within `timeout`.
    pub fn partitions(&self, timeout: Duration) -> Option<usize> {
        let meta = self.consumer.fetch_metadata(Some(&self.topic), timeout).ok()?;
        partition_count(&meta, &self.topic)
    }

    /// `(partition, high-water mark)` for each of `partitions` that answered within `timeout`.
    pub fn high_watermarks(&self, partitions: &[i32], timeout: Duration) -> Vec<(i32, i64)> {
        partitions
            .iter()
            .filter_map(|&p| {
                self.consumer.fetch_watermarks(&self.topic, p, timeout).ok().map(|(_, high)| (p, high))
            })
            .collect()
    }
}
