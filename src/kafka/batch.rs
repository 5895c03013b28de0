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

    /// Takes what is queued now (up to the batch size, without waiting) and calls `f` for each
    /// message in queue order. Every message is freed, also when `f` fails; the first failure
    /// stops the batch and is returned, and the messages after it are dropped unread: the caller
    /// must resume from its own offsets (the source stops the run on such an error).
    pub fn read<E>(&mut self, mut f: impl FnMut(Polled<'_>) -> Result<(), E>) -> Result<usize, E> {
        // SAFETY: `queue` is valid (see `new`); librdkafka writes at most `buf.len()` pointers.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(self.queue, 0, self.buf.as_mut_ptr(), self.buf.len())
        };
        let n = usize::try_from(n).unwrap_or(0);
        let mut result = Ok(n);
        for &msg in &self.buf[..n] {
            if result.is_ok() {
                // SAFETY: librdkafka returned `msg` as a valid message that we own until we
                // destroy it below; the payload slice does not outlive this iteration.
                let m = unsafe { &*msg };
                let item = if m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    let payload = (!m.payload.is_null())
                        .then(|| unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) });
                    Polled::Record { partition: m.partition, offset: m.offset, payload }
                } else {
                    let detail = if m.payload.is_null() {
                        String::new()
                    } else {
                        let bytes = unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) };
                        String::from_utf8_lossy(bytes).into_owned()
                    };
                    Polled::Error {
                        error: KafkaError::MessageConsumption(RDKafkaErrorCode::from(m.err)),
                        partition: m.partition,
                        offset: m.offset,
                        detail,
                    }
                };
                if let Err(e) = f(item) {
                    result = Err(e);
                }
            }
            // SAFETY: each message returned by the batch call is destroyed exactly once.
            unsafe { rdsys::rd_kafka_message_destroy(msg) };
        }
        result
    }
}

impl Drop for BatchReader {
    fn drop(&mut self) {
        // SAFETY: the handle came from rd_kafka_queue_get_consumer and is destroyed once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue) };
    }
}
