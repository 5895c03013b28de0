//! What a run folder belongs to: `_checkpoint/identity.json`.
//!
//! A checkpoint's offsets mean something only for the topic that produced them, and its partial
//! window sums only for the dataflow that computed them. Before this file existed a run folder
//! resumed whatever topic and dataflow it was given: another topic's records were appended as a
//! "continuation", and 10 s partials were emitted as overlapping 20 s windows. So the first start
//! of a run folder records what produced it, and every later start compares, before anything is
//! written, and refuses a difference with an error that names each differing field.
//!
//! What is compared: the topic name, the topic's ID (a recreated topic has a new one), and the
//! dataflow's semantics (schema, time/key/value columns, window size, watermark, partitioning).
//! What may change between runs: worker and process counts, trigger, roll interval and size,
//! idle timeout, client settings: none of them changes what a committed file or partial means.
//!
//! The file also carries `run_uid`, a random name of this run folder's life. Every file the run
//! writes carries it in its metadata (`streamlake.run_uid`), and every cleanup deletes only files
//! that carry it: a file this run did not write is never deleted on the grounds that it is not
//! known.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::durable::sync_dir;
use super::{io_err, SinkError};
use crate::spec::{ColumnType, Field, Partitioning, Spec};

/// The on-disk format this build writes, and the identity's file name inside `_checkpoint/`:
/// both defined in [`crate::format`].
pub use crate::format::{FORMAT_VERSION, IDENTITY_FILE};

/// One schema field as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldIdentity {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub required: bool,
}

/// The parts of a dataflow that give committed files and partial sums their meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataflowIdentity {
    pub schema: Vec<FieldIdentity>,
    pub time: String,
    pub key: String,
    pub value: String,
    pub window_ms: u64,
    pub watermark_ms: u64,
    pub partition_by: String,
}

impl DataflowIdentity {
    pub fn of(spec: &Spec) -> Self {
        let name = |i: usize| spec.schema[i].name.clone();
        DataflowIdentity {
            schema: spec
                .schema
                .iter()
                .map(|f| FieldIdentity { name: f.name.clone(), ty: f.ty.name().into(), required: f.required })
                .collect(),
            time: name(spec.time_col),
            key: name(spec.key_col),
            value: name(spec.value_col),
            window_ms: spec.window_ms,
            watermark_ms: spec.watermark_ms,
            partition_by: spec.partition_by(),
        }
    }

    /// The recorded `partition_by`, resolved against the recorded schema (`Ok(None)`: `none`).
    /// For readers such as `validate --audit`, which know a run folder only by its identity.
    pub fn partitioning(&self) -> Result<Option<Partitioning>, String> {
        let schema = self
            .schema
            .iter()
            .map(|f| {
                let ty = serde_json::from_value::<ColumnType>(serde_json::Value::String(f.ty.clone()))
                    .map_err(|_| {
                        format!("field `{}` has type `{}`, which this build does not know", f.name, f.ty)
                    })?;
                Ok(Field { name: f.name.clone(), ty, required: f.required })
            })
            .collect::<Result<Vec<Field>, String>>()?;
        Partitioning::parse(&self.partition_by, &schema)
    }

    /// A short, stable digest for people and logs (FNV-1a over the canonical JSON: stable across
    /// Rust versions, unlike `DefaultHasher`). Comparison is field by field, never by this digest.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in canonical {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// `_checkpoint/identity.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub format_version: u32,
    pub run_id: String,
    /// Random, fixed at the folder's first start; carried by every file the run writes.
    pub run_uid: String,
    pub topic: String,
    /// Kafka's topic ID, when the broker could tell.
    pub topic_id: Option<String>,
    pub dataflow: DataflowIdentity,
    pub dataflow_fingerprint: String,
    pub created_at: String,
    pub created_by: String,
}

