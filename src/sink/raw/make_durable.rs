//! The raw side of a commit (step 1 of `sink::commit`): every file of the interval closed with its
//! footer and durable under its hidden name before any is renamed, and every rename and new folder
//! durable before the call returns. In one place, apart from the staging (`stage.rs`), because the
//! crash rules of docs/format.md rest on the order of these steps.
//!
//! With few files each is fsynced (concurrently, as before); with many (thousands of keys), one
//! `syncfs` of the run folder's file system replaces thousands of fsyncs (1.4 ms each on the
//! benchmark VM: 140 s for 100,000 files), once before the renames and once after.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::compute::interleave_record_batch;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;

use super::stage::{ensure_dir, PartitionFiles, QuarantinedRecord};
use super::{writer_props, CommitStats};
use crate::format::{self, meta};
use crate::parse::Key;
use crate::sink::durable::{publish, sync_all_concurrently, sync_dirs};
use crate::sink::{io_err, SinkError};

/// Up to this many files in one commit are fsynced one by one (concurrently); above it the
/// commit uses `syncfs` (on Linux).
pub(super) const SYNC_EACH_MAX: usize = 64;

/// A file closed by a commit, before its rename.
struct Closed {
    /// Kept for the fsync when the commit syncs file by file.
    handle: Option<File>,
    tmp: PathBuf,
    dir: PathBuf,
    folder: usize,
}

impl PartitionFiles {
    fn footer(&self, rows: u64, next_offset: i64, kind: &str) -> Vec<(&'static str, String)> {
        vec![
            (meta::TOPIC, self.layout.topic.clone()),
            (meta::PARTITION, self.partition.to_string()),
            (meta::START_OFFSET, self.start_offset.to_string()),
            (meta::END_OFFSET, next_offset.to_string()),
            (meta::ROWS, rows.to_string()),
            (meta::RANGE_MESSAGES, self.messages.to_string()),
            (meta::WORKER, self.layout.worker.to_string()),
            (meta::RUN_ID, self.layout.run_id.clone()),
            (meta::RUN_UID, self.layout.run_uid.clone()),
            (meta::KIND, kind.to_string()),
        ]
    }

    fn finish_writer(
        &self,
        mut writer: ArrowWriter<File>,
        rows: u64,
        next_offset: i64,
        tmp: &Path,
    ) -> Result<File, SinkError> {
        for (k, v) in self.footer(rows, next_offset, meta::KIND_RAW) {
            writer.append_key_value_metadata(KeyValue::new(k.to_string(), v));
        }
        crate::crash::point("raw.before_footer");
        writer.into_inner().map_err(|source| SinkError::Parquet { path: tmp.to_path_buf(), source })
    }

