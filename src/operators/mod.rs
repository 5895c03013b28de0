//! The timely operators of `streamlake run`, one per file, in data-flow order:
//! [`source`] (Kafka partitions → raw Parquet + partial window sums), [`window`] (partial sums →
//! window rows, closed by the frontier), [`aggregates`] (final rows → Parquet, exactly once) and
//! [`console`] (update-mode table every trigger).
//!
//! Timestamps are event-time watermarks in milliseconds (`u64`), so a frontier at `t` means "no
//! source will send anything for event time before `t` any more" — the global watermark.

pub mod aggregates;
pub mod console;
pub mod source;
pub mod window;

use crate::parse::Key;

/// A change to one window's partial aggregate: (window end ms, key, sum in 1e-9 units, count).
pub type Delta = (u64, Key, i128, u64);

/// The time sources move to with `--flush-windows` at the end of input: past every real window,
/// so every open window closes, yet distinguishable from "the dataflow has ended".
pub const FLUSH_TIME: u64 = u64::MAX - 1;
