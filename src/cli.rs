//! Command-line definitions (clap only). What a flag means once checked lives in
//! [`crate::options`]; `streamlake run`'s flags become a [`RunRequest`] here, and nothing but
//! `commands.rs` reads this module.
//!
//! Every option that the original docker-compose platform configured through the environment keeps
//! that variable name here (`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_TOPIC`, `MSGS_PER_SEC`, `OUTPUT_PATH`,
//! `RUN_ID`), so the same `.env` file drives both. A flag always wins over its variable.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::kafka::producer::{parse_rate, Compression, Rate};
use crate::kafka::settings::{parse_key_value, ClientSettings, SettingsError};
use crate::options::{parse_consumer_option, RunRequest};
use crate::util::duration::parse_duration;

/// streamlake: Kafka → event-time window averages → exactly-once Parquet, on Timely Dataflow.
///
/// One program replaces the Kafka producer, the Spark Structured Streaming job and the Airflow
/// validation DAG of the original platform. Start a local broker with `scripts/kafka.sh start`,
/// create the topic with `streamlake topic create`, and feed it with `streamlake produce`.
#[derive(Debug, Parser)]
#[command(name = "streamlake", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// More log output on stderr (-v debug, -vv trace). `RUST_LOG` overrides this.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: boxing `RunArgs` would only add noise where the commands use it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the Kafka topic (the original platform's `kafka-init` service).
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Send synthetic events `{id, ts, value, source}` to the topic (the original producer).
    Produce(ProduceArgs),
    /// Run the streaming job: Kafka → window averages (console, Parquet) + raw Parquet, exactly once
    /// (the original Spark job). Multi-worker and multi-process with timely's -w/-n/-p/-h flags.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Read the Parquet output back (the original Airflow DAG): first 10 rows, count and mean of `value`
    /// per `id`, total rows; with --audit, check exactly-once delivery from the files alone.
    ///
    /// Exit codes: 0 ok (also when the path or its files do not exist yet), 1 a file could not be read,
    /// 2 the `id` or `value` column is missing, 3 the audit found a problem.
    Validate(crate::validate::ValidateArgs),
    /// Merge the small files of a run's Delta tables (--table-format delta) into large ones, as one
    /// Delta transaction per table (remove + add, OPTIMIZE): safe while the job runs, readers see
    /// the old files or the new ones. The replaced files stay until `vacuum` deletes them.
    Compact(MaintainArgs),
    /// Delete the files a run's Delta tables no longer hold (those `compact` replaced) once they
    /// were removed more than --retain ago. Readers that time-travel to a version older than
    /// --retain lose those files.
    Vacuum(MaintainArgs),
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// The job's --output (a folder or s3://bucket/prefix): both tables of the run are done, the
    /// raw events (OUTPUT_PATH/run_<RUN_ID>) and the window aggregates beside it.
    #[arg(long, env = "OUTPUT_PATH", default_value = "data/output/parquet")]
    pub output: std::path::PathBuf,

    /// The run whose tables to maintain.
    #[arg(long, env = "RUN_ID", default_value = "local_run")]
    pub run_id: String,

    /// compact: merge files smaller than this into files of about this size (MiB).
    #[arg(long, default_value_t = 128, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub target_size_mib: u64,

    /// vacuum: keep removed files for this long (Delta's default: 7d), so readers of older
    /// versions and running queries still find them.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub retain: Duration,

    /// vacuum: list what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print help (`-h` is timely's hostfile flag here).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,

    /// Kafka bootstrap servers (see `streamlake topic create --help`).
    #[arg(long = "brokers", short = 'b', env = "KAFKA_BOOTSTRAP_SERVERS", value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,

    /// Kafka client settings in the format of Kafka's own tools (`--command-config`): one
    /// librdkafka `key=value` per line, `#` or `!` comments, e.g. security.protocol=SASL_SSL,
    /// sasl.mechanism=SCRAM-SHA-512, sasl.username, sasl.password, ssl.ca.location. Used by every
    /// client of the command. Secret values are never logged. A `bootstrap.servers` line is used
    /// when neither --brokers nor KAFKA_BOOTSTRAP_SERVERS is given.
    #[arg(long = "kafka-config", env = "KAFKA_CONFIG_FILE", value_name = "FILE")]
    pub kafka_config: Option<std::path::PathBuf>,

    /// One librdkafka client setting, KEY=VALUE, over those of --kafka-config (repeatable), e.g.
    /// `--kafka-option ssl.ca.location=/etc/kafka/ca.pem`. Settings exactly-once depends on
    /// (group.id, enable.auto.commit, enable.auto.offset.store, auto.offset.reset,
    /// isolation.level, enable.idempotence, acks, transactional.id) are refused here and in the file.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_options: Vec<(String, String)>,

    /// Consumer group to which the checkpoint's offsets are also committed after each commit, so
    /// Kafka's lag tools (`kafka-consumer-groups --describe --group ...`) show the job's lag.
    /// Monitoring only: the checkpoint stays the source of truth and a resume never reads them.
    /// Default: `streamlake-<RUN_ID>`.
    #[arg(long = "consumer-group", env = "STREAMLAKE_CONSUMER_GROUP", value_name = "NAME")]
    pub consumer_group: Option<String>,

    /// Topic to read; overrides the dataflow file's `topic`.
    #[arg(long, env = "KAFKA_TOPIC")]
    pub topic: Option<String>,

    /// Pipeline definition (schema, key, window, watermark, trigger). Default: the original
    /// platform's pipeline, `dataflows/events.toml`, built in.
    #[arg(long, value_name = "FILE")]
    pub dataflow: Option<std::path::PathBuf>,

    /// Folder of the raw dataset; the run writes `OUTPUT_PATH/run_<RUN_ID>/id=<k>/part-*.parquet`
    /// and final window rows to `OUTPUT_PATH/../aggregates/run_<RUN_ID>/`. A path or a
    /// `file:///abs/path` URL on a local or mounted file system, or an S3-compatible object store,
    /// `s3://bucket/prefix`, with credentials and endpoint from the standard AWS_* variables
    /// (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true for plain http; see docs/multi-host.md). Other URLs
    /// are refused before anything is written.
    #[arg(long, env = "OUTPUT_PATH", default_value = "data/output/parquet")]
    pub output: std::path::PathBuf,

    /// Run identity. The same RUN_ID resumes from its checkpoint; a new one starts a new dataset.
    #[arg(long, env = "RUN_ID", default_value = "local_run")]
    pub run_id: String,

    /// With an s3:// --output: how long this process's hold on the run (its lease in the bucket)
    /// lasts without renewal [default: 30s]. It is renewed every sixth of it; commits pause when
    /// it has not been renewed for half of it (the store does not answer), and a restart after a
    /// crash waits for it to expire. Shorter: faster restarts after a crash, less room for clock
    /// skew between hosts (keep it well under half). At least 3s.
    #[arg(long, value_name = "DURATION", env = "STREAMLAKE_OBJECT_LEASE", value_parser = parse_duration)]
    pub object_lease: Option<Duration>,

    /// With an s3:// --output: accept a store that ignores conditional create (If-None-Match: *),
    /// which is otherwise refused at start. On such a store nothing keeps two processes started
    /// by mistake on one RUN_ID and -p from both committing, so use it only when one process is
    /// sure to write each run.
    #[arg(long)]
    pub single_writer: bool,

    /// How the raw events and the window aggregates are stored [default: the dataflow's
    /// `sink.table_format`, else parquet]. `parquet`: Parquet files in `id=<k>/` folders,
    /// exactly once for readers of streamlake's `_checkpoint` (validate, the seed's DAG).
    /// `delta`: the same files, each dataset a Delta Lake table (`_delta_log/`): every Delta
    /// reader (Spark, DuckDB, Polars, the `deltalake` package) sees only committed rows, with
    /// snapshot isolation and time travel. A run keeps the format it started with.
    #[arg(long, value_enum, value_name = "FORMAT", env = "STREAMLAKE_TABLE_FORMAT")]
    pub table_format: Option<crate::spec::TableFormat>,

    /// With --table-format delta: write a Delta checkpoint (the table's state in one Parquet
    /// file) every N commits, so a reader's cost does not grow with the job's age. Each
    /// process commits once per --roll-interval (its workers share the commit), so the default
    /// of 100 is about every 100 / processes rolls.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub delta_checkpoint_interval: u64,

    /// Worker threads per process (timely's -w).
    #[arg(short = 'w', long = "workers", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,

    /// Number of processes in the cluster (timely's -n).
    #[arg(short = 'n', long = "processes", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub processes: u16,

    /// Index of this process, 0..n-1 (timely's -p).
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub process: u16,

    /// File with one `host:port` line per process, in process order (timely's -h). Without it,
    /// processes listen on localhost:2101, 2102, ...
    #[arg(short = 'h', long = "hostfile", value_name = "FILE")]
    pub hostfile: Option<std::path::PathBuf>,

    /// Where to start partitions that have no checkpoint yet (the original uses latest).
    #[arg(long, value_enum, default_value = "latest")]
    pub starting_offsets: crate::ingest::StartingOffsets,

    /// Process everything up to the end offsets seen at start, emit the windows the watermark
    /// has passed, commit and exit 0 (Spark's Trigger.AvailableNow). Open windows stay in the
    /// checkpoint for the next run.
    #[arg(long)]
    pub available_now: bool,

    /// With --available-now: treat the end of input as the end of event time, closing every open
    /// window; later records for those windows count as late.
    #[arg(long, requires = "available_now")]
    pub flush_windows: bool,

    /// A partition with no record for this long stops holding the watermark back (as Flink's
    /// withIdleness); when all of a worker's partitions are idle, event time follows the clock.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Commit (close files, write the checkpoint) at every multiple of this on the wall clock,
    /// so every worker of every process rolls at the same moment (with --table-format delta the
    /// workers of a process then share one Delta commit per roll). A row is visible at most this
    /// long after it is read. Shorter: fresher rows, more and smaller files (about one file per
    /// partition and key folder per roll). The default matches the original Spark job's 10 s
    /// trigger, so the file count is the seed's and rows are visible sooner; BENCHMARKS.md
    /// ("Defaults") has files per hour and bytes per file at 5 and 100,000 events/s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub roll_interval: Duration,

    /// Commit when a partition has taken in this many MiB of payload since its last commit.
    #[arg(long, default_value_t = 128, value_name = "MIB")]
    pub roll_size_mib: u64,

    /// Debug builds with the `crash-points` feature only: every commit waits this long before
    /// making its files durable, as a stalled disk would. Commits run beside the reading
    /// (`ingest::commit_stage`), so reading goes on meanwhile; scripts/bench/slow_commit.sh
    /// measures that.
    #[cfg(feature = "crash-points")]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub commit_delay: Option<Duration>,

    /// Raw Parquet files the process keeps open at once, split evenly among its workers. Folders
    /// (keys) beyond it are buffered in memory and written one file at a time at commit, so a run
    /// with 100,000 keys needs no more descriptors than one with 5. Must fit `ulimit -n` with
    /// about 64 to spare (checked at start).
    #[arg(long, default_value_t = crate::sink::raw::budget::DEFAULT_MAX_OPEN_FILES, value_name = "N")]
    pub max_open_files: usize,

    /// MiB of rows the process's sink holds in memory (buffered rows and open files' unwritten row
    /// groups), split evenly among its workers. When a worker's share is full it commits early, as
    /// --roll-size does: a larger buffer makes fewer, larger files when keys are many.
    #[arg(long, default_value_t = crate::sink::raw::budget::DEFAULT_BUFFER_MIB, value_name = "MIB")]
    pub sink_buffer_mib: usize,

    /// Events dated further than this past the wall clock are quarantined, so one bad clock cannot
    /// drag the watermark forward and make every later event late.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub max_future: Duration,

    /// What to do when the checkpoint resumes at offsets the broker no longer has (retention
    /// deleted them, or the topic was recreated): `fail` stops before reading anything and names
    /// the partition and the missing range; `skip` continues from the oldest offset still there
    /// and records the skipped range in the checkpoint and in `validate --audit`.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_data_loss: crate::ingest::OnDataLoss,

    /// How often to look for partitions added to the topic while running; new ones are read from
    /// their earliest offset and join the watermark. `0s` turns it off.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub partition_discovery: Duration,

    /// How long to wait for the broker when starting before giving up with an error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// With -n > 1: how long to wait for the other processes of the cluster to connect before
    /// giving up with an error naming the missing ones.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub peer_timeout: Duration,

    /// Console and progress trigger; overrides the dataflow file's `trigger`.
    #[arg(long, value_parser = parse_duration)]
    pub trigger: Option<Duration>,

    /// A librdkafka consumer setting, KEY=VALUE, applied over streamlake's own (repeatable), as
    /// Spark's `kafka.`-prefixed options. The defaults bound the client's prefetch to a few MiB
    /// per partition; a broker far away may read faster with e.g.
    /// `--consumer-option max.partition.fetch.bytes=4194304 --consumer-option fetch.max.bytes=16777216`
    /// at the cost of memory. Settings exactly-once depends on (group.id, enable.auto.commit,
    /// enable.auto.offset.store, auto.offset.reset, isolation.level) cannot be changed.
    #[arg(long = "consumer-option", value_name = "KEY=VALUE", value_parser = parse_consumer_option)]
    pub consumer_options: Vec<(String, String)>,

    /// Do not print the console table.
    #[arg(long)]
    pub no_console: bool,

    /// Serve Prometheus metrics (`/metrics`) and the status page (`/`) on HOST:PORT; `off`
    /// disables them, port 0 picks a free port (the address is logged). Default: 127.0.0.1:9464
    /// plus the process index (-p); if that port is taken, the job runs without them.
    #[arg(long, env = "STREAMLAKE_METRICS_ADDR", value_name = "HOST:PORT|off",
          value_parser = crate::observe::server::parse_metrics_addr)]
    pub metrics_addr: Option<crate::observe::MetricsAddr>,
}

