//! Typed errors, one enum per outside system. Each message says what happened, which input caused
//! it, and what the user can do about it.

use std::path::PathBuf;
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
    Connect(Box<crate::kafka::diagnose::ConnectError>),
    #[error(transparent)]
    Settings(#[from] crate::kafka::settings::SettingsError),
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

impl From<crate::kafka::diagnose::ConnectError> for KafkaError {
    fn from(e: crate::kafka::diagnose::ConnectError) -> Self {
        KafkaError::Connect(Box::new(e))
    }
}

impl KafkaError {
    pub fn client(doing: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        KafkaError::Client { doing: doing.into(), source }
    }
}

/// Errors in configuration (flags, environment, dataflow files).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read dataflow file {path}: {source}")]
    ReadDataflow {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataflow file {path} is not valid: {reason}")]
    InvalidDataflow { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Exit code of a failure that waiting or retrying cannot fix: a permanent Kafka error, or a run
/// folder that belongs to another job. Other failures exit with 1.
pub const EXIT_PERMANENT: i32 = 2;

/// How a worker failed, so `job.rs` picks the cause by kind rather than by matching text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Waiting cannot help (exit code [`EXIT_PERMANENT`]).
    Permanent,
    /// Any other failure of this worker.
    Failed,
    /// The worker stopped only because another one failed.
    Follower,
}

/// A worker's failure, carried from the dataflow to the job.
#[derive(Debug, Clone)]
pub struct WorkerError {
    pub kind: FailureKind,
    pub message: String,
}

impl WorkerError {
    pub fn failed(message: impl Into<String>) -> Self {
        WorkerError { kind: FailureKind::Failed, message: message.into() }
    }
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A run that stopped with an error; `permanent` selects exit code [`EXIT_PERMANENT`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RunStopped {
    pub message: String,
    pub permanent: bool,
}
