//! The on-disk format, defined once: folder and file names, Parquet key-value metadata keys, and
//! the checkpoint's JSON documents. The writers (`crate::sink`) and the reader (`crate::validate`)
//! both take them from here, so a change of the layout is a change of this module (and of
//! docs/format.md, which describes it for people and other readers).
//!
//! ```text
//! OUTPUT_PATH/run_<RUN_ID>/<key>=<k>/part-p<PPP>-o<START>-<END>-w<WWW>.parquet
//!                         /_quarantine/part-….parquet
//!                         /_checkpoint/identity.json
//!                         /_checkpoint/partitions/p=<P>/<NEXT_OFFSET>.json
//!                         /_checkpoint/windows.json
//!                         /_checkpoint/locks/process-<N>.lock
//! OUTPUT_PATH/../aggregates/<name of OUTPUT_PATH>/run_<RUN_ID>/windows-<FIRST>-<LAST>.parquet
//! ```

pub mod checkpoint;
pub mod meta;
pub mod partition;

use std::path::{Path, PathBuf};

/// The on-disk format this build writes, recorded in `identity.json`. 1: before identity.json
/// (refused by `run`, still read by `validate`); 2: identity.json, run_uid in every file,
/// aggregates keyed by OUTPUT_PATH's name. The checkpoint entry's own `version`
/// ([`checkpoint::ENTRY_VERSION`]) was added within format 2 and does not change this number: an
/// entry without it reads as version 1, the same layout.
pub const FORMAT_VERSION: u32 = 2;

/// The folder of a run that holds what is committed (hidden from dataset readers by its `_`).
pub const CHECKPOINT_DIR: &str = "_checkpoint";
/// The folder of a run with the records that did not fit the schema.
pub const QUARANTINE_DIR: &str = "_quarantine";
/// Inside `_checkpoint`: one `p=<P>` folder of entries per Kafka partition.
pub const PARTITIONS_DIR: &str = "partitions";
/// Inside `_checkpoint`: one lock file per process.
pub const LOCKS_DIR: &str = "locks";
/// Inside `_checkpoint`: what produced the run folder.
pub const IDENTITY_FILE: &str = "identity.json";
/// Inside `_checkpoint`: up to which window end the final rows are written.
pub const WINDOWS_FILE: &str = "windows.json";
/// In an aggregates folder: which run folder owns it.
pub const OWNER_FILE: &str = "_owner.json";
/// The folder, beside OUTPUT_PATH, that holds the aggregates of every run.
pub const AGGREGATES_DIR: &str = "aggregates";
/// The prefix of a run folder's name (`run_<RUN_ID>`).
pub const RUN_PREFIX: &str = "run_";
/// The last part of every in-progress name: hidden (it starts with `.`) and never data.
pub const IN_PROGRESS_SUFFIX: &str = ".inprogress";

/// `run_dir/_checkpoint`.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_DIR)
}

/// `run_dir/_checkpoint/partitions`.
pub fn partitions_dir(run_dir: &Path) -> PathBuf {
    checkpoint_dir(run_dir).join(PARTITIONS_DIR)
}

/// The name of partition P's entry folder: `p=<P>`.
pub fn partition_dir_name(partition: i32) -> String {
    format!("p={partition}")
}

/// The partition a `p=<P>` entry folder is of.
pub fn parse_partition_dir_name(name: &str) -> Option<Result<i32, std::num::ParseIntError>> {
    name.strip_prefix("p=").map(str::parse)
}

/// The name of the entry whose `next_offset` is `next_offset`: 20 digits, so names sort as offsets.
pub fn entry_file_name(next_offset: i64) -> String {
    format!("{next_offset:020}.json")
}

/// The name of the entry with commit sequence number `seq`, on an object store: 20 digits, so
/// names sort as commits. A conditional create of the next name is what fences a second writer.
pub fn sequence_entry_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

/// The name an entry must have: by sequence on an object store, by `next_offset` on local disk.
pub fn expected_entry_name(entry: &checkpoint::PartitionEntry) -> String {
    match entry.seq {
        Some(seq) => sequence_entry_name(seq),
        None => entry_file_name(entry.next_offset),
    }
}

/// `.u<run_uid>.inprogress`: the end of every in-progress name a run writes, so that a cleanup
/// deletes only its own.
pub fn in_progress_suffix(run_uid: &str) -> String {
    format!(".u{run_uid}{IN_PROGRESS_SUFFIX}")
}

/// Name of the committed file for a partition range (without folder).
pub fn part_file_name(partition: i32, start: i64, end: i64, worker: usize) -> String {
    part_file_name_seq(partition, start, end, worker, 0)
}

/// Name of the `seq`-th file of one folder for a partition range: a folder gets more than one file
/// per commit when the sink's bounds (`--max-open-files`, `--sink-buffer-mib`) closed its file
/// before the commit. The first keeps the plain name, later ones end in `-s<SEQ>` (3 digits or
/// more): `part-p002-o…-…-w003-s001.parquet`. The sequence is the order the files were started in,
/// so the names of a range are the same whenever the same flushes happen; a replay after a crash
/// starts from a clean slate anyway (the cleanup deletes every file of the run at or beyond the
/// committed position).
pub fn part_file_name_seq(partition: i32, start: i64, end: i64, worker: usize, seq: u32) -> String {
    if seq == 0 {
        format!("part-p{partition:03}-o{start:012}-{end:012}-w{worker:03}.parquet")
    } else {
        format!("part-p{partition:03}-o{start:012}-{end:012}-w{worker:03}-s{seq:03}.parquet")
    }
}

