//! The event producer: the original platform's `producer.py`, in Rust.
//!
//! Events have the original shape, `{"id": 0..K-1, "ts": "<ISO-8601 UTC, microseconds, +00:00>",
//! "value": <uniform 0..100, 3 decimals>, "source": "sim-producer"}`, serialized exactly as
//! Python's `json.dumps` writes them. Messages go round-robin over the topic's partitions so that
//! every partition carries data (the original's null-key partitioner gives the same spread only on
//! average). Idempotence is on, so a retry inside the client never duplicates an event.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::client::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::client::{base_config, fetch_metadata, partition_count, ClientSettings};
use super::context::KafkaContext;
use super::error::KafkaError;
use crate::signals::Shutdown;

/// Record batch compression codecs Kafka knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's name of the codec.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Producer pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    PerSecond(u64),
    Max,
}

/// A `--rate` that is neither `max` nor a whole number of events per second.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a rate: give events per second (e.g. 5) or `max`")]
pub struct RateError(pub String);

/// Parses `max`, `0` or a positive number of events per second.
pub fn parse_rate(s: &str) -> Result<Rate, RateError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    match s.parse::<u64>() {
        Ok(0) => Ok(Rate::Max),
        Ok(n) => Ok(Rate::PerSecond(n)),
        Err(_) => Err(RateError(s.to_string())),
    }
}

/// Counts delivery reports from the client's background thread.
#[derive(Default)]
pub struct DeliveryCounter {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

/// The producer's client context: a handle on the shared counters, and streamlake's context
/// for librdkafka's log lines (secrets masked).
#[derive(Clone, Default)]
pub struct Deliveries(pub Arc<DeliveryCounter>, pub KafkaContext);

impl std::ops::Deref for Deliveries {
    type Target = DeliveryCounter;
    fn deref(&self) -> &DeliveryCounter {
        &self.0
    }
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.1.log(level, fac, log_message)
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.1.error(error, reason)
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(self.1.redact(&err.to_string()));
                }
            }
        }
    }
}

/// Settings for one producer run.
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub client: ClientSettings,
    pub topic: String,
    pub rate: Rate,
    /// Paced mode's tick: `rate × tick` events per tick (the original: one second).
    pub tick: Duration,
    pub count: Option<u64>,
    pub ids: u32,
    pub seed: u64,
    pub timeout: Duration,
    pub compression: Compression,
}

/// What a producer run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceSummary {
    pub sent: u64,
    pub delivered: u64,
    pub elapsed_ms: u128,
}

/// Writes one event in the original's JSON form into `out` (cleared first), reusing its buffer.
pub fn format_event(out: &mut String, id: u32, ts: DateTime<Utc>, value: f64, source: &str) {
    out.clear();
    let ts = ts.to_rfc3339_opts(SecondsFormat::Micros, false);
    // Python prints floats with the shortest round-trip repr and always a decimal point.
    let _ = write!(out, "{{\"id\": {id}, \"ts\": \"{ts}\", \"value\": {value:?}, \"source\": \"{source}\"}}");
}

/// A value as the original draws it: uniform on [0, 100], rounded to 3 decimals.
fn draw_value(rng: &mut SmallRng) -> f64 {
    (rng.random_range(0.0..=100.0f64) * 1000.0).round() / 1000.0
}

