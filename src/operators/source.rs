//! The Kafka source: each worker reads the partitions it owns, writes their raw events to
//! Parquet, pre-aggregates window sums, and turns event time into the timely frontier.
//!
//! Why the raw sink lives here rather than downstream: a Kafka partition's offsets, its raw
//! files and its share of the window state must be committed together, and all three are local
//! to the worker that reads the partition. Writing where we read keeps the hot path free of
//! copies and channels, and makes each partition's commit a local, atomic step: files durable →
//! checkpoint entry. Only the tiny partial sums cross workers.
//!
//! Frontier behaviour: the operator holds one capability, at the worker's watermark in ms:
//! `min over its live partitions of (max event time − watermark delay)`, never lower than the
//! restored `closed_through`. A partition that received nothing for `idle_timeout` stops holding
//! it back (like Flink's `withIdleness`); when all of a worker's partitions are idle its watermark
//! follows the wall clock minus the delay. A worker that owns no partition drops its capability
//! at once. A record whose window ends at or before the capability time is late: written raw,
//! counted, not aggregated. Deltas are sent at the capability's time, which is always before
//! their window's end. At the end of input (`--available-now`) the operator commits and drops its
//! capability; with `--flush-windows` it first moves to [`FLUSH_TIME`], waits until the
//! aggregates probe shows every window written, and commits again. It never drops its
//! capability because of an error: errors stop the process instead.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use super::{Delta, FLUSH_TIME};
use crate::error::{FailureKind, WorkerError};
use crate::kafka::assignment::owned_partitions;
use crate::kafka::batch::{BatchReader, Polled};
use crate::kafka::client::{base_config, fetch_metadata, partition_count, ClientSettings};
use crate::kafka::context::KafkaContext;
use crate::kafka::errors::{classify, topic_absent, ErrorClass, UNCLASSIFIED_LIMIT};
use crate::kafka::group::GroupCommits;
use crate::observe::telemetry::{PartitionReport, Telemetry};
use crate::parse::json::RecordParser;
use crate::parse::{Key, KeyRef, Reject};
use crate::signals::Shutdown;
use crate::sink::aggregates::to_nanos;
use crate::sink::checkpoint::{CheckpointDir, Partial, PartitionEntry};
use crate::sink::raw::{remove_uncommitted, PartitionFiles, RawLayout};
use crate::spec::Spec;

/// Where to start a partition that has no checkpoint entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartingOffsets {
    Earliest,
    Latest,
}

/// What to do when a partition's committed position is no longer on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDataLoss {
    /// Stop before reading anything, naming the partition and the missing range.
    Fail,
    /// Continue from the oldest offset still there and record the skipped range.
    Skip,
}

/// Everything a source needs, shared by the workers of a process.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub brokers: String,
    /// Every client setting (`--kafka-config`, `--kafka-option`), brokers included.
    pub client: ClientSettings,
    /// The consumer group the checkpoint's offsets are also committed to, for lag tools only.
    pub group: String,
    pub topic: String,
    pub spec: Arc<Spec>,
    pub run_dir: PathBuf,
    pub run_id: String,
    /// The run folder's `run_uid` (see `sink::identity`).
    pub run_uid: String,
    pub starting: StartingOffsets,
    pub available_now: bool,
    pub flush_windows: bool,
    pub idle_timeout: Duration,
    pub roll_interval: Duration,
    pub roll_bytes: u64,
    pub max_future: Duration,
    pub on_data_loss: OnDataLoss,
    /// How often to look for added partitions (zero: never).
    pub partition_discovery: Duration,
    pub max_batch: usize,
    /// `--consumer-option` settings, applied over the defaults below.
    pub consumer_options: Vec<(String, String)>,
    pub metadata_timeout: Duration,
    pub shutdown: Shutdown,
    /// Where the source publishes partition state for metrics and the status page.
    pub telemetry: Arc<Telemetry>,
}

/// Process-wide counters for the run summary.
#[derive(Debug, Default)]
pub struct SourceCounters {
    pub messages: AtomicU64,
    pub rows: AtomicU64,
    pub quarantined: AtomicU64,
    pub late: AtomicU64,
    pub commits: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    /// Quarantined records per reason, in [`QUARANTINE_REASONS`] order.
    pub quarantined_by_reason: [AtomicU64; QUARANTINE_REASONS.len()],
}

/// Reason code of a record dated more than `--max-future` ahead of the wall clock.
pub const FUTURE_REASON: &str = "timestamp_in_future";

