//! The storage layer against a real S3 server (SeaweedFS, started by scripts/test.sh through
//! scripts/s3.sh) and against the local file system: the same contract for both, and clear
//! errors for the mistakes users make with object storage, before anything is written.

use crate::common;

use bytes::Bytes;
use streamlake::storage::{Created, LocalStore, ObjectStoreRoot, ObjectUrl, Store, StoreError};

fn url(bucket: &str, name: &str) -> ObjectUrl {
    ObjectUrl::parse(&format!("s3://{bucket}/{}", common::unique(name))).unwrap()
}

/// What every store must do; the protocol above relies on nothing else.
fn contract(store: &dyn Store) {
    let hello = Bytes::from_static(b"hello");
    assert_eq!(store.get("a/missing.json").unwrap(), None, "{store:?}");
    assert_eq!(store.list("a/").unwrap(), vec![], "an empty prefix lists nothing");

    store.put("a/one.json", hello.clone()).unwrap();
    assert_eq!(store.get("a/one.json").unwrap(), Some(hello.clone()));
    store.put("a/one.json", Bytes::from_static(b"again")).unwrap();
    assert_eq!(store.get("a/one.json").unwrap().as_deref(), Some(&b"again"[..]), "put replaces");

    assert_eq!(store.create("a/b/two.json", hello.clone()).unwrap(), Created::New);
    assert_eq!(store.create("a/b/two.json", Bytes::from_static(b"other")).unwrap(), Created::Exists);
    assert_eq!(store.get("a/b/two.json").unwrap(), Some(hello.clone()), "a lost create writes nothing");

    // Concurrent creates of one key, three rounds: exactly one wins each, and its bytes are kept.
    for round in 0..3 {
        let key = format!("a/race-{round}.json");
        let results: Vec<(usize, Created)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|i| {
                    let key = key.clone();
                    s.spawn(move || (i, store.create(&key, Bytes::from(format!("writer {i}"))).unwrap()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> =
            results.iter().filter(|(_, c)| *c == Created::New).map(|(i, _)| *i).collect();
        assert_eq!(winners.len(), 1, "exactly one concurrent create wins: {results:?}");
        let kept = store.get(&key).unwrap().unwrap();
        assert_eq!(kept, Bytes::from(format!("writer {}", winners[0])), "the winner's bytes are kept");
    }

    let listed = store.list("a/").unwrap();
    let keys: Vec<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(
        keys,
        ["a/b/two.json", "a/one.json", "a/race-0.json", "a/race-1.json", "a/race-2.json"],
        "recursive, in key order"
    );
    assert_eq!(listed[0].size, 5);
    assert_eq!(store.list("a/b/").unwrap().len(), 1, "a prefix lists only below it");

    // Keys are kept as given: Hive-style folders percent-encode their values themselves
    // (`source=a%2Fb`), and other readers must find the object under that very name.
    let odd = "q/source=a%2Fb/part 1~x_é.json";
    store.put(odd, hello.clone()).unwrap();
    let listed: Vec<String> = store.list("q/").unwrap().into_iter().map(|l| l.key).collect();
    assert_eq!(listed, [odd], "listed back under the name given");
    assert_eq!(store.get(&listed[0]).unwrap(), Some(hello.clone()), "a listed key reads back");
    store.delete(&listed[0]).unwrap();
    assert_eq!(store.list("q/").unwrap(), vec![], "a listed key deletes");

    for bad in ["", "/abs", "a/../b", "a//b", "./a"] {
        assert!(matches!(store.get(bad), Err(StoreError::BadKey { .. })), "{bad:?}");
        assert!(matches!(store.put(bad, hello.clone()), Err(StoreError::BadKey { .. })), "{bad:?}");
    }

    store.delete("a/one.json").unwrap();
    store.delete("a/one.json").unwrap();
    assert_eq!(store.get("a/one.json").unwrap(), None);
    for l in store.list("").unwrap() {
        store.delete(&l.key).unwrap();
    }
    assert_eq!(store.list("").unwrap(), vec![], "everything deleted");
}

#[test]
fn the_local_file_system_keeps_the_store_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    contract(&LocalStore::new(&root));
    // A temp file left by a crash in the middle of a put is not an object.
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a/.one.json.4242-0-deadbeef.tmp"), b"half").unwrap();
    assert_eq!(LocalStore::new(&root).list("").unwrap(), vec![]);
}

#[test]
fn s3_keeps_the_store_contract() {
    let Some(bucket) = common::s3::bucket() else { return };
    let store = ObjectStoreRoot::open(&url(&bucket, "contract")).unwrap();
    store.check(false).expect("the test server honours conditional create");
    assert_eq!(store.list("").unwrap(), vec![], "the check leaves nothing behind");
    contract(&store);
}

#[test]
fn s3_mistakes_are_named_before_anything_is_written() {
    let Some(bucket) = common::s3::bucket() else { return };

    let missing = ObjectStoreRoot::open(&url("no-such-bucket-here", "x")).unwrap();
    let err = missing.check(false).unwrap_err();
    assert!(matches!(err, StoreError::NoSuchBucket { .. }), "{err:?}");
    assert!(err.to_string().contains("bucket `no-such-bucket-here` does not exist"), "{err}");

    let refused = url(&bucket, "refused");
    let wrong_secret =
        ObjectStoreRoot::open_with(&refused, &[("aws_secret_access_key", "not-the-secret")]).unwrap();
    let err = wrong_secret.check(false).unwrap_err();
    assert!(matches!(err, StoreError::Denied { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("access denied") && msg.contains("AWS_SECRET_ACCESS_KEY"), "{msg}");
    // Neither secret reaches a message or a Debug print: the one given, nor the environment's.
    let real = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    for shown in [msg.clone(), format!("{err:?}"), format!("{wrong_secret:?}")] {
        assert!(!shown.contains("not-the-secret") && !shown.contains(&real), "a secret shown: {shown}");
    }

    // A port nothing listens on: refused (after object_store's retries), naming the endpoint.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let endpoint = format!("http://127.0.0.1:{port}");
    let nowhere = ObjectStoreRoot::open_with(&refused, &[("aws_endpoint", &endpoint)]).unwrap();
    let err = nowhere.check(false).unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&endpoint), "{err}");
}

/// Keys, region and endpoint from an AWS profile (`AWS_PROFILE`, the shared credentials and
/// config files), as the AWS CLI, boto3 and Spark's s3a take them: `validate` reaches the
/// server with nothing but the profile, and a wrong secret in it is named as denied access.
#[test]
fn an_aws_profile_is_enough_to_reach_the_store() {
    let Some(bucket) = common::s3::bucket() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let var = |k: &str| std::env::var(k).unwrap();
    let (credentials, config) = (tmp.path().join("credentials"), tmp.path().join("config"));
    std::fs::write(
        &config,
        format!(
            "[profile lake]\nregion = {}\nendpoint_url = {}\n",
            var("AWS_REGION"),
            var("AWS_ENDPOINT_URL")
        ),
    )
    .unwrap();
    let validate = |secret: &str| {
        std::fs::write(
            &credentials,
            format!(
                "[lake]\naws_access_key_id = {}\naws_secret_access_key = {secret}\n",
                var("AWS_ACCESS_KEY_ID")
            ),
        )
        .unwrap();
        let mut cmd = common::bin();
        for k in
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"]
        {
            cmd.env_remove(k);
        }
        let dataset = format!("s3://{bucket}/{}/out", common::unique("profile"));
        cmd.env("AWS_PROFILE", "lake")
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config)
            .args(["validate", "--json", "--path", &dataset])
            .output()
            .unwrap()
    };
    let ok = validate(&var("AWS_SECRET_ACCESS_KEY"));
    assert!(ok.status.success(), "{}", common::process::text(&ok));
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["status"], "path_missing", "an empty prefix, read through the profile: {report}");

    let denied = validate("not-the-secret");
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "{stderr}");
    assert!(stderr.contains("access denied") && stderr.contains("AWS_PROFILE"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "the secret is never shown: {stderr}");

    // A profile asked for that does not exist is named, with the files looked in.
    let mut cmd = common::bin();
    let missing = cmd
        .env_remove("AWS_ACCESS_KEY_ID")
        .env("AWS_PROFILE", "nope")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", &config)
        .args(["validate", "--path", &format!("s3://{bucket}/x/out")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && stderr.contains("AWS_PROFILE=nope: no [nope]"), "{stderr}");
}
