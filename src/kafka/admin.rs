//! Topic administration: the original platform's one-shot `kafka-init` service.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use super::client::{base_config, fetch_metadata, partition_count, ClientSettings};
use super::context::KafkaContext;
use super::error::KafkaError;

/// What `create_topic` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyExists,
}

/// Creates `topic` with `partitions` partitions unless it exists with that count.
///
/// The broker is asked for metadata first, bounded by `timeout`, so an unreachable broker is
/// reported as such instead of surfacing as a vague admin-request timeout. A topic created by
/// someone else between that check and our request is treated like an existing one.
pub fn create_topic(
    settings: &ClientSettings,
    topic: &str,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<TopicOutcome, KafkaError> {
    let started = Instant::now();
    let metadata = fetch_metadata(settings, Some(topic), timeout)?;
    if let Some(existing) = partition_count(&metadata, topic) {
        return check_count(topic, existing, partitions).map(|_| TopicOutcome::AlreadyExists);
    }

    let admin: AdminClient<KafkaContext> = base_config(settings)
        .create_with_context(KafkaContext::new(settings))
        .map_err(|e| KafkaError::client("creating the admin client", e))?;
    let remaining = timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    let options = AdminOptions::new().request_timeout(Some(remaining)).operation_timeout(Some(remaining));
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let results =
        futures_executor::block_on(admin.create_topics([&new_topic], &options)).map_err(|source| {
            KafkaError::Unreachable { brokers: settings.brokers.clone(), waited: timeout, source }
        })?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let metadata = fetch_metadata(settings, Some(topic), timeout)?;
                let existing = partition_count(&metadata, topic).unwrap_or(partitions as usize);
                return check_count(topic, existing, partitions).map(|_| TopicOutcome::AlreadyExists);
            }
            Err((_, code)) => {
                return Err(KafkaError::CreateFailed { topic: topic.to_string(), reason: code.to_string() })
            }
        }
    }
    Ok(TopicOutcome::Created)
}

fn check_count(topic: &str, existing: usize, requested: i32) -> Result<(), KafkaError> {
    if existing == requested as usize {
        Ok(())
    } else {
        Err(KafkaError::PartitionMismatch {
            topic: topic.to_string(),
            existing,
            requested: requested as usize,
        })
    }
}
