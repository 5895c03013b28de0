//! An independent exactly-once check: what the topic holds, read with a plain Kafka consumer,
//! against what the run folder shows to a reader, keyed by (partition, offset).
//!
//! It trusts nothing streamlake computes. From the topic it takes every record; from the output
//! only the visible files (a reader's view) and their names, which carry the partition and the
//! offset range `[start, end)` each commit covers. For every commit it then rebuilds, from the
//! Kafka records of that range, what the files must contain: the good events per key in offset
//! order, and the bad ones in the quarantine with their exact offsets. An offset covered by two
//! commits is a duplicate; an offset covered by none (and not deliberately skipped with
//! `--on-data-loss=skip`) is lost. The one thing read from the checkpoint is the late count and
//! the skipped ranges, which the files cannot show.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::scratch::{cores, par_map};
use super::{bin, data_files};

/// Every record of a topic: partition → (offset, payload) in offset order.
pub type Records = BTreeMap<i32, Vec<(i64, Option<Vec<u8>>)>>;

/// Reads every record the topic holds now (from each partition's low to its high watermark).
pub fn consume_topic(brokers: &str, topic: &str) -> Records {
    consume_topic_with(brokers, topic, &[])
}

/// [`consume_topic`] with client settings (TLS, SASL) applied first, e.g. a properties file's.
pub fn consume_topic_with(brokers: &str, topic: &str, settings: &[(String, String)]) -> Records {
    let mut config = ClientConfig::new();
    for (key, value) in settings {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", "ledger-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("ledger consumer");
    let timeout = Duration::from_secs(30);
    let meta = consumer.fetch_metadata(Some(topic), timeout).expect("topic metadata");
    let partitions: Vec<i32> = meta.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut want: BTreeMap<i32, i64> = BTreeMap::new();
    let mut records = Records::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout).expect("watermarks");
        records.insert(p, Vec::new());
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).unwrap();
            want.insert(p, high);
        }
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut done: BTreeSet<i32> = BTreeSet::new();
    while done.len() < want.len() {
        assert!(Instant::now() < deadline, "ledger consumer did not reach the end of {topic} in 180 s");
        let Some(m) = consumer.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("ledger consumer error");
        let p = m.partition();
        records.get_mut(&p).unwrap().push((m.offset(), m.payload().map(|b| b.to_vec())));
        if m.offset() + 1 >= want[&p] {
            done.insert(p);
        }
    }
    records
}

/// What a good event of the `events` dataflow must become: (id, value bits), or `None` when the
/// record must be quarantined. Written from the schema, not from streamlake's parser.
pub fn expected_row(payload: Option<&[u8]>, max_future_ms: i64) -> Option<(i64, u64)> {
    let v: serde_json::Value = serde_json::from_slice(payload?).ok()?;
    let obj = v.as_object()?;
    let id = obj.get("id")?.as_i64().filter(|&id| i32::try_from(id).is_ok())?;
    let ts = chrono::DateTime::parse_from_rfc3339(obj.get("ts")?.as_str()?).ok()?;
    if ts.timestamp_millis() > max_future_ms {
        return None;
    }
    let value = obj.get("value")?.as_f64()?;
    match obj.get("source") {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::String(_)) => {}
        Some(_) => return None,
    }
    Some((id, value.to_bits()))
}

/// The figures of one check, printed by every reliability scenario.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub produced: u64,
    pub written: u64,
    pub quarantined: u64,
    pub skipped: u64,
    pub late: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub files: u64,
    pub quarantine_reasons: BTreeMap<String, u64>,
    pub problems: Vec<String>,
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "produced={} written={} quarantined={} skipped={} late={} duplicates={} lost={} (files={})",
            self.produced,
            self.written,
            self.quarantined,
            self.skipped,
            self.late,
            self.duplicates,
            self.lost,
            self.files
        )
    }
}

impl Ledger {
    /// produced = written + quarantined (+ deliberately skipped), nothing twice, nothing lost,
    /// every commit's content exactly what its offset range holds.
    pub fn assert_exact(&self, scenario: &str) {
        println!("[{scenario}] ledger: {self}");
        assert!(self.problems.is_empty(), "[{scenario}] ledger problems:\n{}", self.problems.join("\n"));
        assert_eq!(self.duplicates, 0, "[{scenario}] duplicates");
        assert_eq!(self.lost, 0, "[{scenario}] lost");
        assert_eq!(
            self.produced,
            self.written + self.quarantined + self.skipped,
            "[{scenario}] produced = written + quarantined + skipped"
        );
    }
}

/// One commit as the files show it: rows per key in file order, quarantined offsets.
#[derive(Default)]
struct Commit {
    rows: BTreeMap<i64, Vec<u64>>,
    quarantined: BTreeMap<i64, String>,
}

/// `part-p<P>-o<START>-<END>-w<W>[-s<SEQ>].parquet` → (P, START, END, W).
fn parse_part_name(name: &str) -> Option<(i32, i64, i64, u32)> {
    parse_part_name_seq(name).map(|(key, _)| key)
}

