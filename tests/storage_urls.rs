//! `--output` and `validate --path` take a path or a `file://` URL; any other URL is refused
//! before anything is created (before this check, `run --output s3://lake/x` exited 0 after
//! writing into a local folder named `s3:`).

use std::path::Path;

use crate::common::bin;

/// Every entry below `dir`, for "nothing was created".
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn object_store_and_unknown_urls_are_refused_with_nothing_written() {
    let cwd = tempfile::tempdir().unwrap();
    for (url, expect) in [
        ("gs://lake/x", "`gs://` is object storage"),
        ("hdfs://nn/lake", "unknown URL scheme `hdfs://`"),
        ("file://host/lake", "three slashes"),
    ] {
        // A broker that is never reached: the location is checked before Kafka.
        let run = bin()
            .current_dir(cwd.path())
            .args(["run", "--brokers", "127.0.0.1:9", "--topic", "t", "--no-console", "--output", url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "run --output {url} must fail:\n{stderr}");
        assert!(stderr.contains(&format!("--output (OUTPUT_PATH) {url}: ")), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert!(!stderr.contains("127.0.0.1:9"), "refused before Kafka:\n{stderr}");

        let validate = bin().current_dir(cwd.path()).args(["validate", "--path", url]).output().unwrap();
        let stderr = String::from_utf8_lossy(&validate.stderr);
        assert!(!validate.status.success(), "validate --path {url} must fail:\n{stderr}");
        assert!(stderr.contains(&format!("--path (OUTPUT_PATH) {url}: ")), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");

        // The same through the environment, as the seed's scripts give it.
        let env = bin().current_dir(cwd.path()).env("OUTPUT_PATH", url).arg("validate").output().unwrap();
        assert!(!env.status.success(), "OUTPUT_PATH={url} validate must fail");
    }
    assert_eq!(entries(cwd.path()), Vec::<String>::new(), "a refusal creates nothing");
}

/// `streamlake` in `cwd`, pointed at an S3 endpoint where nothing listens (port 9).
fn with_unreachable_store(cwd: &Path) -> std::process::Command {
    let mut cmd = bin();
    cmd.current_dir(cwd)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONNECT_TIMEOUT", "1s");
    cmd
}

#[test]
fn an_object_store_that_cannot_be_reached_is_named_before_kafka() {
    let cwd = tempfile::tempdir().unwrap();
    // Nothing listens on port 9: the endpoint is wrong. The broker is wrong too, and must not be
    // what the error is about: the store is checked first.
    let run = with_unreachable_store(cwd.path())
        .args(["run", "--brokers", "127.0.0.1:8", "--topic", "t", "--no-console", "--output", "s3://lake/x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("cannot reach the object store at http://127.0.0.1:9"), "{stderr}");
    assert!(!stderr.contains("127.0.0.1:8"), "the store is checked before Kafka:\n{stderr}");
    assert_eq!(entries(cwd.path()), Vec::<String>::new(), "a refusal creates nothing");

    // validate reads object stores, and names the unreachable endpoint the same way, before it
    // creates anything (not even its temporary copy in the working directory).
    let validate = with_unreachable_store(cwd.path())
        .args(["validate", "--path", "s3://lake/x", "--cache-dir", "copy"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&validate.stderr);
    assert!(!validate.status.success(), "{stderr}");
    assert!(stderr.contains("cannot reach the object store at http://127.0.0.1:9"), "{stderr}");
    assert_eq!(entries(cwd.path()), Vec::<String>::new(), "a refusal creates nothing");
}

#[test]
fn a_file_url_is_the_folder_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    std::fs::create_dir(&lake).unwrap();
    let url = format!("file://{}", lake.display());
    let out = bin().current_dir(tmp.path()).args(["validate", "--json", "--path", &url]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["path"], lake.display().to_string(), "{report}");
    assert_eq!(report["files"], 0, "{report}");
    // The report went into the folder the URL names, not into a folder called `file:`.
    assert_eq!(entries(tmp.path()), vec!["lake".to_string()]);
    assert_eq!(entries(&lake), vec!["_reports".to_string()]);
}
