//! streamlake: a Kafka → event-time windows → exactly-once Parquet pipeline on Timely Dataflow.
//!
//! The modules follow the data flow: [`kafka`] reads and writes the broker, [`parse`] turns JSON
//! payloads into typed columns, [`ingest`] holds the parts of the Kafka source, [`operators`]
//! the timely operators (source, windows, sinks), [`sink`] the Parquet writer and the commit
//! protocol, [`validate`] reads the result back, and [`observe`] serves metrics, the status page
//! and progress lines of a running job. [`format`] defines the on-disk layout that the sinks write
//! and `validate` reads; [`options`] the validated settings; [`storage`] the locations a dataset may live in; [`util`] small helpers they share
//! (durations, atomic writes, the thread fan-out).

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod crash;
pub mod error;
pub mod format;
pub mod ingest;
pub mod job;
pub mod kafka;
pub mod logging;
pub mod observe;
pub mod operators;
pub mod options;
pub mod parse;
pub mod peer;
pub mod signals;
pub mod sink;
pub mod spec;
pub mod storage;
pub mod util;
pub mod validate;