/// [`parse_part_name`] and the file's SEQ: 0 for the plain name, 1, 2, … for the further files
/// of one folder in one commit (`-s<SEQ>`, docs/format.md), in the order of their rows.
fn parse_part_name_seq(name: &str) -> Option<((i32, i64, i64, u32), u32)> {
    let rest = name.strip_prefix("part-p")?.strip_suffix(".parquet")?;
    let (p, rest) = rest.split_once("-o")?;
    let (start, rest) = rest.split_once('-')?;
    let (end, rest) = rest.split_once("-w")?;
    let (w, seq) = match rest.split_once("-s") {
        Some((w, seq)) => (w, seq.parse().ok().filter(|s| *s > 0)?),
        None => (rest, 0),
    };
    Some(((p.parse().ok()?, start.parse().ok()?, end.parse().ok()?, w.parse().ok()?), seq))
}

/// The newest checkpoint entry of every partition of a run folder.
pub fn newest_entries(run_dir: &Path) -> BTreeMap<i32, serde_json::Value> {
    let mut out = BTreeMap::new();
    let Ok(parts) = std::fs::read_dir(run_dir.join("_checkpoint/partitions")) else { return out };
    for p in parts.flatten() {
        let name = p.file_name().to_string_lossy().into_owned();
        let Some(partition) = name.strip_prefix("p=").and_then(|v| v.parse::<i32>().ok()) else { continue };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|f| f.extension().is_some_and(|x| x == "json"))
            .filter(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        entries.sort();
        if let Some(newest) = entries.last() {
            let v = serde_json::from_str(&std::fs::read_to_string(newest).unwrap())
                .unwrap_or_else(|e| panic!("checkpoint {} unreadable: {e}", newest.display()));
            out.insert(partition, v);
        }
    }
    out
}

/// What [`check`] takes from one visible file.
enum FileRead {
    /// Not a part file name.
    BadName,
    /// The footer cannot be read: a half-written file.
    Incomplete(String),
    /// The commit the name names (partition, start, end, worker), and the rows.
    Read((i32, i64, i64, u32), Content),
}

enum Content {
    /// (offset, reason code) per row, in file order.
    Quarantine(Vec<(i64, String)>),
    /// The `id=` folder's id and the value bits per row, in file order.
    Raw(i64, Vec<u64>),
    /// In neither an `id=` folder nor the quarantine.
    Outside,
}

/// Reads one file of the run folder (on any thread: it depends on nothing else).
fn read_file(file: &Path) -> FileRead {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let Some(key) = parse_part_name(&name) else { return FileRead::BadName };
    let folder = file.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    // Opening reads the footer: a half-written file fails here. Every column of every row is read
    // after that (a page that cannot be decoded fails the test).
    let reader = match std::fs::File::open(file)
        .map_err(|e| e.to_string())
        .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return FileRead::Incomplete(e),
    };
    let batches = reader.build().unwrap().map(|batch| batch.unwrap());
    let content = if folder == "_quarantine" {
        let mut rows = Vec::new();
        for batch in batches {
            let offs = batch.column_by_name("offset").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
            let reasons =
                batch.column_by_name("reason").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..batch.num_rows() {
                rows.push((offs.value(i), reasons.value(i).split(':').next().unwrap_or("").to_string()));
            }
        }
        Content::Quarantine(rows)
    } else if let Some(id) = folder.strip_prefix("id=").and_then(|v| v.parse::<i64>().ok()) {
        let mut values = Vec::new();
        for batch in batches {
            let v = batch.column_by_name("value").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
            values.extend((0..batch.num_rows()).map(|i| v.value(i).to_bits()));
        }
        Content::Raw(id, values)
    } else {
        Content::Outside
    };
    FileRead::Read(key, content)
}