impl RunIdentity {
    /// The identity a run with these settings would record.
    pub fn expected(spec: &Spec, run_id: &str, topic_id: Option<String>) -> Self {
        let dataflow = DataflowIdentity::of(spec);
        RunIdentity {
            format_version: FORMAT_VERSION,
            run_id: run_id.to_string(),
            run_uid: new_run_uid(),
            topic: spec.topic.clone(),
            topic_id,
            dataflow_fingerprint: dataflow.fingerprint(),
            dataflow,
            created_at: chrono::Utc::now().to_rfc3339(),
            created_by: format!("streamlake {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Every field where `self` (recorded) and `now` (this run) disagree, as (field, recorded,
    /// now). A topic ID that this run could not learn is not a difference (the broker cannot
    /// tell); the offsets check still guards that case.
    pub fn differences(&self, now: &RunIdentity) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut diff = |field: &str, a: String, b: String| {
            if a != b {
                out.push((field.to_string(), a, b));
            }
        };
        diff("format_version", self.format_version.to_string(), now.format_version.to_string());
        diff("topic", self.topic.clone(), now.topic.clone());
        if let (Some(a), Some(b)) = (&self.topic_id, &now.topic_id) {
            diff("topic_id", a.clone(), b.clone());
        }
        let (a, b) = (&self.dataflow, &now.dataflow);
        let schema = |s: &[FieldIdentity]| {
            s.iter()
                .map(|f| format!("{}:{}{}", f.name, f.ty, if f.required { "" } else { "?" }))
                .collect::<Vec<_>>()
                .join(",")
        };
        diff("schema", schema(&a.schema), schema(&b.schema));
        diff("window.time", a.time.clone(), b.time.clone());
        diff("window.key", a.key.clone(), b.key.clone());
        diff("window.value", a.value.clone(), b.value.clone());
        diff("window.size", format!("{}ms", a.window_ms), format!("{}ms", b.window_ms));
        diff("window.watermark", format!("{}ms", a.watermark_ms), format!("{}ms", b.watermark_ms));
        diff("sink.partition_by", a.partition_by.clone(), b.partition_by.clone());
        out
    }
}

/// 128 random bits as 32 hex digits.
fn new_run_uid() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// Why a run folder cannot be resumed with these settings.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "run folder {run_dir} belongs to another job: {}. Nothing was written. Its checkpoint's offsets and \
         window state are only valid for what produced them. To process this input, use a new RUN_ID (or \
         another OUTPUT_PATH); to continue the old job, run it with its original topic and dataflow. \
         (Recorded in {path})",
        describe(.differences)
    )]
    Mismatch { run_dir: PathBuf, path: PathBuf, differences: Vec<(String, String, String)> },
    #[error(
        "run folder {run_dir} was written by an older streamlake (format 1), which did not record its topic \
         or dataflow, so resuming it cannot be checked for safety and is refused. Nothing was written. Its \
         files stay readable by `streamlake validate`. Start this job under a new RUN_ID (or another \
         OUTPUT_PATH); see docs/format.md, \"Format versions\""
    )]
    Legacy { run_dir: PathBuf },
    #[error(
        "run folder {run_dir} was written by a newer streamlake (format {found}, this one writes {FORMAT_VERSION}); \
         nothing was written. Use the newer streamlake, or a new RUN_ID"
    )]
    Newer { run_dir: PathBuf, found: u32 },
    #[error("{path} is damaged ({reason}); nothing was written. If the run folder is yours, restore the file from a backup; otherwise use a new RUN_ID")]
    Damaged { path: PathBuf, reason: String },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

