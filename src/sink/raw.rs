//! The raw sink: every parsed event of one Kafka partition, as Parquet, one file per key folder
//! per commit.
//!
//! Rows are appended to Arrow builders and handed to a streaming Parquet writer every
//! `BATCH_ROWS` rows, so memory stays bounded however long a commit interval is. Files are written
//! under hidden in-progress names and only renamed into `id=<k>/part-p<P>-o<START>-<END>-w<W>.parquet`
//! by [`PartitionFiles::commit`], after which the caller records the checkpoint entry. The name is a
//! function of the Kafka range it covers, so a replay of the same range produces the same names.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::durable::{create_dir_durable, publish, sync_all_concurrently, sync_dir, sync_dirs};
use super::{io_err, SinkError};
use crate::format::{self, meta};
pub use crate::format::{parse_part_file_name, part_file_name};
use crate::parse::json::{RecordParser, Slot};
use crate::parse::{Key, KeyRef};
use crate::spec::{Field, Partitioning, Transform};

mod columns;

pub use columns::key_arrow_type;
use columns::{arrow_type, ColBuilder, BATCH_ROWS};

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

/// One in-progress file: the rows of one key in the current commit interval.
struct KeyFile {
    /// The partition value (`None` without folders).
    key: Option<Key>,
    dir: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    builders: Vec<(usize, ColBuilder)>,
    buffered: usize,
    rows: u64,
}

impl KeyFile {
    fn flush_batch(&mut self, schema: &SchemaRef) -> Result<(), SinkError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|(_, b)| b.finish()).collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|source| SinkError::Arrow { path: self.tmp.clone(), source })?;
        self.writer.write(&batch).map_err(|source| SinkError::Parquet { path: self.tmp.clone(), source })?;
        self.buffered = 0;
        Ok(())
    }
}

struct QuarantinedRecord {
    offset: i64,
    reason: String,
    payload: Option<Vec<u8>>,
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
}

/// The open files of one Kafka partition between two commits.
pub struct PartitionFiles {
    layout: Arc<RawLayout>,
    partition: i32,
    start_offset: i64,
    files: Vec<KeyFile>,
    quarantine: Vec<QuarantinedRecord>,
    messages: u64,
    bytes: u64,
}

fn writer_props(kind: &str, schema: &Schema) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("streamlake {} ({kind})", env!("CARGO_PKG_VERSION")))
        // The writer buffers a whole row group per open file; one file is open per key and
        // partition, so bound it to keep memory flat however large a commit grows.
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

impl PartitionFiles {
    pub fn new(layout: Arc<RawLayout>, partition: i32, start_offset: i64) -> Self {
        PartitionFiles {
            layout,
            partition,
            start_offset,
            files: Vec::new(),
            quarantine: Vec::new(),
            messages: 0,
            bytes: 0,
        }
    }

    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// Payload bytes taken in since the last commit (for size-based rolling).
    pub fn pending_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn pending_messages(&self) -> u64 {
        self.messages
    }

    fn file_for(&mut self, key: Option<KeyRef<'_>>) -> Result<usize, SinkError> {
        let same = |f: &KeyFile| match (key, &f.key) {
            (Some(k), Some(fk)) => k.matches(fk),
            (None, None) => true,
            _ => false,
        };
        if let Some(i) = self.files.iter().position(same) {
            return Ok(i);
        }
        let dir = self.layout.folder_path(key);
        create_dir_durable(&dir)?;
        let tmp = dir.join(format::part_in_progress_name(
            self.partition,
            self.start_offset,
            self.layout.worker,
            &self.layout.run_uid,
        ));
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let writer = ArrowWriter::try_new(
            file,
            self.layout.file_schema.clone(),
            Some(writer_props("raw", &self.layout.file_schema)),
        )
        .map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
        let builders = self
            .layout
            .file_columns
            .iter()
            .map(|&i| (i, ColBuilder::new(self.layout.fields[i].ty)))
            .collect();
        self.files.push(KeyFile {
            key: key.map(|k| k.to_owned_key()),
            dir,
            tmp,
            writer,
            builders,
            buffered: 0,
            rows: 0,
        });
        Ok(self.files.len() - 1)
    }

