//! `GET /metrics`: the telemetry in Prometheus text format (0.0.4), encoded by `prometheus-client`.
//!
//! The values already live in the telemetry (atomics the source bumps per poll batch, state it
//! publishes per batch or commit), so rather than keeping a second copy in registered metric
//! objects, one [`Collector`] reads a [`Snapshot`] at scrape time and encodes it. Counters get
//! the `_total` suffix from the encoder.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::snapshot::Snapshot;
use super::telemetry::{PartitionState, Telemetry};

/// Content type of the response.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A registry with the telemetry collector registered.
pub fn registry(telemetry: Arc<Telemetry>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(TelemetryCollector(telemetry)));
    registry
}

/// Encodes the registry as Prometheus text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would mean a bug in a metric name.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    out
}

#[derive(Debug)]
struct TelemetryCollector(Arc<Telemetry>);

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn counter_f(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A family with one label: `(label value, value)` pairs.
fn family<V, M>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (String, V)>,
    metric: impl Fn(V) -> M,
) -> Result<(), std::fmt::Error>
where
    M: EncodeMetric,
{
    let metrics: Vec<(String, M)> = values.into_iter().map(|(l, v)| (l, metric(v))).collect();
    // An empty family writes nothing, not even its descriptor.
    let Some((_, first)) = metrics.first() else { return Ok(()) };
    let mut family = enc.encode_descriptor(name, help, None, first.metric_type())?;
    for (value, m) in &metrics {
        m.encode(family.encode_family(&[(label, value.as_str())])?)?;
    }
    Ok(())
}

/// `(partition label, value)` for every partition that has a value.
fn per_partition<V>(parts: &[PartitionState], f: impl Fn(&PartitionState) -> Option<V>) -> Vec<(String, V)> {
    parts.iter().filter_map(|p| f(p).map(|v| (p.report.partition.to_string(), v))).collect()
}

