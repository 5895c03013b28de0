//! Named crash points, compiled in only with the `crash-points` feature (the test command enables
//! it; release builds do not have it, and there every call compiles to nothing).
//!
//! The reliability suite kills the process at the exact moments where a commit protocol breaks if
//! it is wrong: half-written Parquet files, files durable but not renamed, renamed but not yet in
//! the checkpoint, checkpoint written but not renamed, aggregates written but not marked. A random
//! `kill -9` rarely lands in those microseconds; a named point always does.
//!
//! `STREAMLAKE_CRASH_AT=<point>` kills the process with SIGKILL the first time `<point>` is reached;
//! `STREAMLAKE_CRASH_AT=<point>:<n>` the n-th time (counted per process, over all workers).

/// Every point, for the suite and for `--help`-less discovery: keep in sync with the call sites.
pub const POINTS: &[&str] = &[
    "raw.before_footer",
    "raw.before_rename",
    "raw.after_rename",
    "quarantine.before_rename",
    "commit.files_durable",
    "commit.recorded",
    "checkpoint.before_rename",
    "checkpoint.after_rename",
    "aggregates.before_rename",
    "aggregates.before_mark",
    "aggregates.after_mark",
];

/// The points of the object-store commit path (`--output s3://…`), reached only there: the
/// files put but not yet in an entry, the entry created, `windows.json` not yet put. The
/// reliability suite on local disk expects every point of [`POINTS`] to be reached, so these are
/// listed apart; tests/s3_chaos.rs kills at each of them.
pub const OBJECT_POINTS: &[&str] = &[
    "object.before_upload",
    "object.after_upload",
    "commit.files_durable",
    "object.before_entry",
    "object.after_entry",
    "aggregates.before_mark",
];

/// The points of the Delta commit path (`--table-format delta`): the checkpoint entry written but
/// the table not yet committed (`delta.before_commit`, hit in the raw and the aggregates tables),
/// the table committed but nothing after it yet (`delta.after_commit`), and `windows.json`
/// marked before its files are in the aggregates table (`aggregates.after_mark`). The Delta
/// chaos scenario of tests/delta.rs kills at each of them, beside the points of [`POINTS`].
pub const DELTA_POINTS: &[&str] = &["delta.before_commit", "delta.after_commit", "aggregates.after_mark"];

/// Reached a named point: dies here if the environment asks for it.
#[cfg(feature = "crash-points")]
pub fn point(name: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("STREAMLAKE_CRASH_AT").ok()?;
        let (name, nth) = match spec.split_once(':') {
            Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some((name, nth.max(1)))
    });
    let Some((want, nth)) = target else { return };
    if want != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        eprintln!("crash point {name} reached (hit {nth}): SIGKILL");
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
        std::process::abort();
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}
