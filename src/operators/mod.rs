//! The timely operators of `streamlake run`, one per file, in data-flow order:
//! [`source`] (Kafka partitions → raw Parquet + partial window sums; its parts are in
//! [`crate::ingest`]), [`window`] (partial sums → window rows, closed by the frontier),
//! [`aggregates`] (final rows → Parquet, exactly once) and [`console`] (update-mode table every
//! trigger).
//!
//! Timestamps are event-time watermarks in milliseconds (`u64`), so a frontier at `t` means "no
//! source will send anything for event time before `t` any more" — the global watermark.

pub mod aggregates;
pub mod console;
pub mod source;
pub mod window;

pub use crate::ingest::watermark::FLUSH_TIME;
