//! The two shapes a Delta sink's commits can take, measured on the log alone (no Kafka, no
//! Parquet encoding; the `add` actions name files that are not written):
//!
//! - `per-partition` (what `--table-format delta` did before 2026-12-07): at each roll every
//!   worker commits each of its partitions as its own table version, with that partition's
//!   `txn`. Workers of one process take turns on the table; each commit first re-reads the log
//!   for the `txn` check.
//! - `grouped` (what the job does): at each roll every worker commits all of its partitions at
//!   once, and the requests of a process's workers that meet share one version
//!   (`DeltaLog::commit_grouped`). No worker waits for another.
//! - `barrier`: at each roll the workers hand their files to one committer, which makes one table
//!   version holding every partition's files and `txn`s (a two-phase commit at a frontier-defined
//!   epoch). Measured here is its commit; the wait for the slowest worker at every epoch, which
//!   the job would add, is not.
//!
//! Reported per design: the commit wall time per roll (median, p99), the table versions and the
//! log's size after the run, and what that costs a new reader (loading the table and every
//! partition's `txn`, median of 5).
//!
//! ```sh
//! cargo run --release --example delta_commit_shapes -- --output /tmp/shapes --partitions 3 --workers 2 --rolls 300
//! # delta_commit_shapes: design=per-partition partitions=3 workers=2 rolls=300 versions=900 roll_ms_median=... roll_ms_p99=... log_objects=... log_kib=... reader_load_ms=...
//! # delta_commit_shapes: design=barrier ...
//! ```
//! `--output s3://bucket/prefix` measures on an object store (the `AWS_*` variables as for `run`).

use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use streamlake::ingest::roll::GATHER_LIMIT;
use streamlake::sink::commit::Roll;
use streamlake::sink::delta::files::{add_action, NewFile};
use streamlake::sink::delta::table::{load, runtime, DeltaLog, TableLocation, TxnMove};
use streamlake::sink::delta::{raw_table_spec, DELTA_LOG_DIR};
use streamlake::spec::{Spec, EVENTS_TOML};

#[derive(Parser)]
struct Args {
    /// A folder, or `s3://bucket/prefix`: each design writes a new table below it.
    #[arg(long)]
    output: String,
    /// Kafka partitions.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Workers of the process (partition p belongs to worker p % workers).
    #[arg(long, default_value_t = 2)]
    workers: i32,
    /// Rolls (commit rounds).
    #[arg(long, default_value_t = 300)]
    rolls: usize,
    /// Files per partition per roll (key folders a commit touches).
    #[arg(long, default_value_t = 4)]
    files: usize,
    /// `delta.checkpointInterval` of the tables (the job's --delta-checkpoint-interval).
    #[arg(long, default_value_t = 100)]
    checkpoint_interval: u64,
    /// Only these designs (per-partition, grouped, barrier).
    #[arg(long, value_delimiter = ',', default_value = "per-partition,grouped,barrier")]
    designs: Vec<String>,
}

fn location(output: &str, name: &str) -> Result<TableLocation> {
    if output.starts_with("s3://") {
        let url = format!("{}/{name}", output.trim_end_matches('/'));
        let parsed = streamlake::storage::ObjectUrl::parse(&url)?;
        let store = streamlake::storage::ObjectStoreRoot::open(&parsed)?.bucket_store();
        Ok(TableLocation::Object { url, store })
    } else {
        let dir = std::path::Path::new(output).join(name);
        if dir.exists() {
            bail!("{} exists: give an --output without earlier tables", dir.display());
        }
        Ok(TableLocation::Local(dir))
    }
}

/// The files of partition `p` at roll `r`.
fn adds(p: i32, r: usize, files: usize, columns: &[String]) -> Vec<deltalake_core::kernel::Add> {
    (0..files)
        .map(|k| {
            let rel = format!("id={k}/part-p{p:03}-o{r:012}-w000.parquet");
            add_action(&NewFile { rel, size: 40_000, rows: Some(1_000) }, columns, 0)
        })
        .collect()
}

fn app(p: i32) -> String {
    format!("streamlake/bench/topic/{p}")
}

