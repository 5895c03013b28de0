//! Client settings shared by every Kafka client streamlake creates, and the metadata questions
//! every command asks first. The settings live in [`super::settings`], the explained metadata
//! probe in [`super::diagnose`]; they are re-exported here for the clients.

use rdkafka::metadata::Metadata;

pub use super::diagnose::fetch_metadata;
pub use super::settings::{base_config, ClientSettings, DEFAULT_BROKERS, LOCAL_ADDRESS_FILE};

/// Number of partitions of `topic`, or `None` when the topic does not exist.
pub fn partition_count(metadata: &Metadata, topic: &str) -> Option<usize> {
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len())
}
