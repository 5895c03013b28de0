//! A worker's Kafka reader: its partitions assigned at their restored positions, what a crash
//! left of them removed, and the commit of every partition through the [`CommitProtocol`].
//!
//! The timely operator (`operators::source`) drives it: it polls ([`super::poll`]), commits, and
//! turns the watermark into its capability. Broker health and partition discovery live in
//! [`super::broker`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::commit_stage::{CommitStage, Done, Job, Staged};
use super::consumer::{create_consumer, needs_consumer};
use super::discovery::DiscoveryClock;
use super::health::BrokerHealth;
use super::lanes::split_by_partition;
use super::partition::Part;
use super::preagg::{BatchDeltas, WindowShares};
use super::restore::{check_position, default_start, skip_entry, Totals};
use super::settings::{SourceSettings, StartingOffsets};
use super::watermark::{restored_watermark, watermark, WatermarkInputs};
use crate::error::{KafkaError, SourceError};
use crate::kafka::assignment::owned_partitions;
use crate::kafka::batch::BatchReader;
use crate::kafka::client::{fetch_metadata, partition_count};
use crate::kafka::context::KafkaContext;
use crate::kafka::group::GroupCommits;
use crate::observe::counters::SourceCounters;
use crate::parse::json::RecordParser;
use crate::sink::checkpoint::PartitionEntry;
use crate::sink::commit::{CommitProtocol, LocalFs, Roll};
use crate::sink::object::commit::ObjectCommit;
use crate::sink::raw::RawLayout;

