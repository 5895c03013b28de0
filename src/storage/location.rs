//! Where a dataset lives, as the user named it: `--output` of `run`, `--path` of `validate`.
//!
//! A plain path and a `file:///abs/path` URL name a local (or mounted) file system, which is
//! what streamlake writes to today, with the hidden-name, fsync and rename protocol of
//! docs/format.md. Anything else that looks like a URL (`scheme://…`) is refused here, before
//! anything is created: an object store has no rename and no fsync, so writing "into" an
//! `s3://` URL as if it were a folder name would put the data in a local folder called `s3:`
//! and exit 0, which is how the bug this module fixes looked.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::object::ObjectUrl;
use super::store::StoreError;

/// Schemes of object stores (as `object_store` and Spark/Hadoop name them): refused with a
/// message that says so, rather than as an unknown scheme.
const OBJECT_STORE_SCHEMES: &[&str] =
    &["s3", "s3a", "s3n", "gs", "gcs", "az", "azure", "abfs", "abfss", "adl", "wasb", "wasbs", "r2", "oss"];

/// A dataset location that streamlake can write and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on a local or mounted file system (from a plain path or a `file://` URL).
    Local(PathBuf),
    /// `s3://bucket/prefix` (or `s3a://`).
    S3(ObjectUrl),
}

impl Location {
    /// Reads `raw` as given to `flag` (`--output`, `--path`): a plain path, or a URL whose scheme
    /// streamlake supports.
    pub fn parse(raw: &OsStr, flag: &'static str) -> Result<Location, LocationError> {
        // A path that is not UTF-8 cannot be a URL: it is a local path, used as given.
        let Some(text) = raw.to_str() else { return Ok(Location::Local(PathBuf::from(raw))) };
        let Some((scheme, slashes, rest)) = split_scheme(text) else {
            return Ok(Location::Local(PathBuf::from(raw)));
        };
        let lower = scheme.to_ascii_lowercase();
        let known = lower == "file" || OBJECT_STORE_SCHEMES.contains(&lower.as_str());
        if !slashes && !known {
            // `run:2024`, `c:data`: a folder name with a colon, not a URL.
            return Ok(Location::Local(PathBuf::from(raw)));
        }
        let given = super::object::redact(text);
        match (lower.as_str(), slashes) {
            // file:///abs/path or file://localhost/abs/path, and the one-slash file:/abs/path that
            // Java and Spark print (RFC 8089); another host is not a local file.
            ("file", _) => {
                let path = if slashes { rest.strip_prefix("localhost").unwrap_or(rest) } else { rest };
                if !path.starts_with('/') {
                    return Err(LocationError::FileUrlHost { flag, given });
                }
                if path.contains('%') {
                    return Err(LocationError::FileUrlEscapes { flag, given });
                }
                Ok(Location::Local(PathBuf::from(path)))
            }
            (_, false) => Err(LocationError::MissingSlashes { flag, given, scheme: lower }),
            ("s3" | "s3a", true) => ObjectUrl::parse(text).map(Location::S3).map_err(|e| match e {
                StoreError::BadUrl { reason, .. } => LocationError::BadObjectUrl { flag, given, reason },
                other => LocationError::BadObjectUrl { flag, given, reason: other.to_string() },
            }),
            (s, true) if OBJECT_STORE_SCHEMES.contains(&s) => {
                Err(LocationError::ObjectStore { flag, given, scheme: lower })
            }
            _ => Err(LocationError::UnknownScheme { flag, given, scheme: scheme.to_string() }),
        }
    }

    /// The local path, for the writers and readers that only know file systems: an object-store
    /// URL is refused here.
    pub fn require_local(&self, flag: &'static str) -> Result<&Path, LocationError> {
        match self {
            Location::Local(path) => Ok(path),
            Location::S3(url) => Err(LocationError::ObjectStore {
                flag,
                given: url.given.clone(),
                scheme: url.given.split_once("://").map_or("s3", |(s, _)| s).to_ascii_lowercase(),
            }),
        }
    }
}

/// `scheme`, whether `//` follows its colon, and the rest, if `text` starts with a URL scheme
/// (RFC 3986: a letter, then letters, digits, `+`, `-` or `.`, then `:`).
fn split_scheme(text: &str) -> Option<(&str, bool, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !valid {
        return None;
    }
    Some(match rest.strip_prefix("//") {
        Some(after) => (scheme, true, after),
        None => (scheme, false, rest),
    })
}

