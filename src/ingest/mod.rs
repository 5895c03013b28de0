//! What a Kafka source does between the broker and the timely operator, one concern per file:
//!
//! - [`settings`]: what a source is told (`SourceSettings`, `--starting-offsets`, `--on-data-loss`);
//! - [`consumer`]: the consumer's configuration;
//! - [`restore`]: where a partition resumes, and the data-loss decisions;
//! - [`discovery`]: when to look for added partitions, and which are this worker's;
//! - [`health`]: broker health, a state machine with the clock passed in;
//! - [`watermark`]: the watermark, a pure function;
//! - [`preagg`]: pre-aggregation of each poll batch, and the partition's open window shares;
//! - [`partition`]: one partition's read state and the entry its commit records;
//! - [`lanes`]: balance, one thread per partition when partitions do not divide evenly;
//! - [`roll`]: when a worker rolls (multiples of `--roll-interval` on the wall clock);
//! - [`commit_stage`]: the worker's commits, on a thread of their own beside the reading;
//! - [`reader`], [`poll`], [`broker`]: the worker's reader, which applies all of the above with
//!   the Kafka consumer and commits through `sink::commit`.
//!
//! Dependencies point one way: `operators::source` uses this module; nothing here imports
//! `operators`, `job`, `cli` or `observe::telemetry`.

pub mod broker;
pub mod commit_stage;
pub mod consumer;
pub mod discovery;
pub mod health;
pub mod lanes;
pub mod partition;
pub mod poll;
pub mod preagg;
pub mod reader;
pub mod restore;
pub mod roll;
pub mod settings;
pub mod watermark;

pub use reader::PreparedSource;
pub use settings::{OnDataLoss, SourceSettings, StartingOffsets};
