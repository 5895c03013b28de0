//! The whole-program tests, one module per file beside this one, built as one test binary.
//!
//! Why one binary: each test binary links the whole program with arrow, parquet, rdkafka and
//! delta-rs and compiles `common/` again, and with ~20 of them building the tests took longer than
//! running most of them. One binary also lets `--test-threads` keep both cores busy across the
//! files, where separate binaries ran one after another and each waited for its slowest test.
//!
//! Run one file's tests with its module name as the filter:
//! `scripts/test.sh --test integration -- reliability::`.

mod common;
mod validate_cli;

mod architecture;
mod bench_smoke;
mod delta;
mod isolation;
mod kafka_foundation;
mod kafka_script;
mod kafka_secure;
mod many_keys;
mod object_store;
mod observability;
mod oracle;
mod platform;
mod reliability;
mod s3_chaos;
mod s3_output;
mod storage_urls;
mod streaming;
mod transforms;
mod validate_command;
mod validate_dataflow;
mod validate_e2e;
