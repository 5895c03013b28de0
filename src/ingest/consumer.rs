//! The consumer a source reads with: the settings it is created with, and when it is created.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use super::settings::SourceSettings;
use crate::error::KafkaError;
use crate::kafka::client::base_config;
use crate::kafka::context::KafkaContext;

/// Messages and KiB each partition's queue prefetches, for a worker whose partitions share the
/// consumer's queue (see below).
const QUEUED_MIN_MESSAGES: usize = 20_000;
const QUEUED_MAX_KBYTES: usize = 4096;

/// The consumer's configuration: the client settings, the source's defaults, then
/// `--consumer-option` over them. `own_queues` is how many partitions read from queues of their
/// own (`super::lanes`; 0 when the worker does not split).
pub fn consumer_config(settings: &SourceSettings, own_queues: usize) -> ClientConfig {
    // librdkafka bounds a partition's prefetch by the length of the queue its records go to: the
    // consumer's queue, shared by the worker's partitions, or a partition's own. A splitting
    // worker divides the bounds among its partitions, so it holds what it held before it split:
    // with the whole bounds on each own queue, `-w 2` on 3 partitions peaked at 135 MB instead of
    // 120 MB (10M events; 9% faster).
    let share = own_queues.max(1);
    let mut config = base_config(&settings.client);
    config
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Never jump silently: an out-of-range position is reported as data loss.
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "100")
        // Bound the client's prefetch. With librdkafka's defaults (and even with
        // `queued.max.messages.kbytes` lowered) the fetcher outran the dataflow and held
        // the whole backlog: 1M queued messages, ~300 MB of the job's 420 MB peak at 1M
        // events (heaptrack). Small fetches (512 KiB per partition, 2 MiB per request) and
        // small queues bound it. `fetch.queue.backoff.ms` is how long the fetcher sleeps
        // once a queue is over those bounds: at its default (1 s) the queue ran dry and the
        // job was 8× slower; at 5 ms a worker still waited ~40% of a 10M-event run; 1 ms
        // keeps it fed (0 is worse: 11 s). Measured at -w 2: 1M events 86 MB peak RSS;
        // 10M events 4.0–4.3 s and 103 MB, against 6.1 s at 5 ms and 4.0 s / 220 MB with
        // 4× larger fetches. `--consumer-option` overrides any of these.
        .set("queued.min.messages", (QUEUED_MIN_MESSAGES / share).to_string())
        .set("queued.max.messages.kbytes", (QUEUED_MAX_KBYTES / share).to_string())
        .set("fetch.max.bytes", "2097152")
        .set("max.partition.fetch.bytes", "524288")
        .set("fetch.queue.backoff.ms", "1");
    for (key, value) in &settings.consumer_options {
        config.set(key, value);
    }
    config
}

/// Whether a worker needs a consumer. One with nothing to read in a streaming run still keeps
/// one: partitions added later may be its own. In an `--available-now` run no partition is
/// added, so a worker that owns none has nothing to consume, ever.
pub fn needs_consumer(owns_partitions: bool, available_now: bool) -> bool {
    owns_partitions || !available_now
}

/// Creates the consumer (no network yet: librdkafka connects on the first request).
pub fn create_consumer(
    settings: &SourceSettings,
    own_queues: usize,
) -> Result<BaseConsumer<KafkaContext>, KafkaError> {
    consumer_config(settings, own_queues)
        .create_with_context(KafkaContext::new(&settings.client))
        .map_err(|e| KafkaError::client("creating the consumer", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::settings::tests::settings;

    #[test]
    fn consumer_options_override_the_defaults() {
        let s = settings();
        let config = consumer_config(&s, 0);
        assert_eq!(config.get("fetch.wait.max.ms"), Some("7"));
        assert_eq!(config.get("auto.offset.reset"), Some("error"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("group.id"), Some("streamlake-r"));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("1"));
        assert_eq!(config.get("queued.min.messages"), Some("20000"));
    }

    #[test]
    fn a_splitting_worker_shares_the_prefetch_among_its_partitions_queues() {
        let s = settings();
        let config = consumer_config(&s, 2);
        assert_eq!(config.get("queued.min.messages"), Some("10000"));
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("2048"));
    }

    #[test]
    fn only_a_bounded_run_lets_an_idle_worker_go_without_a_consumer() {
        assert!(needs_consumer(true, true));
        assert!(needs_consumer(true, false));
        assert!(needs_consumer(false, false));
        assert!(!needs_consumer(false, true));
    }
}
