//! The validated settings of `streamlake run`, built once before anything is created.
//!
//! Each setting comes from the first of these that gives it: a command-line flag, its environment
//! variable (`KAFKA_TOPIC`, `RUN_ID`, ...), the dataflow file (`topic`, `trigger`), then the
//! default. clap merges the first two and the defaults of the flags into a [`RunRequest`] (the
//! conversion lives in `cli.rs`, so this module does not depend on the command line);
//! [`RunOptions::new`] adds the dataflow file and checks every value in one place, so that a
//! misconfiguration fails with one clear message before the job touches Kafka or the disk.
//!
//! The job, the operators and the observer read [`RunOptions`] and never the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;
use crate::ingest::{OnDataLoss, StartingOffsets};
use crate::kafka::settings::{parse_key_value, ClientSettings, SettingsError, RESERVED_CONSUMER_OPTIONS};
use crate::observe::telemetry::ClusterInfo;
use crate::observe::MetricsAddr;
use crate::spec::{Spec, EVENTS_TOML};
use crate::storage::Location;

/// The shortest `--object-lease`: renewed every sixth of it, a lease must outlast a few slow
/// requests to the store.
const MIN_OBJECT_LEASE: Duration = Duration::from_secs(3);

/// What `streamlake run` was asked to do, as given: each value is a flag, its environment variable
/// or the flag's default, not yet checked against the others or against the dataflow file.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub brokers: Option<String>,
    pub kafka_config: Option<PathBuf>,
    pub kafka_options: Vec<(String, String)>,
    pub consumer_group: Option<String>,
    /// Overrides the dataflow file's `topic`.
    pub topic: Option<String>,
    /// `None`: the built-in `dataflows/events.toml`.
    pub dataflow: Option<PathBuf>,
    pub output: PathBuf,
    pub run_id: String,
    /// `--object-lease`; `None`: the default.
    pub object_lease: Option<Duration>,
    pub single_writer: bool,
    /// `--table-format`; `None`: the dataflow's `sink.table_format`.
    pub table_format: Option<crate::spec::TableFormat>,
    pub delta_checkpoint_interval: u64,
    pub workers: u16,
    pub processes: u16,
    pub process: u16,
    pub hostfile: Option<PathBuf>,
    pub starting_offsets: StartingOffsets,
    pub available_now: bool,
    pub flush_windows: bool,
    pub idle_timeout: Duration,
    pub roll_interval: Duration,
    pub roll_size_mib: u64,
    /// `--commit-delay` (crash-points builds only; zero otherwise).
    pub commit_delay: Duration,
    pub max_open_files: usize,
    pub sink_buffer_mib: usize,
    pub max_future: Duration,
    pub on_data_loss: OnDataLoss,
    pub partition_discovery: Duration,
    pub connect_timeout: Duration,
    pub peer_timeout: Duration,
    /// Overrides the dataflow file's `trigger`.
    pub trigger: Option<Duration>,
    pub consumer_options: Vec<(String, String)>,
    pub no_console: bool,
    pub metrics_addr: Option<MetricsAddr>,
}

/// A setting that cannot work; each message says which flag or file is wrong and what to give.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The dataflow file could not be read or is not valid.
    #[error(transparent)]
    Dataflow(#[from] ConfigError),
    /// `--brokers`, `--kafka-config` or `--kafka-option`.
    #[error(transparent)]
    Kafka(#[from] SettingsError),
    #[error("-p {process} is out of range for -n {processes}: process indexes run from 0 to {}", processes - 1)]
    ProcessOutOfRange { process: usize, processes: usize },
    // The I/O error is part of the message (as it always was), not a separate cause, so that
    // `Error: {:#}` does not print it twice.
    #[error("cannot read hostfile {}: {error}", path.display())]
    ReadHostfile { path: PathBuf, error: std::io::Error },
    #[error(
        "hostfile {} lists {listed} host(s) but -n is {processes}: give one `host:port` line per process",
        path.display()
    )]
    TooFewHosts { path: PathBuf, listed: usize, processes: usize },
    #[error("hostfile {}: `{entry}` is not `host:port`", path.display())]
    BadHost { path: PathBuf, entry: String },
    /// `--output` is not a location streamlake can write to.
    #[error(transparent)]
    Output(#[from] crate::storage::LocationError),
    #[error("RUN_ID `{0}` must be a non-empty name without slashes")]
    RunId(String),
    #[error(
        "--max-open-files {max_open_files} does not fit the process's open-file limit (`ulimit -n` {limit}): \
         the sink may keep {max_open_files} files open and the process needs about {reserve} more (Kafka \
         sockets, checkpoint, logs). Give --max-open-files {fits} or less, or raise the limit (`ulimit -n`)"
    )]
    FileLimit { max_open_files: usize, limit: u64, reserve: u64, fits: u64 },
    #[error("--max-open-files must be at least 1")]
    ZeroMaxOpenFiles,
    #[error("--sink-buffer-mib must be at least 1")]
    ZeroSinkBuffer,
    #[error(
        "{flag} applies to an object-store --output (s3://bucket/prefix) only; --output {output} is a local \
         folder, where a file lock keeps a second writer off the run. Remove {flag}"
    )]
    ObjectStoreOnly { flag: &'static str, output: String },
    #[error(
        "--object-lease {given:?} is too short: it is renewed every sixth of it, and a request to the store can \
         take seconds. Give at least 3s (the default is 30s)"
    )]
    LeaseTooShort { given: Duration },
    #[error(
        "--idle-timeout must be positive: with 0 every partition counts as idle at once and the watermark \
         would follow the wall clock, dropping replayed data as late"
    )]
    ZeroIdleTimeout,
}

