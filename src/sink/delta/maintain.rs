//! `streamlake compact` and `streamlake vacuum`: keeping a Delta table's files few and its
//! storage bounded, safely while the job commits to it.
//!
//! Compaction merges the small files of each partition folder into files of about
//! `--target-size-mib`, and swaps them in with one Delta transaction (`remove` of the small ones,
//! `add` of the merged ones, both `dataChange: false`, operation `OPTIMIZE`): a reader sees the old
//! files or the new ones, never both and never neither. The job only appends, and delta-rs's
//! conflict check lets a blind append commit on top of a compaction (and a compaction on top of an
//! append), so neither has to stop; two compactions that merge the same file conflict, and the
//! loser deletes the files it wrote and says so.
//!
//! Each merged file keeps the Kafka ranges of the files it replaced in its footer
//! (`streamlake.sources`), so where the rows came from stays known.
//!
//! Vacuum deletes the files no longer in the table (those compaction replaced) once they are
//! older than `--retain`, through delta-rs (its "lite" mode: only files the log removed).

use std::future::IntoFuture;
use std::io::Write as _;

use bytes::Bytes;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, Remove};
use deltalake_core::protocol::DeltaOperation;
use deltalake_core::DeltaTable;
use object_store::ObjectStoreExt as _;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;

use super::snapshot::{files_of, ActiveFile};
use super::table::{delta_err, load, runtime, TableLocation};
use crate::format::meta;
use crate::sink::SinkError;

/// What `compact` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub files_before: usize,
    pub files_after: usize,
    /// Small files replaced, and the merged files that replace them.
    pub replaced: usize,
    pub written: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The table version of the compaction's commit (`None`: nothing to merge).
    pub version: Option<u64>,
}

/// Reads and writes a table's files where they live.
struct Files {
    location: TableLocation,
}

impl Files {
    fn read(&self, rel: &str, rt: &tokio::runtime::Runtime) -> Result<Bytes, SinkError> {
        match &self.location {
            TableLocation::Local(dir) => {
                let path = dir.join(rel);
                std::fs::read(&path).map(Bytes::from).map_err(crate::sink::io_err("read", &path))
            }
            TableLocation::Object { url, store } => {
                let key = object_key(url, rel);
                rt.block_on(async { store.get(&key).await?.bytes().await })
                    .map_err(|e| delta_err(url, "read a file of")(e.into()))
            }
        }
    }

    /// Writes `bytes` at `rel`, durably, all or nothing.
    fn write(&self, rel: &str, bytes: Bytes, rt: &tokio::runtime::Runtime) -> Result<(), SinkError> {
        match &self.location {
            TableLocation::Local(dir) => {
                let path = dir.join(rel);
                let tmp = path.with_extension("parquet.compacting");
                let mut file = std::fs::File::create(&tmp).map_err(crate::sink::io_err("create", &tmp))?;
                file.write_all(&bytes).map_err(crate::sink::io_err("write", &tmp))?;
                file.sync_all().map_err(crate::sink::io_err("fsync", &tmp))?;
                std::fs::rename(&tmp, &path).map_err(crate::sink::io_err("rename into place", &path))?;
                if let Some(parent) = path.parent() {
                    crate::sink::durable::sync_dir(parent)?;
                }
                Ok(())
            }
            TableLocation::Object { url, store } => {
                let key = object_key(url, rel);
                rt.block_on(store.put(&key, bytes.into()))
                    .map(|_| ())
                    .map_err(|e| delta_err(url, "write a file of")(e.into()))
            }
        }
    }

    fn delete(&self, rel: &str, rt: &tokio::runtime::Runtime) {
        let _ = match &self.location {
            TableLocation::Local(dir) => std::fs::remove_file(dir.join(rel)).map_err(|e| e.to_string()),
            TableLocation::Object { url, store } => {
                rt.block_on(store.delete(&object_key(url, rel))).map_err(|e| e.to_string())
            }
        };
    }
}

fn object_key(url: &str, rel: &str) -> object_store::path::Path {
    let without = url.trim_start_matches("s3://");
    let prefix = without.split_once('/').map_or("", |(_, p)| p).trim_end_matches('/');
    object_store::path::Path::from(if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    })
}

/// The folder of a file (`id=3`), or "" at the table root.
fn folder(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(f, _)| f)
}

