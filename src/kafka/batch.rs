//! Reading a consumer's queue many messages at a time.
//!
//! rdkafka's `BaseConsumer::poll` returns one message per call, and each call reads the clock
//! several times, takes the queue's lock and wraps and frees a message: in a profile of a
//! 10M-event run that was about a quarter of a worker's time, and the raw reader spends 150 ns
//! more per event polling one at a time than in batches. librdkafka's
//! `rd_kafka_consume_batch_queue` does the same work once per batch; this module wraps it.
//!
//! What a batch read does not return: librdkafka's *global* errors (all brokers down, transport
//! failures). `poll` turned those into errors; a batch read logs them and drops them. The source
//! therefore notices a lost broker by probing it when nothing has arrived for a while (see
//! `operators::source`). Per-partition consumer errors (an offset out of range) still come back,
//! as messages carrying an error code.

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// One item of a batch.
pub enum Polled<'a> {
    /// A record: its partition, offset and payload (`None` for a null payload).
    Record { partition: i32, offset: i64, payload: Option<&'a [u8]> },
    /// A consumer error reported in place of a message: the partition and offset it concerns
    /// (`-1` when librdkafka does not say) and its text (librdkafka puts it in the payload).
    Error { error: KafkaError, partition: i32, offset: i64, detail: String },
}

/// A handle on a consumer's queue plus a reusable message buffer. Must be dropped before the
/// consumer it came from (the source declares it first, so it is).
pub struct BatchReader {
    queue: *mut rdsys::rd_kafka_queue_t,
    buf: Vec<*mut rdsys::rd_kafka_message_t>,
}

impl BatchReader {
    /// A reader of up to `max` messages per call on `consumer`'s queue.
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>, max: usize) -> Self {
        // SAFETY: the client pointer is valid while `consumer` lives; the returned queue handle
        // holds its own reference to the queue and is destroyed in Drop.
        let queue = unsafe { rdsys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        assert!(!queue.is_null(), "a consumer always has a consumer queue");
        BatchReader { queue, buf: vec![std::ptr::null_mut(); max.max(1)] }
    }

    /// A reader of `partition`'s own queue: from now on its fetched records go there instead of
    /// to the consumer's queue, so another thread can read them (`ingest::lanes`).
    ///
    /// Made before the partition is assigned, so that no record of it ever reaches the
    /// consumer's queue: librdkafka keeps a queue forwarded by the application as it is (it
    /// marks it, and starting the partition's fetch does not forward a marked queue again).
    pub fn for_partition<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        max: usize,
    ) -> Result<Self, KafkaError> {
        let name = std::ffi::CString::new(topic).map_err(|_| KafkaError::Subscription(topic.to_string()))?;
        // SAFETY: the client pointer is valid while `consumer` lives and `name` is a C string;
        // the returned handle holds its own reference to the queue and is destroyed in Drop.
        let queue = unsafe {
            rdsys::rd_kafka_queue_get_partition(consumer.client().native_ptr(), name.as_ptr(), partition)
        };
        if queue.is_null() {
            return Err(KafkaError::Subscription(format!("{topic} [{partition}]: no partition queue")));
        }
        // SAFETY: `queue` is valid; a null destination stops the forwarding.
        unsafe { rdsys::rd_kafka_queue_forward(queue, std::ptr::null_mut()) };
        Ok(BatchReader { queue, buf: vec![std::ptr::null_mut(); max.max(1)] })
    }

    /// How many messages (and events) wait in the queue now.
    pub fn queued(&self) -> usize {
        // SAFETY: `queue` is valid (see `new`).
        unsafe { rdsys::rd_kafka_queue_length(self.queue) }
    }

    /// Takes what is queued now (up to the batch size, without waiting) and calls `f` for each
    /// message in queue order. Every message is freed, also when `f` fails; the first failure
    /// stops the batch and is returned, and the messages after it are dropped unread: the caller
    /// must resume from its own offsets (the source stops the run on such an error).
    pub fn read<E>(&mut self, mut f: impl FnMut(Polled<'_>) -> Result<(), E>) -> Result<usize, E> {
        match self.read_within(Duration::ZERO, |m| f(m.polled())) {
            Ok(n) => Ok(n),
            // A refused call reads as an empty batch here: the source notices a lost consumer
            // by its broker probe, as it notices every global error (see the module comment).
            Err(ReadError::Refused) => Ok(0),
            Err(ReadError::Stopped(e)) => Err(e),
        }
    }

    /// As [`BatchReader::read`], but waits up to `timeout` for the first message, and hands `f`
    /// the whole message (its key length, whether it is a partition-end event), for readers that
    /// count bytes, such as `examples/raw_consume.rs`.
    pub fn read_within<E>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&BatchMessage<'_>) -> Result<(), E>,
    ) -> Result<usize, ReadError<E>> {
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `queue` is valid (see `new`); librdkafka writes at most `buf.len()` pointers.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(self.queue, timeout_ms, self.buf.as_mut_ptr(), self.buf.len())
        };
        let n = usize::try_from(n).map_err(|_| ReadError::Refused)?;
        let mut result = Ok(n);
        for &msg in &self.buf[..n] {
            if result.is_ok() {
                // SAFETY: librdkafka returned `msg` as a valid message that we own until we
                // destroy it below; the borrow does not outlive this iteration.
                let m = BatchMessage(unsafe { &*msg });
                if let Err(e) = f(&m) {
                    result = Err(ReadError::Stopped(e));
                }
            }
            // SAFETY: each message returned by the batch call is destroyed exactly once.
            unsafe { rdsys::rd_kafka_message_destroy(msg) };
        }
        result
    }
}

