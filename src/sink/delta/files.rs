//! What a Delta `add` action says of one of streamlake's files: its path relative to the table,
//! its partition value (from its folder), its size and its row count.
//!
//! The files are the ones the Parquet format writes, unchanged: `id=3/part-….parquet`, with every
//! column of the dataflow (the partition column too, which Delta readers ignore in the file and
//! take from `partitionValues`), and the Kafka range in the footer (`streamlake.*`), which
//! `validate --audit` checks against each partition's `txn` version.

use std::collections::HashMap;

use deltalake_core::kernel::Add;

use crate::format::partition::decode_folder_value;

/// A file to add: its path relative to the table root (as on disk, Hive-escaped folder names
/// included; delta-rs percent-encodes it in the log), bytes and rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub rel: String,
    pub size: u64,
    pub rows: Option<u64>,
}

/// The partition values of a file at `rel` in a table partitioned by `columns` (none or one):
/// read from its `column=value` folder.
pub fn partition_values(rel: &str, columns: &[String]) -> HashMap<String, Option<String>> {
    let mut values = HashMap::with_capacity(columns.len());
    for column in columns {
        let value = rel
            .split('/')
            .filter_map(|segment| segment.split_once('='))
            .find(|(name, _)| name == column)
            .map(|(_, v)| decode_folder_value(v));
        values.insert(column.clone(), value);
    }
    values
}

/// The `add` action of `file`, committed now.
pub fn add_action(file: &NewFile, columns: &[String], now_ms: i64) -> Add {
    Add {
        path: file.rel.clone(),
        partition_values: partition_values(&file.rel, columns),
        size: file.size as i64,
        modification_time: now_ms,
        data_change: true,
        // Row counts let readers answer count(*) and plan scans without opening the file.
        stats: file.rows.map(|n| format!(r#"{{"numRecords":{n}}}"#)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_come_from_the_folder() {
        let cols = vec!["id".to_string()];
        let v = partition_values("id=3/part-0.parquet", &cols);
        assert_eq!(v.get("id"), Some(&Some("3".to_string())));
        let v = partition_values("sensor=a%2Fb/part-0.parquet", &["sensor".to_string()]);
        assert_eq!(v.get("sensor"), Some(&Some("a/b".to_string())));
        assert!(partition_values("part-0.parquet", &[]).is_empty());
        let add = add_action(&NewFile { rel: "id=3/p.parquet".into(), size: 10, rows: Some(4) }, &cols, 1);
        assert_eq!((add.size, add.stats.as_deref()), (10, Some(r#"{"numRecords":4}"#)));
    }
}