/// Every quarantine reason code: the parser's, then the source's own.
pub const QUARANTINE_REASONS: [&str; Reject::CODES.len() + 1] = {
    let mut all = [FUTURE_REASON; Reject::CODES.len() + 1];
    let mut i = 0;
    while i < Reject::CODES.len() {
        all[i] = Reject::CODES[i];
        i += 1;
    }
    all
};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Kafka(#[from] crate::error::KafkaError),
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

/// Per-partition read state.
struct Part {
    partition: i32,
    files: PartitionFiles,
    next_offset: i64,
    end_offset: Option<i64>,
    max_event_ms: Option<i64>,
    last_message: Instant,
    /// This partition's share of every window not yet known to be written.
    partials: BTreeMap<(u64, Key), (i128, u64)>,
    /// Deltas of the current poll batch, flushed to `partials` and the output after the batch.
    batch_deltas: Vec<Delta>,
    late_pending: u64,
    totals: (i64, u64, u64, u64, u64), // first_offset, messages, rows, quarantined, late
    /// The newest checkpoint entry, so a commit with no new messages (the end of a flush) can
    /// update it in place without losing the file list of the commit it describes.
    last_entry: Option<PartitionEntry>,
    done: bool,
    /// Where this run started reading (for progress against `end_offset`).
    start_offset: i64,
}

/// A prepared source for one worker: partitions assigned, checkpoint restored, leftovers removed.
pub struct PreparedSource {
    settings: SourceSettings,
    /// Batch reads of the consumer's queue; declared before `consumer` so it is dropped first.
    reader: Option<BatchReader>,
    /// Group offsets for lag tools; also dropped before `consumer`.
    group: Option<GroupCommits>,
    consumer: Option<BaseConsumer<KafkaContext>>,
    parts: Vec<Part>,
    /// Partition number → index in `parts`; its length is the topic's partition count as known.
    index: Vec<Option<usize>>,
    closed_through: u64,
    worker: usize,
    peers: usize,
    layout: Arc<RawLayout>,
    checkpoint: CheckpointDir,
    /// Since when the broker has been unreachable, and when that was last said.
    broker_down: Option<(Instant, Instant)>,
    last_discovery: Instant,
    /// Set by a poll that reported an out-of-range position.
    lost_offsets: bool,
    /// When the broker was last probed because no message arrived.
    last_probe: Instant,
    /// A "maybe gone" error of the last batch: (partition, offset), checked against metadata.
    maybe_gone: Option<(i32, i64)>,
    /// Since when an unclassified consumer error repeats with no record read, and when it was
    /// last logged.
    unclassified: Option<(Instant, Instant)>,
}

impl PreparedSource {
    /// Reads metadata and the checkpoint, cleans up after a crash, and assigns the worker's
    /// partitions at their resume offsets.
    pub fn prepare(
        settings: SourceSettings,
        worker: usize,
        peers: usize,
        closed_through: u64,
    ) -> Result<Self, SourceError> {
        let topic = settings.topic.clone();
        let meta = fetch_metadata(&settings.client, Some(&topic), settings.metadata_timeout)?;
        let partitions = partition_count(&meta, &topic).ok_or_else(|| {
            crate::error::KafkaError::NoSuchTopic { topic: topic.clone(), brokers: settings.brokers.clone() }
        })?;
        let owned = owned_partitions(worker, peers, partitions);
        let spec = settings.spec.clone();
        let layout = Arc::new(RawLayout::new(
            settings.run_dir.clone(),
            &topic,
            &settings.run_id,
            &settings.run_uid,
            worker,
            spec.schema.clone(),
            spec.partition_col,
        ));
        // A worker with nothing to read in a streaming run still keeps a consumer: partitions added
        // later may be its own.
        let consumer = if owned.is_empty() && settings.available_now {
            None
        } else {
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
                .set("queued.min.messages", "20000")
                .set("queued.max.messages.kbytes", "4096")
                .set("fetch.max.bytes", "2097152")
                .set("max.partition.fetch.bytes", "524288")
                .set("fetch.queue.backoff.ms", "1");
            for (key, value) in &settings.consumer_options {
                config.set(key, value);
            }
            Some(
                config
                    .create_with_context(KafkaContext::new(&settings.client))
                    .map_err(|e| crate::error::KafkaError::client("creating the consumer", e))?,
            )
        };
        let mut src = PreparedSource {
            checkpoint: CheckpointDir::new(&settings.run_dir),
            reader: consumer.as_ref().map(|c| BatchReader::new(c, settings.max_batch)),
            group: consumer.as_ref().map(|c| GroupCommits::new(c, &settings.group, &topic)),
            settings,
            consumer,
            parts: Vec::new(),
            index: vec![None; partitions],
            closed_through,
            worker,
            peers,
            layout,
            broker_down: None,
            last_discovery: Instant::now(),
            lost_offsets: false,
            last_probe: Instant::now(),
            maybe_gone: None,
            unclassified: None,
        };
        let starting = src.settings.starting;
        let mut tpl = TopicPartitionList::new();
        for p in owned {
            let start = src.open_partition(p, starting)?;
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))
                .map_err(|e| crate::error::KafkaError::client("assigning partitions", e))?;
        }
        if let Some(consumer) = &src.consumer {
            consumer.assign(&tpl).map_err(|e| crate::error::KafkaError::client("assigning partitions", e))?;
        }
        Ok(src)
    }

    /// Restores one partition from its checkpoint (or starts it at `default_start`), removes what
    /// a crash left of it, and adds it to `parts`. Returns the offset to read from.
    ///
    /// A partition seen for the first time gets an empty checkpoint entry at its start offset
    /// before anything is read: a restart then resumes exactly there, even when `latest` or a
    /// partition added while running would otherwise pick a different start.
    fn open_partition(&mut self, p: i32, default_start: StartingOffsets) -> Result<i64, SourceError> {
        let topic = self.settings.topic.clone();
        let consumer = self.consumer.as_ref().expect("a worker with partitions has a consumer");
        let entry = self.checkpoint.load_partition(p)?;
        let (low, high) = consumer
            .fetch_watermarks(&topic, p, self.settings.metadata_timeout)
            .map_err(|e| crate::error::KafkaError::client(format!("reading offsets of partition {p}"), e))?;
        let mut entry = match entry {
            Some(e) if e.next_offset > high => {
                return Err(SourceError::Recreated { topic, partition: p, next: e.next_offset, high });
            }
            Some(e) if e.next_offset < low => match self.settings.on_data_loss {
                OnDataLoss::Fail => {
                    return Err(SourceError::DataLoss {
                        topic,
                        partition: p,
                        next: e.next_offset,
                        low,
                        high,
                        missing: format!("{}..{}", e.next_offset, low),
                        resume: low,
                    });
                }
                OnDataLoss::Skip => {
                    // Clear the files of the old position first: the skip entry moves the
                    // committed position past them.
                    remove_uncommitted(&self.layout, p, e.next_offset)?;
                    let skipped = skip_entry(&e, low);
                    self.checkpoint.write_partition(&skipped)?;
                    tracing::warn!(
                        partition = p, from = e.next_offset, to = low, lost = low - e.next_offset,
                        "--on-data-loss=skip: records gone from the broker were skipped; the range is recorded in the checkpoint"
                    );
                    Some(skipped)
                }
            },
            other => other,
        };
        let start = match &entry {
            Some(e) => e.next_offset,
            None => match default_start {
                StartingOffsets::Earliest => low,
                StartingOffsets::Latest => high,
            },
        };
        let removed = remove_uncommitted(&self.layout, p, start)?;
        for path in removed {
            tracing::warn!(partition = p, path = %path.display(), "removed an uncommitted file left by an earlier run");
        }
        let restored = entry.is_some();
        if entry.is_none() {
            let first = PartitionEntry::start_of(p, start, self.worker);
            self.checkpoint.write_partition(&first)?;
            entry = Some(first);
        }
        let e = entry.as_ref().expect("set above");
        let partials = e
            .partials
            .iter()
            .filter(|(end, ..)| *end > self.closed_through)
            .map(|(end, key, sum, count)| ((*end, key.clone()), (*sum, *count)))
            .collect();
        let totals = (e.first_offset, e.total_messages, e.total_rows, e.total_quarantined, e.total_late);
        tracing::info!(worker = self.worker, partition = p, start, end = high, restored, "assigned");
        if self.index.len() <= p as usize {
            self.index.resize(p as usize + 1, None);
        }
        self.index[p as usize] = Some(self.parts.len());
        self.parts.push(Part {
            partition: p,
            files: PartitionFiles::new(self.layout.clone(), p, start),
            next_offset: start,
            end_offset: self.settings.available_now.then_some(high),
            max_event_ms: e.max_event_ms,
            last_message: Instant::now(),
            partials,
            batch_deltas: Vec::new(),
            late_pending: 0,
            totals,
            last_entry: entry,
            done: self.settings.available_now && start >= high,
            start_offset: start,
        });
        Ok(start)
    }

    /// Picks up partitions added to the topic since the last look: the ones this worker owns are
    /// read from their earliest offset. Runs every `partition_discovery`, never while the broker
    /// is away (the metadata call would block the worker for its whole timeout).
    fn discover_partitions(&mut self) -> Result<(), SourceError> {
        let every = self.settings.partition_discovery;
        if every.is_zero() || self.settings.available_now || self.broker_down.is_some() {
            return Ok(());
        }
        if self.last_discovery.elapsed() < every {
            return Ok(());
        }
        self.last_discovery = Instant::now();
        let Some(consumer) = self.consumer.as_ref() else { return Ok(()) };
        let topic = self.settings.topic.clone();
        let Ok(meta) = consumer.fetch_metadata(Some(&topic), Duration::from_secs(2)) else { return Ok(()) };
        if topic_absent(&meta, &topic) {
            // The broker answered and does not list the topic.
            let first = self.parts.first().map_or((-1, -1), |p| (p.partition, p.next_offset));
            return Err(SourceError::TopicGone {
                topic,
                brokers: self.settings.brokers.clone(),
                partition: first.0,
                offset: first.1,
            });
        }
        let Some(now) = partition_count(&meta, &topic) else { return Ok(()) };
        let known = self.index.len();
        if now <= known {
            return Ok(());
        }
        let before: Vec<i32> = owned_partitions(self.worker, self.peers, known);
        let mine: Vec<i32> = owned_partitions(self.worker, self.peers, now)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        self.index.resize(now, None);
        tracing::info!(worker = self.worker, topic = %topic, from = known, to = now, mine = ?mine, "partitions added to the topic");
        let mut tpl = TopicPartitionList::new();
        for p in mine {
            let start = self.open_partition(p, StartingOffsets::Earliest)?;
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))
                .map_err(|e| crate::error::KafkaError::client("assigning added partitions", e))?;
        }
        if tpl.count() > 0 {
            if let Some(consumer) = self.consumer.as_ref() {
                consumer
                    .incremental_assign(&tpl)
                    .map_err(|e| crate::error::KafkaError::client("assigning added partitions", e))?;
            }
        }
        Ok(())
    }

    /// Says, at most every 10 s, that the broker is away and what the job waits for; probes it
    /// every 2 s and, once it answers, lets the partitions start their idle clocks afresh (a
    /// partition was not idle while nobody could read it).
    fn check_broker(&mut self) {
        let Some((since, said)) = self.broker_down else { return };
        if said.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(
                brokers = %self.settings.brokers, down_for_s = since.elapsed().as_secs(),
                "waiting for the Kafka broker to come back; the watermark is held, nothing is skipped"
            );
            self.broker_down = Some((since, Instant::now()));
        }
        let Some(consumer) = self.consumer.as_ref() else { return };
        let Some(p) = self.parts.first().map(|p| p.partition) else { return };
        if consumer.fetch_watermarks(&self.settings.topic, p, Duration::from_millis(500)).is_ok() {
            self.broker_back();
        }
    }

    /// A batch read does not report librdkafka's global errors (see `kafka::batch`), so a lost
    /// broker shows only as silence. After a second without any message on the partitions still
    /// to read, ask the broker for one's offsets, at most every 2 s: a failure is the lost broker.
    /// (While it is down, `check_broker` probes for its return.)
    fn probe_broker_if_silent(&mut self) -> Option<rdkafka::error::KafkaError> {
        let live = || self.parts.iter().filter(|p| !p.done);
        let last_message = live().map(|p| p.last_message).max()?;
        if self.broker_down.is_some()
            || last_message.elapsed() < Duration::from_secs(1)
            || self.last_probe.elapsed() < Duration::from_secs(2)
        {
            return None;
        }
        let p = live().next()?.partition;
        let consumer = self.consumer.as_ref()?;
        self.last_probe = Instant::now();
        consumer.fetch_watermarks(&self.settings.topic, p, Duration::from_millis(500)).err()
    }

    /// After an "unknown topic or partition": asks the broker's metadata whether the topic and
    /// the partition still exist. Gone is a permanent error; present (a leader moving, a topic
    /// being created) is not. No answer means the broker is away: that is returned, and the
    /// caller waits for it as for any lost broker (librdkafka says "unknown partition" when it
    /// cannot reach the partition's leader).
    fn check_topic_present(
        &self,
        partition: i32,
        offset: i64,
    ) -> Result<Option<rdkafka::error::KafkaError>, SourceError> {
        let Some(consumer) = self.consumer.as_ref() else { return Ok(None) };
        let topic = &self.settings.topic;
        let meta = match consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            Ok(meta) => meta,
            Err(e) => return Ok(Some(e)),
        };
        let listed = partition_count(&meta, topic);
        match listed {
            _ if !topic_absent(&meta, topic) && listed.is_none() => Ok(None), // listed, no leader yet
            Some(n) if partition < 0 || (partition as usize) < n => {
                tracing::debug!(topic = %topic, partition, "unknown topic or partition, but the broker lists it; retrying");
                Ok(None)
            }
            _ => Err(SourceError::TopicGone {
                topic: topic.clone(),
                brokers: self.settings.brokers.clone(),
                partition,
                offset,
            }),
        }
    }

    /// An error code the classification does not list: retried, logged every 10 s, and after
    /// [`UNCLASSIFIED_LIMIT`] with no record read, a permanent error.
    fn track_unclassified(
        &mut self,
        got: usize,
        seen: Option<(rdkafka::error::KafkaError, i32, i64, String)>,
    ) -> Result<(), SourceError> {
        if got > 0 {
            self.unclassified = None;
        }
        let Some((error, partition, offset, detail)) = seen else { return Ok(()) };
        let now = Instant::now();
        let (since, said) = *self.unclassified.get_or_insert((now, now - Duration::from_secs(60)));
        if since.elapsed() >= UNCLASSIFIED_LIMIT {
            return Err(SourceError::Permanent {
                topic: self.settings.topic.clone(),
                partition,
                offset: offset.to_string(),
                code: error.rdkafka_error_code().unwrap_or(rdkafka::types::RDKafkaErrorCode::Unknown),
                detail: if detail.is_empty() { error.to_string() } else { detail },
                advice: format!(
                    "this error is not one streamlake knows to be transient, and it repeated for {}s with no \
                     record read; check the broker and the client settings",
                    UNCLASSIFIED_LIMIT.as_secs()
                ),
            });
        }
        if said.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(%error, partition, offset, repeating_s = since.elapsed().as_secs(), "Kafka consumer error; retrying");
            self.unclassified = Some((since, now));
        }
        Ok(())
    }

    fn broker_back(&mut self) {
        if let Some((since, _)) = self.broker_down.take() {
            tracing::info!(brokers = %self.settings.brokers, after_s = since.elapsed().as_secs(), "the Kafka broker is back; reading resumes");
            let now = Instant::now();
            self.parts.iter_mut().for_each(|p| p.last_message = now);
        }
    }

    fn broker_lost(&mut self, error: &rdkafka::error::KafkaError) {
        if self.broker_down.is_none() {
            tracing::warn!(
                brokers = %self.settings.brokers, %error,
                "lost the Kafka broker; waiting for it (the watermark is held, nothing is skipped)"
            );
            let now = Instant::now();
            self.broker_down = Some((now, now));
        }
    }

    /// After the consumer reported an out-of-range position: finds the partitions whose next
    /// offset is gone and stops (`fail`) or records the loss and moves on (`skip`).
    fn handle_lost_offsets(&mut self, counters: &SourceCounters) -> Result<(), SourceError> {
        let topic = self.settings.topic.clone();
        let mut lost = Vec::new();
        if let Some(consumer) = self.consumer.as_ref() {
            for part in &self.parts {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, part.partition, self.settings.metadata_timeout)
                    .map_err(|e| {
                        crate::error::KafkaError::client(
                            format!("reading offsets of partition {}", part.partition),
                            e,
                        )
                    })?;
                if part.next_offset < low || part.next_offset > high {
                    lost.push((part.partition, low, high));
                }
            }
        }
        if lost.is_empty() {
            return Ok(());
        }
        for &(p, low, high) in &lost {
            let next = self.parts[self.index[p as usize].expect("owned")].next_offset;
            if next > high {
                return Err(SourceError::Recreated { topic, partition: p, next, high });
            }
            if self.settings.on_data_loss == OnDataLoss::Fail {
                return Err(SourceError::DataLoss {
                    topic,
                    partition: p,
                    next,
                    low,
                    high,
                    missing: format!("{next}..{low}"),
                    resume: low,
                });
            }
        }
        // Skip: commit what was read, then record each skipped range and seek past it.
        let closed = self.closed_through;
        commit_all(self, closed, counters, false)?;
        for (p, low, _) in lost {
            let part = &mut self.parts[self.index[p as usize].expect("owned")];
            let prev = part
                .last_entry
                .clone()
                .unwrap_or_else(|| PartitionEntry::start_of(p, part.next_offset, self.worker));
            let entry = skip_entry(&prev, low);
            self.checkpoint.write_partition(&entry)?;
            tracing::warn!(
                partition = p,
                from = part.next_offset,
                to = low,
                "--on-data-loss=skip: records gone from the broker were skipped"
            );
            part.next_offset = low;
            part.files = PartitionFiles::new(self.layout.clone(), p, low);
            part.last_entry = Some(entry);
            if let Some(consumer) = self.consumer.as_ref() {
                consumer.seek(&topic, p, Offset::Offset(low), Duration::from_secs(5)).map_err(|e| {
                    crate::error::KafkaError::client(format!("seeking partition {p} to {low}"), e)
                })?;
            }
        }
        Ok(())
    }
}