/// Groups the small files of each folder into bins of at most `target` bytes; only bins of two
/// files or more are worth merging.
fn plan(files: &[ActiveFile], target: u64) -> Vec<Vec<ActiveFile>> {
    let mut by_folder: std::collections::BTreeMap<&str, Vec<&ActiveFile>> = Default::default();
    for f in files.iter().filter(|f| f.size < target) {
        by_folder.entry(folder(&f.rel)).or_default().push(f);
    }
    let mut bins = Vec::new();
    for (_, small) in by_folder {
        let mut bin: Vec<ActiveFile> = Vec::new();
        let mut bytes = 0;
        for f in small {
            if !bin.is_empty() && bytes + f.size > target {
                bins.push(std::mem::take(&mut bin));
                bytes = 0;
            }
            bytes += f.size;
            bin.push(f.clone());
        }
        bins.push(bin);
    }
    bins.retain(|b| b.len() >= 2);
    bins
}

/// Merges the files of `bin` into one Parquet file (rows in the order of the files), with the
/// sources' footers kept in `streamlake.sources`.
fn merge(
    bin: &[ActiveFile],
    files: &Files,
    rt: &tokio::runtime::Runtime,
    shown: &str,
) -> Result<Bytes, SinkError> {
    let bad = |rel: &str, e: String| SinkError::Delta {
        table: shown.to_string(),
        doing: "compact",
        source: Box::new(deltalake_core::DeltaTableError::Generic(format!("{rel}: {e}"))),
    };
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut sources = Vec::with_capacity(bin.len());
    for f in bin {
        let bytes = files.read(&f.rel, rt)?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&f.rel, e.to_string()))?;
        let kv: serde_json::Map<String, serde_json::Value> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .filter(|k| k.key.starts_with("streamlake."))
                    .map(|k| (k.key.clone(), serde_json::Value::from(k.value.clone().unwrap_or_default())))
                    .collect()
            })
            .unwrap_or_default();
        // A file merged before brings its own sources: the list stays flat, one entry per
        // original commit's file.
        match kv.get(meta::SOURCES).and_then(|v| v.as_str()).and_then(|t| serde_json::from_str(t).ok()) {
            Some(serde_json::Value::Array(inner)) => sources.extend(inner),
            _ => sources.push(serde_json::json!({"file": f.rel, "metadata": kv})),
        }
        let schema = builder.schema().clone();
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(
                ArrowWriter::try_new(
                    Vec::new(),
                    schema.clone(),
                    Some(crate::sink::raw::writer_props("compacted", &schema)),
                )
                .map_err(|e| bad(&f.rel, e.to_string()))?,
            ),
        };
        for batch in builder.build().map_err(|e| bad(&f.rel, e.to_string()))? {
            let batch = batch.map_err(|e| bad(&f.rel, e.to_string()))?;
            w.write(&batch)
                .map_err(|e| bad(&f.rel, format!("the files of one folder differ in schema ({e})")))?;
        }
    }
    let mut w = writer.ok_or_else(|| bad("", "nothing to merge".into()))?;
    w.append_key_value_metadata(KeyValue::new(meta::KIND.into(), meta::KIND_COMPACTED.to_string()));
    w.append_key_value_metadata(KeyValue::new(
        meta::SOURCES.into(),
        serde_json::Value::Array(sources).to_string(),
    ));
    let out = w.into_inner().map_err(|e| bad("", e.to_string()))?;
    Ok(Bytes::from(out))
}

