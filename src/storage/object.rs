//! [`Store`] on an S3-compatible object store, through the Apache Arrow project's `object_store`.
//!
//! Settings come the standard way, read by `object_store`'s own builder: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` (a non-AWS
//! server) and `AWS_ALLOW_HTTP=true` (a plain-http one, such as a local test server).
//!
//! Conditional create is a PUT with `If-None-Match: *` (`PutMode::Create`): AWS S3 has honoured it
//! since August 2024, and SeaweedFS, Ceph RGW and R2 do too. A server that ignores the header
//! would let two writers both "create" one checkpoint entry, so [`ObjectStoreRoot::check`] tries
//! it before anything is written, and refuses such a store.
//!
//! Every call blocks its thread on a small runtime of the store's own: the callers are timely
//! workers and command-line code, none of which runs inside an async runtime.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use super::store::{check_key, Created, Listed, Store, StoreError};

/// `s3://bucket/prefix` as given, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    /// The URL as given (it never holds credentials: those come from the environment).
    pub given: String,
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

impl ObjectUrl {
    /// Reads `s3://bucket[/prefix]` (also `s3a://`, as Spark writes it).
    pub fn parse(given: &str) -> Result<ObjectUrl, StoreError> {
        let shown = redact(given);
        let bad = |reason: &str| StoreError::BadUrl { url: shown.clone(), reason: reason.to_string() };
        let rest = given
            .split_once("://")
            .filter(|(scheme, _)| matches!(scheme.to_ascii_lowercase().as_str(), "s3" | "s3a"))
            .map(|(_, rest)| rest)
            .ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            return Err(bad(
                "credentials do not go in the URL (they would end up in logs and shell history); set \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
            ));
        }
        if given.contains(['?', '#']) {
            return Err(bad("query strings and fragments are not used; settings come from AWS_* variables"));
        }
        // S3's bucket naming rules, which also keep the name out of any path syntax.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_bucket {
            return Err(bad(
                "the bucket name must be 3-63 lower-case letters, digits, `-` or `.`, as in s3://my-bucket/lake",
            ));
        }
        let prefix = prefix.trim_matches('/');
        // The key is used as given (object_store's `Path::parse`: no percent-encoding added), so
        // that Spark, DuckDB and the AWS CLI find the objects under the prefix the user wrote.
        if !prefix.is_empty() && ObjectPath::parse(prefix).is_err() {
            return Err(bad("the prefix may not have empty, `.` or `..` parts, or control characters"));
        }
        Ok(ObjectUrl { given: shown, bucket: bucket.to_string(), prefix: prefix.to_string() })
    }
}

/// `url` with any `user:password@` of its authority masked, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// A dataset root under `s3://bucket/prefix`.
pub struct ObjectStoreRoot {
    url: ObjectUrl,
    endpoint: String,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ObjectStoreRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the store: its configuration holds the credentials.
        f.debug_struct("ObjectStoreRoot")
            .field("url", &self.url.given)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// How long requests are retried before an error is reported (object_store's default is three
/// minutes, too long to learn that a URL is wrong).
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

impl ObjectStoreRoot {
    /// A client for `url`, configured from the `AWS_*` environment. Nothing is sent yet; see
    /// [`ObjectStoreRoot::check`].
    pub fn open(url: &ObjectUrl) -> Result<ObjectStoreRoot, StoreError> {
        Self::open_with(url, &[])
    }