impl BatchReader {
    /// Takes what is queued now (up to the batch size, without waiting) and hands `f` the whole
    /// batch at once, in queue order, so that it can split the work (`ingest::lanes`). Every
    /// message is freed after `f` returns, also when it fails. Returns the batch's length.
    pub fn read_slice<E>(
        &mut self,
        f: impl FnOnce(&[BatchMessage<'_>]) -> Result<(), E>,
    ) -> Result<usize, E> {
        // SAFETY: `queue` is valid (see `new`); librdkafka writes at most `buf.len()` pointers.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(self.queue, 0, self.buf.as_mut_ptr(), self.buf.len())
        };
        // A refused call reads as an empty batch, as in `read`.
        let Ok(n) = usize::try_from(n) else { return Ok(0) };
        // SAFETY: `BatchMessage` is a transparent wrapper of a reference, and the first `n`
        // pointers are valid, non-null messages we own until they are destroyed below, after the
        // slice's last use.
        let batch = unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<BatchMessage<'_>>(), n) };
        let result = f(batch);
        for &msg in &self.buf[..n] {
            // SAFETY: each message returned by the batch call is destroyed exactly once.
            unsafe { rdsys::rd_kafka_message_destroy(msg) };
        }
        result.map(|()| n)
    }
}

/// Why [`BatchReader::read_within`] returned early.
#[derive(Debug)]
pub enum ReadError<E> {
    /// librdkafka refused the batch call (it returned -1: the queue is unusable).
    Refused,
    /// The callback failed; the rest of the batch was dropped unread.
    Stopped(E),
}

/// One message of a batch, valid during the callback that receives it.
#[repr(transparent)]
pub struct BatchMessage<'a>(&'a rdsys::rd_kafka_message_t);

// SAFETY: a message handed out by librdkafka is not touched by it again until we destroy it,
// and a `BatchMessage` only reads it; so threads may read one batch at once (`ingest::lanes`),
// which `read_slice` allows only until it destroys the batch.
unsafe impl Sync for BatchMessage<'_> {}

impl<'a> BatchMessage<'a> {
    fn bytes(&self) -> Option<&'a [u8]> {
        let m = self.0;
        // SAFETY: librdkafka's payload pointer and length describe one allocation that lives as
        // long as the message, which outlives `'a`.
        (!m.payload.is_null()).then(|| unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) })
    }

    /// The record, or the consumer error reported in its place.
    pub fn polled(&self) -> Polled<'a> {
        let m = self.0;
        if m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Polled::Record { partition: m.partition, offset: m.offset, payload: self.bytes() }
        } else {
            let detail = self.bytes().map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned());
            Polled::Error {
                error: KafkaError::MessageConsumption(RDKafkaErrorCode::from(m.err)),
                partition: m.partition,
                offset: m.offset,
                detail,
            }
        }
    }

    /// The key's length in bytes (0 without a key).
    pub fn key_len(&self) -> usize {
        self.0.key_len
    }

    /// Whether this is librdkafka's end-of-partition event (only with `enable.partition.eof`),
    /// not an error.
    pub fn is_partition_eof(&self) -> bool {
        self.0.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF
    }
}

// SAFETY: librdkafka's queues are locked internally, and a reader is used by one thread at a
// time (`&mut self`); a partition's reader moves to its lane's thread for a batch.
unsafe impl Send for BatchReader {}

impl Drop for BatchReader {
    fn drop(&mut self) {
        // SAFETY: the handle came from rd_kafka_queue_get_consumer and is destroyed once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue) };
    }
}
