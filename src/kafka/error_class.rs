//! Which Kafka consumer errors the job waits out, and which stop it.
//!
//! A consumer error that is retried forever is a hang: `--available-now` never ends and a
//! streaming job reads nothing while looking alive (seen with zstd batches on a client built
//! without zstd: "Local: Not implemented" twice a second, indefinitely). A transient error stopped
//! on is an outage the job should have ridden out. So every code the source can see is put in one
//! of the classes below, with the reason, and the source acts on the class.

use rdkafka::types::RDKafkaErrorCode as C;

/// What the source does about a consumer error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The broker or the network is away: hold the watermark and wait (probing every 2 s), as
    /// the job says in its log. Nothing is skipped.
    BrokerDown,
    /// A partition's next offset is gone: the data-loss policy decides (`--on-data-loss`).
    OffsetOutOfRange,
    /// Leadership or metadata is moving, or a request timed out: librdkafka retries with its
    /// own backoff (`retry.backoff.ms`, `fetch.error.backoff.ms`); the job keeps polling.
    Transient,
    /// The topic or partition may be gone. Kafka also says this for a moment while a topic is
    /// created or a leader moves, so the source asks the broker's metadata first: gone is
    /// permanent, present is transient.
    MaybeGone,
    /// Waiting cannot help; the job stops with exit code 2, naming partition, offset and cause.
    Permanent(&'static str),
    /// A code not listed here: retried, but only for [`UNCLASSIFIED_LIMIT`] without any record
    /// read, then treated as permanent, so an unknown failure is never an endless loop.
    Unclassified,
}

/// How long an unlisted error may repeat, with no record read in between, before it stops the job.
pub const UNCLASSIFIED_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The class of a consumer error code, and for permanent ones what the user can do.
pub fn classify(code: C) -> ErrorClass {
    use ErrorClass::*;
    match code {
        // Connectivity: the broker restarts, the network drops. Waited out (reliability
        // scenario "broker restart").
        C::AllBrokersDown
        | C::BrokerTransportFailure
        | C::NetworkException
        | C::Resolve
        | C::BrokerNotAvailable => BrokerDown,

        C::AutoOffsetReset | C::OffsetOutOfRange => OffsetOutOfRange,

        // Leader elections, replica moves and slow requests: retriable by Kafka's own protocol
        // definition (the `retriable` column of Kafka's error table).
        C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::ReplicaNotAvailable
        | C::RequestTimedOut
        | C::OperationTimedOut
        | C::MessageTimedOut
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::KafkaStorageError
        | C::FencedLeaderEpoch
        | C::UnknownLeaderEpoch
        | C::OffsetNotAvailable
        | C::PreferredLeaderNotAvailable
        | C::CoordinatorLoadInProgress
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::ThrottlingQuotaExceeded
        | C::QueueFull
        | C::TimedOutQueue
        | C::PartitionEOF
        | C::Interrupted
        | C::WaitCache => Transient,

        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::UnknownTopicId => MaybeGone,

        // Authorization: an ACL says no; only an operator can change that.
        C::TopicAuthorizationFailed => Permanent(
            "the broker's ACLs do not allow this client to read the topic; grant Read (and Describe) on the \
             topic to the job's principal, or use --kafka-config with credentials that have it",
        ),
        C::ClusterAuthorizationFailed | C::GroupAuthorizationFailed | C::TransactionalIdAuthorizationFailed => {
            Permanent("the broker's ACLs deny this client; grant the job's principal the needed permission")
        }
        C::SaslAuthenticationFailed | C::Authentication | C::IllegalSASLState | C::UnsupportedSASLMechanism => {
            Permanent("authentication failed; check sasl.mechanism, sasl.username and sasl.password in --kafka-config")
        }
        C::SSL => Permanent("the TLS connection failed; check ssl.ca.location and the broker's certificate"),

        // Records this client cannot decode: waiting reads the same batch again.
        C::NotImplemented | C::UnsupportedCompressionType => Permanent(
            "a record batch uses a compression codec or feature this build cannot decode; this streamlake is \
             built with gzip, snappy, lz4 and zstd, so the batch is probably damaged or from a newer format",
        ),
        C::InvalidMessage | C::BadMessage | C::InvalidRecord | C::BadCompression => Permanent(
            "a record batch is corrupt (CRC or framing); the bytes on the broker are damaged. Skip past it only \
             deliberately, with a new RUN_ID and --starting-offsets, after inspecting the partition",
        ),
        C::UnsupportedVersion | C::UnsupportedForMessageFormat | C::InvalidMessageSize | C::MessageSizeTooLarge => {
            Permanent(
                "the broker and this client disagree on the record format or size (unsupported message format \
                 version, or a batch larger than fetch limits); upgrade the broker's log format or raise \
                 max.partition.fetch.bytes with --consumer-option",
            )
        }
        C::Fatal | C::InvalidConfig | C::InvalidArgument | C::UnsupportedFeature => {
            Permanent("the Kafka client reported a fatal or configuration error")
        }
        _ => Unclassified,
    }
}

/// Whether a metadata answer says `topic` does not exist: not listed, or listed with "unknown
/// topic". A topic listed with another error (no leader for a moment) exists.
pub fn topic_absent(metadata: &rdkafka::metadata::Metadata, topic: &str) -> bool {
    use rdkafka::types::RDKafkaRespErr as R;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        None => true,
        Some(t) => matches!(t.error(), Some(R::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cases_of_the_issue_are_classified() {
        assert_eq!(classify(C::AllBrokersDown), ErrorClass::BrokerDown);
        assert_eq!(classify(C::NotLeaderForPartition), ErrorClass::Transient);
        assert_eq!(classify(C::OffsetOutOfRange), ErrorClass::OffsetOutOfRange);
        assert_eq!(classify(C::UnknownTopicOrPartition), ErrorClass::MaybeGone);
        for permanent in [
            C::NotImplemented,
            C::TopicAuthorizationFailed,
            C::BadMessage,
            C::InvalidMessage,
            C::UnsupportedForMessageFormat,
        ] {
            assert!(matches!(classify(permanent), ErrorClass::Permanent(_)), "{permanent:?}");
        }
        assert_eq!(classify(C::DuplicateSequenceNumber), ErrorClass::Unclassified);
    }
}