    /// [`ObjectStoreRoot::open`] with settings that take precedence over the environment, named
    /// as `object_store` names them (`aws_endpoint`, `aws_secret_access_key`, ...).
    pub fn open_with(url: &ObjectUrl, overrides: &[(&str, &str)]) -> Result<ObjectStoreRoot, StoreError> {
        // Start from the AWS_* environment (credentials, region, endpoint, AWS_ALLOW_HTTP, proxy
        // and timeout settings), and only fill in what it leaves unset.
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
        for (var, key, default) in [
            ("AWS_CONNECT_TIMEOUT", ClientConfigKey::ConnectTimeout, "5s"),
            ("AWS_TIMEOUT", ClientConfigKey::Timeout, "120s"),
        ] {
            if std::env::var_os(var).is_none() {
                builder = builder.with_config(AmazonS3ConfigKey::Client(key), default);
            }
        }
        builder = builder.with_retry(RetryConfig {
            max_retries: 5,
            retry_timeout: RETRY_TIMEOUT,
            ..Default::default()
        });
        // Then the AWS profile (~/.aws/credentials and config, AWS_PROFILE), key by key where
        // the environment leaves a setting unset, as the AWS SDKs do.
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let mut profile_endpoint = None;
        if let Some(p) = super::profile::from_env()? {
            if let (false, Some(key), Some(secret)) =
                (set("AWS_ACCESS_KEY_ID"), &p.access_key_id, &p.secret_access_key)
            {
                builder = builder.with_access_key_id(key).with_secret_access_key(secret);
                if let Some(token) = &p.session_token {
                    builder = builder.with_token(token);
                }
            }
            if let (false, Some(region)) = (set("AWS_REGION") || set("AWS_DEFAULT_REGION"), &p.region) {
                builder = builder.with_region(region);
            }
            if let (false, Some(e)) = (set("AWS_ENDPOINT_URL") || set("AWS_ENDPOINT"), &p.endpoint_url) {
                builder = builder.with_endpoint(e);
                // An http:// endpoint written in the profile is meant, as the AWS CLI takes it.
                if e.starts_with("http://") && !set("AWS_ALLOW_HTTP") {
                    builder = builder.with_allow_http(true);
                }
                profile_endpoint = Some(redact(e));
            }
        }
        let mut endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .map(|e| redact(&e))
            .ok()
            .or(profile_endpoint)
            .unwrap_or_else(|| "AWS S3".to_string());
        for (key, value) in overrides {
            let config: AmazonS3ConfigKey = key.parse().map_err(|_| StoreError::BadUrl {
                url: url.given.clone(),
                reason: format!("unknown object-store setting `{key}`"),
            })?;
            if matches!(config, AmazonS3ConfigKey::Endpoint) {
                endpoint = redact(value);
            }
            builder = builder.with_config(config, *value);
        }
        let store = builder
            .build()
            .map_err(|e| StoreError::BadUrl { url: url.given.clone(), reason: format!("{e}") })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                doing: "start the object-store client",
                location: url.given.clone(),
                source,
            })?;
        Ok(ObjectStoreRoot { url: url.clone(), endpoint, store: Arc::new(store), runtime })
    }

    /// The client, rooted at the bucket (for delta-rs, which takes an `ObjectStore`).
    pub fn bucket_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Checks, before anything is read from Kafka or written: the bucket exists, the credentials
    /// may list, write, read and delete under the prefix, and conditional create is honoured
    /// (with `single_writer`, a plain write is all that is asked). Leaves nothing behind: the
    /// probe object is deleted.
    pub fn check(&self, single_writer: bool) -> Result<(), StoreError> {
        let prefix = self.path_of("")?;
        self.runtime
            .block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map_err(|e| self.classify("list the prefix", &prefix, e, true))?;
        let probe = format!("_streamlake_probe_{}_{:016x}", std::process::id(), rand::random::<u64>());
        let outcome = self.probe(&probe, single_writer);
        let deleted = self.delete(&probe);
        outcome?;
        deleted
    }

    fn probe(&self, probe: &str, single_writer: bool) -> Result<(), StoreError> {
        let first = Bytes::from_static(b"probe");
        if single_writer {
            self.put(probe, first.clone())?;
        } else {
            self.create(probe, first.clone())?;
            // A store that ignores If-None-Match overwrites; one that does not know the header may
            // refuse the request instead (400, 501): either way it cannot fence two writers.
            match self.create(probe, Bytes::from_static(b"probe again")) {
                Ok(Created::Exists) => {}
                Ok(Created::New) => {
                    return Err(StoreError::NoConditionalCreate { url: self.url.given.clone() })
                }
                Err(StoreError::Object { source, .. }) if refuses_conditions(&source) => {
                    return Err(StoreError::NoConditionalCreate { url: self.url.given.clone() })
                }
                Err(e) => return Err(e),
            }
        }
        match self.get(probe)? {
            Some(bytes) if bytes == first => Ok(()),
            _ => Err(StoreError::NoConditionalCreate { url: self.url.given.clone() }),
        }
    }

    /// `key` under the prefix, as given: `Path::parse` keeps the bytes (`Path::from` would
    /// percent-encode `%`, which Hive-style folder names contain, and the objects would not be
    /// where other tools look).
    fn object_path(&self, key: &str) -> Result<ObjectPath, StoreError> {
        check_key(key)?;
        self.path_of(key)
    }

    /// `key` under the prefix (unchecked: also `""`, the prefix itself, and list prefixes).
    fn path_of(&self, key: &str) -> Result<ObjectPath, StoreError> {
        let full = match (self.url.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_string(),
            (false, true) => self.url.prefix.clone(),
            (false, false) => format!("{}/{key}", self.url.prefix),
        };
        ObjectPath::parse(&full).map_err(|e| StoreError::BadUrl {
            url: format!("s3://{}/{full}", self.url.bucket),
            reason: format!("not a valid object key ({e})"),
        })
    }

    fn location(&self, path: &ObjectPath) -> String {
        format!("s3://{}/{path}", self.url.bucket)
    }

    /// Turns an `object_store` error into one that says what to do. `listing`: a 404 can only
    /// mean a missing bucket (an empty prefix lists as empty).
    fn classify(
        &self,
        doing: &'static str,
        path: &ObjectPath,
        e: object_store::Error,
        listing: bool,
    ) -> StoreError {
        use object_store::Error as E;
        // object_store maps some statuses to variants (PUT, GET) and reports others, such as a
        // failed LIST, as a generic error that carries the response; then the S3 error code in
        // it (a stable part of the S3 API) tells the cause.
        let code = s3_error_code(&e);
        match e {
            E::NotFound { .. } if listing => {
                StoreError::NoSuchBucket { bucket: self.url.bucket.clone(), endpoint: self.endpoint.clone() }
            }
            _ if code.as_deref() == Some("NoSuchBucket") => {
                StoreError::NoSuchBucket { bucket: self.url.bucket.clone(), endpoint: self.endpoint.clone() }
            }
            E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
                StoreError::Denied { url: self.url.given.clone(), doing, detail: s3_message(&*source) }
            }
            e if matches!(
                code.as_deref(),
                Some("AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "ExpiredToken")
            ) =>
            {
                StoreError::Denied { url: self.url.given.clone(), doing, detail: s3_message(&e) }
            }
            e if is_connect_error(&e) => {
                StoreError::Unreachable { endpoint: self.endpoint.clone(), doing, detail: s3_message(&e) }
            }
            e if is_server_or_network_error(&e, code.as_deref()) => {
                StoreError::Unavailable { endpoint: self.endpoint.clone(), doing, detail: s3_message(&e) }
            }
            source => StoreError::Object { doing, location: self.location(path), source },
        }
    }
}

