//! Typed errors of `streamlake validate`.
//!
//! Errors about one data file do not stop a run: they are collected into the report (the file is
//! named, with the reason) and turn the exit code to 1. Errors about the run itself (the folder
//! cannot be listed, the report cannot be written) end it.

use std::path::PathBuf;

/// What can go wrong while validating.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// `--path` is not a location streamlake can read.
    #[error(transparent)]
    Location(#[from] crate::storage::LocationError),
    /// Listing or reading the dataset on an object store, or putting the report back, failed
    /// (the message says what to check: bucket, credentials, endpoint).
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    #[error("cannot read the Delta table {path}: {reason}; its files are counted only from its log")]
    Delta { path: PathBuf, reason: String },
    #[error("cannot list folder {path}: {source}; check that it exists and is readable by this user")]
    ListDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a folder; --path (or OUTPUT_PATH) must name the dataset folder, e.g. data/output/parquet"
    )]
    NotAFolder { path: PathBuf },
    #[error("cannot open {path}: {source}; check that the file exists and is readable by this user")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot read Parquet file {path}: {source}; it may be truncated or not Parquet at all: restore it \
         from a copy or move it out of the dataset, then validate again"
    )]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error(
        "cannot decode the data of Parquet file {path}: {source}; the file is damaged: restore it from a copy \
         or move it out of the dataset, then validate again"
    )]
    Decode {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error(
        "column `{column}` of {path} has type {found}, which is not numeric; the aggregate needs a number \
         (DOUBLE in the streamlake schema)"
    )]
    NotNumeric { path: PathBuf, column: String, found: arrow::datatypes::DataType },
    #[error("cannot write {path}: {source}; check that the folder is writable and the disk has room")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checkpoint entry {path} cannot be read ({reason}); the audit cannot tell what is committed for \
         this partition: restore the entry or move it away so that the previous one counts"
    )]
    Checkpoint { path: PathBuf, reason: String },
    #[error(
        "{0}; --dataflow must name the pipeline definition the dataset was written with, as given to `run \
         --dataflow` (without it, the built-in dataflows/events.toml)"
    )]
    Dataflow(#[from] crate::spec::SpecError),
}
