//! The raw sink: every parsed event of one Kafka partition, as Parquet, one file per folder per
//! commit.
//!
//! [`RawLayout`] is what the dataset looks like (folders, columns); [`PartitionFiles`]
//! (`raw/stage.rs`) stages a partition's rows between commits within the worker's bounds
//! (`raw/budget.rs`: `--max-open-files`, `--sink-buffer-mib`). Files are written under hidden
//! in-progress names and only renamed into `id=<k>/part-p<P>-o<START>-<END>-w<W>.parquet` by
//! [`PartitionFiles::commit`] (`raw/make_durable.rs`), after which the caller records the checkpoint
//! entry. The name is a function of the Kafka range it covers, so a replay of the same range
//! produces the same names.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::durable::sync_dir;
use super::{io_err, SinkError};
use crate::format::{self, meta};
pub use crate::format::{parse_part_file_name, part_file_name};
use crate::parse::json::RecordParser;
use crate::parse::KeyRef;
use crate::spec::{Field, Partitioning, Transform};

pub mod budget;
mod columns;
mod folders;
mod key_file;
mod make_durable;
mod row_buffer;
mod stage;

pub use budget::{SinkLimits, WorkerBudget};
use columns::arrow_type;
pub use columns::key_arrow_type;
pub use stage::PartitionFiles;

/// Everything about the raw dataset that does not change per partition.
#[derive(Debug)]
pub struct RawLayout {
    pub run_dir: PathBuf,
    pub topic: String,
    pub run_id: String,
    /// The run folder's `run_uid` (`_checkpoint/identity.json`): in every file's metadata and
    /// every in-progress name, so that cleanups only ever delete this run's own files.
    pub run_uid: String,
    pub worker: usize,
    pub fields: Vec<Field>,
    /// How a record's folder is named (`sink.partition_by`); `None`: no folders, every file sits
    /// in the run folder.
    partition: Option<Partitioning>,
    /// Indexes into `fields` of the columns written into the files, in file order: the declared
    /// fields minus an identity partition column (its value is only in the folder name, as Spark
    /// writes it). Other transforms keep their source column in the files, as Iceberg does.
    pub file_columns: Vec<usize>,
    /// Schema of the files: `fields` at `file_columns`.
    pub file_schema: SchemaRef,
    pub quarantine_schema: SchemaRef,
}

impl RawLayout {
    pub fn new(
        run_dir: PathBuf,
        topic: &str,
        run_id: &str,
        run_uid: &str,
        worker: usize,
        fields: Vec<Field>,
        partition: Option<Partitioning>,
    ) -> Self {
        let dropped = partition.as_ref().filter(|p| p.transform == Transform::Identity).map(|p| p.col);
        let file_columns: Vec<usize> = (0..fields.len()).filter(|i| Some(*i) != dropped).collect();
        let file_fields: Vec<ArrowField> = file_columns
            .iter()
            .map(|&i| &fields[i])
            .map(|f| ArrowField::new(&f.name, arrow_type(f.ty), !f.required))
            .collect();
        let quarantine = Schema::new(vec![
            ArrowField::new("partition", DataType::Int32, false),
            ArrowField::new("offset", DataType::Int64, false),
            ArrowField::new("reason", DataType::Utf8, false),
            ArrowField::new("payload", DataType::Binary, true),
            ArrowField::new(
                "ts_ingest",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]);
        RawLayout {
            run_dir,
            topic: topic.to_string(),
            run_id: run_id.to_string(),
            run_uid: run_uid.to_string(),
            worker,
            fields,
            partition,
            file_columns,
            file_schema: Arc::new(Schema::new(file_fields)),
            quarantine_schema: Arc::new(quarantine),
        }
    }

    /// The partition value of the record `parser` holds (parsed from `payload`): what names its
    /// folder. `None`: the dataset has no folders and every file sits in the run folder. On the
    /// hot path: no allocation.
    #[inline]
    pub fn folder_key<'p>(&self, parser: &'p RecordParser, payload: &'p [u8]) -> Option<KeyRef<'p>> {
        self.partition.as_ref().map(|p| p.value_of(parser, payload))
    }

    /// The hive-style folder for a partition value: `id=3`, `id_bucket=3`, `ts_day=2026-12-02`.
    /// Characters that are unsafe in a path are percent-encoded, as Hive and Spark do. Empty
    /// without partitioning (`"none"`).
    pub fn key_dir(&self, key: KeyRef<'_>) -> String {
        self.partition.as_ref().map_or_else(String::new, |p| p.folder_name(key))
    }

    /// The value part of the folder, unencoded (`3`, `2026-12-02`): the key of a checkpoint
    /// entry's `rows_per_key`. Empty without partitioning.
    pub fn folder_value(&self, key: KeyRef<'_>) -> String {
        self.partition.as_ref().map_or_else(String::new, |p| p.folder_value(key))
    }

    /// The folder of a file, for a value from [`RawLayout::folder_key`]: the run folder itself
    /// when there are no folders.
    pub fn folder_path(&self, key: Option<KeyRef<'_>>) -> PathBuf {
        match key {
            Some(k) if self.partition.is_some() => self.run_dir.join(self.key_dir(k)),
            _ => self.run_dir.clone(),
        }
    }

    /// A file's path relative to the run folder (`id_bucket=3/part-….parquet`, or the bare name
    /// without folders), as checkpoint entries list it.
    pub fn file_rel(&self, key: Option<KeyRef<'_>>, name: &str) -> String {
        match key {
            Some(k) if self.partition.is_some() => format!("{}/{name}", self.key_dir(k)),
            _ => name.to_string(),
        }
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.run_dir.join(format::QUARANTINE_DIR)
    }
}

/// What one commit of a partition wrote.
#[derive(Debug, Clone, Default)]
pub struct CommitStats {
    pub start_offset: i64,
    pub next_offset: i64,
    pub messages: u64,
    pub rows: u64,
    pub quarantined: u64,
    pub rows_per_key: BTreeMap<String, u64>,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Paths relative to the run folder.
    pub files: Vec<String>,
    /// The size of each of `files`, where the protocol learned it (the object store's upload);
    /// empty otherwise.
    pub sizes: Vec<u64>,
}

pub(crate) fn writer_props(kind: &str, schema: &Schema) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("streamlake {} ({kind})", env!("CARGO_PKG_VERSION")))
        // The writer buffers a whole row group per open file (held in the sink's budget); bound it
        // to keep memory flat however large a commit grows.
        .set_max_row_group_row_count(Some(128 * 1024));
    // Event times and measured values are nearly all distinct: a dictionary would only grow to
    // its page limit, cost memory per open file (a third of the job's heap in a profile) and CPU,
    // then fall back to plain encoding anyway. Ids, sources and other low-cardinality columns keep
    // theirs.
    for field in schema.fields() {
        if matches!(field.data_type(), DataType::Float64 | DataType::Timestamp(..)) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    props.build()
}

