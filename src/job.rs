//! `streamlake run`: builds the timely cluster and the dataflow, runs it, and reports.
//!
//! ```text
//!  Kafka partitions ──(assign, per worker)──▶ KafkaSource ──▶ raw Parquet + checkpoint (local)
//!                                                │ partial (sum, count) per (window, key)
//!                                                ▼ exchange by key
//!                                          WindowAverage ──(frontier passes window end)──▶ final rows
//!                                                │ updates + finals, exchange to worker 0
//!                                   ┌────────────┴────────────┐
//!                             WriteAggregates               Console
//!                          (Parquet, windows.json)      (update mode, every trigger)
//! ```

use crate::sink::raw::SinkLimits;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::{CommunicationConfig, WorkerConfig};

use crate::error::{KafkaError, RunStopped, WorkerError};
use crate::ingest::{PreparedSource, SourceSettings};
use crate::kafka::client::{base_config, fetch_metadata, partition_count};
use crate::kafka::topic_id::{describe_topic_id, TopicId};
use crate::observe::counters::SourceCounters;
use crate::observe::telemetry::Telemetry;
use crate::operators::aggregates::{AggregatesReport, AggregatesTarget, WriteAggregates};
use crate::operators::console::ConsoleSink;
use crate::operators::source::kafka_source;
use crate::operators::window::WindowAverage;
use crate::options::{ClusterOptions, RunOptions};
use crate::signals::Shutdown;
use crate::sink::aggregates::AggregatesOwner;
use crate::sink::checkpoint::CheckpointDir;
use crate::sink::identity::RunIdentity;
use crate::sink::output::PreparedOutput;

/// What one process of a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub messages: u64,
    pub rows: u64,
    pub quarantined: u64,
    pub late: u64,
    pub files: u64,
    pub commits: u64,
    pub window_rows: u64,
    pub closed_through_ms: u64,
    pub elapsed: Duration,
    /// With an object-store output: the requests this process sent (commits, lease renewals,
    /// start-up listing and cleanup).
    pub object_requests: Option<crate::storage::Requests>,
    /// With `--table-format delta`: this process's commits to the raw and the aggregates table.
    pub delta_commits:
        Option<(crate::sink::delta::table::CommitCounts, crate::sink::delta::table::CommitCounts)>,
}

/// Timely's communication config for this process's place in the cluster, as timely's own
/// `from_args` would build it from -w/-n/-p/-h.
pub fn timely_config(cluster: &ClusterOptions) -> timely::Config {
    let threads = cluster.workers;
    let communication = if cluster.processes > 1 {
        CommunicationConfig::Cluster {
            threads,
            process: cluster.process,
            addresses: cluster.addresses.clone(),
            report: false,
            zerocopy: false,
        }
    } else if threads > 1 {
        CommunicationConfig::Process(threads)
    } else {
        CommunicationConfig::Thread
    };
    timely::Config { communication, worker: WorkerConfig::default() }
}

/// Drops this worker's dataflows after a failure. Timely steps a worker until its dataflows
/// complete once the worker closure returns; a dataflow whose peers stopped (or never built it)
/// never completes, so without this the process would hang instead of reporting the error.
fn abandon_dataflows(worker: &mut timely::worker::Worker) {
    for id in worker.installed_dataflows() {
        worker.drop_dataflow(id);
    }
}