/// The entry that records a deliberate skip of `[prev.next_offset, low)`: no files, the same
/// totals and window state, and the range counted as `skipped`.
fn skip_entry(prev: &PartitionEntry, low: i64) -> PartitionEntry {
    let mut e = prev.clone();
    e.start_offset = prev.next_offset;
    e.next_offset = low;
    e.messages = 0;
    e.rows = 0;
    e.quarantined = 0;
    e.late = 0;
    e.rows_per_key.clear();
    e.quarantined_by_reason.clear();
    e.files.clear();
    e.skipped = (low - prev.next_offset).max(0) as u64;
    e.skipped_ranges.push((prev.next_offset, low));
    e.committed_at = chrono::Utc::now().to_rfc3339();
    e
}

/// Where the operator is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading,
    Flushing,
    Finished,
}

/// A fatal error slot shared with the worker loop.
pub type ErrorSlot = Rc<RefCell<Option<WorkerError>>>;

/// Builds the source operator for one worker.
pub fn kafka_source<'scope>(
    scope: Scope<'scope, u64>,
    mut src: PreparedSource,
    probe: ProbeHandle<u64>,
    counters: Arc<SourceCounters>,
    error: ErrorSlot,
) -> Stream<'scope, u64, Vec<Delta>> {
    source(scope, "KafkaSource", move |capability: Capability<u64>, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(capability);
        let mut phase = Phase::Reading;
        let mut restored_sent = false;
        // Partition state for metrics and the status page goes out at most every
        // PUBLISH_EVERY, and only when something was read since: a trickle of one record per
        // activation must not take the telemetry lock each time.
        let mut last_published: Option<Instant> = None;
        let mut unpublished = false;
        let mut last_commit = Instant::now();
        let spec = src.settings.spec.clone();
        let mut parser = RecordParser::new(spec.schema.clone(), spec.key_col, spec.value_col, spec.time_col);
        let poll_idle = Duration::from_millis(20);

        move |output| {
            let Some(c) = cap.as_mut() else { return };
            if error.borrow().is_some() {
                return;
            }
            if !restored_sent {
                restored_sent = true;
                if src.consumer.is_none() {
                    // Owns no partition and none can be added (--available-now): must not hold
                    // the frontier back.
                    cap = None;
                    return;
                }
                // Restored window shares go out at `end - 1`, before the capability moves up to
                // the restored watermark, so the window operator sees them as on time.
                for part in &src.parts {
                    for ((end, key), (sum, count)) in &part.partials {
                        let t = end.saturating_sub(1).max(*c.time());
                        output.session(&c.delayed(&t)).give((*end, key.clone(), *sum, *count));
                    }
                }
                let restored = src
                    .parts
                    .iter()
                    .filter_map(|p| p.max_event_ms)
                    .map(|m| (m - spec.watermark_ms as i64).max(0) as u64)
                    .min()
                    .unwrap_or(0);
                let start = restored.max(src.closed_through);
                if start > *c.time() {
                    c.downgrade(&start);
                }
            }

            let result = match phase {
                Phase::Reading => read_batch(&mut src, &mut parser, c, output, &counters).and_then(|n| {
                    if std::mem::take(&mut src.lost_offsets) {
                        src.handle_lost_offsets(&counters)?;
                    }
                    src.check_broker();
                    src.discover_partitions()?;
                    Ok(n)
                }),
                _ => Ok(0),
            };
            let got = match result {
                Ok(n) => n,
                Err(e) => {
                    *error.borrow_mut() = Some(worker_error(&e));
                    return;
                }
            };
            let closed = probe_closed(&probe);
            let now = Instant::now();
            unpublished |= got > 0;
            if last_published.is_none_or(|at| unpublished && now.duration_since(at) >= PUBLISH_EVERY) {
                publish(&src, &spec);
                last_published = Some(now);
                unpublished = false;
            }
            let all_done = src.parts.iter().all(|p| p.done);
            let stopping = src.settings.shutdown.requested();
            let roll_due = now.duration_since(last_commit) >= src.settings.roll_interval
                || src.parts.iter().any(|p| p.files.pending_bytes() >= src.settings.roll_bytes);

            if phase == Phase::Reading && (roll_due || all_done || stopping) {
                if let Err(e) = commit_all(&mut src, closed, &counters, false) {
                    *error.borrow_mut() = Some(worker_error(&e));
                    return;
                }
                last_commit = now;
                if all_done || stopping {
                    if src.settings.flush_windows && all_done && !stopping {
                        phase = Phase::Flushing;
                        c.downgrade(&FLUSH_TIME);
                    } else {
                        phase = Phase::Finished;
                    }
                }
            }
            if phase == Phase::Flushing && stopping {
                // Interrupted while waiting for the flush: what is committed stays valid; the
                // windows not yet written are still in the checkpoint entries.
                phase = Phase::Finished;
            }
            if phase == Phase::Flushing && !probe.less_than(&FLUSH_TIME) {
                // Every window is written: record that none stays open.
                if let Err(e) = commit_all(&mut src, FLUSH_TIME, &counters, true) {
                    *error.borrow_mut() = Some(worker_error(&e));
                    return;
                }
                phase = Phase::Finished;
            }
            if phase == Phase::Finished {
                tracing::info!(worker = src.worker, "source finished");
                cap = None;
                return;
            }
            if phase == Phase::Reading {
                let wm = watermark(&src, &spec, *c.time());
                if wm > *c.time() {
                    c.downgrade(&wm);
                }
            }
            if got > 0 {
                activator.activate();
            } else {
                activator.activate_after(poll_idle);
            }
        }
    })
}

