//! The operations the commit protocol needs from where a dataset lives, and no more.
//!
//! Keys are `/`-separated paths relative to the dataset root (`run_x/id=3/part-….parquet`).
//! Each operation is atomic to a reader: an object or file is seen whole or not at all. What
//! differs between a file system and an object store is how that is achieved (a hidden name,
//! fsync and rename; a single PUT or a completed multipart upload), not what the protocol above
//! may rely on. `create` is the one primitive an exactly-once writer cannot do without: it lets
//! two writers of one partition race for the same checkpoint entry and guarantees one loses.

use bytes::Bytes;

/// What [`Store::create`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The key did not exist; it now holds the bytes given.
    New,
    /// The key existed; nothing was written.
    Exists,
}

/// An object (or file) under the dataset root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the dataset root.
    pub key: String,
    pub size: u64,
    /// When the object was last written, where the store says (a copy made by `validate` keeps
    /// it, so that `--incremental` recognises files it read before).
    pub modified: Option<std::time::SystemTime>,
}

/// A dataset root: a local folder ([`super::LocalStore`]) or an object-store prefix
/// ([`super::ObjectStoreRoot`]). Calls block the calling thread until the operation is durable.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The bytes at `key`; `None` if there is nothing there.
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Replaces whatever is at `key` with `bytes`, atomically.
    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError>;
    /// Writes `bytes` at `key` only if nothing is there yet, atomically: of two concurrent
    /// creates of one key exactly one returns [`Created::New`].
    fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StoreError>;
    /// Everything below `prefix` (a folder-like key such as `run_x/_checkpoint/`; `""` is the
    /// whole root), recursively, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError>;
    /// Removes `key`; removing a key that is not there is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Puts every `(key, bytes)`, each atomically, and returns once all are stored. A store may
    /// send them concurrently: a commit's files go up in parallel, not one round trip after
    /// another. On an error some may be stored and others not.
    fn put_all(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        objects.into_iter().try_for_each(|(key, bytes)| self.put(&key, bytes))
    }
    /// The dataset root as a user would write it (`s3://lake/x`, `/data/lake`), for messages.
    fn describe(&self) -> String;
}

/// A storage operation that failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "bucket `{bucket}` does not exist at {endpoint}; create it first, or check the bucket name in the URL \
         and AWS_ENDPOINT_URL"
    )]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error(
        "{url}: access denied while trying to {doing} ({detail}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY \
         (or AWS_SESSION_TOKEN, or the keys of the AWS_PROFILE profile in ~/.aws/credentials) and that they may \
         read, write, list and delete under this prefix"
    )]
    Denied { url: String, doing: &'static str, detail: String },
    #[error(
        "cannot reach the object store at {endpoint} to {doing} ({detail}); check AWS_ENDPOINT_URL (and \
         AWS_ALLOW_HTTP=true for a plain-http server) and that the server is running"
    )]
    Unreachable { endpoint: String, doing: &'static str, detail: String },
    #[error(
        "the object store at {endpoint} failed to {doing} ({detail}): a server or network error, not one of this \
         request; it usually passes. Check the server's health, then try again"
    )]
    Unavailable { endpoint: String, doing: &'static str, detail: String },
    #[error(
        "{url} does not honour conditional create (a PUT with If-None-Match: * overwrote an existing object), so \
         two writers of one partition could both commit and duplicate data. Use a store that supports it (AWS \
         S3, SeaweedFS, Ceph RGW, R2), or, if you are certain only one process writes each run, pass \
         --single-writer"
    )]
    NoConditionalCreate { url: String },
    #[error("cannot {doing} {location}: {source}")]
    Io {
        doing: &'static str,
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {doing} {location}: {source}")]
    Object {
        doing: &'static str,
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The AWS profile in force cannot be used.
    #[error(transparent)]
    Profile(#[from] super::profile::ProfileError),
    #[error("`{key}` is not a key under the dataset root: keys are relative, `/`-separated, without empty, `.` or `..` parts")]
    BadKey { key: String },
}

impl StoreError {
    /// Whether the same request may succeed later without anyone changing anything: the store
    /// could not be reached, or answered with a server error. A running job waits these out
    /// ([`super::Patient`]); a start-up check reports them.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. } | StoreError::Unavailable { .. })
    }
}

/// Refuses a key that could name something outside the root (`/abs`, `../x`) or nothing (`""`).
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty() && key.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadKey { key: key.to_string() })
    }
}