/// A location streamlake cannot use; nothing has been created when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error(
        "{flag} {given}: `{scheme}://` is object storage that this version of streamlake does not support: it \
         writes and reads S3 and S3-compatible stores (s3://bucket/prefix, with the endpoint in AWS_ENDPOINT_URL), \
         and local or mounted folders. Nothing was written. Give an s3:// URL, a path such as \
         data/output/parquet, or file:///abs/path"
    )]
    ObjectStore { flag: &'static str, given: String, scheme: String },
    #[error("{flag} {given}: {reason}")]
    BadObjectUrl { flag: &'static str, given: String, reason: String },
    #[error(
        "{flag} {given}: unknown URL scheme `{scheme}://`. Nothing was written. Give a folder path such as \
         data/output/parquet, or a file:///abs/path URL"
    )]
    UnknownScheme { flag: &'static str, given: String, scheme: String },
    #[error(
        "{flag} {given}: a file:// URL names an absolute path on this host, with three slashes: \
         file:///data/lake (or a plain path such as data/lake)"
    )]
    FileUrlHost { flag: &'static str, given: String },
    #[error(
        "{flag} {given}: percent-escapes in a file:// URL are not decoded here; give the path itself \
         (quoted in the shell if it has spaces)"
    )]
    FileUrlEscapes { flag: &'static str, given: String },
    #[error(
        "{flag} {given}: a `{scheme}` URL has two slashes after the colon, as in {scheme}://bucket/prefix"
    )]
    MissingSlashes { flag: &'static str, given: String, scheme: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Location, LocationError> {
        let flag = "--output (OUTPUT_PATH)";
        Location::parse(OsStr::new(s), flag)
            .and_then(|l| l.require_local(flag).map(Path::to_path_buf).map(Location::Local))
    }

    #[test]
    fn paths_and_file_urls_are_local() {
        for (given, path) in [
            ("data/output/parquet", "data/output/parquet"),
            ("/abs/lake", "/abs/lake"),
            ("./s3:/x", "./s3:/x"),
            ("dir/x://y", "dir/x://y"),
            ("file:///abs/lake", "/abs/lake"),
            ("FILE:///abs/lake", "/abs/lake"),
            ("file://localhost/abs/lake", "/abs/lake"),
            ("file:/abs/lake", "/abs/lake"),
            ("run:2024/x", "run:2024/x"),
        ] {
            assert_eq!(parse(given), Ok(Location::Local(PathBuf::from(path))), "{given}");
        }
    }

    #[test]
    fn object_store_urls_are_refused_by_name() {
        for given in
            ["s3://lake/x", "S3://lake", "s3a://bkt/p", "gs://b/p", "az://c/p", "abfss://container/p"]
        {
            let err = parse(given).unwrap_err();
            assert!(matches!(err, LocationError::ObjectStore { .. }), "{given}: {err:?}");
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("--output (OUTPUT_PATH) {given}:")), "{msg}");
            assert!(msg.contains("Nothing was written"), "{msg}");
        }
    }

    #[test]
    fn other_urls_are_refused() {
        for given in ["http://host/x", "hdfs://nn/x", "ftp://h/x"] {
            assert!(matches!(parse(given), Err(LocationError::UnknownScheme { .. })), "{given}");
        }
        assert!(matches!(parse("file://otherhost/x"), Err(LocationError::FileUrlHost { .. })));
        assert!(matches!(parse("file://relative/x"), Err(LocationError::FileUrlHost { .. })));
        assert!(matches!(parse("file:///a/my%20lake"), Err(LocationError::FileUrlEscapes { .. })));
        for typo in ["s3:/lake/x", "s3:lake", "gs:/b/p"] {
            assert!(matches!(parse(typo), Err(LocationError::MissingSlashes { .. })), "{typo}");
        }
        let err = parse("s3://NoSuch_Bucket/x").unwrap_err();
        assert!(matches!(err, LocationError::BadObjectUrl { .. }), "{err:?}");
        let msg = err.to_string();
        assert_eq!(msg.matches("s3://NoSuch_Bucket/x").count(), 1, "the URL is named once: {msg}");
        // Credentials in a URL are refused, and never echoed.
        let err = parse("s3a://AKIAEXAMPLE:wJalrSECRET@lake/x").unwrap_err().to_string();
        assert!(err.contains("credentials do not go in the URL"), "{err}");
        assert!(!err.contains("wJalrSECRET") && !err.contains("AKIAEXAMPLE"), "{err}");
        let err = parse("hdfs://user:pw@nn/x").unwrap_err().to_string();
        assert!(!err.contains("user:pw"), "{err}");
    }

    #[test]
    fn s3_urls_name_bucket_and_prefix() {
        let got = Location::parse(OsStr::new("s3://lake/raw/x"), "--output").unwrap();
        let Location::S3(url) = got else { panic!("{got:?}") };
        assert_eq!((url.bucket.as_str(), url.prefix.as_str()), ("lake", "raw/x"));
    }
}