/// A source error as the job sees it.
fn worker_error(e: &SourceError) -> WorkerError {
    let kind = if e.is_permanent() { FailureKind::Permanent } else { FailureKind::Failed };
    WorkerError { kind, message: e.to_string() }
}

/// The window end the aggregates probe has passed: every window ending before it is written.
fn probe_closed(probe: &ProbeHandle<u64>) -> u64 {
    probe.with_frontier(|f| f.iter().min().copied().map(|t| t.saturating_sub(1)).unwrap_or(0))
}

fn watermark(src: &PreparedSource, spec: &Spec, current: u64) -> u64 {
    if src.broker_down.is_some() {
        // Nobody can read while the broker is away: silence is not idleness.
        return current;
    }
    let now = Instant::now();
    let idle = src.settings.idle_timeout;
    let mut wm: Option<i64> = None;
    let mut any_live = false;
    for p in src.parts.iter().filter(|p| !p.done) {
        if now.duration_since(p.last_message) >= idle {
            continue;
        }
        any_live = true;
        let w = p.max_event_ms.map_or(i64::MIN, |m| m - spec.watermark_ms as i64);
        wm = Some(wm.map_or(w, |x| x.min(w)));
    }
    let wm = if any_live {
        wm.unwrap_or(i64::MIN)
    } else if src.settings.available_now {
        // Finished partitions wait for the end-of-input commit; nothing to advance here.
        i64::MIN
    } else {
        // Every partition is idle: event time follows the wall clock.
        chrono::Utc::now().timestamp_millis() - spec.watermark_ms as i64
    };
    (wm.max(0) as u64).max(current).min(FLUSH_TIME - 1)
}

