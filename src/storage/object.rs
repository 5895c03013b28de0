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
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use super::store::{Created, Listed, Store, StoreError};

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
        let bad = |reason: &str| StoreError::BadUrl { url: given.to_string(), reason: reason.to_string() };
        let rest = given
            .split_once("://")
            .filter(|(scheme, _)| matches!(scheme.to_ascii_lowercase().as_str(), "s3" | "s3a"))
            .map(|(_, rest)| rest)
            .ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
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
        if given.contains(['?', '#']) {
            return Err(bad("query strings and fragments are not used; settings come from AWS_* variables"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part.is_empty() || part == "." || part == "..") && !prefix.is_empty()
        {
            return Err(bad("the prefix may not have empty, `.` or `..` parts"));
        }
        Ok(ObjectUrl { given: given.to_string(), bucket: bucket.to_string(), prefix: prefix.to_string() })
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
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120))
                    .with_allow_http(allow_http()),
            )
            .with_retry(RetryConfig { max_retries: 5, retry_timeout: RETRY_TIMEOUT, ..Default::default() });
        let mut endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .unwrap_or_else(|_| "AWS S3".to_string());
        for (key, value) in overrides {
            let config: AmazonS3ConfigKey = key.parse().map_err(|_| StoreError::BadUrl {
                url: url.given.clone(),
                reason: format!("unknown object-store setting `{key}`"),
            })?;
            if matches!(config, AmazonS3ConfigKey::Endpoint) {
                endpoint = value.to_string();
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

    pub fn url(&self) -> &ObjectUrl {
        &self.url
    }

    /// Checks, before anything is read from Kafka or written: the bucket exists, the credentials
    /// may list, write and delete under the prefix, and conditional create is honoured (unless
    /// `single_writer`). Leaves nothing behind: the probe object is deleted.
    pub fn check(&self, single_writer: bool) -> Result<(), StoreError> {
        let prefix = self.object_path("");
        self.runtime
            .block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map_err(|e| self.classify("list the prefix", &prefix, e, true))?;
        let probe = format!("_streamlake_probe_{}_{}", std::process::id(), rand::random::<u64>());
        let first = self.create(&probe, Bytes::from_static(b"probe"));
        let second = first.as_ref().ok().map(|_| self.create(&probe, Bytes::from_static(b"probe again")));
        let deleted = self.delete(&probe);
        first?;
        let second = second.expect("set when the first create succeeded")?;
        deleted?;
        if second == Created::New && !single_writer {
            return Err(StoreError::NoConditionalCreate { url: self.url.given.clone() });
        }
        Ok(())
    }

    fn object_path(&self, key: &str) -> ObjectPath {
        match (self.url.prefix.is_empty(), key.is_empty()) {
            (true, _) => ObjectPath::from(key),
            (false, true) => ObjectPath::from(self.url.prefix.as_str()),
            (false, false) => ObjectPath::from(format!("{}/{key}", self.url.prefix)),
        }
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
            source => StoreError::Object { doing, location: self.location(path), source },
        }
    }
}

fn allow_http() -> bool {
    std::env::var("AWS_ALLOW_HTTP")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// Whether `e` is a failure to connect (wrong endpoint, server down), after object_store's retries.
fn is_connect_error(e: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(http) = c.downcast_ref::<object_store::client::HttpError>() {
            return matches!(
                http.kind(),
                object_store::client::HttpErrorKind::Connect | object_store::client::HttpErrorKind::Timeout
            );
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

impl Store for ObjectStoreRoot {
    fn describe(&self) -> String {
        self.url.given.clone()
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.object_path(key);
        let got = self.runtime.block_on(async { self.store.get(&path).await?.bytes().await });
        match got {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.classify("read", &path, e, false)),
        }
    }

    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.object_path(key);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.classify("write", &path, e, false))
    }

    fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StoreError> {
        let path = self.object_path(key);
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.runtime.block_on(self.store.put_opts(&path, PutPayload::from(bytes), opts)) {
            Ok(_) => Ok(Created::New),
            // A 412 (AlreadyExists); a 409 is a concurrent conditional write of the same key
            // that S3 resolved for the other writer (Precondition).
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(Created::Exists)
            }
            Err(e) => Err(self.classify("create", &path, e, false)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let under = self.object_path(prefix.trim_end_matches('/'));
        let root_len = if self.url.prefix.is_empty() { 0 } else { self.url.prefix.len() + 1 };
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&under)).try_collect())
            .map_err(|e| self.classify("list", &under, e, true))?;
        let mut out: Vec<Listed> = metas
            .into_iter()
            .map(|m| Listed { key: m.location.as_ref()[root_len..].to_string(), size: m.size })
            .filter(|l| l.key.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.object_path(key);
        match self.runtime.block_on(self.store.delete(&path)) {
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