impl Collector for TelemetryCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s: Snapshot = self.0.snapshot();
        let e = &mut enc;
        counter(e, "streamlake_events_read", "Kafka records read by this process.", s.messages)?;
        counter(e, "streamlake_bytes_read", "Payload bytes of the records read.", s.bytes)?;
        counter(e, "streamlake_events_written", "Rows written to committed raw Parquet files.", s.rows)?;
        counter(e, "streamlake_files_committed", "Parquet files made durable by commits.", s.files)?;
        counter(
            e,
            "streamlake_commits",
            "Partition commits (files durable, then checkpoint entry).",
            s.commits,
        )?;
        counter(
            e,
            "streamlake_late_records_dropped",
            "Records whose window had already closed: written raw, not aggregated.",
            s.late,
        )?;
        let group = &crate::kafka::group::STATS;
        counter(
            e,
            "streamlake_group_commits",
            "Checkpoint offsets committed to the consumer group (for Kafka's lag tools only).",
            group.committed.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        counter(
            e,
            "streamlake_group_commit_failures",
            "Group offset commits that failed; the job is not affected (its checkpoint holds the offsets).",
            group.failures.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        family(
            e,
            "streamlake_quarantined",
            "Records that did not fit the schema, written to _quarantine/, by reason.",
            "reason",
            s.quarantined_by_reason.iter().map(|(r, n)| (r.to_string(), *n)),
            ConstCounter::new,
        )?;

        let parts = &s.partitions;
        family(
            e,
            "streamlake_partition_committed_offset",
            "Next offset recorded in the checkpoint: everything before it is durable.",
            "partition",
            per_partition(parts, |p| Some(p.report.committed_offset)),
            ConstGauge::new,
        )?;
        family(
            e,
            "streamlake_partition_read_offset",
            "Next offset the source will read.",
            "partition",
            per_partition(parts, |p| Some(p.report.read_offset)),
            ConstGauge::new,
        )?;
        family(
            e,
            "streamlake_partition_high_watermark",
            "The broker's high-water mark (offset of the next record to be produced).",
            "partition",
            per_partition(parts, |p| s.high_watermarks.get(&p.report.partition).copied()),
            ConstGauge::new,
        )?;
        family(
            e,
            "streamlake_partition_lag_records",
            "High-water mark minus committed offset: records not yet durably processed.",
            "partition",
            per_partition(parts, |p| s.lag(&p.report)),
            ConstGauge::new,
        )?;
        family(
            e,
            "streamlake_partition_watermark_seconds",
            "The partition's watermark (max event time minus the delay), Unix seconds.",
            "partition",
            per_partition(parts, |p| p.report.watermark_ms.map(|w| w as f64 / 1000.0)),
            ConstGauge::new,
        )?;
        family(
            e,
            "streamlake_partition_idle",
            "1 when the partition had no record for --idle-timeout and no longer holds the watermark.",
            "partition",
            per_partition(parts, |p| Some(i64::from(p.silent_for() >= s.info.idle_timeout))),
            ConstGauge::new,
        )?;
        if let Some(w) = s.global_watermark_ms {
            gauge(
                e,
                "streamlake_watermark_seconds",
                "The global frontier: event time up to which every window can close, Unix seconds.",
                w as f64 / 1000.0,
            )?;
        }

        let workers = &s.workers;
        family(
            e,
            "streamlake_windows_open",
            "Windows the worker's window operator holds open.",
            "worker",
            workers.iter().map(|w| (w.0.to_string(), w.2 as i64)),
            ConstGauge::new,
        )?;
        family(
            e,
            "streamlake_windows_closed",
            "Windows the worker's window operator closed (final rows emitted).",
            "worker",
            workers.iter().map(|w| (w.0.to_string(), w.3)),
            ConstCounter::new,
        )?;
        family(
            e,
            "streamlake_worker_busy_seconds",
            "Time the timely worker was not parked.",
            "worker",
            workers.iter().map(|w| (w.0.to_string(), w.1.as_secs_f64())),
            ConstCounter::new,
        )?;
        let (age, took) = match s.last_commit {
            Some((age, took)) => (age.as_secs_f64(), took.as_secs_f64()),
            // No commit yet: the checkpoint is as old as the run.
            None => (s.uptime.as_secs_f64(), 0.0),
        };
        gauge(e, "streamlake_checkpoint_age_seconds", "Time since the last checkpoint commit.", age)?;
        gauge(e, "streamlake_last_commit_duration_seconds", "How long the last commit took.", took)?;
        counter_f(
            e,
            "streamlake_uptime_seconds",
            "Time since the process started the run.",
            s.uptime.as_secs_f64(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::observe::telemetry::{ClusterInfo, PartitionReport};

    #[test]
    fn renders_prometheus_text() {
        let info = ClusterInfo::for_tests(1, 2);
        let t = Arc::new(Telemetry::new(info, Arc::default()));
        t.counters.messages.store(42, Ordering::Relaxed);
        t.counters.quarantined_by_reason[2].store(3, Ordering::Relaxed);
        t.publish_partitions(vec![PartitionReport {
            partition: 1,
            worker: 1,
            read_offset: 10,
            committed_offset: 7,
            end_offset: None,
            start_offset: 0,
            watermark_ms: Some(1_500),
            since_last_record: Duration::ZERO,
            done: false,
        }]);
        t.publish_high_watermarks(3, vec![(1, 12)]);
        t.observe_watermark(2_000);
        let text = render(&registry(t));
        for line in [
            "# TYPE streamlake_events_read_total counter",
            "streamlake_events_read_total 42",
            "streamlake_quarantined_total{reason=\"bad_json\"} 3",
            "streamlake_quarantined_total{reason=\"empty_payload\"} 0",
            "streamlake_partition_lag_records{partition=\"1\"} 5",
            "streamlake_partition_watermark_seconds{partition=\"1\"} 1.5",
            "streamlake_watermark_seconds 2.0",
            "streamlake_worker_busy_seconds_total{worker=\"1\"} 0.0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
    }
}
