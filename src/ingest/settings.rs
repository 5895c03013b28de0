//! What a Kafka source is told: the validated settings of `streamlake run` that concern reading,
//! restoring and committing partitions, shared by the workers of a process.

use crate::sink::raw::SinkLimits;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::kafka::client::ClientSettings;
use crate::signals::Shutdown;
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
    /// `--output s3://…`: where commits go; `run_dir` is then this process's local spool.
    pub object: Option<std::sync::Arc<crate::sink::object::ObjectTarget>>,
    /// `--table-format delta`: the run's tables, opened once per process.
    pub delta: Option<std::sync::Arc<crate::sink::delta::DeltaTables>>,
    pub run_id: String,
    /// The run folder's `run_uid` (see `sink::identity`).
    pub run_uid: String,
    pub starting: StartingOffsets,
    pub available_now: bool,
    pub flush_windows: bool,
    pub idle_timeout: Duration,
    pub roll_interval: Duration,
    pub roll_bytes: u64,
    /// `--commit-delay`: a stall before each commit's durability steps (debug builds only).
    pub commit_delay: Duration,
    /// This worker's share of `--max-open-files` and `--sink-buffer-mib`.
    pub sink_limits: SinkLimits,
    pub max_future: Duration,
    pub on_data_loss: OnDataLoss,
    /// How often to look for added partitions (zero: never).
    pub partition_discovery: Duration,
    pub max_batch: usize,
    /// `--consumer-option` settings, applied over the defaults of [`super::consumer`].
    pub consumer_options: Vec<(String, String)>,
    pub metadata_timeout: Duration,
    pub shutdown: Shutdown,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::EVENTS_TOML;

    /// Settings of the built-in events pipeline, for the unit tests of `ingest`.
    pub(crate) fn settings() -> SourceSettings {
        let spec = Spec::parse(EVENTS_TOML, std::path::Path::new("dataflows/events.toml")).unwrap();
        SourceSettings {
            brokers: "127.0.0.1:9".into(),
            client: ClientSettings { brokers: "127.0.0.1:9".into(), options: Vec::new() },
            group: "streamlake-r".into(),
            topic: spec.topic.clone(),
            spec: Arc::new(spec),
            run_dir: PathBuf::from("/nonexistent"),
            object: None,
            delta: None,
            run_id: "r".into(),
            run_uid: "u".into(),
            starting: StartingOffsets::Earliest,
            available_now: false,
            flush_windows: false,
            idle_timeout: Duration::from_secs(30),
            roll_interval: Duration::from_secs(5),
            roll_bytes: 1 << 30,
            commit_delay: Duration::ZERO,
            sink_limits: SinkLimits::default(),
            max_future: Duration::from_secs(3600),
            on_data_loss: OnDataLoss::Fail,
            partition_discovery: Duration::from_secs(30),
            max_batch: 4096,
            consumer_options: vec![("fetch.wait.max.ms".into(), "7".into())],
            metadata_timeout: Duration::from_secs(1),
            shutdown: Shutdown::never(),
        }
    }

    #[test]
    fn the_clap_names_are_the_documented_ones() {
        use clap::ValueEnum;
        let names = |v: &[OnDataLoss]| -> Vec<String> {
            v.iter().map(|x| x.to_possible_value().unwrap().get_name().to_string()).collect()
        };
        assert_eq!(names(OnDataLoss::value_variants()), ["fail", "skip"]);
        let starting: Vec<String> = StartingOffsets::value_variants()
            .iter()
            .map(|x| x.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(starting, ["earliest", "latest"]);
    }
}
