//! One Kafka partition's raw rows between two commits, within the worker's file and memory bounds.
//!
//! Each folder (`id=3`) of the interval goes one of two ways, decided when its first row arrives:
//! - **streaming**, while the worker has a file slot to spare ([`WorkerBudget::try_open`]): the
//!   folder's rows go to Arrow builders and every `BATCH_ROWS` rows to an open Parquet writer
//!   under the file's in-progress name, so a long interval of few keys keeps memory flat;
//! - **buffered**, once the slots are taken: the rows go to one partition-wide buffer in arrival
//!   order (chunks of `BATCH_ROWS` rows plus one `u32` folder number per row), and the commit
//!   writes each such folder's rows to its file one file at a time.
//!
//! Either way a folder gets exactly one file per commit, named by the range it covers
//! (`part-p<P>-o<START>-<END>-w<W>.parquet`), so the names, the crash rules and the audit are the
//! ones of docs/format.md whatever the key count. Memory is bounded by the buffer share instead:
//! the bytes held (buffered rows and the writers' unwritten row groups) count against the worker's
//! `--sink-buffer-mib` share, and when it is full [`PartitionFiles::over_budget`] asks the source
//! to commit early, as `--roll-size` does. Open files are bounded by the slots, plus one file at a
//! time while a commit writes the buffered folders.
//!
//! This file decides, per folder, which way its rows go and keeps the partition's accounting; the
//! two ways are [`KeyFile`] (`key_file.rs`) and [`RowBuffer`] (`row_buffer.rs`), and the commit,
//! whose durability steps are the crash rules, is `commit.rs`.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::budget::{WorkerBudget, PUBLISH_BYTES};
use super::columns::{ColBuilder, BATCH_ROWS};
use super::folders::FolderIndex;
use super::key_file::KeyFile;
use super::row_buffer::RowBuffer;
use super::{writer_props, RawLayout};
use crate::format;
use crate::parse::json::{RecordParser, Slot};
use crate::parse::{Key, KeyRef};
use crate::sink::{io_err, SinkError};
use crate::spec::ColumnType;

/// Rows a streaming folder's builders have room for before they grow (to `BATCH_ROWS`).
const STREAM_START_ROWS: usize = 1024;

/// A folder the interval wrote to.
pub(super) struct Folder {
    /// `None`: the run folder itself (`partition_by = "none"`).
    pub(super) key: Option<Key>,
    pub(super) rows: u64,
    /// `Some` while streaming; `None` for a buffered folder (and after the commit closed it).
    /// Boxed: a writer is about a kilobyte, and a partition of 100,000 buffered folders would
    /// otherwise hold that much per folder for nothing.
    pub(super) file: Option<Box<KeyFile>>,
}

pub(super) struct QuarantinedRecord {
    pub(super) offset: i64,
    pub(super) reason: String,
    pub(super) payload: Option<Vec<u8>>,
}

/// The staged rows of one Kafka partition between two commits.
pub struct PartitionFiles {
    pub(super) layout: Arc<RawLayout>,
    pub(super) budget: Arc<WorkerBudget>,
    pub(super) props: WriterProperties,
    pub(super) partition: i32,
    pub(super) start_offset: i64,
    index: FolderIndex,
    pub(super) folders: Vec<Folder>,
    pub(super) buffer: RowBuffer,
    /// Bytes of a row in the buffer besides its strings: fixed-width values, string offsets, the
    /// folder number.
    row_bytes: usize,
    /// Bytes this partition holds, `unpublished` of them not yet added to the budget's count.
    held: usize,
    unpublished: usize,
    /// File slots this partition holds.
    pub(super) slots: usize,
    /// Whether the interval created a folder (the run folder is then synced at commit).
    pub(super) new_dirs: bool,
    pub(super) quarantine: Vec<QuarantinedRecord>,
    pub(super) messages: u64,
    bytes: u64,
}

fn value_bytes(ty: ColumnType) -> usize {
    match ty {
        ColumnType::Int32 | ColumnType::String => 4,
        ColumnType::Int64 | ColumnType::Float64 | ColumnType::Timestamp => 8,
        ColumnType::Bool => 1,
    }
}