/// Compacts the table at `location` (see the module doc).
pub fn compact(location: &TableLocation, target_bytes: u64) -> Result<Compacted, SinkError> {
    let rt = runtime()?;
    let shown = location.shown();
    let table = load(&rt, location)?.ok_or_else(|| {
        SinkError::OutputPath(format!("{shown} is not a Delta table (no _delta_log/); compact works on the tables of --table-format delta"))
    })?;
    let active = files_of(&table, &shown)?;
    let bins = plan(&active, target_bytes);
    let mut done = Compacted { files_before: active.len(), files_after: active.len(), ..Default::default() };
    if bins.is_empty() {
        return Ok(done);
    }
    let files = Files { location: location.clone() };
    let base = table.version().unwrap_or(0);
    let tag: u32 = rand::random();
    let now = chrono::Utc::now().timestamp_millis();
    let mut actions = Vec::new();
    let mut written = Vec::new();
    for (n, bin) in bins.iter().enumerate() {
        let bytes = merge(bin, &files, &rt, &shown)?;
        let dir = folder(&bin[0].rel);
        let name = format!("compacted-v{base:010}-{tag:08x}-{n:05}.parquet");
        let rel = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        let size = bytes.len() as u64;
        if let Err(e) = files.write(&rel, bytes, &rt) {
            written.iter().for_each(|r: &String| files.delete(r, &rt));
            return Err(e);
        }
        written.push(rel.clone());
        let rows: Option<u64> = bin.iter().map(|f| f.rows).sum();
        for f in bin {
            actions.push(Action::Remove(Remove {
                path: f.rel.clone(),
                data_change: false,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(f.partition_values.clone().into_iter().collect()),
                size: Some(f.size as i64),
                ..Default::default()
            }));
            done.bytes_in += f.size;
        }
        actions.push(Action::Add(Add {
            path: rel,
            partition_values: bin[0].partition_values.clone().into_iter().collect(),
            size: size as i64,
            modification_time: now,
            data_change: false,
            stats: rows.map(|n| format!(r#"{{"numRecords":{n}}}"#)),
            ..Default::default()
        }));
        done.replaced += bin.len();
        done.written += 1;
        done.bytes_out += size;
        tracing::info!(table = %shown, folder = dir, files = bin.len(), "merged");
    }
    crate::crash::point("compact.before_commit");
    let state = table.snapshot().map_err(delta_err(&shown, "read"))?.clone();
    let committed = rt.block_on(
        CommitBuilder::from(CommitProperties::default())
            .with_actions(actions)
            .build(
                Some(&state),
                table.log_store(),
                DeltaOperation::Optimize { predicate: None, target_size: target_bytes as i64 },
            )
            .into_future(),
    );
    match committed {
        Ok(c) => {
            done.version = Some(c.version());
            done.files_after = done.files_before - done.replaced + done.written;
            Ok(done)
        }
        Err(e) => {
            // Nothing refers to the merged files: they go, and the table is as it was.
            written.iter().for_each(|r| files.delete(r, &rt));
            Err(delta_err(&shown, "commit the compaction of")(e))
        }
    }
}

/// What `vacuum` did.
#[derive(Debug, Default, Clone)]
pub struct Vacuumed {
    pub deleted: Vec<String>,
    pub dry_run: bool,
}

/// Deletes the files the table no longer holds that were removed more than `retain` ago.
pub fn vacuum(
    location: &TableLocation,
    retain: std::time::Duration,
    dry_run: bool,
) -> Result<Vacuumed, SinkError> {
    let rt = runtime()?;
    let shown = location.shown();
    let table: DeltaTable = load(&rt, location)?.ok_or_else(|| {
        SinkError::OutputPath(format!("{shown} is not a Delta table (no _delta_log/); vacuum works on the tables of --table-format delta"))
    })?;
    let retain = chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
    let (_, metrics) = rt
        .block_on(
            table
                .vacuum()
                .with_retention_period(retain)
                // delta-rs refuses under the table's deletedFileRetentionDuration (7 days) unless told; a
                // shorter --retain is the user's explicit choice, checked in options.
                .with_enforce_retention_duration(false)
                .with_dry_run(dry_run)
                .into_future(),
        )
        .map_err(delta_err(&shown, "vacuum"))?;
    Ok(Vacuumed { deleted: metrics.files_deleted, dry_run })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(rel: &str, size: u64) -> ActiveFile {
        ActiveFile {
            rel: rel.into(),
            size,
            modified_ms: 0,
            partition_values: Default::default(),
            rows: Some(1),
        }
    }

    #[test]
    fn bins_are_per_folder_and_bounded() {
        let files =
            vec![f("id=1/a", 10), f("id=1/b", 10), f("id=1/c", 95), f("id=2/a", 10), f("id=3/a", 500)];
        let bins = plan(&files, 100);
        let names: Vec<Vec<&str>> = bins.iter().map(|b| b.iter().map(|f| f.rel.as_str()).collect()).collect();
        assert_eq!(names, vec![vec!["id=1/a", "id=1/b"]]);
        assert_eq!(object_key("s3://b/lake/run_x", "id=1/a").as_ref(), "lake/run_x/id=1/a");
    }
}