    /// Appends the record `parser` holds (parsed from `payload`).
    #[inline]
    pub fn append(&mut self, parser: &RecordParser, payload: &[u8]) -> Result<(), SinkError> {
        let idx = self.file_for(self.layout.folder_key(parser, payload))?;
        let schema = self.layout.file_schema.clone();
        let file = &mut self.files[idx];
        for (col, builder) in file.builders.iter_mut() {
            let slot = parser.slot(*col);
            let text = if matches!(slot, Slot::Str { .. }) { parser.str_of(payload, slot) } else { "" };
            builder.append(slot, text);
        }
        file.buffered += 1;
        file.rows += 1;
        self.messages += 1;
        self.bytes += payload.len() as u64;
        if file.buffered >= BATCH_ROWS {
            file.flush_batch(&schema)?;
        }
        Ok(())
    }

    /// Records a message that did not fit the schema.
    pub fn quarantine(&mut self, offset: i64, payload: Option<&[u8]>, reason: String) {
        self.messages += 1;
        self.bytes += payload.map_or(0, |p| p.len() as u64);
        self.quarantine.push(QuarantinedRecord { offset, reason, payload: payload.map(<[u8]>::to_vec) });
    }

    /// Closes every open file of the interval `[start_offset, next_offset)`, makes them durable under
    /// their final names and returns what was written. The caller must write the checkpoint entry
    /// next; until then the files are uncommitted and a restart deletes them.
    pub fn commit(&mut self, next_offset: i64) -> Result<CommitStats, SinkError> {
        let layout = self.layout.clone();
        let name = part_file_name(self.partition, self.start_offset, next_offset, layout.worker);
        let mut stats = CommitStats {
            start_offset: self.start_offset,
            next_offset,
            messages: self.messages,
            ..Default::default()
        };
        let footer = |rows: u64, kind: &str| {
            vec![
                (meta::TOPIC, layout.topic.clone()),
                (meta::PARTITION, self.partition.to_string()),
                (meta::START_OFFSET, self.start_offset.to_string()),
                (meta::END_OFFSET, next_offset.to_string()),
                (meta::ROWS, rows.to_string()),
                (meta::RANGE_MESSAGES, self.messages.to_string()),
                (meta::WORKER, layout.worker.to_string()),
                (meta::RUN_ID, layout.run_id.clone()),
                (meta::RUN_UID, layout.run_uid.clone()),
                (meta::KIND, kind.to_string()),
            ]
        };
        // Footers first, then every file's fsync at once, then the renames: each file is durable
        // under its hidden name before any of them appears under its final name.
        let mut closed = Vec::with_capacity(self.files.len());
        for mut file in self.files.drain(..) {
            file.flush_batch(&layout.file_schema)?;
            for (k, v) in footer(file.rows, meta::KIND_RAW) {
                file.writer.append_key_value_metadata(KeyValue::new(k.to_string(), v));
            }
            crate::crash::point("raw.before_footer");
            let inner = file
                .writer
                .into_inner()
                .map_err(|source| SinkError::Parquet { path: file.tmp.clone(), source })?;
            closed.push((inner, file.tmp, file.dir, file.key, file.rows));
        }
        let to_sync: Vec<(&File, &Path)> = closed.iter().map(|(f, tmp, ..)| (f, tmp.as_path())).collect();
        sync_all_concurrently(&to_sync, "fsync")?;
        drop(to_sync);
        let mut dirs = Vec::with_capacity(closed.len() + 1);
        for (inner, tmp, dir, key, rows) in closed {
            drop(inner);
            crate::crash::point("raw.before_rename");
            let dst = dir.join(&name);
            fs::rename(&tmp, &dst).map_err(io_err("rename into place", &dst))?;
            let key = key.as_ref().map(Key::as_ref);
            let rel = layout.file_rel(key, &name);
            dirs.push(dir);
            stats.rows += rows;
            if let Some(k) = key {
                stats.rows_per_key.insert(layout.folder_value(k), rows);
            }
            stats.files.push(rel);
        }
        if !self.quarantine.is_empty() {
            let dir = layout.quarantine_dir();
            create_dir_durable(&dir)?;
            let records = std::mem::take(&mut self.quarantine);
            for r in &records {
                let code = r.reason.split(':').next().unwrap_or("unknown").to_string();
                *stats.quarantined_by_reason.entry(code).or_insert(0) += 1;
            }
            stats.quarantined = records.len() as u64;
            let dst = dir.join(&name);
            self.write_quarantine(&records, &dst, footer(records.len() as u64, meta::KIND_QUARANTINE))?;
            dirs.push(dir);
            stats.files.push(format!("{}/{name}", format::QUARANTINE_DIR));
        }
        sync_dirs(&dirs)?;
        crate::crash::point("raw.after_rename");
        self.start_offset = next_offset;
        self.messages = 0;
        self.bytes = 0;
        Ok(stats)
    }