/// Deletes what a crash left of `partition` in `run_dir`: this run's in-progress files of the
/// partition, and its committed-looking files that start at or beyond `next_offset` (written and
/// renamed, but the checkpoint entry that would have made them committed was not).
///
/// Only files that carry this run's identity are deleted: an in-progress name with `u<run_uid>`,
/// or a footer whose `streamlake.run_uid`, `streamlake.topic` and `streamlake.partition` are this
/// run's. A file that matches the name pattern but not the identity is left where it is and
/// reported (the audit flags it as outside every committed range): it is not this run's to delete.
pub fn remove_uncommitted(
    layout: &RawLayout,
    partition: i32,
    next_offset: i64,
) -> Result<Vec<PathBuf>, SinkError> {
    let run_dir = &layout.run_dir;
    let Ok(entries) = fs::read_dir(run_dir) else { return Ok(Vec::new()) };
    let prefix_tmp = format::part_in_progress_prefix(partition);
    let suffix_tmp = format::in_progress_suffix(&layout.run_uid);
    // The run folder itself holds the files of a dataset without folders (`partition_by = "none"`).
    let mut dirs = vec![run_dir.clone()];
    dirs.extend(entries.flatten().filter_map(|entry| {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let skip = !dir.is_dir()
            || name.starts_with('.')
            || (name.starts_with('_') && name != format::QUARANTINE_DIR);
        (!skip).then_some(dir)
    }));
    // Many folders: one `syncfs` at the end instead of an fsync per folder (as a commit does);
    // opened first, so that it reports the write-back errors of the removals.
    let many = cfg!(target_os = "linux") && dirs.len() > make_durable::SYNC_EACH_MAX;
    let fs_handle = if many { Some(fs::File::open(run_dir).map_err(io_err("open", run_dir))?) } else { None };
    let (prefix_tmp, suffix_tmp) = (prefix_tmp.as_str(), suffix_tmp.as_str());
    let threads = CLEAN_THREADS.min(dirs.len().div_ceil(CLEAN_DIRS_PER_THREAD));
    let mut removed = Vec::new();
    for paths in crate::util::fanout::map(&dirs, threads, |dir| {
        clean_folder(dir, layout, partition, next_offset, prefix_tmp, suffix_tmp, !many)
    }) {
        removed.extend(paths?);
    }
    if let Some(handle) = fs_handle.filter(|_| !removed.is_empty()) {
        make_durable::syncfs(&handle, run_dir)?;
    }
    Ok(removed)
}

/// Threads that clean a run folder's subfolders at once. Removing a file waits for the disk
/// (more so on a file system mounted with `discard`), and a crash in the middle of a commit of
/// 100,000 folders leaves 100,000 files per partition: one at a time, a restart spent 146 s on
/// them before it read anything (tests/many_keys.rs).
const CLEAN_THREADS: usize = 8;
/// Folders below which one more cleaning thread costs more than it saves.
const CLEAN_DIRS_PER_THREAD: usize = 256;

/// [`remove_uncommitted`] in `dir`, which is synced if it changed and `sync_each`.
fn clean_folder(
    dir: &Path,
    layout: &RawLayout,
    partition: i32,
    next_offset: i64,
    prefix_tmp: &str,
    suffix_tmp: &str,
    sync_each: bool,
) -> Result<Vec<PathBuf>, SinkError> {
    let mut removed = Vec::new();
    let Ok(files) = fs::read_dir(dir) else { return Ok(removed) };
    let mut changed = false;
    for file in files.flatten() {
        if !file.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let fname = file.file_name().to_string_lossy().into_owned();
        let ours_in_progress = fname.starts_with(prefix_tmp) && fname.ends_with(suffix_tmp);
        let beyond =
            parse_part_file_name(&fname).is_some_and(|(p, start, _)| p == partition && start >= next_offset);
        let path = file.path();
        if beyond && !written_by(&path, layout, partition) {
            tracing::warn!(
                path = %path.display(), partition, next_offset,
                "a file beyond the committed position does not carry this run's identity; it was left alone"
            );
            continue;
        }
        if ours_in_progress || beyond {
            fs::remove_file(&path).map_err(io_err("remove uncommitted file", &path))?;
            removed.push(path);
            changed = true;
        }
    }
    if changed && sync_each {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Whether the Parquet file at `path` says it was written by this run for `partition`.
fn written_by(path: &Path, layout: &RawLayout, partition: i32) -> bool {
    meta::read(path).is_ok_and(|kv| meta::written_by(&kv, &layout.run_uid, &layout.topic, partition))
}