/// A `--consumer-option` that cannot be used; checked as the flag is parsed, so clap names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerOptionError {
    #[error("`{0}` is not KEY=VALUE, e.g. max.partition.fetch.bytes=4194304")]
    NotKeyValue(String),
    #[error(
        "`{0}` is set by streamlake and cannot be overridden: the checkpoint, not the consumer, \
         tracks offsets (exactly once depends on it)"
    )]
    Reserved(String),
}

/// `KEY=VALUE` for `--consumer-option`; the settings exactly-once depends on are refused.
pub fn parse_consumer_option(s: &str) -> Result<(String, String), ConsumerOptionError> {
    let (key, value) = parse_key_value(s).map_err(|_| ConsumerOptionError::NotKeyValue(s.to_string()))?;
    if RESERVED_CONSUMER_OPTIONS.contains(&key.as_str()) {
        return Err(ConsumerOptionError::Reserved(key));
    }
    Ok((key, value))
}

/// Refuses a `--max-open-files` that the process's open-file limit (`ulimit -n`) cannot hold
/// beside the descriptors the job needs anyway, before anything is opened: the run would
/// otherwise fail mid-commit with `Too many open files`.
fn check_file_limit(max_open_files: usize, limit: Option<u64>) -> Result<(), OptionsError> {
    use crate::sink::raw::budget::FD_RESERVE;
    if max_open_files == 0 {
        return Err(OptionsError::ZeroMaxOpenFiles);
    }
    match limit {
        Some(limit) if max_open_files as u64 + FD_RESERVE > limit => Err(OptionsError::FileLimit {
            max_open_files,
            limit,
            reserve: FD_RESERVE,
            fits: limit.saturating_sub(FD_RESERVE),
        }),
        _ => Ok(()),
    }
}

/// Where this process sits in the timely cluster (timely's -w, -n, -p, -h), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Worker threads per process.
    pub workers: usize,
    pub processes: usize,
    /// This process's index, below `processes`.
    pub process: usize,
    /// One `host:port` per process, in process order; empty for a single process.
    pub addresses: Vec<String>,
}

impl ClusterOptions {
    /// Checks -p against -n and reads the hostfile (default: localhost:2101, 2102, ...).
    pub fn new(
        workers: u16,
        processes: u16,
        process: u16,
        hostfile: Option<&Path>,
    ) -> Result<Self, OptionsError> {
        let (workers, processes, process) = (workers as usize, processes as usize, process as usize);
        if process >= processes {
            return Err(OptionsError::ProcessOutOfRange { process, processes });
        }
        let addresses = if processes == 1 {
            Vec::new()
        } else {
            match hostfile {
                Some(path) => read_hostfile(path, processes)?,
                None => (0..processes).map(|i| format!("localhost:{}", 2101 + i)).collect(),
            }
        };
        Ok(ClusterOptions { workers, processes, process, addresses })
    }
}

fn read_hostfile(path: &Path, processes: usize) -> Result<Vec<String>, OptionsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| OptionsError::ReadHostfile { path: path.to_path_buf(), error })?;
    let hosts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if hosts.len() < processes {
        return Err(OptionsError::TooFewHosts { path: path.to_path_buf(), listed: hosts.len(), processes });
    }
    if let Some(bad) =
        hosts.iter().find(|h| h.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none())
    {
        return Err(OptionsError::BadHost { path: path.to_path_buf(), entry: bad.clone() });
    }
    Ok(hosts[..processes].to_vec())
}

/// The dataflow file (or the built-in one) with the command line's `topic` and `trigger` over it.
pub fn load_spec(
    dataflow: Option<&Path>,
    topic: Option<&str>,
    trigger: Option<Duration>,
) -> Result<Spec, ConfigError> {
    let mut spec = match dataflow {
        Some(path) => Spec::load(path)?,
        None => Spec::parse(EVENTS_TOML, Path::new("dataflows/events.toml"))?,
    };
    if let Some(topic) = topic {
        spec.topic = topic.to_string();
    }
    if let Some(trigger) = trigger {
        spec.trigger = trigger;
    }
    Ok(spec)
}