/// Whether `e` (after object_store's own retries) is a failure of the server or the network
/// rather than of the request: a transport error (timeout, reset connection), a 5xx status, or
/// one of S3's "try again" codes. NotFound, Precondition, AlreadyExists and the like are answers,
/// not failures, and are matched before this is asked.
fn is_server_or_network_error(e: &object_store::Error, code: Option<&str>) -> bool {
    if matches!(code, Some("InternalError" | "ServiceUnavailable" | "SlowDown" | "RequestTimeout")) {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<object_store::client::HttpError>().is_some() {
            return true;
        }
        // object_store's retry error, which carries the status, is not public; its message is
        // "Server returned non-2xx status code: <status> …".
        if c.to_string().contains("non-2xx status code: 5") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether `e` is a failure to connect (wrong endpoint, server down), after object_store's retries.
fn is_connect_error(e: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(http) = c.downcast_ref::<object_store::client::HttpError>() {
            // Only a failed connection: a timeout may be a slow transfer, or a write that was
            // applied, and "check the endpoint" would mislead.
            return matches!(http.kind(), object_store::client::HttpErrorKind::Connect);
        }
        cause = c.source();
    }
    false
}

/// The S3 error code of a response in `e`'s chain (`<Code>NoSuchBucket</Code>`), if any.
fn s3_error_code(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    xml_field(&innermost(e).to_string(), "Code")
}

/// What the server said, short: its S3 error code and message, or the innermost cause's first
/// line (object_store's messages nest the whole chain, request URL included).
fn s3_message(e: &(dyn std::error::Error + 'static)) -> String {
    let text = innermost(e).to_string();
    match (xml_field(&text, "Code"), xml_field(&text, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text.lines().next().unwrap_or_default().to_string(),
    }
}

fn innermost<'a>(e: &'a (dyn std::error::Error + 'static)) -> &'a (dyn std::error::Error + 'static) {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last
}

fn xml_field(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + len].to_string())
}

/// Whether a conditional PUT was refused because the store does not implement the condition.
fn refuses_conditions(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotImplemented { .. })
        || matches!(
            s3_error_code(e).as_deref(),
            Some("NotImplemented" | "InvalidArgument" | "InvalidRequest")
        )
}

/// Attempts of a conditional create that S3 answered with 409 ConditionalRequestConflict (a
/// concurrent write of the same key was in flight): the key's state is unknown, so ask again.
const CONFLICT_RETRIES: u32 = 5;

/// Uploads in flight at once in [`Store::put_all`]: enough to hide a round trip behind others
/// without opening a connection per file of a large commit.
const PUT_CONCURRENCY: usize = 16;

impl Store for ObjectStoreRoot {
    fn describe(&self) -> String {
        self.url.given.clone()
    }

    fn put_all(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        let paths: Vec<(ObjectPath, Bytes)> = objects
            .into_iter()
            .map(|(key, bytes)| Ok((self.object_path(&key)?, bytes)))
            .collect::<Result<_, StoreError>>()?;
        let store = &self.store;
        let puts = futures::stream::iter(paths.into_iter().map(|(path, bytes)| async move {
            store.put(&path, PutPayload::from(bytes)).await.map(|_| ()).map_err(|e| (path, e))
        }))
        .buffer_unordered(PUT_CONCURRENCY)
        .try_collect::<Vec<()>>();
        self.runtime.block_on(puts).map(|_| ()).map_err(|(path, e)| self.classify("write", &path, e, false))
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.object_path(key)?;
        let got = self.runtime.block_on(async { self.store.get(&path).await?.bytes().await });
        match got {
            Ok(bytes) => Ok(Some(bytes)),
            // A 404 for the bucket is not "nothing there": a checkpoint read must not look like
            // a fresh start because the bucket went away.
            Err(e @ object_store::Error::NotFound { .. })
                if s3_error_code(&e).as_deref() == Some("NoSuchBucket") =>
            {
                Err(self.classify("read", &path, e, true))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.classify("read", &path, e, false)),
        }
    }

    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.object_path(key)?;
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.classify("write", &path, e, false))
    }

    /// `Exists` can also mean that an earlier attempt of this very call was applied and its
    /// answer lost (object_store retries a PUT that timed out or got a 5xx): a caller that must
    /// know reads the key back and compares with its own bytes, which identify the writer.
    fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StoreError> {
        let path = self.object_path(key)?;
        let mut attempt = 0;
        loop {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.runtime.block_on(self.store.put_opts(&path, PutPayload::from(bytes.clone()), opts)) {
                Ok(_) => return Ok(Created::New),
                Err(e) if s3_error_code(&e).as_deref() == Some("ConditionalRequestConflict") => {
                    attempt += 1;
                    if attempt > CONFLICT_RETRIES {
                        return Err(self.classify("create", &path, e, false));
                    }
                    std::thread::sleep(Duration::from_millis(50 << attempt));
                }
                // 412 Precondition Failed: the key exists (object_store reports it as AlreadyExists).
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    return Ok(Created::Exists)
                }
                Err(e) => return Err(self.classify("create", &path, e, false)),
            }
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let under = prefix.trim_end_matches('/');
        if !under.is_empty() {
            check_key(under)?;
        }
        let root = self.path_of("")?;
        let under = self.path_of(under)?;
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&under)).try_collect())
            .map_err(|e| self.classify("list", &under, e, true))?;
        let mut out: Vec<Listed> = metas
            .into_iter()
            .filter_map(|m| {
                let parts = m.location.prefix_match(&root)?;
                let key = parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/");
                Some(Listed { key, size: m.size, modified: Some(m.last_modified.into()) })
            })
            .filter(|l| l.key.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.object_path(key)?;
        match self.runtime.block_on(self.store.delete(&path)) {
            Err(e @ object_store::Error::NotFound { .. })
                if s3_error_code(&e).as_deref() == Some("NoSuchBucket") =>
            {
                Err(self.classify("delete", &path, e, true))
            }
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.classify("delete", &path, e, false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        let u = ObjectUrl::parse("s3://lake/raw/events/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("lake", "raw/events"));
        let u = ObjectUrl::parse("s3a://my-lake.eu").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("my-lake.eu", ""));
        for bad in [
            "s3://",
            "s3://Lake/x",
            "s3://ab/x",
            "s3://lake/a//b",
            "s3://lake/../x",
            "s3://lake/x?region=eu",
            "gs://lake",
        ] {
            assert!(matches!(ObjectUrl::parse(bad), Err(StoreError::BadUrl { .. })), "{bad}");
        }
    }
}
