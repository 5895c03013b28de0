//! The observer thread's clockwork: a throughput sample every second, the brokers' high-water
//! marks every few seconds, and every trigger one structured progress line, like Spark's
//! `StreamingQueryProgress`. With `--available-now` on a terminal it also draws a progress bar.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::snapshot::Snapshot;
use super::status::fmt_ms;
use super::telemetry::Telemetry;
use crate::kafka::offsets::OffsetsClient;

const TICK: Duration = Duration::from_millis(250);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const OFFSETS_EVERY: Duration = Duration::from_secs(2);
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(1);

/// One trigger's progress, computed from the snapshots at its start and end.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressLine {
    pub batch: u64,
    /// Records read in the interval.
    pub input_rows: u64,
    /// Records read per second of wall time (how fast data came in, as the job saw it).
    pub input_rows_per_s: f64,
    /// Records read per second of processing: `input_rows / batch_duration`.
    pub processed_rows_per_s: f64,
    /// Busy time of the busiest local worker in the interval: the time spent processing.
    pub batch_duration: Duration,
    pub watermark_ms: Option<u64>,
}

impl ProgressLine {
    pub fn between(batch: u64, before: &Snapshot, after: &Snapshot) -> ProgressLine {
        let input_rows = after.messages.saturating_sub(before.messages);
        let wall = after.uptime.saturating_sub(before.uptime).as_secs_f64().max(1e-3);
        let batch_duration = after
            .workers
            .iter()
            .map(|w| {
                let was = before.workers.iter().find(|b| b.0 == w.0).map_or(Duration::ZERO, |b| b.1);
                w.1.saturating_sub(was)
            })
            .max()
            .unwrap_or_default();
        let busy = batch_duration.as_secs_f64();
        ProgressLine {
            batch,
            input_rows,
            input_rows_per_s: input_rows as f64 / wall,
            processed_rows_per_s: if busy > 0.0 { input_rows as f64 / busy } else { 0.0 },
            batch_duration,
            watermark_ms: after.global_watermark_ms,
        }
    }

    fn log(&self, s: &Snapshot) {
        tracing::info!(
            batch = self.batch,
            input_rows = self.input_rows,
            input_rows_per_s = format_args!("{:.1}", self.input_rows_per_s),
            processed_rows_per_s = format_args!("{:.1}", self.processed_rows_per_s),
            batch_duration_ms = self.batch_duration.as_millis() as u64,
            watermark = %self.watermark_ms.map_or("none".to_string(), |w| fmt_ms(w as i64)),
            events_read = s.messages,
            rows_written = s.rows,
            quarantined = s.quarantined,
            late = s.late,
            "progress"
        );
    }
}

/// The running observer thread; dropping it stops and joins the thread.
pub struct Progress {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread. `client` is for the high-water marks (lag).
pub fn start(
    telemetry: Arc<Telemetry>,
    client: crate::kafka::settings::ClientSettings,
) -> std::io::Result<Progress> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("streamlake-progress".into())
        .spawn(move || run(telemetry, client, stopped))?;
    Ok(Progress { stop: Some(stop), thread: Some(thread) })
}

fn run(
    telemetry: Arc<Telemetry>,
    client: crate::kafka::settings::ClientSettings,
    stopped: mpsc::Receiver<()>,
) {
    let info = telemetry.info.clone();
    let bar = (info.available_now && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut offsets: Option<OffsetsClient> = None;
    let mut last_sample = Instant::now();
    let mut last_offsets: Option<Instant> = None;
    let mut last_line = Instant::now();
    let mut before = telemetry.snapshot();
    let mut batch = 0u64;
    telemetry.sample();
    // Dropping the sender (or sending) stops the loop; a timeout is the tick.
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
        if last_sample.elapsed() >= SAMPLE_EVERY {
            last_sample = Instant::now();
            telemetry.sample();
        }
        if last_offsets.is_none_or(|t| t.elapsed() >= OFFSETS_EVERY) {
            last_offsets = Some(Instant::now());
            if offsets.is_none() {
                offsets = OffsetsClient::new(&client, &info.topic)
                    .map_err(|e| tracing::debug!(error = %e, "no offsets client yet"))
                    .ok();
            }
            if let Some(client) = &offsets {
                if let Some(n) = client.partitions(OFFSETS_TIMEOUT) {
                    let marks = client.high_watermarks(&info.local_partitions(n), OFFSETS_TIMEOUT);
                    telemetry.publish_high_watermarks(n, marks);
                }
            }
        }
        if let Some(bar) = &bar {
            let s = telemetry.snapshot();
            if let Some(target) = s.target_messages() {
                bar.set_length(target);
            }
            bar.set_position(s.messages);
        }
        if last_line.elapsed() >= info.trigger {
            last_line = Instant::now();
            let after = telemetry.snapshot();
            let line = ProgressLine::between(batch, &before, &after);
            match &bar {
                Some(bar) => bar.suspend(|| line.log(&after)),
                None => line.log(&after),
            }
            before = after;
            batch += 1;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // The last, usually partial, trigger interval: without it a run shorter than one trigger
    // would log no progress at all.
    let after = telemetry.snapshot();
    if after.messages > before.messages || batch == 0 {
        ProgressLine::between(batch, &before, &after).log(&after);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::telemetry::ClusterInfo;

    #[test]
    fn rates_come_from_rows_wall_time_and_busy_time() {
        let info = ClusterInfo::for_tests(1, 2);
        let t = Telemetry::new(info, Arc::default());
        let mut before = t.snapshot();
        before.uptime = Duration::from_secs(10);
        before.messages = 1_000;
        before.workers = vec![(0, Duration::from_secs(1), 0, 0), (1, Duration::from_secs(1), 0, 0)];
        let mut after = before.clone();
        after.uptime = Duration::from_secs(20);
        after.messages = 21_000;
        after.workers = vec![(0, Duration::from_secs(3), 0, 0), (1, Duration::from_secs(5), 0, 0)];
        after.global_watermark_ms = Some(5_000);
        let line = ProgressLine::between(7, &before, &after);
        assert_eq!(line.input_rows, 20_000);
        assert_eq!(line.input_rows_per_s, 2_000.0);
        assert_eq!(line.batch_duration, Duration::from_secs(4));
        assert_eq!(line.processed_rows_per_s, 5_000.0);
        assert_eq!(line.watermark_ms, Some(5_000));
    }
}
