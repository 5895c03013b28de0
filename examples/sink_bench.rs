//! The raw sink's cost per commit by key count, without Kafka: records staged per second and the
//! commit's wall time and files, for one partition. The measurement behind the sink's bounds
//! (`src/sink/raw/stage.rs`): how many keys stream, how many are buffered, what a file costs.
//!
//! ```sh
//! cargo run --release --example sink_bench -- --records 300000 --keys 100000 --dir /tmp/sink_bench
//! # sink_bench: keys=100000 records=300000 stage_s=... commit_s=... files=... us_per_file=...
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use streamlake::parse::json::RecordParser;
use streamlake::sink::raw::{PartitionFiles, RawLayout, SinkLimits, WorkerBudget};
use streamlake::spec::{Spec, EVENTS_TOML};

#[derive(Parser)]
struct Args {
    /// Records to stage.
    #[arg(long, default_value_t = 300_000)]
    records: usize,
    /// Distinct ids, cycled.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Open-file slots of the worker (its share of --max-open-files).
    #[arg(long, default_value_t = 128)]
    open_files: usize,
    /// The worker's buffer share in MiB.
    #[arg(long, default_value_t = 1024)]
    buffer_mib: usize,
    /// An empty folder to write into (removed first).
    #[arg(long)]
    dir: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).context("creating --dir")?;
    let spec = Spec::parse(EVENTS_TOML, std::path::Path::new("dataflows/events.toml"))?;
    let layout =
        RawLayout::new(args.dir.clone(), "t", "r", "uid", 0, spec.schema.clone(), spec.partition.clone());
    let limits = SinkLimits { open_files: args.open_files, buffer_bytes: args.buffer_mib << 20 };
    let budget = Arc::new(WorkerBudget::new(limits));
    let mut files = PartitionFiles::new(Arc::new(layout), budget.clone(), 0, 0);
    let mut parser = RecordParser::new(spec.schema.clone(), spec.key_col, spec.value_col, spec.time_col);
    let payloads: Vec<String> = (0..args.records)
        .map(|i| {
            format!(
                r#"{{"id":{},"ts":"2026-12-02T10:00:{:02}.{:06}Z","value":{}.25,"source":"sensor-{}"}}"#,
                i % args.keys,
                i % 60,
                i % 1_000_000,
                i % 1000,
                i % 7
            )
        })
        .collect();
    let t = Instant::now();
    for p in &payloads {
        parser.parse(Some(p.as_bytes())).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        files.append(&parser, p.as_bytes())?;
    }
    let stage_s = t.elapsed().as_secs_f64();
    let held_mib = budget.held() as f64 / (1 << 20) as f64;
    let t = Instant::now();
    let stats = files.commit(args.records as i64)?;
    let commit_s = t.elapsed().as_secs_f64();
    println!(
        "sink_bench: keys={} records={} stage_s={stage_s:.3} held_mib={held_mib:.1} commit_s={commit_s:.3} files={} us_per_file={:.0}",
        args.keys,
        args.records,
        stats.files.len(),
        commit_s * 1e6 / stats.files.len().max(1) as f64
    );
    Ok(())
}
