//! Errors talking to Kafka. They live here rather than in `crate::error` so that the Kafka room
//! depends on nothing above it; `crate::error` re-exports [`KafkaError`] for the layers above.

use std::time::Duration;

/// Errors talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(
        "no Kafka broker answered at {brokers} within {waited:?} ({source}); start one with \
         `scripts/kafka.sh start` or point --brokers / KAFKA_BOOTSTRAP_SERVERS at a running broker"
    )]
    Unreachable {
        brokers: String,
        waited: Duration,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A connection that cannot work as configured (TLS, SASL, authorization, settings).
    #[error(transparent)]
    Connect(Box<super::diagnose::ConnectError>),
    #[error(transparent)]
    Settings(#[from] super::settings::SettingsError),
    #[error(
        "topic `{topic}` already exists with {existing} partitions, but {requested} were requested; \
         use --partitions {existing}, or delete the topic first if you really want {requested}"
    )]
    PartitionMismatch { topic: String, existing: usize, requested: usize },
    #[error("topic `{topic}` does not exist on {brokers}; create it with `streamlake topic create --topic {topic}`")]
    NoSuchTopic { topic: String, brokers: String },
    #[error("could not create topic `{topic}`: {reason}")]
    CreateFailed { topic: String, reason: String },
    #[error("Kafka client error while {doing}: {source}")]
    Client {
        doing: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("could not deliver {failed} event(s) to topic `{topic}`: {reason}")]
    Delivery { topic: String, failed: u64, reason: String },
}

impl From<super::diagnose::ConnectError> for KafkaError {
    fn from(e: super::diagnose::ConnectError) -> Self {
        KafkaError::Connect(Box::new(e))
    }
}

impl KafkaError {
    pub fn client(doing: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        KafkaError::Client { doing: doing.into(), source }
    }
}
