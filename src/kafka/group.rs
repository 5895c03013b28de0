//! Group offsets for Kafka's own lag tools (`kafka-consumer-groups --describe`, Burrow, cloud
//! consoles): after each checkpoint commit the source tells the consumer group
//! (`streamlake-<RUN_ID>` unless `--consumer-group` names another) the partitions' next offsets.
//!
//! They are for monitoring only. The checkpoint stays the source of truth: a resume never reads
//! the group's offsets, so a failed or late group commit cannot lose or repeat data. That is why a
//! commit is asynchronous, its failure is only logged (at most once a minute) and counted
//! (`streamlake_group_commit_failures_total`), and nothing waits for it.
//!
//! Why not `consumer.commit(.., CommitMode::Async)`: with it librdkafka sends the result nowhere
//! (rdkafka sets no offset-commit callback, and an async commit has no reply queue), so a failure
//! would be invisible; and the source reads its queue in batches (`kafka::batch`), which would not
//! serve a commit result anyway. `rd_kafka_commit_queue` with a queue of our own sends each result
//! there; the source looks at it, without waiting, whenever it commits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

/// Process-wide counts, for `/metrics` (each process reports its own, like the other counters).
#[derive(Debug, Default)]
pub struct GroupCommitStats {
    /// Group commits the broker acknowledged for every partition.
    pub committed: AtomicU64,
    /// Group commits that failed (refused, timed out, or some partition refused).
    pub failures: AtomicU64,
}

/// The counts of this process.
pub static STATS: GroupCommitStats =
    GroupCommitStats { committed: AtomicU64::new(0), failures: AtomicU64::new(0) };

/// How often, at most, a failing group commit is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Commits group offsets for one consumer. Must be dropped before that consumer (the source
/// declares it first, as it does the batch reader).
pub struct GroupCommits {
    queue: *mut rdsys::rd_kafka_queue_t,
    group: String,
    topic: String,
    in_flight: u64,
    last_warned: Option<Instant>,
    unreported: u64,
}

// SAFETY: the queue handle is only used through librdkafka's thread-safe queue API.
unsafe impl Send for GroupCommits {}

impl GroupCommits {
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>, group: &str, topic: &str) -> Self {
        // SAFETY: the client pointer is valid while `consumer` lives; the queue is destroyed in Drop.
        let queue = unsafe { rdsys::rd_kafka_queue_new(consumer.client().native_ptr()) };
        GroupCommits {
            queue,
            group: group.to_string(),
            topic: topic.to_string(),
            in_flight: 0,
            last_warned: None,
            unreported: 0,
        }
    }

    /// Commits `(partition, next offset)` pairs to the group without waiting, after taking in
    /// the results of earlier commits that have arrived.
    pub fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, offsets: &[(i32, i64)]) {
        self.serve();
        if offsets.is_empty() || self.queue.is_null() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &(partition, next) in offsets {
            if tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next)).is_err() {
                return;
            }
        }
        // SAFETY: the client, the list and the queue are valid for the call; librdkafka copies
        // the list and keeps its own reference to the queue until the reply is enqueued.
        let err = unsafe {
            rdsys::rd_kafka_commit_queue(
                consumer.client().native_ptr(),
                tpl.ptr(),
                self.queue,
                None,
                std::ptr::null_mut(),
            )
        };
        if err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            self.in_flight += 1;
        } else {
            self.failed(&rdkafka::error::RDKafkaErrorCode::from(err).to_string());
        }
    }

    /// Takes in every commit result that has arrived, without waiting.
    pub fn serve(&mut self) {
        while self.in_flight > 0 {
            // SAFETY: `queue` is valid; a returned event is destroyed below, after its list is read.
            let event = unsafe { rdsys::rd_kafka_queue_poll(self.queue, 0) };
            if event.is_null() {
                return;
            }
            let outcome = unsafe { commit_outcome(event) };
            unsafe { rdsys::rd_kafka_event_destroy(event) };
            if let Some(outcome) = outcome {
                self.in_flight -= 1;
                match outcome {
                    Ok(()) => {
                        STATS.committed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(reason) => self.failed(&reason),
                }
            }
        }
    }

    fn failed(&mut self, reason: &str) {
        STATS.failures.fetch_add(1, Ordering::Relaxed);
        self.unreported += 1;
        if self.last_warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                group = %self.group, failures = self.unreported, reason,
                "could not commit offsets to the consumer group; Kafka's lag tools show stale offsets, \
                 the job is not affected (its checkpoint holds the offsets)"
            );
            self.last_warned = Some(Instant::now());
            self.unreported = 0;
        }
    }
}

/// `Some(result)` when `event` is an offset-commit result: the request's error or the first
/// partition's.
///
/// # Safety
/// `event` must be a valid event returned by `rd_kafka_queue_poll`.
unsafe fn commit_outcome(event: *mut rdsys::rd_kafka_event_t) -> Option<Result<(), String>> {
    if rdsys::rd_kafka_event_type(event) != rdsys::RD_KAFKA_EVENT_OFFSET_COMMIT {
        return None;
    }
    let err = rdsys::rd_kafka_event_error(event);
    if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Some(Err(rdkafka::error::RDKafkaErrorCode::from(err).to_string()));
    }
    let list = rdsys::rd_kafka_event_topic_partition_list(event);
    if !list.is_null() {
        let list = &*list;
        for i in 0..usize::try_from(list.cnt).unwrap_or(0) {
            let elem = &*list.elems.add(i);
            if elem.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let code = rdkafka::error::RDKafkaErrorCode::from(elem.err);
                return Some(Err(format!("partition {}: {code}", elem.partition)));
            }
        }
    }
    Some(Ok(()))
}

impl Drop for GroupCommits {
    fn drop(&mut self) {
        self.serve();
        if !self.queue.is_null() {
            // SAFETY: created by rd_kafka_queue_new and destroyed once; librdkafka keeps its own
            // reference for a reply still on its way.
            unsafe { rdsys::rd_kafka_queue_destroy(self.queue) };
        }
    }
}