/// Everything `streamlake run` needs to know, checked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The pipeline, with `--topic` and `--trigger` applied.
    pub spec: Spec,
    /// A non-empty name without slashes: it names the folder `run_<RUN_ID>`.
    pub run_id: String,
    /// The raw dataset root (`OUTPUT_PATH`).
    pub output: PathBuf,
    /// `--output s3://…`: the object-store location (`output` is then the URL, for display).
    pub object_output: Option<crate::storage::ObjectUrl>,
    /// How long a process's lease on an object-store run lasts without renewal.
    pub object_lease: Duration,
    /// Accept an object store without conditional create.
    pub single_writer: bool,
    /// Commits between two Delta checkpoints (with `spec.table_format` delta).
    pub delta_checkpoint_interval: u64,
    pub cluster: ClusterOptions,
    /// Brokers and librdkafka settings of every client.
    pub client: ClientSettings,
    /// The monitoring consumer group (default `streamlake-<RUN_ID>`).
    pub consumer_group: String,
    pub consumer_options: Vec<(String, String)>,
    pub starting_offsets: StartingOffsets,
    pub available_now: bool,
    pub flush_windows: bool,
    /// Positive.
    pub idle_timeout: Duration,
    pub roll_interval: Duration,
    pub roll_bytes: u64,
    /// A debug stall before every commit's durability steps (`--commit-delay`).
    pub commit_delay: Duration,
    /// Raw files the process keeps open at once (split among its workers).
    pub max_open_files: usize,
    /// MiB of rows the process's sink holds in memory before it commits (split among workers).
    pub sink_buffer_mib: usize,
    pub max_future: Duration,
    pub on_data_loss: OnDataLoss,
    pub partition_discovery: Duration,
    pub connect_timeout: Duration,
    pub peer_timeout: Duration,
    /// Print the console table.
    pub console: bool,
    pub metrics_addr: Option<MetricsAddr>,
}

impl RunOptions {
    /// Checks a request; the checks run in the order the job used to make them, so the first
    /// problem reported is the same one as before.
    pub fn new(r: RunRequest) -> Result<Self, OptionsError> {
        let mut spec = load_spec(r.dataflow.as_deref(), r.topic.as_deref(), r.trigger)?;
        if let Some(format) = r.table_format {
            spec.table_format = format;
        }
        const OUTPUT: &str = "--output (OUTPUT_PATH)";
        let (output, object_output) = match Location::parse(r.output.as_os_str(), OUTPUT)? {
            Location::Local(path) => (path, None),
            Location::S3(url) => (PathBuf::from(&url.given), Some(url)),
        };
        if object_output.is_none() {
            let output = output.display().to_string();
            if r.single_writer {
                return Err(OptionsError::ObjectStoreOnly { flag: "--single-writer", output });
            }
            if r.object_lease.is_some() {
                return Err(OptionsError::ObjectStoreOnly { flag: "--object-lease", output });
            }
        }
        let object_lease = r.object_lease.unwrap_or(crate::sink::output::OBJECT_LEASE);
        if object_lease < MIN_OBJECT_LEASE {
            return Err(OptionsError::LeaseTooShort { given: object_lease });
        }
        let cluster = ClusterOptions::new(r.workers, r.processes, r.process, r.hostfile.as_deref())?;
        if r.run_id.is_empty() || r.run_id.contains(['/', '\\']) {
            return Err(OptionsError::RunId(r.run_id));
        }
        if r.idle_timeout.is_zero() {
            return Err(OptionsError::ZeroIdleTimeout);
        }
        check_file_limit(r.max_open_files, crate::util::fs::open_file_limit())?;
        if r.sink_buffer_mib == 0 {
            return Err(OptionsError::ZeroSinkBuffer);
        }
        let client =
            ClientSettings::from_cli(r.brokers.as_deref(), r.kafka_config.as_deref(), &r.kafka_options)?;
        let consumer_group = r.consumer_group.unwrap_or_else(|| format!("streamlake-{}", r.run_id));
        Ok(RunOptions {
            spec,
            run_id: r.run_id,
            output,
            object_output,
            object_lease,
            single_writer: r.single_writer,
            delta_checkpoint_interval: r.delta_checkpoint_interval,
            cluster,
            client,
            consumer_group,
            consumer_options: r.consumer_options,
            starting_offsets: r.starting_offsets,
            available_now: r.available_now,
            flush_windows: r.flush_windows,
            idle_timeout: r.idle_timeout,
            roll_interval: r.roll_interval,
            roll_bytes: r.roll_size_mib.saturating_mul(1 << 20),
            commit_delay: r.commit_delay,
            max_open_files: r.max_open_files,
            sink_buffer_mib: r.sink_buffer_mib,
            max_future: r.max_future,
            on_data_loss: r.on_data_loss,
            partition_discovery: r.partition_discovery,
            connect_timeout: r.connect_timeout,
            peer_timeout: r.peer_timeout,
            console: !r.no_console,
            metrics_addr: r.metrics_addr,
        })
    }

    /// The facts of this run that the observer shows (status page, metrics, progress lines).
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            run_id: self.run_id.clone(),
            topic: self.spec.topic.clone(),
            output: self.output.clone(),
            process: self.cluster.process,
            processes: self.cluster.processes,
            workers: self.cluster.workers,
            window_ms: self.spec.window_ms,
            watermark_delay_ms: self.spec.watermark_ms,
            idle_timeout: self.idle_timeout,
            trigger: self.spec.trigger,
            available_now: self.available_now,
        }
    }
}

#[cfg(test)]
mod tests;