/// How to reach Kafka and which topic to use; shared by every command that talks to the broker.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma separated. When neither this flag nor the variable is set,
    /// the address of the local broker started by `scripts/kafka.sh` (`.kafka/address`) is used,
    /// then 127.0.0.1:9092.
    #[arg(long = "brokers", short = 'b', env = "KAFKA_BOOTSTRAP_SERVERS", value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,

    /// Topic to read or write.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "events")]
    pub topic: String,

    /// Kafka client settings in the format of Kafka's own tools (`--command-config`): one
    /// librdkafka `key=value` per line, `#` or `!` comments, e.g. security.protocol=SASL_SSL,
    /// sasl.mechanism=SCRAM-SHA-512, sasl.username, sasl.password, ssl.ca.location. Used by every
    /// client of the command. Secret values are never logged. A `bootstrap.servers` line is used
    /// when neither --brokers nor KAFKA_BOOTSTRAP_SERVERS is given.
    #[arg(long = "kafka-config", env = "KAFKA_CONFIG_FILE", value_name = "FILE")]
    pub kafka_config: Option<std::path::PathBuf>,

    /// One librdkafka client setting, KEY=VALUE, over those of --kafka-config (repeatable), e.g.
    /// `--kafka-option ssl.ca.location=/etc/kafka/ca.pem`. Settings exactly-once depends on
    /// (group.id, enable.auto.commit, enable.auto.offset.store, auto.offset.reset,
    /// isolation.level, enable.idempotence, acks, transactional.id) are refused here and in the file.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_options: Vec<(String, String)>,
}

