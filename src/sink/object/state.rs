//! The run's small documents on an object store: `identity.json`, the aggregates folder's
//! `_owner.json`, `windows.json`, and the window files. Each has the meaning it has on local disk
//! (see `sink::identity`, `sink::aggregates`, `sink::checkpoint`); only the atomic steps differ:
//! a conditional create instead of `link(2)`, a single PUT instead of temp file and rename.

use std::path::PathBuf;

use bytes::Bytes;

use super::ObjectTarget;
use crate::format::{self, meta};
use crate::sink::aggregates::AggregatesOwnerMark;
use crate::sink::checkpoint::WindowsEntry;
use crate::sink::identity::{self, IdentityError, RunIdentity};
use crate::sink::SinkError;
use crate::storage::{Created, Store};

impl ObjectTarget {
    fn shown(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("{}/{key}", self.store.describe().trim_end_matches('/')))
    }

    fn identity_key(&self) -> String {
        self.run(&format!("{}/{}", format::CHECKPOINT_DIR, format::IDENTITY_FILE))
    }

    fn windows_key(&self) -> String {
        self.run(&format!("{}/{}", format::CHECKPOINT_DIR, format::WINDOWS_FILE))
    }

    /// The read-only check before anything is written: refuses a run of another job.
    pub fn check_identity(&self, expected: &RunIdentity) -> Result<Option<RunIdentity>, IdentityError> {
        let key = self.identity_key();
        let Some(bytes) = self.store.get(&key).map_err(SinkError::from)? else { return Ok(None) };
        let (run, path) = (PathBuf::from(&self.run_url), self.shown(&key));
        let text = String::from_utf8_lossy(&bytes);
        let recorded = identity::parse_recorded(&text, &run, &path)?;
        identity::compare(recorded, expected, &run, &path).map(Some)
    }

    /// Records `expected` unless an identity exists (then checks it): of several processes
    /// starting together, the conditional create lets exactly one identity and `run_uid` win.
    pub fn establish_identity(&self, expected: RunIdentity) -> Result<RunIdentity, IdentityError> {
        if let Some(recorded) = self.check_identity(&expected)? {
            return Ok(recorded);
        }
        let bytes = serde_json::to_vec_pretty(&expected).map_err(|e| SinkError::Io {
            doing: "serialize",
            path: self.shown(&self.identity_key()),
            source: std::io::Error::other(e),
        })?;
        match self.store.create(&self.identity_key(), Bytes::from(bytes)).map_err(SinkError::from)? {
            Created::New => Ok(expected),
            Created::Exists => self.check_identity(&expected)?.ok_or_else(|| IdentityError::Damaged {
                path: self.shown(&self.identity_key()),
                reason: "it appeared and vanished while this run started".into(),
            }),
        }
    }

    fn owner_conflict(&self, reason: String) -> SinkError {
        SinkError::Io {
            doing: "use the aggregates folder",
            path: self.shown(&self.aggregates_key),
            source: std::io::Error::other(format!(
                "{reason}. Nothing was written. Choose an OUTPUT_PATH or RUN_ID whose aggregates folder \
                 (OUTPUT_PATH/../aggregates/<name of OUTPUT_PATH>/run_<RUN_ID>) is free"
            )),
        }
    }

    /// Refuses an aggregates folder that is a run folder, or belongs to another run
    /// (`run_uid` is `None` before the run's identity exists).
    pub fn check_owner(&self, run_uid: Option<&str>) -> Result<(), SinkError> {
        let checkpoint = format!("{}/{}/", self.aggregates_key, format::CHECKPOINT_DIR);
        if !self.store.list(&checkpoint)?.is_empty() {
            return Err(self.owner_conflict("it is another job's run folder".into()));
        }
        if self.store.get(&self.run(format::OWNER_FILE))?.is_some() {
            return Err(self.owner_conflict(format!("{} is another job's aggregates folder", self.run_url)));
        }
        match self.store.get(&format!("{}/{}", self.aggregates_key, format::OWNER_FILE))? {
            Some(bytes) => {
                let mark: AggregatesOwnerMark = serde_json::from_slice(&bytes).map_err(|e| {
                    self.owner_conflict(format!("it has a damaged {} ({e})", format::OWNER_FILE))
                })?;
                if Some(mark.run_uid.as_str()) != run_uid {
                    return Err(self.owner_conflict(format!(
                        "it belongs to run {} (run_uid {})",
                        mark.run_dir.display(),
                        mark.run_uid
                    )));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Marks the aggregates folder as this run's (once; a concurrent claim by another process of
    /// the same run finds the same `run_uid`).
    pub fn claim(&self, run_uid: &str) -> Result<(), SinkError> {
        let mark =
            AggregatesOwnerMark { run_dir: PathBuf::from(&self.run_url), run_uid: run_uid.to_string() };
        let bytes = serde_json::to_vec_pretty(&mark).map_err(std::io::Error::other).map_err(|source| {
            SinkError::Io { doing: "serialize", path: self.shown(&self.aggregates_key), source }
        })?;
        self.store.create(&format!("{}/{}", self.aggregates_key, format::OWNER_FILE), Bytes::from(bytes))?;
        self.check_owner(Some(run_uid))
    }

    pub fn load_windows(&self) -> Result<WindowsEntry, SinkError> {
        let key = self.windows_key();
        match self.store.get(&key)? {
            Some(bytes) => WindowsEntry::from_json(&String::from_utf8_lossy(&bytes))
                .map_err(|e| SinkError::DamagedCheckpoint { path: self.shown(&key), reason: e.to_string() }),
            None => Ok(WindowsEntry::default()),
        }
    }

    /// Puts `windows.json` (one PUT: readers see the old or the new mark, whole).
    pub fn write_windows(&self, entry: &WindowsEntry) -> Result<(), SinkError> {
        let key = self.windows_key();
        let bytes = Bytes::from(
            serde_json::to_vec_pretty(entry)
                .map_err(std::io::Error::other)
                .map_err(|source| SinkError::Io { doing: "serialize", path: self.shown(&key), source })?,
        );
        crate::crash::point("aggregates.before_mark");
        self.holder_write("write windows.json", &key, |s| s.put(&key, bytes.clone()))
    }

    /// Uploads the window file `name`, written into the aggregates spool.
    pub fn upload_windows(&self, name: &str) -> Result<(), SinkError> {
        self.wait_for_lease()?;
        self.upload(&self.aggregates_spool(), &[name.to_string()], &self.aggregates_key).map(|_| ())
    }

    /// Deletes this run's window files that `windows.json` does not list (put before a crash,
    /// never marked: their windows are emitted again). Returns what was removed.
    pub fn remove_unmarked(&self, run_uid: &str, listed: &[String]) -> Result<Vec<String>, SinkError> {
        let mut removed = Vec::new();
        for l in self.store.list(&format!("{}/", self.aggregates_key))? {
            let name = l.key.rsplit('/').next().unwrap_or_default();
            let unmarked = name.starts_with(format::WINDOW_FILE_PREFIX)
                && name.ends_with(".parquet")
                && !listed.iter().any(|n| n == name);
            if !unmarked {
                continue;
            }
            let Some(bytes) = self.store.get(&l.key)? else { continue };
            let ours = meta::read_from(bytes)
                .is_ok_and(|kv| kv.iter().any(|(k, v)| k == meta::RUN_UID && v == run_uid));
            if ours {
                self.store.delete(&l.key)?;
                removed.push(self.shown(&l.key).display().to_string());
            }
        }
        Ok(removed)
    }
}