/// Polls up to `max_batch` messages, writes them, and sends the batch's window deltas.
fn read_batch(
    src: &mut PreparedSource,
    parser: &mut RecordParser,
    cap: &Capability<u64>,
    output: &mut timely::dataflow::operators::generic::OutputBuilderSession<
        '_,
        u64,
        timely::container::CapacityContainerBuilder<Vec<Delta>>,
    >,
    counters: &SourceCounters,
) -> Result<usize, SourceError> {
    let Some(consumer) = src.consumer.as_ref() else { return Ok(0) };
    let spec = src.settings.spec.clone();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let future_limit_ms = now_ms + src.settings.max_future.as_millis() as i64;
    let time = *cap.time() as i64;
    // One clock read per batch: per-record clock calls showed up at 7% of a profile.
    let batch_now = Instant::now();
    let mut got = 0usize;
    let mut late = 0u64;
    let mut quarantined = 0u64;
    let mut broker_error = None;
    let mut any_message = false;
    let mut bytes_read = 0u64;
    let closed_through = src.closed_through;
    let settings = &src.settings;
    let (parts, index, lost_offsets, maybe_gone) =
        (&mut src.parts, &src.index, &mut src.lost_offsets, &mut src.maybe_gone);
    let mut unclassified = None;
    let reader = src.reader.as_mut().expect("a consumer has a batch reader");
    reader.read(|item| -> Result<(), SourceError> {
        let (partition, offset, payload) = match item {
            Polled::Record { partition, offset, payload } => (partition, offset, payload),
            Polled::Error { error, partition, offset, detail } => {
                let code = error.rdkafka_error_code();
                // librdkafka leaves the offset at -1 for some errors: the partition's position
                // is what the job was about to read.
                let at = if offset >= 0 {
                    offset
                } else {
                    index
                        .get(partition.max(0) as usize)
                        .copied()
                        .flatten()
                        .map_or(-1, |i| parts[i].next_offset)
                };
                match code.map_or(ErrorClass::Unclassified, classify) {
                    ErrorClass::OffsetOutOfRange => {
                        // The error does not say reliably which partition: the caller asks the broker.
                        tracing::warn!(%error, "a partition's next offset is gone from the broker");
                        *lost_offsets = true;
                    }
                    ErrorClass::BrokerDown => broker_error = Some(error),
                    ErrorClass::Transient => {
                        tracing::debug!(%error, partition, "transient Kafka error; librdkafka retries")
                    }
                    ErrorClass::MaybeGone => *maybe_gone = Some((partition, at)),
                    ErrorClass::Permanent(advice) => {
                        return Err(SourceError::Permanent {
                            topic: settings.topic.clone(),
                            partition,
                            offset: if at >= 0 { at.to_string() } else { "unknown".into() },
                            code: code.unwrap_or(rdkafka::types::RDKafkaErrorCode::Unknown),
                            detail: if detail.is_empty() { error.to_string() } else { detail },
                            advice: advice.to_string(),
                        });
                    }
                    ErrorClass::Unclassified => unclassified = Some((error, partition, at, detail)),
                }
                return Ok(());
            }
        };
        any_message = true;
        let Some(Some(pi)) = index.get(partition as usize).copied() else { return Ok(()) };
        let part = &mut parts[pi];
        if offset < part.next_offset || part.done {
            return Ok(()); // before the resume point, or past the end of an --available-now run
        }
        if let Some(end) = part.end_offset {
            if offset >= end {
                part.done = true;
                return Ok(());
            }
        }
        got += 1;
        part.next_offset = offset + 1;
        part.last_message = batch_now;
        bytes_read += payload.map_or(0, |p| p.len() as u64);
        match parser.parse(payload) {
            Ok(()) => {
                let bytes = payload.unwrap_or_default();
                let ts_ms = parser.event_micros().div_euclid(1000);
                if ts_ms > future_limit_ms {
                    part.files.quarantine(
                        offset,
                        payload,
                        format!(
                            "timestamp_in_future: event time {} is more than {:?} ahead of the wall clock",
                            ts_ms, settings.max_future
                        ),
                    );
                    quarantined += 1;
                    counters.quarantined_by_reason[Reject::CODES.len()].fetch_add(1, Ordering::Relaxed);
                } else {
                    part.files.append(parser, bytes)?;
                    part.max_event_ms = Some(part.max_event_ms.map_or(ts_ms, |m| m.max(ts_ms)));
                    let end = spec.window_end(ts_ms);
                    if end <= time || end as u64 <= closed_through {
                        late += 1;
                        part.late_pending += 1;
                    } else {
                        add_delta(
                            &mut part.batch_deltas,
                            end as u64,
                            parser.key(bytes),
                            to_nanos(parser.value_f64()),
                        );
                    }
                }
            }
            Err(reject) => {
                counters.quarantined_by_reason[reject.index()].fetch_add(1, Ordering::Relaxed);
                part.files.quarantine(offset, payload, reject.to_string());
                quarantined += 1;
            }
        }
        if let Some(end) = part.end_offset {
            if part.next_offset >= end {
                part.done = true;
            }
        }
        Ok(())
    })?;
    // An --available-now partition whose last offsets are not data records (transaction markers)
    // never delivers them: the consumer's position tells us it is past the end.
    if got == 0 && src.settings.available_now {
        if let Ok(positions) = consumer.position() {
            for part in src.parts.iter_mut().filter(|p| !p.done) {
                if let (Some(end), Some(el)) =
                    (part.end_offset, positions.find_partition(&src.settings.topic, part.partition))
                {
                    if let Offset::Offset(pos) = el.offset() {
                        if pos >= end && part.files.pending_messages() == 0 || part.next_offset >= end {
                            part.done = true;
                        }
                    }
                }
            }
        }
    }
    if !any_message && broker_error.is_none() {
        if let Some(e) = src.probe_broker_if_silent() {
            if e.rdkafka_error_code().map(classify) == Some(ErrorClass::MaybeGone) {
                let first =
                    src.parts.iter().find(|p| !p.done).map_or((-1, -1), |p| (p.partition, p.next_offset));
                src.maybe_gone = Some(first);
            } else {
                broker_error = Some(e);
            }
        }
    }
    if let Some((partition, offset)) = src.maybe_gone.take() {
        if let Some(unreachable) = src.check_topic_present(partition, offset)? {
            broker_error = broker_error.or(Some(unreachable));
        }
    }
    src.track_unclassified(got, unclassified)?;
    if let Some(e) = broker_error {
        src.broker_lost(&e);
    } else if any_message && src.broker_down.is_some() {
        src.broker_back();
    }
    let mut session = output.session(cap);
    for part in &mut src.parts {
        for (end, key, sum, count) in part.batch_deltas.drain(..) {
            let acc = part.partials.entry((end, key.clone())).or_insert((0, 0));
            acc.0 += sum;
            acc.1 += count;
            session.give((end, key, sum, count));
        }
    }
    counters.messages.fetch_add(got as u64, Ordering::Relaxed);
    counters.bytes.fetch_add(bytes_read, Ordering::Relaxed);
    counters.late.fetch_add(late, Ordering::Relaxed);
    counters.quarantined.fetch_add(quarantined, Ordering::Relaxed);
    Ok(got)
}

