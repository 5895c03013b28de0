//! Client settings shared by every Kafka client streamlake creates.

use std::path::Path;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;

use crate::error::KafkaError;

/// Where `scripts/kafka.sh` records the address of the broker it started.
pub const LOCAL_ADDRESS_FILE: &str = ".kafka/address";
/// Kafka's usual local address, the last resort.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// Picks the bootstrap servers: the flag or `KAFKA_BOOTSTRAP_SERVERS` (already merged by clap),
/// then the local broker's address file, then Kafka's default port on loopback.
pub fn resolve_brokers(explicit: Option<&str>) -> String {
    if let Some(b) = explicit.map(str::trim).filter(|b| !b.is_empty()) {
        return b.to_string();
    }
    std::fs::read_to_string(Path::new(LOCAL_ADDRESS_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_BROKERS.to_string())
}

/// The settings every client gets: where the brokers are, and short enough socket timeouts that
/// an unreachable broker is reported instead of retried silently for minutes.
pub fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "streamlake")
        .set("socket.timeout.ms", "10000")
        // Only loopback or the configured brokers: never guess other addresses.
        .set("broker.address.family", "v4")
        .set("log_level", "3");
    config
}

/// Fetches metadata for `topic` (or all topics), mapping a failure to "unreachable" with the
/// bound that was waited.
pub fn fetch_metadata(brokers: &str, topic: Option<&str>, timeout: Duration) -> Result<Metadata, KafkaError> {
    let consumer: BaseConsumer =
        base_config(brokers).create().map_err(|e| KafkaError::client("creating a metadata client", e))?;
    consumer.fetch_metadata(topic, timeout).map_err(|source| KafkaError::Unreachable {
        brokers: brokers.to_string(),
        waited: timeout,
        source,
    })
}

/// Number of partitions of `topic`, or `None` when the topic does not exist.
pub fn partition_count(metadata: &Metadata, topic: &str) -> Option<usize> {
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len())
}