    /// Writes every buffered folder's rows to its file, one file at a time.
    fn write_buffered(
        &mut self,
        next_offset: i64,
        keep: bool,
        out: &mut Vec<Closed>,
    ) -> Result<(), SinkError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let run_dir = self.layout.run_dir.clone();
        self.buffer.seal(&self.layout.file_schema, &run_dir)?;
        let (order, starts) = self.buffer.grouped(self.folders.len());
        let chunks: Vec<&RecordBatch> = self.buffer.chunks.iter().collect();
        for f in 0..self.folders.len() {
            let rows = &order[starts[f]..starts[f + 1]];
            if rows.is_empty() {
                continue;
            }
            let key = self.folders[f].key.clone();
            let dir = self.layout.folder_path(key.as_ref().map(Key::as_ref));
            let tmp = dir.join(format::part_in_progress_name(
                self.partition,
                self.start_offset,
                self.layout.worker,
                &self.layout.run_uid,
            ));
            let batch = interleave_record_batch(&chunks, rows)
                .map_err(|source| SinkError::Arrow { path: tmp.clone(), source })?;
            ensure_dir(&dir, &mut self.new_dirs)?;
            let file = self.create_file(&tmp)?;
            let mut writer =
                ArrowWriter::try_new(file, self.layout.file_schema.clone(), Some(self.props.clone()))
                    .map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
            writer.write(&batch).map_err(|source| SinkError::Parquet { path: tmp.clone(), source })?;
            let handle = self.finish_writer(writer, rows.len() as u64, next_offset, &tmp)?;
            out.push(Closed { handle: keep.then_some(handle), tmp, dir, folder: f });
        }
        drop(chunks);
        self.buffer.clear();
        Ok(())
    }

    /// Closes every file of the interval `[start_offset, next_offset)`, makes them durable under
    /// their final names and returns what was written. The caller must write the checkpoint entry
    /// next; until then the files are uncommitted and a restart deletes them.
    pub fn commit(&mut self, next_offset: i64) -> Result<CommitStats, SinkError> {
        let layout = self.layout.clone();
        if self.budget.full() && self.budget.first_telling() {
            let limits = self.budget.limits();
            tracing::info!(
                worker = layout.worker,
                partition = self.partition,
                folders = self.folders.len(),
                open_files = self.budget.open_files(),
                buffer_mib = limits.buffer_bytes >> 20,
                "the sink holds this worker's whole --sink-buffer-mib share, so it commits before --roll-interval \
                 or --roll-size would; a larger --sink-buffer-mib (or a partition transform such as \
                 bucket(id, 16) when keys are many) makes fewer, larger files"
            );
        }
        let name = format::part_file_name(self.partition, self.start_offset, next_offset, layout.worker);
        let mut stats = CommitStats {
            start_offset: self.start_offset,
            next_offset,
            messages: self.messages,
            ..Default::default()
        };
        let mut closed = Vec::with_capacity(self.folders.len());
        // The streaming files first: their slots are free again before the buffered folders'
        // files are opened.
        for f in 0..self.folders.len() {
            let Some(mut file) = self.folders[f].file.take() else { continue };
            file.flush_batch(&layout.file_schema)?;
            let handle = self.finish_writer(file.writer, self.folders[f].rows, next_offset, &file.tmp)?;
            let dir = file.tmp.parent().map(Path::to_path_buf).unwrap_or_else(|| layout.run_dir.clone());
            closed.push(Closed { handle: Some(handle), tmp: file.tmp, dir, folder: f });
        }
        self.budget.closed(self.slots);
        self.slots = 0;
        let many = cfg!(target_os = "linux") && self.folders.len() > SYNC_EACH_MAX;
        // syncfs reports the write-back errors since this handle was opened, so it is opened
        // before the buffered files are written.
        let fs_handle = if many {
            Some(File::open(&layout.run_dir).map_err(io_err("open", &layout.run_dir))?)
        } else {
            None
        };
        self.write_buffered(next_offset, !many, &mut closed)?;

        // Each file durable under its hidden name before any appears under its final name.
        let to_sync: Vec<(&File, &Path)> =
            closed.iter().filter_map(|c| c.handle.as_ref().map(|h| (h, c.tmp.as_path()))).collect();
        sync_all_concurrently(&to_sync, "fsync")?;
        drop(to_sync);
        if let Some(h) = &fs_handle {
            syncfs(h, &layout.run_dir)?;
        }
        let mut dirs = Vec::with_capacity(closed.len() + 2);
        for c in closed {
            drop(c.handle);
            crate::crash::point("raw.before_rename");
            let dst = c.dir.join(&name);
            fs::rename(&c.tmp, &dst).map_err(io_err("rename into place", &dst))?;
            let folder = &self.folders[c.folder];
            let key = folder.key.as_ref().map(Key::as_ref);
            if let Some(k) = key {
                stats.rows_per_key.insert(layout.folder_value(k), folder.rows);
            }
            let rel = layout.file_rel(key, &name);
            stats.rows += folder.rows;
            stats.files.push(rel);
            if !many {
                dirs.push(c.dir);
            }
        }
        if self.new_dirs && !many {
            dirs.push(layout.run_dir.clone());
        }
        if !self.quarantine.is_empty() {
            let dir = layout.quarantine_dir();
            crate::sink::durable::create_dir_durable(&dir)?;
            let records = std::mem::take(&mut self.quarantine);
            for r in &records {
                let code = r.reason.split(':').next().unwrap_or("unknown").to_string();
                *stats.quarantined_by_reason.entry(code).or_insert(0) += 1;
            }
            stats.quarantined = records.len() as u64;
            let dst = dir.join(&name);
            self.write_quarantine(
                &records,
                &dst,
                self.footer(records.len() as u64, next_offset, meta::KIND_QUARANTINE),
            )?;
            dirs.push(dir);
            stats.files.push(format!("{}/{name}", format::QUARANTINE_DIR));
        }
        if let Some(h) = &fs_handle {
            syncfs(h, &layout.run_dir)?;
        }
        sync_dirs(&dirs)?;
        crate::crash::point("raw.after_rename");
        self.reset(next_offset);
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
        let file = self.create_file(&tmp)?;
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

/// Makes everything written to `dir`'s file system durable, and reports a write-back error seen
/// since `handle` was opened (Linux ≥ 5.8). Only used on Linux: elsewhere every file is fsynced.
#[cfg(target_os = "linux")]
pub(super) fn syncfs(handle: &File, dir: &Path) -> Result<(), SinkError> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor stays open for the duration of the call; syncfs reads nothing else.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(io_err("syncfs", dir)(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn syncfs(_: &File, _: &Path) -> Result<(), SinkError> {
    unreachable!("syncfs is only used on Linux")
}
