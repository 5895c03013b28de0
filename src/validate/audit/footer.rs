//! What the audit reads of one file: the streamlake key-value metadata of its Parquet footer
//! (see docs/format.md), or for a file `streamlake compact` merged, that of each file it replaced.

use std::collections::BTreeMap;

use parquet::file::metadata::ParquetMetaDataReader;

use super::files::AuditFile;
use crate::format::meta;

/// The streamlake key-value metadata of one file (see docs/format.md).
#[derive(Debug, Clone)]
pub(super) struct FileMeta {
    pub(super) partition: i32,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) rows: u64,
    pub(super) range_messages: u64,
    pub(super) kind: String,
    pub(super) run_id: Option<String>,
    /// `streamlake.worker`: the worker that wrote the file (the `w<WWW>` of its name).
    pub(super) worker: Option<u64>,
    pub(super) footer_rows: u64,
}

/// The footer of `file`: its own metadata, or, for a file `streamlake compact` merged, that of
/// each file it was merged from (named by its path in the table then).
pub(super) fn read_meta(file: &AuditFile) -> Result<Vec<(Option<String>, FileMeta)>, String> {
    let f =
        crate::validate::source::open(&file.path).map_err(|e| format!("cannot open {}: {e}", file.rel))?;
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&f)
        .map_err(|e| format!("cannot read the Parquet footer of {}: {e}", file.rel))?;
    let fm = meta.file_metadata();
    let kv: BTreeMap<&str, &str> = fm
        .key_value_metadata()
        .map(|kvs| kvs.iter().filter_map(|kv| Some((kv.key.as_str(), kv.value.as_deref()?))).collect())
        .unwrap_or_default();
    let footer_rows = u64::try_from(fm.num_rows()).unwrap_or(0);
    if kv.get(meta::KIND) == Some(&meta::KIND_COMPACTED) {
        return super::delta::compacted_sources(&kv, footer_rows, &file.rel);
    }
    Ok(vec![(None, meta_from_kv(&kv, footer_rows, &file.rel)?)])
}

/// A file's streamlake metadata from its key-value pairs; `rel` names it in errors.
pub(super) fn meta_from_kv(
    kv: &BTreeMap<&str, &str>,
    footer_rows: u64,
    rel: &str,
) -> Result<FileMeta, String> {
    fn get<T: std::str::FromStr>(kv: &BTreeMap<&str, &str>, key: &str, rel: &str) -> Result<T, String> {
        let raw = kv.get(key).ok_or_else(|| {
            format!("{rel} has no `{key}` metadata: it was not written by `streamlake run`, so the audit cannot place it")
        })?;
        raw.parse().map_err(|_| format!("{rel} has `{key}` = `{raw}`, which is not a number"))
    }
    Ok(FileMeta {
        partition: get(kv, meta::PARTITION, rel)?,
        start: get(kv, meta::START_OFFSET, rel)?,
        end: get(kv, meta::END_OFFSET, rel)?,
        rows: get(kv, meta::ROWS, rel)?,
        range_messages: get(kv, meta::RANGE_MESSAGES, rel)?,
        kind: kv.get(meta::KIND).map_or_else(String::new, |k| k.to_string()),
        run_id: kv.get(meta::RUN_ID).map(|r| r.to_string()),
        worker: kv.get(meta::WORKER).and_then(|w| w.parse().ok()),
        footer_rows,
    })
}
