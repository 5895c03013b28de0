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
        let Some((scheme, rest)) = split_scheme(text) else {
            return Ok(Location::Local(PathBuf::from(raw)));
        };
        let given = text.to_string();
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                // file:///abs/path, or file://localhost/abs/path (RFC 8089); another host is not
                // a local file.
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(LocationError::FileUrlHost { flag, given });
                }
                Ok(Location::Local(PathBuf::from(path)))
            }
            "s3" | "s3a" => ObjectUrl::parse(text)
                .map(Location::S3)
                .map_err(|e| LocationError::BadObjectUrl { flag, given, reason: e.to_string() }),
            s if OBJECT_STORE_SCHEMES.contains(&s) => {
                Err(LocationError::ObjectStore { flag, given, scheme: scheme.to_string() })
            }
            _ => Err(LocationError::UnknownScheme { flag, given, scheme: scheme.to_string() }),
        }
    }

    /// The local path, for the writers and readers that only know file systems: every one of
    /// them today, so an object-store URL is refused here until its commit protocol is built.
    pub fn require_local(&self, flag: &'static str) -> Result<&Path, LocationError> {
        match self {
            Location::Local(path) => Ok(path),
            Location::S3(url) => {
                Err(LocationError::ObjectStore { flag, given: url.given.clone(), scheme: "s3".to_string() })
            }
        }
    }
}

/// `scheme` and what follows `scheme://`, if `text` starts with a URL scheme (RFC 3986: a letter,
/// then letters, digits, `+`, `-` or `.`).
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some((scheme, rest))
}

/// A location streamlake cannot use; nothing has been created when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error(
        "{flag} {given}: `{scheme}://` is object storage, which this version of streamlake cannot write to or read \
         from yet (an object store has no rename and no fsync, and the exactly-once protocol for it is not built). \
         Nothing was written. Give a local or mounted folder instead: a path such as data/output/parquet, or \
         file:///abs/path"
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
        ] {
            assert_eq!(parse(given), Ok(Location::Local(PathBuf::from(path))), "{given}");
        }
    }

    #[test]
    fn object_store_urls_are_refused_by_name() {
        for given in ["s3://lake/x", "S3://lake", "s3a://bkt/p", "gs://b/p", "az://c/p", "abfss://c@a/p"] {
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
        assert!(matches!(parse("s3://NoSuch_Bucket/x"), Err(LocationError::BadObjectUrl { .. })));
    }

    #[test]
    fn s3_urls_name_bucket_and_prefix() {
        let got = Location::parse(OsStr::new("s3://lake/raw/x"), "--output").unwrap();
        let Location::S3(url) = got else { panic!("{got:?}") };
        assert_eq!((url.bucket.as_str(), url.prefix.as_str()), ("lake", "raw/x"));
    }
}