/// Produces events until `count` is reached or shutdown is requested, then flushes.
///
/// `progress` is called about once a second with (sent, delivered).
pub fn produce(
    config: &ProduceConfig,
    shutdown: &Shutdown,
    mut progress: impl FnMut(u64, u64),
) -> Result<ProduceSummary, KafkaError> {
    let metadata = fetch_metadata(&config.client, Some(&config.topic), config.timeout)?;
    let partitions = partition_count(&metadata, &config.topic).ok_or_else(|| KafkaError::NoSuchTopic {
        topic: config.topic.clone(),
        brokers: config.client.brokers.clone(),
    })? as i32;

    let counter = Deliveries(Arc::default(), KafkaContext::new(&config.client));
    let mut client = base_config(&config.client);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The original's setting: wait up to 50 ms to fill a batch.
        .set("linger.ms", "50")
        .set("compression.type", config.compression.as_str());
    if config.rate == Rate::Max {
        // Flat out: big batches and a deep queue, so the client never stalls the loop.
        client
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
    }
    let producer: ThreadedProducer<Deliveries> = client
        .create_with_context(counter.clone())
        .map_err(|e| KafkaError::client("creating the producer", e))?;

    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut payload = String::with_capacity(128);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut last_report = Instant::now();
    let limit = config.count.unwrap_or(u64::MAX);

    // Paced mode sends `rate × tick` events per tick (the original loop: `rate` per second);
    // the fractional part carries over so any rate is met exactly over time. Flat-out mode
    // sends in chunks so that the shutdown flag and progress are checked regularly.
    let tick_s = config.tick.as_secs_f64();
    let mut owed = 0.0f64;
    let mut next_tick = Instant::now();
    while sent < limit && !shutdown.requested() {
        let per_tick = match config.rate {
            Rate::PerSecond(n) => {
                owed += n as f64 * tick_s;
                let whole = owed.floor();
                owed -= whole;
                whole as u64
            }
            Rate::Max => 10_000,
        };
        let tick_end = (sent + per_tick).min(limit);
        while sent < tick_end {
            let id = rng.random_range(0..config.ids);
            format_event(&mut payload, id, Utc::now(), draw_value(&mut rng), "sim-producer");
            let partition = (sent % partitions as u64) as i32;
            let mut record: BaseRecord<'_, (), str, ()> =
                BaseRecord::to(&config.topic).payload(payload.as_str()).partition(partition);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        // The client's queue is full: let its thread drain it.
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                        if shutdown.requested() {
                            break;
                        }
                    }
                    Err((e, _)) => return Err(KafkaError::client("queueing an event", e)),
                }
            }
            sent += 1;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            progress(sent, counter.delivered.load(Ordering::Relaxed));
            last_report = Instant::now();
        }
        if let Rate::PerSecond(_) = config.rate {
            next_tick += config.tick;
            // Sleep in small steps so SIGINT is honoured promptly.
            while Instant::now() < next_tick && !shutdown.requested() {
                std::thread::sleep((next_tick - Instant::now()).min(Duration::from_millis(100)));
            }
            if Instant::now() > next_tick + Duration::from_secs(1) {
                next_tick = Instant::now(); // fell behind: do not burst to catch up
            }
        }
        let failed = counter.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(delivery_error(config, &counter, failed));
        }
    }

    producer.flush(config.timeout).map_err(|e| {
        KafkaError::client(format!("flushing {} queued events", producer.in_flight_count()), e)
    })?;
    let failed = counter.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(delivery_error(config, &counter, failed));
    }
    let delivered = counter.delivered.load(Ordering::Relaxed);
    progress(sent, delivered);
    Ok(ProduceSummary { sent, delivered, elapsed_ms: started.elapsed().as_millis() })
}

fn delivery_error(config: &ProduceConfig, counter: &DeliveryCounter, failed: u64) -> KafkaError {
    let reason =
        counter.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_else(|| "unknown".to_string());
    KafkaError::Delivery { topic: config.topic.clone(), failed, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn events_look_like_pythons_json_dumps() {
        let mut out = String::new();
        let ts = Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap();
        format_event(&mut out, 3, ts, 42.0, "sim-producer");
        assert_eq!(
            out,
            r#"{"id": 3, "ts": "2023-11-14T22:13:20.123456+00:00", "value": 42.0, "source": "sim-producer"}"#
        );
        format_event(&mut out, 0, ts, 7.125, "sim-producer");
        assert!(out.contains(r#""value": 7.125,"#), "{out}");
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["id"], 0);
    }

    #[test]
    fn values_have_three_decimals_in_range() {
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..10_000 {
            let v = draw_value(&mut rng);
            assert!((0.0..=100.0).contains(&v));
            assert!(((v * 1000.0).round() - v * 1000.0).abs() < 1e-6);
        }
    }
}