impl KafkaArgs {
    /// The validated client settings of these flags.
    pub fn client_settings(&self) -> Result<ClientSettings, SettingsError> {
        ClientSettings::from_cli(self.brokers.as_deref(), self.kafka_config.as_deref(), &self.kafka_options)
    }
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create the topic if it does not exist. Succeeds when it exists with the same partition
    /// count, fails when the count differs. Fails within --timeout if no broker answers.
    Create(TopicCreateArgs),
}

#[derive(Debug, Args)]
pub struct TopicCreateArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Number of partitions (the original platform uses 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,

    /// Replication factor (1 on a single-broker cluster).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replication_factor: i32,

    /// How long to wait for the broker before giving up, e.g. `30s`, `2m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Events per second; `max` (or 0) sends flat out, for loading benchmark topics.
    #[arg(long, env = "MSGS_PER_SEC", default_value = "5", value_parser = parse_rate)]
    pub rate: Rate,

    /// Pacing tick: each tick sends rate × tick events, then sleeps to the next tick. The
    /// original loop sends a whole second's events at once (`1s`); a short tick (e.g. `10ms`)
    /// spreads them evenly, which latency measurements need. Ignored with `--rate max`.
    #[arg(long, default_value = "1s", value_parser = parse_tick)]
    pub tick: Duration,

    /// Stop after this many events (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Number of distinct ids; events get ids 0..K-1 uniformly at random.
    #[arg(long = "ids", value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub ids: u32,

    /// Seed for the random ids and values, for reproducible data (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,

    /// How long to wait for the broker at start and for the final flush, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Compression of the record batches (librdkafka's compression.type). `run` reads every one.
    #[arg(long, value_enum, default_value = "lz4")]
    pub compression: Compression,
}

