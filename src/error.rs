//! Typed errors, one enum per outside system. Each message says what happened, which input caused
//! it, and what the user can do about it.

// Kafka's errors are the kafka module's own: it sits below this one and must not import it.
pub use crate::kafka::error::KafkaError;

/// Errors in configuration (flags, environment, dataflow files).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Dataflow(#[from] crate::spec::SpecError),
    #[error("{0}")]
    Invalid(String),
}

/// Exit code of a failure that waiting or retrying cannot fix: a permanent Kafka error, or a run
/// folder that belongs to another job. Other failures exit with 1.
pub const EXIT_PERMANENT: i32 = 2;

/// Errors of a Kafka source: reading, restoring, or committing one worker's partitions.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error(
        "partition {partition} of topic `{topic}`: the checkpoint resumes at offset {next}, but the broker only \
         has offsets {low}..{high}; records {missing} are gone (retention, or the topic was recreated). \
         Nothing was read. Re-run with --on-data-loss=skip to continue from offset {resume} and record the \
         skipped range, or use a new RUN_ID to start over"
    )]
    DataLoss { topic: String, partition: i32, next: i64, low: i64, high: i64, missing: String, resume: i64 },
    #[error(
        "partition {partition} of topic `{topic}`: the checkpoint resumes at offset {next}, but the broker's \
         offsets end at {high}: offsets went backwards, so the topic was deleted and recreated. Continuing in this \
         RUN_ID would reuse offsets that name already written files, even with --on-data-loss=skip. Use a new \
         RUN_ID for the new topic"
    )]
    Recreated { topic: String, partition: i32, next: i64, high: i64 },
    #[error("partition {partition} of topic `{topic}`: {reason}")]
    Read { topic: String, partition: i32, reason: String },
    #[error(
        "partition {partition} of topic `{topic}` at offset {offset}: permanent Kafka error {code:?} ({detail}); \
         waiting cannot fix it, so the job stops. What to do: {advice}. Everything committed before it stays \
         valid; a restart resumes at the committed offset"
    )]
    Permanent {
        topic: String,
        partition: i32,
        offset: String,
        code: rdkafka::types::RDKafkaErrorCode,
        detail: String,
        advice: String,
    },
    #[error(
        "topic `{topic}` is gone from the broker ({brokers}) while the job was reading it (partition {partition}, \
         next offset {offset}): it was deleted, or this client may no longer see it. The job stops; what it \
         committed stays valid. If the topic was recreated, its offsets name other records: use a new RUN_ID"
    )]
    TopicGone { topic: String, brokers: String, partition: i32, offset: i64 },
    #[error(
        "could not start a thread for {what}: {source}. The system is out of threads or memory for \
         their stacks: lower -w, or raise the limit (ulimit -u)"
    )]
    Thread { what: &'static str, source: std::io::Error },
}

impl SourceError {
    /// Whether waiting or restarting cannot help (exit code 2), as opposed to an I/O failure or
    /// a checkpoint problem, which a restart after a fix resolves.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SourceError::Permanent { .. }
                | SourceError::TopicGone { .. }
                | SourceError::DataLoss { .. }
                | SourceError::Recreated { .. }
        )
    }
}

/// A worker's failure, carried from the dataflow to `job.rs`, which picks the cause by variant.
///
/// Cloned into the process-wide slot that tells the other workers to stop, hence the `Arc`s: the
/// errors inside hold I/O and Kafka errors, which are not `Clone`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    /// The Kafka source failed: reading, restoring or committing its partitions.
    #[error(transparent)]
    Source(std::sync::Arc<SourceError>),
    /// The aggregates sink could not write the final rows of closed windows.
    #[error("writing final window rows: {0}")]
    WriteWindows(std::sync::Arc<crate::sink::SinkError>),
    /// The aggregates sink could not record which windows are written.
    #[error("writing windows.json: {0}")]
    MarkWindows(std::sync::Arc<crate::sink::SinkError>),
    /// The worker stopped only because another one failed: never the cause of a run's end.
    #[error("stopped because another worker failed")]
    Follower,
}

impl WorkerError {
    /// Waiting cannot help (exit code [`EXIT_PERMANENT`]).
    pub fn is_permanent(&self) -> bool {
        matches!(self, WorkerError::Source(e) if e.is_permanent())
    }

    /// The worker only followed another's failure.
    pub fn is_follower(&self) -> bool {
        matches!(self, WorkerError::Follower)
    }
}

impl From<SourceError> for WorkerError {
    fn from(e: SourceError) -> Self {
        WorkerError::Source(std::sync::Arc::new(e))
    }
}

/// A run that stopped with an error; `permanent` selects exit code [`EXIT_PERMANENT`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RunStopped {
    pub message: String,
    pub permanent: bool,
}
