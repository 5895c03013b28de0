//! The raw limit for `scripts/bench/run.sh`: how fast can one process read a topic from this
//! broker, doing nothing with the records?
//!
//! A minimal rdkafka consumer: it reads the end offsets (high watermarks) of every partition at
//! start, assigns all partitions from the beginning (no consumer group, no commits), and consumes
//! until every partition reaches the end offset it saw at start, counting messages and bytes
//! (key + payload). Nothing is parsed, nothing is written.
//!
//! Polling is batched: `--poll batch` (default) calls librdkafka's `rd_kafka_consume_batch_queue`
//! on the consumer queue, up to `--batch` messages per call; `--poll single` uses rdkafka's
//! `BaseConsumer::poll`, one message per call, as a cross-check of the batch path.
//! `--consumers K` runs K consumers on K threads, consumer `i` reading the partitions `p` with
//! `p % K == i` (as streamlake spreads partitions over workers): the limit for K workers.
//!
//! ```sh
//! cargo build --release --example raw_consume
//! target/release/examples/raw_consume --topic bench --bootstrap-servers 127.0.0.1:9092
//! # raw_consume: messages=1000000 bytes=... elapsed_s=0.91 events_per_s=... mb_per_s=...
//! ```

use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use streamlake::kafka::batch::{BatchReader, Polled, ReadError};
use streamlake::kafka::settings::ClientSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PollMode {
    /// `rd_kafka_consume_batch_queue`, many messages per call
    Batch,
    /// `BaseConsumer::poll`, one message per call
    Single,
}

#[derive(Parser, Debug)]
#[command(about = "Count every message of a topic, from the beginning to the end offsets seen at start")]
struct Args {
    /// Topic to read.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "events")]
    topic: String,
    /// Bootstrap servers (default: the settings' bootstrap.servers, else `.kafka/address`, else
    /// 127.0.0.1:9092).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap_servers: Option<String>,
    /// Client properties file (librdkafka `key=value` lines), as streamlake's --kafka-config.
    #[arg(long = "kafka-config", env = "KAFKA_CONFIG_FILE", value_name = "FILE")]
    kafka_config: Option<std::path::PathBuf>,
    /// One client setting over the file's, as streamlake's --kafka-option (repeatable).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = streamlake::kafka::settings::parse_key_value)]
    kafka_options: Vec<(String, String)>,
    /// How to poll.
    #[arg(long, value_enum, default_value = "batch")]
    poll: PollMode,
    /// Messages per batch call.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Consumers, each on its own thread with its own connection; consumer `i` reads the partitions
    /// `p` with `p % consumers == i` (streamlake's rule for workers). 1 = a single consumer.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Print the result as one JSON object instead of a key=value line.
    #[arg(long)]
    json: bool,
}

struct Progress {
    /// Per partition: the end offset seen at start, and the next offset to read.
    end: Vec<i64>,
    next: Vec<i64>,
    remaining: usize,
    messages: u64,
    bytes: u64,
}

impl Progress {
    fn record(&mut self, partition: i32, offset: i64, len: usize) {
        let p = partition as usize;
        self.messages += 1;
        self.bytes += len as u64;
        let was_open = self.next[p] < self.end[p];
        self.next[p] = offset + 1;
        if was_open && self.next[p] >= self.end[p] {
            self.remaining -= 1;
        }
    }
}

type SetUp = (BaseConsumer, Progress, usize);