/// Runs the job with checked settings; returns this process's summary.
pub fn run(options: RunOptions, shutdown: Shutdown) -> anyhow::Result<RunSummary> {
    let config = timely_config(&options.cluster);
    let cluster = options.cluster.clone();
    if cluster.processes > 1 {
        crate::peer::install_hook(cluster.process, cluster.processes);
    }
    let spec = Arc::new(options.spec.clone());
    // An object store is checked before Kafka: a wrong bucket, endpoint or key fails first.
    let store = match &options.object_output {
        Some(url) => {
            let spool = crate::sink::object::default_spool(url, &options.run_id, cluster.process);
            let stop = shutdown.clone();
            let stop = Arc::new(move || stop.requested());
            Some(PreparedOutput::check_store(url, &options.run_id, spool, stop, options.single_writer)?)
        }
        None => None,
    };
    // A misspelt setting (--kafka-config, --kafka-option, --consumer-option) or a missing
    // certificate fails here, before anything is created, rather than in every worker after the
    // output folder exists. librdkafka checks names, values and files when a client is created.
    let client = options.client.clone();
    let group = options.consumer_group.clone();
    tracing::info!(settings = %client.redacted(), %group, "kafka client settings");
    crate::kafka::diagnose::check_settings(
        &client,
        &options.consumer_options,
        "checking the consumer settings",
    )?;
    // Check the broker and the topic before touching the output folder: a bad configuration
    // fails here, with nothing created.
    let brokers = client.brokers.clone();
    let meta = fetch_metadata(&client, Some(&spec.topic), options.connect_timeout)?;
    if partition_count(&meta, &spec.topic).is_none() {
        return Err(KafkaError::NoSuchTopic { topic: spec.topic.clone(), brokers }.into());
    }
    // The topic's ID tells a recreated topic from the one the checkpoint was made of.
    let topic_id = match describe_topic_id(&base_config(&client), &spec.topic, options.connect_timeout)? {
        TopicId::Known(id) => Some(id),
        TopicId::Unavailable(why) => {
            tracing::warn!(topic = %spec.topic, %why, "cannot learn the topic's ID; a recreated topic is then caught only by its offsets");
            None
        }
    };
    let expected = RunIdentity::expected(&spec, &options.run_id, topic_id);
    let prepared = match store {
        Some(target) => PreparedOutput::object(target, cluster.process, expected, options.object_lease)?,
        None => PreparedOutput::local(&options.output, &options.run_id, cluster.process, expected)?,
    };
    crate::sink::delta::check_format(&prepared, spec.table_format, &options.output.display().to_string())?;
    let delta = match spec.table_format {
        crate::spec::TableFormat::Delta => {
            let stop = shutdown.clone();
            Some(Arc::new(crate::sink::delta::DeltaTables::open(
                &prepared,
                &spec,
                &options.run_id,
                cluster.process,
                options.delta_checkpoint_interval,
                Arc::new(move || stop.requested()),
            )?))
        }
        crate::spec::TableFormat::Parquet => None,
    };
    let result = run_prepared(
        &options,
        &prepared,
        delta.clone(),
        client,
        group,
        brokers,
        spec,
        cluster,
        config,
        shutdown,
    );
    prepared.finish();
    result.map(|summary| RunSummary {
        object_requests: prepared.object.as_ref().map(|o| o.store.requests()),
        delta_commits: delta.as_ref().map(|d| (d.raw.counts(), d.aggregates.counts())),
        ..summary
    })
}