fn describe(differences: &[(String, String, String)]) -> String {
    // Another ID under the same name is a recreated topic; under another name it is just another topic.
    let renamed = differences.iter().any(|(field, ..)| field == "topic");
    differences
        .iter()
        .map(|(field, was, now)| {
            if field == "topic_id" && renamed {
                format!("topic_id was {was}, now {now}")
            } else if field == "topic_id" {
                format!(
                    "topic_id was {was}, the topic now has ID {now} (the topic was deleted and recreated)"
                )
            } else {
                format!("{field} was `{was}`, now `{now}`")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn identity_path(run_dir: &Path) -> PathBuf {
    crate::format::checkpoint_dir(run_dir).join(IDENTITY_FILE)
}

/// Reads the recorded identity, if any.
pub fn load(run_dir: &Path) -> Result<Option<RunIdentity>, IdentityError> {
    let path = identity_path(run_dir);
    match fs::read_to_string(&path) {
        Ok(text) => parse_recorded(&text, run_dir, &path).map(Some),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SinkError::Io { doing: "read", path, source: e }.into()),
    }
}

/// A recorded identity from its text (`path` and `run_dir` name it in errors).
pub fn parse_recorded(text: &str, run_dir: &Path, path: &Path) -> Result<RunIdentity, IdentityError> {
    // The version first, so a newer format is named as such rather than as damage.
    let version = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("format_version").and_then(|x| x.as_u64()));
    if let Some(v) = version.filter(|v| *v > u64::from(FORMAT_VERSION)) {
        return Err(IdentityError::Newer { run_dir: run_dir.to_path_buf(), found: v as u32 });
    }
    serde_json::from_str(text)
        .map_err(|e| IdentityError::Damaged { path: path.to_path_buf(), reason: e.to_string() })
}

/// `recorded` if it matches `expected`, else the refusal naming every difference.
pub fn compare(
    recorded: RunIdentity,
    expected: &RunIdentity,
    run_dir: &Path,
    path: &Path,
) -> Result<RunIdentity, IdentityError> {
    let differences = recorded.differences(expected);
    if differences.is_empty() {
        Ok(recorded)
    } else {
        Err(IdentityError::Mismatch { run_dir: run_dir.to_path_buf(), path: path.to_path_buf(), differences })
    }
}

/// Whether the run folder holds committed state of a format-1 run (entries, no identity).
fn has_legacy_state(run_dir: &Path) -> bool {
    let cp = crate::format::checkpoint_dir(run_dir);
    if cp.join(crate::format::WINDOWS_FILE).exists() {
        return true;
    }
    fs::read_dir(cp.join(crate::format::PARTITIONS_DIR)).is_ok_and(|mut parts| {
        parts.any(|p| {
            p.ok().and_then(|p| fs::read_dir(p.path()).ok()).is_some_and(|mut files| {
                files.any(|f| f.is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".json")))
            })
        })
    })
}

/// The read-only check, before anything is created or locked: refuses a folder of another job
/// or of format 1. Returns the recorded identity when there is one.
pub fn check(run_dir: &Path, expected: &RunIdentity) -> Result<Option<RunIdentity>, IdentityError> {
    match load(run_dir)? {
        Some(recorded) => compare(recorded, expected, run_dir, &identity_path(run_dir)).map(Some),
        None if has_legacy_state(run_dir) => Err(IdentityError::Legacy { run_dir: run_dir.to_path_buf() }),
        None => Ok(None),
    }
}