/// Creates a consumer, reads the end offsets of the partitions `own` selects and assigns them
/// from the beginning. Returns the consumer, its progress and the topic's partition count.
fn set_up(args: &Args, settings: &ClientSettings, own: &dyn Fn(usize) -> bool) -> Result<SetUp> {
    let brokers = &settings.brokers;
    let mut config = ClientConfig::new();
    // The same security settings as streamlake's clients, first, so the tuning below is the same
    // for every contender.
    for (key, value) in &settings.options {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("client.id", "raw_consume")
        .set("group.id", "raw_consume") // required by librdkafka; never joined (assign, no commits)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("broker.address.family", "v4")
        .set("fetch.wait.max.ms", "100")
        .set("queued.min.messages", "200000")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        // librdkafka's default (1 s) idles the fetcher whenever the queue is over its bounds,
        // which made this "limit" slower than streamlake; the limit must be the best read.
        .set("fetch.queue.backoff.ms", "1")
        .set("log_level", "3")
        .create()
        .context("creating the consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .with_context(|| format!("metadata of {} from {brokers}", args.topic))?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == args.topic && t.error().is_none() && !t.partitions().is_empty())
        .with_context(|| format!("topic {} not found on {brokers}", args.topic))?;
    let partitions = topic.partitions().len();
    let mut progress =
        Progress { end: vec![0; partitions], next: vec![0; partitions], remaining: 0, messages: 0, bytes: 0 };
    let mut assignment = TopicPartitionList::new();
    for p in (0..partitions).filter(|p| own(*p)) {
        let (low, high) = consumer
            .fetch_watermarks(&args.topic, p as i32, Duration::from_secs(10))
            .with_context(|| format!("end offset of partition {p}"))?;
        progress.next[p] = low;
        progress.end[p] = high;
        if low < high {
            progress.remaining += 1;
        }
        assignment.add_partition_offset(&args.topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&assignment).context("assigning the partitions")?;
    Ok((consumer, progress, partitions))
}

/// Reads the partitions `own` selects from their start to the end offsets seen at start, after
/// every consumer is set up (the barrier). Returns (messages, bytes, partitions of the topic).
fn consume(
    args: &Args,
    settings: &ClientSettings,
    own: &dyn Fn(usize) -> bool,
    barrier: &Barrier,
) -> Result<(u64, u64, usize)> {
    // Wait at the barrier even when the set-up fails, so the other threads are not stuck.
    let setup = set_up(args, settings, own);
    barrier.wait();
    let (consumer, mut progress, partitions) = setup?;
    match args.poll {
        PollMode::Single => {
            while progress.remaining > 0 {
                match consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Err(e)) => bail!("consume error: {e}"),
                    Some(Ok(m)) => {
                        let len = m.payload_len() + m.key().map_or(0, <[u8]>::len);
                        progress.record(m.partition(), m.offset(), len);
                    }
                }
            }
        }
        PollMode::Batch => {
            let mut reader = BatchReader::new(&consumer, args.batch);
            while progress.remaining > 0 {
                let read = reader.read_within(Duration::from_millis(100), |m| match m.polled() {
                    Polled::Record { partition, offset, payload } => {
                        progress.record(partition, offset, payload.map_or(0, <[u8]>::len) + m.key_len());
                        Ok(())
                    }
                    Polled::Error { .. } if m.is_partition_eof() => Ok(()),
                    Polled::Error { error, .. } => Err(error),
                });
                match read {
                    Ok(_) => {}
                    Err(ReadError::Refused) => bail!("rd_kafka_consume_batch_queue failed"),
                    Err(ReadError::Stopped(e)) => bail!("consume error: {e}"),
                }
            }
        }
    }
    Ok((progress.messages, progress.bytes, partitions))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let settings = ClientSettings::from_cli(
        args.bootstrap_servers.as_deref(),
        args.kafka_config.as_deref(),
        &args.kafka_options,
    )?;
    let n = args.consumers.max(1);
    // Every consumer fetches metadata and end offsets and assigns first; the clock starts when
    // all are ready.
    let barrier = Barrier::new(n + 1);
    let (results, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (args, settings, barrier) = (&args, &settings, &barrier);
                scope.spawn(move || consume(args, settings, &|p| p % n == i, barrier))
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> =
            handles.into_iter().map(|h| h.join().expect("consumer thread panicked")).collect();
        (results, start.elapsed().as_secs_f64())
    });
    let (mut messages, mut bytes, mut partitions) = (0u64, 0u64, 0usize);
    for r in results {
        let (m, b, p) = r?;
        messages += m;
        bytes += b;
        partitions = p;
    }
    let progress = Progress { end: Vec::new(), next: Vec::new(), remaining: 0, messages, bytes };
    let eps = progress.messages as f64 / elapsed.max(1e-9);
    let mbps = progress.bytes as f64 / 1e6 / elapsed.max(1e-9);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "messages": progress.messages, "bytes": progress.bytes, "elapsed_s": elapsed,
                "events_per_s": eps, "mb_per_s": mbps, "partitions": partitions,
            })
        );
    } else {
        println!(
            "raw_consume: messages={} bytes={} partitions={partitions} elapsed_s={elapsed:.3} events_per_s={eps:.0} \
             mb_per_s={mbps:.1}",
            progress.messages, progress.bytes
        );
    }
    Ok(())
}