/// The start of the in-progress names of partition P's raw files.
pub fn part_in_progress_prefix(partition: i32) -> String {
    format!(".part-p{partition:03}-")
}

/// The in-progress name of a raw file of the range starting at `start` (its end is not known yet).
pub fn part_in_progress_name(partition: i32, start: i64, worker: usize, run_uid: &str) -> String {
    part_in_progress_name_seq(partition, start, worker, 0, run_uid)
}

/// The in-progress name of the `seq`-th file of a folder in the range starting at `start`.
pub fn part_in_progress_name_seq(
    partition: i32,
    start: i64,
    worker: usize,
    seq: u32,
    run_uid: &str,
) -> String {
    let seq = if seq == 0 { String::new() } else { format!("-s{seq:03}") };
    format!(
        "{}o{start:012}-w{worker:03}{seq}.parquet{}",
        part_in_progress_prefix(partition),
        in_progress_suffix(run_uid)
    )
}

/// The in-progress name of a file published under `name` as a whole (quarantine, window files).
pub fn in_progress_name(name: &str, run_uid: &str) -> String {
    format!(".{name}{}", in_progress_suffix(run_uid))
}

/// Parses `part-p<P>-o<START>-<END>-w<W>[-s<SEQ>].parquet` back into (partition, start, end).
pub fn parse_part_file_name(name: &str) -> Option<(i32, i64, i64)> {
    parse_part_file_name_seq(name).map(|(p, start, end, _)| (p, start, end))
}

/// Parses a part file name into (partition, start, end, seq); `seq` is 0 for the plain name.
pub fn parse_part_file_name_seq(name: &str) -> Option<(i32, i64, i64, u32)> {
    let rest = name.strip_prefix("part-p")?.strip_suffix(".parquet")?;
    let (p, rest) = rest.split_once("-o")?;
    let (start, rest) = rest.split_once('-')?;
    let (end, rest) = rest.split_once("-w")?;
    let (worker, seq) = match rest.split_once("-s") {
        Some((w, s)) => (w, s.parse().ok().filter(|s| *s > 0)?),
        None => (rest, 0),
    };
    worker.parse::<u64>().ok()?;
    Some((p.parse().ok()?, start.parse().ok()?, end.parse().ok()?, seq))
}

/// The prefix of every aggregates file name (`windows-<FIRST_END>-<LAST_END>.parquet`).
pub const WINDOW_FILE_PREFIX: &str = "windows-";

/// Name of the aggregates file holding windows ending from `first` to `last` (ms).
pub fn window_file_name(first: u64, last: u64) -> String {
    format!("{WINDOW_FILE_PREFIX}{first:015}-{last:015}.parquet")
}

/// The end (ms) of the first window of the aggregates file `name` (`windows-<FIRST>-<LAST>.parquet`).
pub fn window_file_first_end(name: &str) -> Option<i64> {
    let ends = name.strip_prefix(WINDOW_FILE_PREFIX)?.strip_suffix(".parquet")?;
    ends.split_once('-')?.0.parse().ok()
}

/// Columns of an aggregates file besides the key column (which has the key's name and type).
pub mod aggregate_columns {
    pub const WINDOW_START: &str = "window_start";
    pub const WINDOW_END: &str = "window_end";
    pub const AVG_VALUE: &str = "avg_value";
    pub const COUNT: &str = "count";
    pub const SUM: &str = "sum";
    pub const WORKER: &str = "worker";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_documented_ones() {
        let n = part_file_name(2, 100, 250, 3);
        assert_eq!(n, "part-p002-o000000000100-000000000250-w003.parquet");
        assert_eq!(parse_part_file_name(&n), Some((2, 100, 250)));
        assert_eq!(parse_part_file_name("part-0000.parquet"), None);
        let s = part_file_name_seq(2, 100, 250, 3, 7);
        assert_eq!(s, "part-p002-o000000000100-000000000250-w003-s007.parquet");
        assert_eq!(parse_part_file_name_seq(&s), Some((2, 100, 250, 7)));
        assert_eq!(parse_part_file_name_seq(&n), Some((2, 100, 250, 0)));
        assert_eq!(parse_part_file_name_seq("part-p002-o000000000100-000000000250-w003-s000.parquet"), None);
        assert_eq!(
            part_in_progress_name_seq(2, 100, 3, 2, "ab"),
            ".part-p002-o000000000100-w003-s002.parquet.uab.inprogress"
        );
        assert_eq!(
            part_in_progress_name(2, 100, 3, "ab"),
            ".part-p002-o000000000100-w003.parquet.uab.inprogress"
        );
        assert_eq!(in_progress_name("windows-1.parquet", "ab"), ".windows-1.parquet.uab.inprogress");
        assert_eq!(window_file_name(10_000, 20_000), "windows-000000000010000-000000000020000.parquet");
        assert_eq!(window_file_first_end(&window_file_name(10_000, 20_000)), Some(10_000));
        assert_eq!(window_file_first_end("windows-1.parquet"), None);
        assert_eq!(entry_file_name(120), "00000000000000000120.json");
        assert_eq!(parse_partition_dir_name(&partition_dir_name(7)), Some(Ok(7)));
        assert_eq!(parse_partition_dir_name("x"), None);
        assert_eq!(partitions_dir(Path::new("r")), Path::new("r/_checkpoint/partitions"));
    }
}