/// Checks the run folder `run_dir` (`OUTPUT/run_<RUN_ID>`) against `records`.
pub fn check(run_dir: &Path, records: &Records, max_future_ms: i64) -> Ledger {
    let mut ledger = Ledger::default();
    let mut commits: BTreeMap<(i32, i64, i64, u32), Commit> = BTreeMap::new();

    // `data_files` is a reader's view, which skips `_` folders: the quarantine is listed on its own.
    let mut files = data_files(run_dir);
    files.extend(data_files(&run_dir.join("_quarantine")));
    // A folder's files of one commit hold its rows in SEQ order, and `-s001` sorts before the
    // plain name: a stable sort by SEQ puts each folder's files of a commit in row order.
    files.sort_by_key(|f| {
        parse_part_name_seq(&f.file_name().unwrap().to_string_lossy()).map_or(0, |(_, seq)| seq)
    });
    // The files are read on every core (most of the check's time with 100,000 key folders), then
    // taken in the order above.
    let reads = par_map(&files, cores(), |file| read_file(file));
    for (file, read) in files.iter().zip(reads) {
        ledger.files += 1;
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (key, read) = match read {
            FileRead::BadName => {
                ledger.problems.push(format!("visible file with an unexpected name: {}", file.display()));
                continue;
            }
            FileRead::Incomplete(e) => {
                ledger
                    .problems
                    .push(format!("visible file {} is not a complete Parquet file: {e}", file.display()));
                continue;
            }
            FileRead::Read(key, read) => (key, read),
        };
        let commit = commits.entry(key).or_default();
        match read {
            Content::Quarantine(rows) => {
                for (offset, reason) in rows {
                    *ledger.quarantine_reasons.entry(reason.clone()).or_insert(0) += 1;
                    ledger.quarantined += 1;
                    if commit.quarantined.insert(offset, reason).is_some() {
                        ledger.problems.push(format!("offset {offset} quarantined twice in {name}"));
                    }
                }
            }
            Content::Raw(id, values) => {
                ledger.written += values.len() as u64;
                commit.rows.entry(id).or_default().extend(values);
            }
            Content::Outside => {
                ledger.problems.push(format!("visible file outside id=/_quarantine: {}", file.display()));
            }
        }
    }

    let entries = newest_entries(run_dir);
    let mut skipped: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for (p, e) in &entries {
        ledger.late += e["total_late"].as_u64().unwrap_or(0);
        for r in e["skipped_ranges"].as_array().into_iter().flatten() {
            skipped.entry(*p).or_default().push((r[0].as_i64().unwrap(), r[1].as_i64().unwrap()));
        }
    }

    for (&p, recs) in records {
        ledger.produced += recs.len() as u64;
        let by_offset: BTreeMap<i64, Option<&[u8]>> = recs.iter().map(|(o, b)| (*o, b.as_deref())).collect();
        let mut cover: BTreeMap<i64, u32> = BTreeMap::new();
        for ((cp, start, end, w), commit) in
            commits.range((p, i64::MIN, i64::MIN, 0)..=(p, i64::MAX, i64::MAX, u32::MAX))
        {
            debug_assert_eq!(*cp, p);
            let mut want: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
            for (&o, payload) in by_offset.range(*start..*end) {
                *cover.entry(o).or_insert(0) += 1;
                let expected = expected_row(*payload, max_future_ms);
                match (expected, commit.quarantined.get(&o)) {
                    (Some((id, bits)), None) => want.entry(id).or_default().push(bits),
                    (None, Some(_)) => {}
                    (Some(_), Some(reason)) => ledger.problems.push(format!(
                        "p{p} offset {o}: a good event was quarantined ({reason})"
                    )),
                    (None, None) => ledger.problems.push(format!(
                        "p{p} offset {o}: a bad record is neither in the raw data nor quarantined (commit [{start},{end}) w{w})"
                    )),
                }
            }
            let missing = (*end - *start) as usize - by_offset.range(*start..*end).count();
            if missing > 0 {
                ledger.problems.push(format!(
                    "p{p}: commit [{start},{end}) w{w} covers {missing} offset(s) the topic does not hold"
                ));
            }
            for o in commit.quarantined.keys() {
                if !(*start..*end).contains(o) {
                    ledger.problems.push(format!(
                        "p{p}: quarantined offset {o} outside its file's range [{start},{end})"
                    ));
                }
            }
            let got: BTreeMap<i64, Vec<u64>> =
                commit.rows.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (*k, v.clone())).collect();
            if got != want {
                let keys: BTreeSet<&i64> = got.keys().chain(want.keys()).collect();
                for k in keys {
                    let (g, w_) = (got.get(k).map_or(0, Vec::len), want.get(k).map_or(0, Vec::len));
                    if got.get(k) != want.get(k) {
                        ledger.problems.push(format!(
                            "p{p} commit [{start},{end}) w{w} id={k}: files hold {g} row(s), the topic's range {w_} (or other values/order)"
                        ));
                    }
                }
            }
        }
        let ranges = skipped.get(&p).cloned().unwrap_or_default();
        let mut lost_examples = Vec::new();
        for &(o, _) in recs {
            match cover.get(&o).copied().unwrap_or(0) {
                0 if ranges.iter().any(|&(a, b)| (a..b).contains(&o)) => ledger.skipped += 1,
                0 => {
                    ledger.lost += 1;
                    if lost_examples.len() < 5 {
                        lost_examples.push(o);
                    }
                }
                1 => {}
                c => ledger.duplicates += u64::from(c - 1),
            }
        }
        if !lost_examples.is_empty() {
            ledger.problems.push(format!("p{p}: offsets in no commit, e.g. {lost_examples:?}"));
        }
    }
    for &(p, ..) in commits.keys() {
        if !records.contains_key(&p) {
            ledger.problems.push(format!("files for partition {p}, which the topic does not have"));
        }
    }
    ledger
}

/// Kafka records committed so far under `out/run_t` (the newest entries' totals), for polling a
/// live job.
pub fn committed(out: &Path) -> u64 {
    newest_entries(&out.join("run_t")).values().map(|e| e["total_messages"].as_u64().unwrap_or(0)).sum()
}

/// Runs `streamlake validate --audit` on the output folder: it must pass. Returns its stdout.
pub fn audit_ok(output: &Path) -> String {
    let out: Output = bin().args(["validate", "--audit", "--path"]).arg(output).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "validate --audit failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().find(|l| l.starts_with("audit:")).unwrap_or("(no audit line)").to_string();
    assert!(summary.ends_with("OK"), "audit summary: {summary}");
    println!("{summary}");
    stdout
}
