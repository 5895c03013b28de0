//! A topic's identity: Kafka's topic ID, the UUID a topic gets when it is created (KIP-516,
//! Kafka 2.8+). A topic deleted and recreated under the same name gets a new ID, so the ID, not
//! the name, tells whether a checkpoint's offsets still mean the same records.
//!
//! The rdkafka crate has no wrapper for the DescribeTopics admin call (librdkafka 2.3+), and the
//! metadata API it wraps does not expose the ID, so this module calls librdkafka directly: one
//! request on a private queue, bounded by a timeout, every handle freed on every path.

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::error::KafkaError;

/// What the broker said about a topic's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicId {
    /// The topic's ID, base64 as Kafka's own tools print it (e.g. `sJZ5MGcDQ5y2TiPVKRYvEw`).
    Known(String),
    /// The broker cannot tell (a broker without DescribeTopics support); the reason is kept for
    /// the log.
    Unavailable(String),
}

/// Asks the brokers of `config` for the ID of `topic`, waiting at most `timeout`.
pub fn describe_topic_id(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<TopicId, KafkaError> {
    let consumer: BaseConsumer =
        config.create().map_err(|e| KafkaError::client("creating a client to describe the topic", e))?;
    describe_with(&consumer, topic, timeout)
}

/// As [`describe_topic_id`], on an existing client.
pub fn describe_with<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<TopicId, KafkaError> {
    let name = CString::new(topic).map_err(|_| KafkaError::CreateFailed {
        topic: topic.escape_debug().to_string(),
        reason: "a topic name cannot contain a NUL byte".into(),
    })?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX).max(1);
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is valid while `consumer` lives, which outlasts this function. Every handle
    // created here (queue, options, collection, event) is destroyed exactly once below, and the
    // strings read from the result are copied before the event that owns them is destroyed.
    unsafe {
        let queue = rdsys::rd_kafka_queue_new(rk);
        let options = rdsys::rd_kafka_AdminOptions_new(
            rk,
            rdsys::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as std::ffi::c_char; 256];
        rdsys::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let mut names = [name.as_ptr()];
        let collection = rdsys::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        rdsys::rd_kafka_DescribeTopics(rk, collection, options, queue);
        // The request carries its own timeout; wait a little longer for its answer to arrive.
        let event = rdsys::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let outcome = read_event(event, topic);
        if !event.is_null() {
            rdsys::rd_kafka_event_destroy(event);
        }
        rdsys::rd_kafka_TopicCollection_destroy(collection);
        rdsys::rd_kafka_AdminOptions_destroy(options);
        rdsys::rd_kafka_queue_destroy(queue);
        outcome
    }
}

/// Reads a DescribeTopics result event (which the caller destroys).
unsafe fn read_event(event: *mut rdsys::rd_kafka_event_t, topic: &str) -> Result<TopicId, KafkaError> {
    use rdsys::rd_kafka_resp_err_t as E;
    let unavailable = |why: String| Ok(TopicId::Unavailable(why));
    if event.is_null() {
        return unavailable("no answer to DescribeTopics within the timeout".into());
    }
    let err = rdsys::rd_kafka_event_error(event);
    if err != E::RD_KAFKA_RESP_ERR_NO_ERROR {
        let text = cstr(rdsys::rd_kafka_event_error_string(event));
        return unavailable(format!("DescribeTopics failed: {text}"));
    }
    let result = rdsys::rd_kafka_event_DescribeTopics_result(event);
    if result.is_null() {
        return unavailable("DescribeTopics returned an unexpected event".into());
    }
    let mut count = 0usize;
    let topics = rdsys::rd_kafka_DescribeTopics_result_topics(result, &mut count);
    for i in 0..count {
        let desc = *topics.add(i);
        if cstr(rdsys::rd_kafka_TopicDescription_name(desc)) != topic {
            continue;
        }
        let error = rdsys::rd_kafka_TopicDescription_error(desc);
        if !error.is_null() && rdsys::rd_kafka_error_code(error) != E::RD_KAFKA_RESP_ERR_NO_ERROR {
            return unavailable(format!("DescribeTopics: {}", cstr(rdsys::rd_kafka_error_string(error))));
        }
        let uuid = rdsys::rd_kafka_TopicDescription_topic_id(desc);
        if uuid.is_null() {
            return unavailable("the broker returned no topic ID".into());
        }
        let id = cstr(rdsys::rd_kafka_Uuid_base64str(uuid));
        // Kafka's "no ID" is the all-zero UUID.
        if id.is_empty() || id == "AAAAAAAAAAAAAAAAAAAAAA" {
            return unavailable("the broker returned the zero topic ID (topic IDs not enabled)".into());
        }
        return Ok(TopicId::Known(id));
    }
    unavailable(format!("DescribeTopics did not describe `{topic}`"))
}

unsafe fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}