/// A prepared source for one worker: partitions assigned, checkpoint restored, leftovers removed.
pub struct PreparedSource {
    pub(super) settings: SourceSettings,
    /// Batch reads of the consumer's queue; declared before `consumer` so it is dropped first.
    pub(super) reader: Option<BatchReader>,
    /// Each partition's own queue when the worker splits (`super::lanes`), indexed as `parts`;
    /// also dropped before `consumer`.
    pub(super) part_readers: Vec<Option<BatchReader>>,
    /// Group offsets for lag tools; also dropped before `consumer`.
    group: Option<GroupCommits>,
    pub(super) consumer: Option<BaseConsumer<KafkaContext>>,
    pub(super) parts: Vec<Part>,
    /// Partition number → index in `parts`; its length is the topic's partition count as known.
    pub(super) index: Vec<Option<usize>>,
    pub(super) closed_through: u64,
    worker: usize,
    pub(super) peers: usize,
    /// Where the partitions are staged and committed; shared with the commit thread.
    protocol: Arc<dyn CommitProtocol>,
    /// The worker's commits, run beside its reading.
    stage: CommitStage,
    pub(super) health: BrokerHealth,
    pub(super) discovery: DiscoveryClock,
    /// Set by a poll that reported an out-of-range position.
    pub(super) lost_offsets: bool,
    /// A "maybe gone" error of the last batch: (partition, offset), checked against metadata.
    pub(super) maybe_gone: Option<(i32, i64)>,
    /// Whether this worker parses each partition on a thread of its own (`super::lanes`).
    pub(super) split: bool,
    /// The lanes' parsers, one per partition (made on the first split batch).
    pub(super) lane_parsers: Vec<RecordParser>,
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
        let partitions = partition_count(&meta, &topic).ok_or_else(|| KafkaError::NoSuchTopic {
            topic: topic.clone(),
            brokers: settings.brokers.clone(),
        })?;
        let owned = owned_partitions(worker, peers, partitions);
        let spec = settings.spec.clone();
        let layout = RawLayout::new(
            settings.run_dir.clone(),
            &topic,
            &settings.run_id,
            &settings.run_uid,
            worker,
            spec.schema.clone(),
            spec.partition.clone(),
        );
        let mut protocol: Box<dyn CommitProtocol> = match &settings.object {
            Some(target) => Box::new(ObjectCommit::new(target.clone(), layout, settings.sink_limits)),
            None => Box::new(LocalFs::new(layout, settings.sink_limits)),
        };
        if let Some(tables) = &settings.delta {
            protocol = Box::new(crate::sink::delta::commit::DeltaCommit::new(
                worker,
                protocol,
                tables.raw.clone(),
                &settings.run_id,
                &topic,
                tables.raw_sizer.clone(),
            ));
        }
        let protocol: Arc<dyn CommitProtocol> = Arc::from(protocol);
        let stage = CommitStage::start(worker, protocol.clone(), settings.commit_delay)?;
        let consumer = if needs_consumer(!owned.is_empty(), settings.available_now) {
            let split = split_by_partition(partitions, peers, owned.len());
            Some(create_consumer(&settings, if split { owned.len() } else { 0 })?)
        } else {
            None
        };
        let now = Instant::now();
        let split = split_by_partition(partitions, peers, owned.len());
        let mut src = PreparedSource {
            reader: consumer.as_ref().map(|c| BatchReader::new(c, settings.max_batch)),
            part_readers: Vec::new(),
            group: consumer.as_ref().map(|c| GroupCommits::new(c, &settings.group, &topic)),
            discovery: DiscoveryClock::new(settings.partition_discovery, settings.available_now, now),
            settings,
            consumer,
            parts: Vec::new(),
            index: vec![None; partitions],
            closed_through,
            worker,
            peers,
            protocol,
            stage,
            health: BrokerHealth::new(now),
            lost_offsets: false,
            maybe_gone: None,
            split,
            lane_parsers: Vec::new(),
        };
        if src.split {
            tracing::info!(
                worker,
                partitions = owned.len(),
                "{partitions} partitions do not divide evenly over {peers} workers: this worker parses each of its \
                 partitions on a thread of its own"
            );
        }
        let starting = src.settings.starting;
        let mut tpl = TopicPartitionList::new();
        for p in owned {
            let start = src.open_partition(p, starting)?;
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))
                .map_err(|e| KafkaError::client("assigning partitions", e))?;
        }
        if let Some(consumer) = &src.consumer {
            consumer.assign(&tpl).map_err(|e| KafkaError::client("assigning partitions", e))?;
        }
        Ok(src)
    }

    /// Whether this worker reads at all. One without a consumer owns no partition and none can
    /// be added (`--available-now`).
    pub fn has_consumer(&self) -> bool {
        self.consumer.is_some()
    }

    pub fn worker(&self) -> usize {
        self.worker
    }

    pub fn settings(&self) -> &SourceSettings {
        &self.settings
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// This worker's source finished: its last commit done, it commits no more (the others stop
    /// waiting for it). Returns how long that last commit took, if one was in flight.
    pub fn finish(&mut self, counters: &SourceCounters) -> Result<Option<Duration>, SourceError> {
        let took = self.drain_commits(counters)?;
        self.protocol.finish();
        Ok(took)
    }

    /// Whether a commit is in flight on the commit thread.
    pub fn commit_in_flight(&self) -> bool {
        self.stage.in_flight()
    }

    /// Takes in the commit in flight if it is done, without waiting; returns how long it took.
    pub fn poll_commits(&mut self, counters: &SourceCounters) -> Result<Option<Duration>, SourceError> {
        let done = self.stage.poll()?;
        Ok(done.map(|d| self.absorb(d, counters)))
    }

    /// Waits for the commit in flight, if any, and takes it in; returns how long it took.
    pub fn drain_commits(&mut self, counters: &SourceCounters) -> Result<Option<Duration>, SourceError> {
        let done = self.stage.wait()?;
        Ok(done.map(|d| self.absorb(d, counters)))
    }

    /// A commit is done: its entries are the partitions' committed state.
    fn absorb(&mut self, done: Done, counters: &SourceCounters) -> Duration {
        let mut group_offsets = Vec::with_capacity(done.recorded.len());
        for r in done.recorded {
            let part = &mut self.parts[r.index];
            group_offsets.push((part.partition, r.entry.next_offset));
            tracing::debug!(
                partition = part.partition,
                start = r.entry.start_offset,
                next = r.entry.next_offset,
                rows = r.rows,
                quarantined = r.quarantined,
                "committed"
            );
            part.recorded(r.entry, r.totals);
            counters.rows.fetch_add(r.rows, Ordering::Relaxed);
            counters.files.fetch_add(r.files, Ordering::Relaxed);
            counters.commits.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(group), Some(consumer)) = (self.group.as_mut(), self.consumer.as_ref()) {
            // For Kafka's lag tools only, never waited for (see kafka::group).
            group.commit(consumer, &group_offsets);
        }
        done.took
    }

    /// Whether every partition is read to its end (always false in a streaming run).
    pub fn all_done(&self) -> bool {
        self.parts.iter().all(|p| p.done)
    }

    /// Whether some partition staged `--roll-size` bytes, or the worker's sink holds its whole
    /// `--sink-buffer-mib` share (the share is the worker's, so any partition can tell).
    pub fn roll_size_reached(&self) -> bool {
        self.parts
            .iter()
            .any(|p| p.files.pending_bytes() >= self.settings.roll_bytes || p.files.over_budget())
    }

    /// Where the restored source starts (see [`restored_watermark`]).
    pub fn restored_watermark(&self) -> u64 {
        let delay = self.settings.spec.watermark_ms;
        restored_watermark(self.parts.iter().filter_map(|p| p.max_event_ms), delay, self.closed_through)
    }

    /// The worker's watermark now, never below `current` (see [`watermark`]).
    pub fn watermark(&self, current: u64) -> u64 {
        let inputs = WatermarkInputs {
            broker_down: self.health.is_down(),
            idle_timeout: self.settings.idle_timeout,
            available_now: self.settings.available_now,
            delay_ms: self.settings.spec.watermark_ms,
            now: Instant::now(),
            wall_ms: chrono::Utc::now().timestamp_millis(),
        };
        watermark(self.parts.iter().map(Part::clock), &inputs, current)
    }

    /// Restores one partition from its checkpoint (or starts it at `default_start`), removes what
    /// a crash left of it, and adds it to `parts`. Returns the offset to read from.
    ///
    /// A partition seen for the first time gets an empty checkpoint entry at its start offset
    /// before anything is read: a restart then resumes exactly there, even when `latest` or a
    /// partition added while running would otherwise pick a different start.
    pub(super) fn open_partition(&mut self, p: i32, starting: StartingOffsets) -> Result<i64, SourceError> {
        let topic = self.settings.topic.clone();
        let consumer = self.consumer.as_ref().expect("a worker with partitions has a consumer");
        let entry = self.protocol.load(p)?;
        let (low, high) = consumer
            .fetch_watermarks(&topic, p, self.settings.metadata_timeout)
            .map_err(|e| KafkaError::client(format!("reading offsets of partition {p}"), e))?;
        let mut entry = match entry {
            Some(e) => match check_position(&topic, p, e.next_offset, low, high, self.settings.on_data_loss)?
            {
                None => Some(e),
                Some(low) => {
                    // Clear the files of the old position first: the skip entry moves the
                    // committed position past them.
                    self.protocol.clean(p, e.next_offset)?;
                    let skipped = skip_entry(&e, low, chrono::Utc::now().to_rfc3339());
                    self.protocol.record(&skipped)?;
                    tracing::warn!(
                        partition = p, from = e.next_offset, to = low, lost = low - e.next_offset,
                        "--on-data-loss=skip: records gone from the broker were skipped; the range is recorded in the checkpoint"
                    );
                    Some(skipped)
                }
            },
            None => None,
        };
        let start = entry.as_ref().map_or_else(|| default_start(starting, low, high), |e| e.next_offset);
        let removed = self.protocol.clean(p, start)?;
        if !removed.is_empty() {
            // One line, not one per file: a crash mid-commit of 100,000 folders leaves that many.
            let shown = removed.len().min(5);
            tracing::warn!(
                partition = p,
                removed = removed.len(),
                first = ?&removed[..shown],
                "removed the uncommitted files an earlier run left (written after its last checkpoint entry)"
            );
        }
        let restored = entry.is_some();
        let e = match entry.take() {
            Some(e) => e,
            None => {
                let first = PartitionEntry::start_of(p, start, self.worker);
                self.protocol.record(&first)?;
                first
            }
        };
        tracing::info!(worker = self.worker, partition = p, start, end = high, restored, "assigned");
        if self.index.len() <= p as usize {
            self.index.resize(p as usize + 1, None);
        }
        self.index[p as usize] = Some(self.parts.len());
        let own_queue = if self.split {
            Some(
                BatchReader::for_partition(consumer, &topic, p, self.settings.max_batch)
                    .map_err(|e| KafkaError::client(format!("giving partition {p} a queue of its own"), e))?,
            )
        } else {
            None
        };
        self.part_readers.push(own_queue);
        self.parts.push(Part {
            partition: p,
            files: self.protocol.open(p, start),
            next_offset: start,
            end_offset: self.settings.available_now.then_some(high),
            max_event_ms: e.max_event_ms,
            last_message: Instant::now(),
            shares: WindowShares::restore(&e.partials, self.closed_through),
            batch_deltas: BatchDeltas::default(),
            late_pending: 0,
            totals: Totals::of(&e),
            last_entry: Some(e),
            done: self.settings.available_now && start >= high,
            start_offset: start,
        });
        Ok(start)
    }

    /// After the consumer reported an out-of-range position: finds the partitions whose next
    /// offset is gone and stops (`fail`) or records the loss and moves on (`skip`). Returns how
    /// long a commit it made took, if it made one.
    pub(super) fn handle_lost_offsets(
        &mut self,
        counters: &SourceCounters,
    ) -> Result<Option<Duration>, SourceError> {
        let topic = self.settings.topic.clone();
        let mut lost = Vec::new();
        if let Some(consumer) = self.consumer.as_ref() {
            for part in &self.parts {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, part.partition, self.settings.metadata_timeout)
                    .map_err(|e| {
                        KafkaError::client(format!("reading offsets of partition {}", part.partition), e)
                    })?;
                if part.next_offset < low || part.next_offset > high {
                    lost.push((part.partition, low, high));
                }
            }
        }
        if lost.is_empty() {
            return Ok(None);
        }
        let mut skips = Vec::new();
        for &(p, low, high) in &lost {
            let next = self.parts[self.index[p as usize].expect("owned")].next_offset;
            if let Some(to) = check_position(&topic, p, next, low, high, self.settings.on_data_loss)? {
                skips.push((p, to));
            }
        }
        // Skip: commit what was read, then record each skipped range and seek past it.
        let closed = self.closed_through;
        let submitted = self.commit_all(closed, counters, false, Roll::Unscheduled)?;
        // The skip entries follow that commit's entries.
        let committed = self.drain_commits(counters)?.or(submitted);
        for (p, low) in skips {
            let pi = self.index[p as usize].expect("owned");
            let part = &self.parts[pi];
            let prev = part
                .last_entry
                .clone()
                .unwrap_or_else(|| PartitionEntry::start_of(p, part.next_offset, self.worker));
            let entry = skip_entry(&prev, low, chrono::Utc::now().to_rfc3339());
            self.protocol.record(&entry)?;
            let files = self.protocol.open(p, low);
            let part = &mut self.parts[pi];
            tracing::warn!(
                partition = p,
                from = part.next_offset,
                to = low,
                "--on-data-loss=skip: records gone from the broker were skipped"
            );
            part.next_offset = low;
            part.files = files;
            part.last_entry = Some(entry);
            if let Some(consumer) = self.consumer.as_ref() {
                consumer
                    .seek(&topic, p, Offset::Offset(low), Duration::from_secs(5))
                    .map_err(|e| KafkaError::client(format!("seeking partition {p} to {low}"), e))?;
            }
        }
        Ok(committed)
    }

    /// Commits every partition with new messages (or all, when `force`): hands their files and
    /// draft entries (with the partition's still-open window shares) to the commit stage, which
    /// makes the files durable and then records the entries while the worker reads on. A commit
    /// still in flight is waited for first. Returns how long the commit it waited for took, if
    /// any. `roll` says whether this is the wall clock's roll, which the process's other workers
    /// have too (`sink::commit::Roll`).
    pub fn commit_all(
        &mut self,
        closed: u64,
        counters: &SourceCounters,
        force: bool,
        roll: Roll,
    ) -> Result<Option<Duration>, SourceError> {
        // One commit in flight at most: its entries are the state the new drafts build on.
        let took = self.drain_commits(counters)?;
        let mut staged = Vec::new();
        for (index, part) in self.parts.iter_mut().enumerate() {
            if !part.has_pending() && !force {
                continue;
            }
            let fresh = self.protocol.open(part.partition, part.next_offset);
            let files = std::mem::replace(&mut part.files, fresh);
            let draft = part.draft(closed, self.worker);
            staged.push(Staged { index, files, next_offset: part.next_offset, draft });
        }
        // A scheduled roll with nothing to commit still goes: it tells the others not to wait.
        if !staged.is_empty() || matches!(roll, Roll::Scheduled { .. }) {
            self.stage.submit(Job { staged, roll })?;
        }
        Ok(took)
    }
}

/// Counters a batch adds up, so the hot loop touches no atomic per record.
#[derive(Debug, Default)]
pub(super) struct BatchCounts {
    pub got: usize,
    pub late: u64,
    pub quarantined: u64,
    pub bytes: u64,
}

impl BatchCounts {
    /// Adds a lane's counts (`super::lanes`).
    pub fn merge(&mut self, other: BatchCounts) {
        self.got += other.got;
        self.late += other.late;
        self.quarantined += other.quarantined;
        self.bytes += other.bytes;
    }

    pub fn add_to(&self, counters: &SourceCounters) {
        counters.messages.fetch_add(self.got as u64, Ordering::Relaxed);
        counters.bytes.fetch_add(self.bytes, Ordering::Relaxed);
        counters.late.fetch_add(self.late, Ordering::Relaxed);
        counters.quarantined.fetch_add(self.quarantined, Ordering::Relaxed);
    }
}