/// Creates `dir` if it is missing and notes that the interval created a folder; not synced here:
/// the commit syncs the run folder once for all of them.
pub(super) fn ensure_dir(dir: &Path, created: &mut bool) -> Result<(), SinkError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(io_err("create folder", dir))?;
        *created = true;
    }
    Ok(())
}

/// Appends the record `parser` holds to one builder per file column; returns the bytes it adds
/// besides `row_bytes` (its strings).
#[inline]
fn append_row(
    builders: &mut [ColBuilder],
    columns: &[usize],
    parser: &RecordParser,
    payload: &[u8],
) -> usize {
    let mut strings = 0;
    for (builder, &col) in builders.iter_mut().zip(columns) {
        let slot = parser.slot(col);
        let text = if matches!(slot, Slot::Str { .. }) { parser.str_of(payload, slot) } else { "" };
        strings += text.len();
        builder.append(slot, text);
    }
    strings
}

/// Whether `e` says the process or the system has no file descriptor left.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE)
}

impl PartitionFiles {
    pub fn new(layout: Arc<RawLayout>, budget: Arc<WorkerBudget>, partition: i32, start_offset: i64) -> Self {
        let props = writer_props("raw", &layout.file_schema);
        let row_bytes =
            4 + layout.file_columns.iter().map(|&c| value_bytes(layout.fields[c].ty)).sum::<usize>();
        PartitionFiles {
            layout,
            budget,
            props,
            partition,
            start_offset,
            index: FolderIndex::default(),
            folders: Vec::new(),
            buffer: RowBuffer::new(),
            row_bytes,
            held: 0,
            unpublished: 0,
            slots: 0,
            new_dirs: false,
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

    /// Whether the worker holds its whole `--sink-buffer-mib` share: time to commit.
    pub fn over_budget(&self) -> bool {
        self.budget.full_with(self.unpublished)
    }

    /// Counts `bytes` as held; the worker's count learns of them in steps of `PUBLISH_BYTES`.
    #[inline]
    fn hold(&mut self, bytes: usize) {
        self.held += bytes;
        self.unpublished += bytes;
        if self.unpublished >= PUBLISH_BYTES {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.budget.hold(std::mem::take(&mut self.unpublished));
    }

    /// Gives `bytes` of what this partition holds back.
    fn release(&mut self, bytes: usize) {
        self.publish();
        self.held -= bytes;
        self.budget.release(bytes);
    }

    pub(super) fn create_file(&self, path: &Path) -> Result<File, SinkError> {
        File::create(path).map_err(|source| {
            if out_of_descriptors(&source) {
                SinkError::OutOfFiles {
                    path: path.to_path_buf(),
                    open: self.budget.open_files(),
                    max_open: self.budget.limits().open_files,
                    folders: self.folders.len(),
                    partition: self.partition,
                    nofile: crate::util::fs::open_file_limit(),
                    source,
                }
            } else {
                SinkError::Io { doing: "create", path: path.to_path_buf(), source }
            }
        })
    }

    fn builders(&self, capacity: usize) -> Vec<ColBuilder> {
        self.layout
            .file_columns
            .iter()
            .map(|&c| ColBuilder::with_capacity(self.layout.fields[c].ty, capacity))
            .collect()
    }

    /// A folder seen for the first time in this interval: streaming if a slot is free.
    #[cold]
    fn new_folder(&mut self, key: Option<KeyRef<'_>>) -> Result<u32, SinkError> {
        let idx = self.folders.len() as u32;
        let file = if self.budget.try_open() {
            self.slots += 1;
            let opened = self.open_stream(key);
            if opened.is_err() {
                self.slots -= 1;
                self.budget.closed(1);
            }
            Some(opened?)
        } else {
            None
        };
        self.index.insert(key, idx);
        self.folders.push(Folder { key: key.map(|k| k.to_owned_key()), rows: 0, file });
        Ok(idx)
    }

    fn open_stream(&mut self, key: Option<KeyRef<'_>>) -> Result<Box<KeyFile>, SinkError> {
        let dir = self.layout.folder_path(key);
        ensure_dir(&dir, &mut self.new_dirs)?;
        let tmp = dir.join(format::part_in_progress_name(
            self.partition,
            self.start_offset,
            self.layout.worker,
            &self.layout.run_uid,
        ));
        let file = self.create_file(&tmp)?;
        let writer = ArrowWriter::try_new(file, self.layout.file_schema.clone(), Some(self.props.clone()))
            .map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
        // Builders start small and grow: a slot taken by a folder of a few rows costs little.
        Ok(Box::new(KeyFile {
            tmp,
            writer,
            builders: self.builders(STREAM_START_ROWS),
            buffered: 0,
            batch_bytes: 0,
            held: 0,
        }))
    }

    /// Appends the record `parser` holds (parsed from `payload`).
    #[inline]
    pub fn append(&mut self, parser: &RecordParser, payload: &[u8]) -> Result<(), SinkError> {
        let key = self.layout.folder_key(parser, payload);
        let idx = match self.index.get(key) {
            Some(i) => i,
            None => self.new_folder(key)?,
        };
        self.messages += 1;
        self.bytes += payload.len() as u64;
        let layout = &self.layout;
        let folder = &mut self.folders[idx as usize];
        folder.rows += 1;
        if let Some(file) = &mut folder.file {
            let mut bytes =
                self.row_bytes + append_row(&mut file.builders, &layout.file_columns, parser, payload);
            file.buffered += 1;
            file.batch_bytes += bytes;
            let mut released = 0;
            if file.buffered >= BATCH_ROWS {
                file.flush_batch(&layout.file_schema)?;
                let now = file.writer.in_progress_size();
                released =
                    std::mem::replace(&mut file.batch_bytes, 0) + std::mem::replace(&mut file.held, now);
                bytes += now;
            }
            self.hold(bytes);
            if released > 0 {
                self.release(released);
            }
            return Ok(());
        }
        if self.buffer.builders.is_empty() {
            self.buffer.builders = self.builders(BATCH_ROWS);
        }
        let bytes =
            self.row_bytes + append_row(&mut self.buffer.builders, &layout.file_columns, parser, payload);
        self.buffer.folder_of.push(idx);
        self.buffer.in_builders += 1;
        if self.buffer.in_builders >= BATCH_ROWS {
            let path = self.layout.run_dir.clone();
            self.buffer.seal(&self.layout.file_schema, &path)?;
        }
        self.hold(bytes);
        Ok(())
    }

    /// Records a message that did not fit the schema.
    pub fn quarantine(&mut self, offset: i64, payload: Option<&[u8]>, reason: String) {
        self.messages += 1;
        self.bytes += payload.map_or(0, |p| p.len() as u64);
        self.quarantine.push(QuarantinedRecord { offset, reason, payload: payload.map(<[u8]>::to_vec) });
    }

    /// Starts the next interval at `next_offset`.
    pub(super) fn reset(&mut self, next_offset: i64) {
        self.start_offset = next_offset;
        self.messages = 0;
        self.bytes = 0;
        self.folders.clear();
        self.index.clear();
        self.new_dirs = false;
        let held = self.held;
        self.release(held);
    }
}

impl Drop for PartitionFiles {
    /// A partition dropped without a commit (revoked, shutting down, failed) gives its slots and
    /// bytes back; its in-progress files are removed by the next start's cleanup.
    fn drop(&mut self) {
        self.budget.closed(self.slots);
        self.budget.release(self.held - self.unpublished);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::sink::raw::make_durable::SYNC_EACH_MAX;
    use crate::sink::raw::SinkLimits;
    use crate::spec::{Spec, EVENTS_TOML};
    use arrow::array::{Array, Float64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn layout(dir: &Path) -> Arc<RawLayout> {
        let spec = Spec::parse(EVENTS_TOML, Path::new("dataflows/events.toml")).unwrap();
        Arc::new(RawLayout::new(
            dir.to_path_buf(),
            "t",
            "r",
            "uid1",
            0,
            spec.schema.clone(),
            spec.partition.clone(),
        ))
    }

    fn parser() -> RecordParser {
        let spec = Spec::parse(EVENTS_TOML, Path::new("dataflows/events.toml")).unwrap();
        RecordParser::new(spec.schema.clone(), spec.key_col, spec.value_col, spec.time_col)
    }

    /// Stages `n` records cycling through `keys` ids; record i has value i.
    fn stage(files: &mut PartitionFiles, n: usize, keys: usize) {
        let mut p = parser();
        for i in 0..n {
            let json =
                format!(r#"{{"id":{},"value":{i},"ts":"2024-01-01T00:00:00Z","source":"s{i}"}}"#, i % keys);
            p.parse(Some(json.as_bytes())).unwrap();
            files.append(&p, json.as_bytes()).unwrap();
        }
    }

    /// The `value` column of a committed file, in file order.
    fn values(path: &Path) -> Vec<f64> {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch.column_by_name("value").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
            out.extend((0..col.len()).map(|i| col.value(i)));
        }
        out
    }

    /// Each folder's file holds exactly its rows, in offset order, whether it streamed or was
    /// buffered; `open_files` slots stream and the rest is buffered.
    fn one_file_per_folder(keys: usize, open_files: usize) {
        let tmp = tempfile::tempdir().unwrap();
        let budget = Arc::new(WorkerBudget::new(SinkLimits { open_files, buffer_bytes: 1 << 30 }));
        let mut files = PartitionFiles::new(layout(tmp.path()), budget.clone(), 0, 0);
        let n = keys * 3 + BATCH_ROWS; // more than one buffer chunk, and a streaming batch
        stage(&mut files, n, keys);
        assert_eq!(budget.open_files(), open_files.min(keys), "streaming folders hold a slot each");
        let stats = files.commit(n as i64).unwrap();
        assert_eq!(budget.open_files(), 0, "a commit gives every slot back");
        assert_eq!(budget.held(), 0, "and every byte");
        assert_eq!(stats.files.len(), keys, "one file per folder: {:?}", &stats.files[..3]);
        assert_eq!(stats.rows, n as u64);
        for k in 0..keys {
            let rel = format!("id={k}/{}", format::part_file_name(0, 0, n as i64, 0));
            assert!(stats.files.contains(&rel), "{rel}");
            let got = values(&tmp.path().join(&rel));
            let want: Vec<f64> = (0..n).filter(|i| i % keys == k).map(|i| i as f64).collect();
            assert_eq!(got, want, "folder id={k}");
            assert_eq!(stats.rows_per_key[&k.to_string()], want.len() as u64);
        }
        let leftovers: Vec<_> =
            walk(tmp.path()).into_iter().filter(|p| p.to_string_lossy().contains(".inprogress")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn few_keys_stream() {
        one_file_per_folder(5, 16);
    }

    #[test]
    fn keys_beyond_the_slots_are_buffered() {
        one_file_per_folder(40, 3);
    }

    #[test]
    fn many_keys_are_synced_at_once() {
        one_file_per_folder(SYNC_EACH_MAX * 3, 2);
    }

    #[test]
    fn a_full_buffer_asks_for_a_commit_and_the_commit_empties_it() {
        let tmp = tempfile::tempdir().unwrap();
        let budget = Arc::new(WorkerBudget::new(SinkLimits { open_files: 1, buffer_bytes: 200_000 }));
        let mut files = PartitionFiles::new(layout(tmp.path()), budget.clone(), 0, 0);
        stage(&mut files, 100, 50);
        assert!(!files.over_budget());
        stage(&mut files, 20_000, 50);
        assert!(files.over_budget(), "held {} of 200000 bytes", budget.held());
        files.commit(20_100).unwrap();
        assert!(!files.over_budget());
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_dropped_partition_gives_its_share_back() {
        let tmp = tempfile::tempdir().unwrap();
        let budget = Arc::new(WorkerBudget::new(SinkLimits { open_files: 4, buffer_bytes: 1 << 30 }));
        let mut files = PartitionFiles::new(layout(tmp.path()), budget.clone(), 0, 0);
        stage(&mut files, 5_000, 10); // beyond PUBLISH_BYTES, so the worker's count has them
        assert!(budget.open_files() == 4 && budget.held() > 0);
        drop(files);
        assert_eq!((budget.open_files(), budget.held()), (0, 0));
    }
}