/// Runs the dataflow on a prepared output.
#[allow(clippy::too_many_arguments)]
fn run_prepared(
    options: &RunOptions,
    prepared: &PreparedOutput,
    delta: Option<Arc<crate::sink::delta::DeltaTables>>,
    client: crate::kafka::settings::ClientSettings,
    group: String,
    brokers: String,
    spec: Arc<crate::spec::Spec>,
    cluster: ClusterOptions,
    config: timely::Config,
    shutdown: Shutdown,
) -> anyhow::Result<RunSummary> {
    let run_dir = prepared.run_dir.clone();
    let agg_dir = prepared.agg_dir.clone();
    let identity = prepared.identity.clone();
    let windows = prepared.windows.clone();
    let counters = Arc::new(SourceCounters::default());
    let telemetry = Arc::new(Telemetry::new(options.cluster_info(), counters.clone()));
    let settings = SourceSettings {
        brokers,
        client,
        group,
        topic: spec.topic.clone(),
        spec: spec.clone(),
        run_dir: run_dir.clone(),
        object: prepared.object.clone(),
        delta: delta.clone(),
        run_id: options.run_id.clone(),
        run_uid: identity.run_uid.clone(),
        starting: options.starting_offsets,
        available_now: options.available_now,
        flush_windows: options.flush_windows,
        idle_timeout: options.idle_timeout,
        roll_interval: options.roll_interval,
        roll_bytes: options.roll_bytes,
        commit_delay: options.commit_delay,
        sink_limits: SinkLimits::per_worker(options.max_open_files, options.sink_buffer_mib, cluster.workers),
        max_future: options.max_future,
        on_data_loss: options.on_data_loss,
        partition_discovery: options.partition_discovery,
        max_batch: 4096,
        consumer_options: options.consumer_options.clone(),
        metadata_timeout: options.connect_timeout,
        shutdown: shutdown.clone(),
    };
    let console = options.console;
    tracing::info!(
        topic = %spec.topic, brokers = %settings.brokers, run_dir = %run_dir.display(),
        aggregates = %agg_dir.display(), closed_through_ms = windows.closed_through_ms,
        workers = cluster.workers, processes = cluster.processes, process = cluster.process, "starting"
    );
    let observer =
        crate::observe::start(options.metrics_addr, cluster.process, telemetry.clone(), &settings.client)?;
    let started = Instant::now();
    let object = prepared.object.clone();
    let worker_counters = counters.clone();
    let fatal: Arc<std::sync::Mutex<Option<WorkerError>>> = Arc::new(std::sync::Mutex::new(None));
    let owner = AggregatesOwner {
        run_id: options.run_id.clone(),
        run_uid: identity.run_uid.clone(),
        topic: spec.topic.clone(),
    };
    let (allocators, comms) = crate::cluster::build(config.communication, options.peer_timeout, &shutdown)?;
    let guards = timely::execute::execute_from(
        allocators,
        comms,
        config.worker,
        move |worker| -> Result<(u64, u64), WorkerError> {
            let index = worker.index();
            let peers = worker.peers();
            crate::observe::busy::track(worker, telemetry.clone());
            let source =
                match PreparedSource::prepare(settings.clone(), index, peers, windows.closed_through_ms) {
                    Ok(source) => source,
                    Err(e) => {
                        // This worker never builds the dataflow, so the others would wait for it forever:
                        // tell them through the shared slot (checked in their step loop).
                        let e = WorkerError::from(e);
                        if let Ok(mut slot) = fatal.lock() {
                            slot.get_or_insert_with(|| e.clone());
                        }
                        return Err(e);
                    }
                };
            let probe = ProbeHandle::new();
            let error = Rc::new(RefCell::new(None));
            let report = Rc::new(RefCell::new(AggregatesReport::default()));
            let target = AggregatesTarget {
                dir: agg_dir.clone(),
                owner: owner.clone(),
                checkpoint: CheckpointDir::new(&settings.run_dir),
                key: spec.key_field().clone(),
                window_ms: spec.window_ms,
                restored: windows.clone(),
                is_writer: index == 0,
                object: object.clone(),
                delta: delta.clone(),
            };
            worker.dataflow::<u64, _, _>(|scope| {
                let deltas = kafka_source(
                    scope,
                    source,
                    probe.clone(),
                    worker_counters.clone(),
                    telemetry.clone(),
                    error.clone(),
                );
                let rows = deltas.window_average(windows.closed_through_ms, telemetry.clone());
                if console {
                    rows.clone().console(spec.trigger, spec.window_ms, spec.key_field().name.clone());
                }
                rows.write_aggregates(target, report.clone()).probe_with(&probe);
            });
            while !probe.done() {
                worker.step_or_park(Some(Duration::from_millis(100)));
                let local = error.borrow().clone().or_else(|| report.borrow().error.clone());
                if let Some(e) = local {
                    // Tell this process's other workers, so none waits for a frontier that will
                    // never move again; peers in other processes see the connection close.
                    if let Ok(mut slot) = fatal.lock() {
                        slot.get_or_insert_with(|| e.clone());
                    }
                    abandon_dataflows(worker);
                    return Err(e);
                }
                if fatal.lock().map(|s| s.is_some()).unwrap_or(true) {
                    abandon_dataflows(worker);
                    return Err(WorkerError::Follower);
                }
            }
            let r = report.borrow();
            Ok((r.rows, r.closed_through_ms))
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot start the timely cluster: {e}"))?;

    let joined = guards.join();
    drop(observer);
    let mut summary = RunSummary::default();
    let mut failures = Vec::new();
    for (i, result) in joined.into_iter().enumerate() {
        match result {
            Ok(Ok((rows, closed))) => {
                summary.window_rows += rows;
                summary.closed_through_ms = summary.closed_through_ms.max(closed);
            }
            Ok(Err(e)) => failures.push(Failure::Error(i, e)),
            Err(e) => failures.push(Failure::Panic(i, e.to_string())),
        }
    }
    if let Some(stopped) = run_stopped(&failures) {
        return Err(stopped.into());
    }
    summary.messages = counters.messages.load(Ordering::Relaxed);
    summary.rows = counters.rows.load(Ordering::Relaxed);
    summary.quarantined = counters.quarantined.load(Ordering::Relaxed);
    summary.late = counters.late.load(Ordering::Relaxed);
    summary.files = counters.files.load(Ordering::Relaxed);
    summary.commits = counters.commits.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// How one worker of this process ended, if not well.
#[derive(Debug)]
enum Failure {
    /// The worker returned an error (worker index, error).
    Error(usize, WorkerError),
    /// The worker panicked (worker index, what timely reported).
    Panic(usize, String),
}

impl Failure {
    fn is_follower(&self) -> bool {
        matches!(self, Failure::Error(_, e) if e.is_follower())
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Failure::Error(_, e) if e.is_permanent())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(i, e) => write!(f, "worker {i}: {e}"),
            Failure::Panic(i, e) => write!(f, "worker {i} panicked: {e}"),
        }
    }
}

/// The run's end from its workers' failures (`None`: there were none). It names the cause, not
/// the workers that only stopped because of it; it is permanent when a cause is.
fn run_stopped(failures: &[Failure]) -> Option<RunStopped> {
    if failures.is_empty() {
        return None;
    }
    let causes: Vec<&Failure> = failures.iter().filter(|f| !f.is_follower()).collect();
    let shown = if causes.is_empty() { failures.iter().collect() } else { causes };
    let permanent = shown.iter().any(|f| f.is_permanent());
    let message =
        format!("the run stopped: {}", shown.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "));
    Some(RunStopped { message, permanent })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SourceError;

    fn gone() -> WorkerError {
        SourceError::TopicGone { topic: "t".into(), brokers: "b".into(), partition: 1, offset: 2 }.into()
    }

    fn io() -> WorkerError {
        let source = std::io::Error::other("disk full");
        WorkerError::MarkWindows(Arc::new(crate::sink::SinkError::Io {
            doing: "write",
            path: "w.json".into(),
            source,
        }))
    }

    #[test]
    fn the_cause_is_named_and_followers_are_not() {
        let stopped = run_stopped(&[
            Failure::Error(0, WorkerError::Follower),
            Failure::Error(1, gone()),
            Failure::Error(2, WorkerError::Follower),
        ])
        .unwrap();
        assert!(stopped.permanent);
        assert!(
            stopped.message.starts_with("the run stopped: worker 1: topic `t` is gone"),
            "{}",
            stopped.message
        );
        assert!(!stopped.message.contains("another worker"), "{}", stopped.message);
    }

    #[test]
    fn a_permanent_cause_beside_another_still_exits_permanent() {
        let stopped = run_stopped(&[Failure::Error(0, io()), Failure::Error(1, gone())]).unwrap();
        assert!(stopped.permanent);
        assert!(
            stopped.message.contains("worker 0: writing windows.json: cannot write w.json"),
            "{}",
            stopped.message
        );
        let only_io = run_stopped(&[Failure::Error(0, io()), Failure::Panic(1, "boom".into())]).unwrap();
        assert!(!only_io.permanent);
        assert!(only_io.message.ends_with("; worker 1 panicked: boom"), "{}", only_io.message);
    }

    #[test]
    fn followers_alone_are_shown_rather_than_nothing() {
        let stopped = run_stopped(&[Failure::Error(0, WorkerError::Follower)]).unwrap();
        assert_eq!(stopped.message, "the run stopped: worker 0: stopped because another worker failed");
        assert!(!stopped.permanent);
        assert!(run_stopped(&[]).is_none());
    }
}