/// Adds one value to the batch's deltas; a batch touches few (window, key) pairs, so a linear
/// scan beats hashing and allocates only for a new pair.
#[inline]
fn add_delta(deltas: &mut Vec<Delta>, end: u64, key: KeyRef<'_>, nanos: i128) {
    for d in deltas.iter_mut().rev() {
        if d.0 == end && key.matches(&d.1) {
            d.2 += nanos;
            d.3 += 1;
            return;
        }
    }
    deltas.push((end, key.to_owned_key(), nanos, 1));
}

/// Commits every partition with new messages (or all, when `force`): files durable, then the
/// checkpoint entry with the partition's still-open window shares.
fn commit_all(
    src: &mut PreparedSource,
    closed: u64,
    counters: &SourceCounters,
    force: bool,
) -> Result<(), SourceError> {
    let started = Instant::now();
    let mut committed_any = false;
    let mut group_offsets = Vec::new();
    let checkpoint = &src.checkpoint;
    for part in &mut src.parts {
        if part.files.pending_messages() == 0 && part.late_pending == 0 && !force {
            continue;
        }
        let stats = part.files.commit(part.next_offset)?;
        part.partials.retain(|(end, _), _| *end > closed);
        part.totals.1 += stats.messages;
        part.totals.2 += stats.rows;
        part.totals.3 += stats.quarantined;
        part.totals.4 += part.late_pending;
        let partials: Vec<Partial> =
            part.partials.iter().map(|((e, k), (s, c))| -> Partial { (*e, k.clone(), *s, *c) }).collect();
        let skipped_ranges = part.last_entry.as_ref().map(|e| e.skipped_ranges.clone()).unwrap_or_default();
        let entry = match part.last_entry.take() {
            // Nothing new since the last entry: it keeps describing its range and files; only
            // the window state, the watermark and the late count move.
            Some(mut prev) if stats.messages == 0 && prev.next_offset == stats.next_offset => {
                prev.late += part.late_pending;
                prev.total_late = part.totals.4;
                prev.partials = partials;
                prev.max_event_ms = part.max_event_ms;
                prev.committed_at = chrono::Utc::now().to_rfc3339();
                prev
            }
            _ => PartitionEntry {
                version: crate::format::checkpoint::ENTRY_VERSION,
                partition: part.partition,
                start_offset: stats.start_offset,
                next_offset: stats.next_offset,
                messages: stats.messages,
                rows: stats.rows,
                quarantined: stats.quarantined,
                late: part.late_pending,
                rows_per_key: stats.rows_per_key,
                quarantined_by_reason: stats.quarantined_by_reason,
                first_offset: part.totals.0,
                total_messages: part.totals.1,
                total_rows: part.totals.2,
                total_quarantined: part.totals.3,
                total_late: part.totals.4,
                max_event_ms: part.max_event_ms,
                files: stats.files.clone(),
                partials,
                worker: src.worker,
                committed_at: chrono::Utc::now().to_rfc3339(),
                skipped: 0,
                skipped_ranges,
            },
        };
        checkpoint.write_partition(&entry)?;
        group_offsets.push((part.partition, entry.next_offset));
        part.last_entry = Some(entry);
        part.late_pending = 0;
        counters.rows.fetch_add(stats.rows, Ordering::Relaxed);
        counters.files.fetch_add(stats.files.len() as u64, Ordering::Relaxed);
        counters.commits.fetch_add(1, Ordering::Relaxed);
        committed_any = true;
        tracing::debug!(
            partition = part.partition,
            start = stats.start_offset,
            next = stats.next_offset,
            rows = stats.rows,
            quarantined = stats.quarantined,
            "committed"
        );
    }
    if let (Some(group), Some(consumer)) = (src.group.as_mut(), src.consumer.as_ref()) {
        // For Kafka's lag tools only, never waited for (see kafka::group).
        group.commit(consumer, &group_offsets);
    }
    if committed_any {
        src.settings.telemetry.committed(started.elapsed());
        publish(src, &src.settings.spec);
    }
    Ok(())
}

/// How often, at most, a source publishes its partitions' state while reading (commits always do).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Publishes every partition's position and watermark for metrics and the status page: at most
/// every [`PUBLISH_EVERY`] while reading and after each commit, never per record.
fn publish(src: &PreparedSource, spec: &Spec) {
    let now = Instant::now();
    let reports = src
        .parts
        .iter()
        .map(|p| PartitionReport {
            partition: p.partition,
            worker: src.worker,
            read_offset: p.next_offset,
            committed_offset: p.last_entry.as_ref().map_or(p.totals.0, |e| e.next_offset),
            end_offset: p.end_offset,
            start_offset: p.start_offset,
            watermark_ms: p.max_event_ms.map(|m| m - spec.watermark_ms as i64),
            since_last_record: now.saturating_duration_since(p.last_message),
            done: p.done,
        })
        .collect();
    src.settings.telemetry.publish_partitions(reports);
}
