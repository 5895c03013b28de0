//! Window state at scale (issue 20): the bytes that K keys × W open windows hold in one Kafka
//! partition's window shares, in its checkpoint entry, and in the window operator. Counted by a
//! global allocator that tracks live heap bytes, so the figures are the structures' own, not the
//! process's RSS (which the cardinality benchmark reports).
//!
//! ```sh
//! cargo run --release --example window_state -- --keys 100000 --windows 4
//! # window_state: keys=100000 windows=4 pairs=400000 shares_mb=... entry_json_mb=... operator_mb=...
//! ```
//!
//! Every source keeps its partition's share of each open (window, key) pair until the window is
//! written, and with keys spread over partitions every partition sees nearly every key: a job's
//! source state is about (partitions × pairs) shares, its operator state (pairs) sums, spread
//! over the workers by key.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use timely::dataflow::operators::Probe;
use timely::dataflow::InputHandleVec;

use streamlake::format::checkpoint::{Partial, PartitionEntry};
use streamlake::ingest::preagg::WindowShares;
use streamlake::observe::counters::SourceCounters;
use streamlake::observe::telemetry::{ClusterInfo, Telemetry};
use streamlake::operators::window::WindowAverage;
use streamlake::parse::Key;

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

#[derive(Parser)]
struct Args {
    /// Distinct keys in every open window.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Open windows (10 s windows under a 30 s watermark delay keep about 4 open).
    #[arg(long, default_value_t = 4)]
    windows: u64,
    /// String keys (`device-000042`, as `dataflows/sensors.toml` has) instead of integers.
    #[arg(long)]
    string_keys: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let string_keys = args.string_keys;
    let key = move |k: usize| {
        if string_keys {
            Key::Str(format!("device-{k:06}"))
        } else {
            Key::Int(k as i64)
        }
    };
    let ends: Vec<u64> = (1..=args.windows).map(|w| 1_700_000_000_000 + w * 10_000).collect();
    let pairs = args.keys * ends.len();
    let windows = ends.len();
    let keys = args.keys;

    // One partition's shares, as a source holds them.
    let before = live();
    let mut shares = WindowShares::default();
    for &end in &ends {
        for k in 0..args.keys {
            shares.absorb(&Partial::new(end, key(k), 1_000_000_000, 1));
        }
    }
    let shares_bytes = live() - before;

    // Its checkpoint entry at a commit: the shares as records, and rows per key, as JSON.
    let t = Instant::now();
    let mut entry = PartitionEntry::start_of(0, 0, 0);
    entry.partials = shares.partials().collect();
    entry.rows_per_key = (0..args.keys).map(|k| (key(k).to_string(), ends.len() as u64)).collect();
    let json = entry.to_json()?;
    let entry_ms = t.elapsed().as_secs_f64() * 1e3;
    let entry_json = json.len();
    drop((json, entry, shares));

    // The window operator on one worker: every pair's sum, held until the frontier passes.
    let (operator_bytes, after_close) = timely::execute_directly(move |worker| {
        let info = ClusterInfo {
            run_id: "window-state".into(),
            topic: "t".into(),
            output: std::env::temp_dir(),
            process: 0,
            processes: 1,
            workers: 1,
            window_ms: 10_000,
            watermark_delay_ms: 30_000,
            idle_timeout: std::time::Duration::from_secs(60),
            trigger: std::time::Duration::from_secs(10),
            available_now: true,
        };
        let telemetry = Arc::new(Telemetry::new(info, Arc::new(SourceCounters::default())));
        let mut input = InputHandleVec::<u64, Partial>::new();
        let probe = worker
            .dataflow::<u64, _, _>(|scope| input.to_stream(scope).window_average(0, telemetry).probe().0);
        let base = live();
        for &end in &ends {
            for k in 0..keys {
                input.send(Partial::new(end, key(k), 1_000_000_000, 1));
            }
            input.flush();
            while probe.less_than(input.time()) {
                worker.step();
            }
            for _ in 0..3 {
                worker.step();
            }
        }
        let open = live().saturating_sub(base);
        input.advance_to(u64::MAX - 1);
        while probe.less_than(input.time()) {
            worker.step();
        }
        (open, live().saturating_sub(base))
    });

    println!(
        "window_state: keys={} windows={} pairs={pairs} key={} shares_mb={:.1} shares_bytes_per_pair={:.0} \
         entry_json_mb={:.1} entry_ms={entry_ms:.0} operator_mb={:.1} operator_bytes_per_pair={:.0} \
         operator_after_close_mb={:.1}",
        keys,
        windows,
        if string_keys { "string" } else { "int" },
        mb(shares_bytes),
        shares_bytes as f64 / pairs as f64,
        mb(entry_json),
        mb(operator_bytes),
        operator_bytes as f64 / pairs as f64,
        mb(after_close),
    );
    Ok(())
}