    fn write_quarantine(
        &self,
        records: &[QuarantinedRecord],
        dst: &Path,
        footer: Vec<(&str, String)>,
    ) -> Result<(), SinkError> {
        let tmp = dst.with_file_name(format::in_progress_name(
            dst.file_name().and_then(|n| n.to_str()).unwrap_or("q"),
            &self.layout.run_uid,
        ));
        let now = chrono::Utc::now().timestamp_micros();
        let mut partition = Int32Builder::new();
        let mut offset = Int64Builder::new();
        let mut reason = StringBuilder::new();
        let mut payload = BinaryBuilder::new();
        let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        for r in records {
            partition.append_value(self.partition);
            offset.append_value(r.offset);
            reason.append_value(&r.reason);
            match &r.payload {
                Some(p) => payload.append_value(p),
                None => payload.append_null(),
            }
            ts.append_value(now);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(reason.finish()),
            Arc::new(payload.finish()),
            Arc::new(ts.finish()),
        ];
        let batch = RecordBatch::try_new(self.layout.quarantine_schema.clone(), columns)
            .map_err(|source| SinkError::Arrow { path: tmp.clone(), source })?;
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let mut writer = ArrowWriter::try_new(
            file,
            batch.schema(),
            Some(writer_props("quarantine", &self.layout.quarantine_schema)),
        )
        .map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
        writer.write(&batch).map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
        for (k, v) in footer {
            writer.append_key_value_metadata(KeyValue::new(k.to_string(), v));
        }
        let inner = writer.into_inner().map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
        inner.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(inner);
        crate::crash::point("quarantine.before_rename");
        publish(&tmp, dst)
    }
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
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(run_dir) else { return Ok(removed) };
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
    for dir in dirs {
        let Ok(files) = fs::read_dir(&dir) else { continue };
        let mut changed = false;
        for file in files.flatten() {
            if !file.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let fname = file.file_name().to_string_lossy().into_owned();
            let ours_in_progress = fname.starts_with(&prefix_tmp) && fname.ends_with(&suffix_tmp);
            let beyond = parse_part_file_name(&fname)
                .is_some_and(|(p, start, _)| p == partition && start >= next_offset);
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
        if changed {
            sync_dir(&dir)?;
        }
    }
    Ok(removed)
}

/// Whether the Parquet file at `path` says it was written by this run for `partition`.
fn written_by(path: &Path, layout: &RawLayout, partition: i32) -> bool {
    let Ok(kv) = meta::read(path) else { return false };
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    get(meta::RUN_UID) == Some(layout.run_uid.as_str())
        && get(meta::TOPIC) == Some(layout.topic.as_str())
        && get(meta::PARTITION) == Some(partition.to_string().as_str())
}