/// Objects and bytes of the table's log.
fn log_size(at: &TableLocation, rt: &tokio::runtime::Runtime) -> Result<(usize, u64)> {
    match at {
        TableLocation::Local(dir) => {
            let mut n = (0, 0);
            for e in std::fs::read_dir(dir.join(DELTA_LOG_DIR))? {
                let e = e?;
                if e.file_type()?.is_file() {
                    n.0 += 1;
                    n.1 += e.metadata()?.len();
                }
            }
            Ok(n)
        }
        TableLocation::Object { url, store } => {
            let key = url.strip_prefix("s3://").and_then(|u| u.split_once('/')).context("url")?.1;
            let prefix = object_store::path::Path::from(format!("{key}/{DELTA_LOG_DIR}"));
            rt.block_on(async {
                let mut listed = store.list(Some(&prefix));
                let mut n = (0, 0);
                while let Some(meta) = listed.next().await {
                    n.0 += 1;
                    n.1 += meta?.size;
                }
                Ok(n)
            })
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.partitions < 1 || args.workers < 1 || args.rolls < 1 {
        bail!("--partitions, --workers and --rolls must be at least 1");
    }
    let spec = Spec::parse(EVENTS_TOML, std::path::Path::new("dataflows/events.toml"))?;
    let table_spec = raw_table_spec(&spec, args.checkpoint_interval)?;
    let columns = table_spec.partition_by.clone();
    for design in &args.designs {
        let at = location(&args.output, &format!("{design}-{}", std::process::id()))?;
        let rt = runtime()?;
        let log = Arc::new(DeltaLog::open(&at, &table_spec, rt.clone(), Arc::new(|| false))?);
        let op = log.append_operation();
        let mut roll_ms = Vec::with_capacity(args.rolls);
        let mut next = vec![None::<i64>; args.partitions as usize];
        let started = Instant::now();
        match design.as_str() {
            "per-partition" | "grouped" => {
                // One thread per worker, all starting a roll together, as the job's workers do
                // when their roll interval ends (a multiple of it on the wall clock).
                let grouped = design == "grouped";
                let barrier = Arc::new(Barrier::new(args.workers as usize + 1));
                let threads: Vec<_> = (0..args.workers)
                    .map(|w| {
                        let (log, op, barrier, columns) =
                            (log.clone(), op.clone(), barrier.clone(), columns.clone());
                        let (parts, rolls, files_per) = (args.partitions, args.rolls, args.files);
                        std::thread::spawn(move || -> Result<()> {
                            let mine: Vec<i32> = (0..parts).filter(|p| p % args.workers == w).collect();
                            let mut at: Vec<Option<i64>> = vec![None; parts as usize];
                            for r in 0..rolls {
                                barrier.wait();
                                if grouped {
                                    // The job's shape: each worker's partitions in one request,
                                    // the process's requests sharing a version.
                                    let version = (r as i64 + 1) * 1_000;
                                    let mut txns = Vec::with_capacity(mine.len());
                                    let mut files = Vec::new();
                                    for &p in &mine {
                                        txns.push(TxnMove {
                                            app_id: app(p),
                                            previous: at[p as usize],
                                            version,
                                        });
                                        files.extend(adds(p, r, files_per, &columns));
                                        at[p as usize] = Some(version);
                                    }
                                    let roll = Roll::Scheduled { number: r as u64, wait: GATHER_LIMIT };
                                    log.commit_grouped(w as usize, roll, txns, files)?;
                                    barrier.wait();
                                    continue;
                                }
                                for &p in &mine {
                                    let version = (r as i64 + 1) * 1_000;
                                    log.commit(
                                        &app(p),
                                        at[p as usize],
                                        version,
                                        adds(p, r, files_per, &columns),
                                        op.clone(),
                                    )?;
                                    at[p as usize] = Some(version);
                                }
                                barrier.wait();
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for _ in 0..args.rolls {
                    barrier.wait();
                    let t = Instant::now();
                    barrier.wait();
                    roll_ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
                for t in threads {
                    t.join().expect("a worker thread panicked")?;
                }
            }
            "barrier" => {
                for r in 0..args.rolls {
                    let t = Instant::now();
                    let version = (r as i64 + 1) * 1_000;
                    let mut files = Vec::with_capacity(args.partitions as usize * args.files);
                    let mut txns = Vec::with_capacity(args.partitions as usize);
                    for p in 0..args.partitions {
                        files.extend(adds(p, r, args.files, &columns));
                        txns.push(TxnMove { app_id: app(p), previous: next[p as usize], version });
                        next[p as usize] = Some(version);
                    }
                    log.commit_all(&txns, files, op.clone())?;
                    roll_ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            other => bail!("unknown design `{other}` (per-partition, grouped, barrier)"),
        }
        let total_s = started.elapsed().as_secs_f64();
        let versions = log.with_table(|t| t.version().unwrap_or(0))?;
        let (log_objects, log_bytes) = log_size(&at, &rt)?;
        // A new reader: load the table and every partition's txn, as a Delta reader or a restart does.
        let mut reader_ms = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let table = load(&rt, &at)?.context("the table is gone")?;
            let state = table.snapshot()?;
            for p in 0..args.partitions {
                rt.block_on(state.transaction_version(table.log_store().as_ref(), &app(p)))?;
            }
            reader_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        roll_ms.sort_by(f64::total_cmp);
        reader_ms.sort_by(f64::total_cmp);
        let counts = log.counts();
        println!(
            "delta_commit_shapes: design={design} partitions={} workers={} rolls={} files_per_partition={} \
             versions={versions} total_s={total_s:.2} roll_ms_median={:.2} roll_ms_p99={:.2} retries={} \
             log_objects={log_objects} log_kib={:.0} reader_load_ms={:.1}",
            args.partitions,
            args.workers,
            args.rolls,
            args.files,
            percentile(&roll_ms, 0.5),
            percentile(&roll_ms, 0.99),
            counts.retries,
            log_bytes as f64 / 1024.0,
            percentile(&reader_ms, 0.5),
        );
    }
    Ok(())
}