impl From<RunArgs> for RunRequest {
    /// The flags as given, for [`crate::options::RunOptions::new`] to check.
    fn from(a: RunArgs) -> Self {
        #[cfg(feature = "crash-points")]
        let commit_delay = a.commit_delay.unwrap_or_default();
        #[cfg(not(feature = "crash-points"))]
        let commit_delay = Duration::ZERO;
        RunRequest {
            commit_delay,
            brokers: a.brokers,
            kafka_config: a.kafka_config,
            kafka_options: a.kafka_options,
            consumer_group: a.consumer_group,
            topic: a.topic,
            dataflow: a.dataflow,
            output: a.output,
            run_id: a.run_id,
            object_lease: a.object_lease,
            table_format: a.table_format,
            delta_checkpoint_interval: a.delta_checkpoint_interval,
            single_writer: a.single_writer,
            workers: a.workers,
            processes: a.processes,
            process: a.process,
            hostfile: a.hostfile,
            starting_offsets: a.starting_offsets,
            available_now: a.available_now,
            flush_windows: a.flush_windows,
            idle_timeout: a.idle_timeout,
            roll_interval: a.roll_interval,
            roll_size_mib: a.roll_size_mib,
            max_open_files: a.max_open_files,
            sink_buffer_mib: a.sink_buffer_mib,
            max_future: a.max_future,
            on_data_loss: a.on_data_loss,
            partition_discovery: a.partition_discovery,
            connect_timeout: a.connect_timeout,
            peer_timeout: a.peer_timeout,
            trigger: a.trigger,
            consumer_options: a.consumer_options,
            no_console: a.no_console,
            metrics_addr: a.metrics_addr,
        }
    }
}

/// A pacing tick between 1 ms and 1 s.
pub fn parse_tick(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(1) {
        return Err(format!("`{s}` is not a usable tick: give a duration from 1ms to 1s, e.g. 10ms"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn consumer_options() {
        assert_eq!(
            parse_consumer_option("fetch.max.bytes = 1024").unwrap(),
            ("fetch.max.bytes".to_string(), "1024".to_string())
        );
        assert!(parse_consumer_option("fetch.max.bytes").unwrap_err().to_string().contains("KEY=VALUE"));
        assert!(parse_consumer_option("=3").is_err());
        assert!(parse_consumer_option("enable.auto.commit=true")
            .unwrap_err()
            .to_string()
            .contains("cannot be overridden"));
    }

    #[test]
    fn ticks() {
        assert_eq!(parse_tick("10ms").unwrap(), Duration::from_millis(10));
        assert!(parse_tick("0s").is_err());
        assert!(parse_tick("2s").unwrap_err().contains("1ms to 1s"));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("max").unwrap(), Rate::Max);
        assert_eq!(parse_rate("0").unwrap(), Rate::Max);
        assert_eq!(parse_rate("5").unwrap(), Rate::PerSecond(5));
        assert!(parse_rate("-1").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