/// Under the run lock: records `expected` if the folder has no identity yet, else checks it
/// again. Returns the identity in force. Several processes of one cluster may start together;
/// the file is created with a hard link, which fails if it exists, so exactly one identity (and
/// one `run_uid`) wins and the others adopt it.
pub fn establish(run_dir: &Path, expected: RunIdentity) -> Result<RunIdentity, IdentityError> {
    if let Some(recorded) = check(run_dir, &expected)? {
        return Ok(recorded);
    }
    let dir = crate::format::checkpoint_dir(run_dir);
    fs::create_dir_all(&dir).map_err(io_err("create folder", &dir))?;
    let path = identity_path(run_dir);
    let tmp = dir.join(format!(".{IDENTITY_FILE}.{}.tmp", expected.run_uid));
    let bytes = serde_json::to_vec_pretty(&expected).unwrap_or_default();
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(io_err("write", &tmp))?;
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(&dir)?;
            Ok(expected)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            check(run_dir, &expected)?.ok_or_else(|| IdentityError::Damaged {
                path: path.clone(),
                reason: "it appeared and vanished while this run started".into(),
            })
        }
        Err(e) => Err(SinkError::Io { doing: "create", path, source: e }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::EVENTS_TOML;

    fn spec(text: &str) -> Spec {
        Spec::parse(text, Path::new("events.toml")).unwrap()
    }

    #[test]
    fn first_start_records_later_starts_compare() {
        let tmp = tempfile::tempdir().unwrap();
        let a = RunIdentity::expected(&spec(EVENTS_TOML), "r", Some("AAAA".into()));
        let recorded = establish(tmp.path(), a.clone()).unwrap();
        assert_eq!(recorded.run_uid, a.run_uid);
        // Same job, another start (new random uid proposed): the recorded one stays in force.
        let again = RunIdentity::expected(&spec(EVENTS_TOML), "r", Some("AAAA".into()));
        assert_eq!(establish(tmp.path(), again).unwrap().run_uid, a.run_uid);
        // An unknown topic ID now is not a difference.
        assert!(check(tmp.path(), &RunIdentity::expected(&spec(EVENTS_TOML), "r", None)).is_ok());
    }

    #[test]
    fn every_semantic_change_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        establish(tmp.path(), RunIdentity::expected(&spec(EVENTS_TOML), "r", Some("OLD".into()))).unwrap();
        let changed = EVENTS_TOML.replace("size = \"10s\"", "size = \"20s\"");
        let mut other = RunIdentity::expected(&spec(&changed), "r", Some("NEW".into()));
        other.topic = "other".into();
        let err = check(tmp.path(), &other).unwrap_err().to_string();
        assert!(err.contains("window.size was `10000ms`, now `20000ms`"), "{err}");
        assert!(err.contains("topic was `events`, now `other`"), "{err}");
        assert!(err.contains("topic_id was OLD, now NEW"), "{err}");
        assert!(err.contains("new RUN_ID"), "{err}");
        // Trigger is not part of the identity.
        let trig = EVENTS_TOML.replace("trigger = \"10s\"", "trigger = \"1s\"");
        assert!(check(tmp.path(), &RunIdentity::expected(&spec(&trig), "r", Some("OLD".into()))).is_ok());
    }

    #[test]
    fn legacy_folders_are_refused_and_fresh_ones_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let e = RunIdentity::expected(&spec(EVENTS_TOML), "r", None);
        fs::create_dir_all(tmp.path().join("_checkpoint/locks")).unwrap();
        assert!(check(tmp.path(), &e).unwrap().is_none(), "a lock folder alone is not state");
        let p = tmp.path().join("_checkpoint/partitions/p=0");
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("00000000000000000010.json"), b"{}").unwrap();
        let err = check(tmp.path(), &e).unwrap_err().to_string();
        assert!(err.contains("format 1") && err.contains("new RUN_ID"), "{err}");
    }

    #[test]
    fn partition_by_is_recorded_normalized_and_identity_as_before() {
        // Identity records the column's name, as run folders from before transforms did, so they
        // resume unchanged.
        assert_eq!(DataflowIdentity::of(&spec(EVENTS_TOML)).partition_by, "id");
        let bucket = EVENTS_TOML.replace("partition_by = \"id\"", "partition_by = \" bucket( id ,16 ) \"");
        assert_eq!(DataflowIdentity::of(&spec(&bucket)).partition_by, "bucket(id, 16)");
        let none = EVENTS_TOML.replace("partition_by = \"id\"", "partition_by = \"none\"");
        assert_eq!(DataflowIdentity::of(&spec(&none)).partition_by, "none");
        // Readers resolve the recorded text again.
        let recorded = DataflowIdentity::of(&spec(&bucket)).partitioning().unwrap().unwrap();
        assert_eq!(recorded.folder_column(), "id_bucket");
        assert_eq!(DataflowIdentity::of(&spec(&none)).partitioning(), Ok(None));
        let tmp = tempfile::tempdir().unwrap();
        establish(tmp.path(), RunIdentity::expected(&spec(EVENTS_TOML), "r", None)).unwrap();
        let err =
            check(tmp.path(), &RunIdentity::expected(&spec(&bucket), "r", None)).unwrap_err().to_string();
        assert!(err.contains("sink.partition_by was `id`, now `bucket(id, 16)`"), "{err}");
    }

    #[test]
    fn fingerprint_is_stable() {
        let d = DataflowIdentity::of(&spec(EVENTS_TOML));
        assert_eq!(d.fingerprint(), DataflowIdentity::of(&spec(EVENTS_TOML)).fingerprint());
        let changed = EVENTS_TOML.replace("watermark = \"30s\"", "watermark = \"1m\"");
        assert_ne!(d.fingerprint(), DataflowIdentity::of(&spec(&changed)).fingerprint());
    }
}
