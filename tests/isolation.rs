//! Identity and isolation (issue "A checkpoint belongs to one topic and one dataflow"): each
//! scenario here lost or corrupted committed data, or hung, on `d3f31ea`.
//!
//! - two jobs beside each other keep their own window aggregates;
//! - a run folder refuses another topic, a recreated topic and a changed dataflow, before writing
//!   anything (the whole output tree is digested before and after);
//! - a permanent consumer error stops the job with exit code 2, naming the cause.
//!
//! Every accepted outcome ends with the ledger (a plain consumer's view of the topic against
//! the visible files) and `validate --audit`, as in `tests/reliability.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::job::Job;
use crate::common::ledger;
use crate::common::secure::Secure;
use crate::common::*;

const RUN: &str = "run_t";
const T0: i64 = 1_750_000_000_000;

/// Kafka records as `common::send` takes them: (partition, payload).
type Records = Vec<(i32, Option<Vec<u8>>)>;

/// `n` events, 2 ms of event time apart from `t0`, five ids, spread over three partitions.
fn events(t0: i64, n: u64) -> Records {
    (0..n)
        .map(|i| event_at((i % 5) as i64, t0 + 2 * i as i64, ((i * 7919) % 100_000) as f64 / 1000.0))
        .collect()
}

/// A fresh 3-partition topic (named after `name`) holding `n` [`events`], read once into `out`
/// with `--available-now`; returns the topic.
fn read_once(brokers: &str, name: &str, n: u64, out: &Path) -> String {
    let topic = unique(name);
    create_topic(brokers, &topic, 3);
    send(brokers, &topic, &events(T0, n));
    run_ok(&mut run_earliest(brokers, &topic, out, &["--available-now"]));
    topic
}

/// The oracle of `--available-now --flush-windows` over `events`: (window end µs, id) → count.
fn window_counts(evs: &[(i32, Option<Vec<u8>>)]) -> BTreeMap<(i64, i64), i64> {
    let mut out = BTreeMap::new();
    for (_, payload) in evs {
        let v: serde_json::Value = serde_json::from_slice(payload.as_ref().unwrap()).unwrap();
        let ms = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap().timestamp_millis();
        let end_us = (ms.div_euclid(10_000) * 10_000 + 10_000) * 1000;
        *out.entry((end_us, v["id"].as_i64().unwrap())).or_insert(0) += 1;
    }
    out
}

fn counts_of(aggs: &BTreeMap<(i64, i64), (f64, i64)>) -> BTreeMap<(i64, i64), i64> {
    aggs.iter().map(|(k, (_, c))| (*k, *c)).collect()
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify(scenario: &str, brokers: &str, topic: &str, out: &Path) {
    let l = ledger::check(&out.join(RUN), &ledger::consume_topic(brokers, topic), i64::MAX);
    l.assert_exact(scenario);
    ledger::audit_ok(out);
}

/// Runs `cmd`, expects exit code 2 and `expect` in stderr, and no change anywhere under `out`.
fn assert_refused(what: &str, cmd: &mut std::process::Command, out: &Path, expect: &[&str]) -> String {
    let before = tree_digest(out);
    let o = cmd.output().expect("starting streamlake");
    let err = stderr_of(&o);
    println!(
        "[{what}] exit {:?}: {}",
        o.status.code(),
        err.lines().find(|l| l.contains("Error")).unwrap_or("")
    );
    assert_eq!(o.status.code(), Some(2), "{what}: a refusal exits with 2:\n{err}");
    for e in expect {
        assert!(err.contains(e), "{what}: expected `{e}` in:\n{err}");
    }
    let after = tree_digest(out);
    assert_eq!(before, after, "{what}: a refusal must leave the output tree untouched");
    println!("[{what}] output tree unchanged: {} entries", after.len());
    err
}

/// Case 1: jobs with different OUTPUT_PATHs in one parent folder and the same RUN_ID each keep
/// their final windows, exactly once, also across restarts (which run the start-up cleanup).
#[test]
fn jobs_side_by_side_keep_their_own_aggregates() {
    let Some(brokers) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let jobs: Vec<(String, std::path::PathBuf, Records)> = (0..3)
        .map(|j| {
            let topic = unique(&format!("side-{j}"));
            create_topic(&brokers, &topic, 3);
            // Overlapping event times: the jobs' window files get the same names.
            let evs = events(T0, 3_000 + 500 * j as u64);
            send(&brokers, &topic, &evs);
            (topic, lake.join(format!("job{j}")), evs)
        })
        .collect();
    for round in 0..2 {
        for (topic, out, _) in &jobs {
            run_ok(&mut run_earliest(&brokers, topic, out, &["--available-now", "--flush-windows"]));
        }
        for (j, (topic, out, evs)) in jobs.iter().enumerate() {
            let aggs = read_aggregates(&aggregates_of(out, RUN));
            assert_eq!(counts_of(&aggs), window_counts(evs), "round {round}: job {j}'s windows, each once");
            verify(&format!("side by side, job {j}, round {round}"), &brokers, topic, out);
        }
    }
    println!(
        "[side by side] {} jobs in {}: every job's windows intact after two rounds",
        jobs.len(),
        lake.display()
    );

    // A window file this run did not write, dropped into its aggregates folder, is left alone
    // by the start-up cleanup (it is not listed in windows.json, which used to be enough to
    // delete it) and named in the log.
    let (topic, out, _) = &jobs[0];
    let foreign = aggregates_of(out, RUN).join("windows-000000000000001-000000000000002.parquet");
    let donor = data_files(&aggregates_of(&jobs[1].1, RUN)).remove(0);
    std::fs::copy(&donor, &foreign).unwrap();
    let o = run_ok(&mut run_earliest(&brokers, topic, out, &["--available-now", "--flush-windows"]));
    assert!(foreign.exists(), "a file of another run is never deleted");
    assert!(stderr_of(&o).contains("did not write"), "the cleanup names it:\n{}", stderr_of(&o));
    std::fs::remove_file(&foreign).unwrap();
    verify("side by side, after a foreign file", &brokers, topic, out);
}

/// Case 2: a run folder made from topic A refuses topic B, with the run folder named.
#[test]
fn another_topic_is_refused() {
    let Some(brokers) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let (a, b) = (unique("topic-a"), unique("topic-b"));
    for t in [&a, &b] {
        create_topic(&brokers, t, 3);
        send(&brokers, t, &events(T0, 2_000));
    }
    run_ok(&mut run_earliest(&brokers, &a, &out, &["--available-now"]));
    assert_refused(
        "another topic",
        &mut run_earliest(&brokers, &b, &out, &["--available-now"]),
        &out,
        &[&format!("topic was `{a}`, now `{b}`"), &out.join(RUN).display().to_string(), "new RUN_ID"],
    );
    verify("another topic refused", &brokers, &a, &out);
}

/// The recreated-topic case: deleted and recreated under the same name with more records than
/// the checkpoint's offsets (so the offsets check alone cannot see it); refused naming both IDs.
#[test]
fn a_recreated_topic_is_refused_naming_both_ids() {
    let Some(brokers) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let topic = read_once(&brokers, "recreated", 900, &out);
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(RUN).join("_checkpoint/identity.json")).unwrap())
            .unwrap();
    let old_id = identity["topic_id"].as_str().expect("the topic ID is recorded").to_string();

    delete_topic(&brokers, &topic);
    create_topic(&brokers, &topic, 3);
    send(&brokers, &topic, &events(T0 + 1_000_000, 3_000));
    let err = assert_refused(
        "recreated topic",
        &mut run_earliest(&brokers, &topic, &out, &["--available-now"]),
        &out,
        &[&format!("topic_id was {old_id}, the topic now has ID "), "deleted and recreated"],
    );
    let new_id = err.split("now has ID ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap();
    assert_ne!(new_id, old_id, "two different IDs are named");
    println!("[recreated topic] old ID {old_id}, new ID {new_id}");
}

/// Case 3: a changed window size, watermark or key is refused; a changed trigger is not.
#[test]
fn a_changed_dataflow_is_refused() {
    let Some(brokers) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    // Leaves windows open in the checkpoint: their partial sums are what a new size would misuse.
    let topic = read_once(&brokers, "dataflow", 3_000, &out);
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/events.toml")).unwrap();
    let variants = [
        (
            "window size",
            base.replace("size = \"10s\"", "size = \"20s\""),
            "window.size was `10000ms`, now `20000ms`",
        ),
        (
            "watermark",
            base.replace("watermark = \"30s\"", "watermark = \"1m\""),
            "window.watermark was `30000ms`, now `60000ms`",
        ),
        (
            "value column",
            base.replace("value = \"value\"", "value = \"id\""),
            "window.value was `value`, now `id`",
        ),
    ];
    for (what, text, expect) in variants {
        let file = tmp.path().join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&file, text).unwrap();
        let file = file.display().to_string();
        assert_refused(
            &format!("changed {what}"),
            &mut run_earliest(&brokers, &topic, &out, &["--available-now", "--dataflow", &file]),
            &out,
            &[expect, "new RUN_ID"],
        );
    }
    // Safe to change: the trigger (and workers, roll interval): the run resumes.
    let trig = tmp.path().join("trigger.toml");
    std::fs::write(&trig, base.replace("trigger = \"10s\"", "trigger = \"1s\"")).unwrap();
    let trig = trig.display().to_string();
    run_ok(&mut run_earliest(
        &brokers,
        &topic,
        &out,
        &["--available-now", "--flush-windows", "--dataflow", &trig, "-w", "2", "--roll-interval", "5s"],
    ));
    let aggs = read_aggregates(&aggregates_of(&out, RUN));
    assert_eq!(counts_of(&aggs), window_counts(&events(T0, 3_000)), "windows of the resumed run, each once");
    verify("changed dataflow refused, trigger accepted", &brokers, &topic, &out);
}

/// A run folder of format 1 (no identity.json) is refused with an upgrade message, unchanged.
#[test]
fn a_format_1_run_folder_is_refused() {
    let Some(brokers) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let topic = read_once(&brokers, "legacy", 600, &out);
    std::fs::remove_file(out.join(RUN).join("_checkpoint/identity.json")).unwrap();
    assert_refused(
        "format 1",
        &mut run_earliest(&brokers, &topic, &out, &["--available-now"]),
        &out,
        &["format 1", "new RUN_ID", "docs/format.md"],
    );
    // validate still reads it.
    ledger::audit_ok(&out);
}

/// Case 4: a permanent consumer error (the topic deleted while the job reads it) stops the job
/// with exit code 2 and the cause, within a bound, instead of retrying forever. What was
/// committed before stays exact.
#[test]
fn a_topic_deleted_mid_run_stops_the_job() {
    let Some(brokers) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let topic = unique("deleted");
    create_topic(&brokers, &topic, 3);
    let evs = events(T0, 5_000);
    send(&brokers, &topic, &evs);
    let mut job = Job::spawn(
        run_earliest(&brokers, &topic, &out, &["--roll-interval", "200ms", "--partition-discovery", "1s"]),
        tmp.path().join("deleted.log"),
    );
    job.wait_until("the first 5000 committed", Duration::from_secs(60), || ledger::committed(&out) == 5_000);
    let records = ledger::consume_topic(&brokers, &topic);
    delete_topic(&brokers, &topic);
    let deleted = Instant::now();
    let status = job.wait_for(Duration::from_secs(30)).unwrap_or_else(|| {
        panic!("the job did not stop within 30 s of the topic's deletion; log:\n{}", job.log())
    });
    let log = job.log();
    println!(
        "[deleted topic] exit {:?} after {:?}: {}",
        status.code(),
        deleted.elapsed(),
        log.lines().find(|l| l.starts_with("Error")).unwrap_or("")
    );
    assert_eq!(status.code(), Some(2), "a permanent error exits with 2:\n{log}");
    assert!(log.contains(&format!("topic `{topic}` is gone")), "names the cause:\n{log}");
    let l = ledger::check(&out.join(RUN), &records, i64::MAX);
    l.assert_exact("deleted topic");
    ledger::audit_ok(&out);
}

/// Case 4 with a permanent error the broker itself gives: the topic's ACLs deny this client Read
/// (Describe allowed, so it starts and is assigned its partitions; every fetch is refused). The job
/// used to log "kafka consumer error; retrying" forever; now `--available-now` exits with 2
/// within a bound, naming the partition, the offset and the cause. Runs over the test broker's
/// SASL_SSL listener as the SCRAM user `denied` (scripts/kafka.sh, "Secured listeners").
#[test]
fn a_topic_acl_denying_read_stops_the_job() {
    let Some(brokers) = brokers() else { return };
    let Some(Secure { dir, sasl_ssl, .. }) = Secure::get() else { return };
    let secure = dir.as_path();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let topic = unique("denied");
    create_topic(&brokers, &topic, 3);
    send(&brokers, &topic, &events(T0, 1_000));
    let acl = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
        .args(["acl-deny-read", "denied", &topic])
        .env("KAFKA_STATE_DIR", secure.parent().unwrap())
        .output()
        .unwrap();
    assert!(acl.status.success(), "kafka.sh acl-deny-read: {}", stderr_of(&acl));
    let config = secure.join("client-sasl-ssl-denied.properties").display().to_string();
    let started = Instant::now();
    let o = run_earliest(&sasl_ssl, &topic, &out, &["--available-now", "--kafka-config", &config])
        .output()
        .unwrap();
    let err = stderr_of(&o);
    println!(
        "[acl denied] exit {:?} after {:?}: {}",
        o.status.code(),
        started.elapsed(),
        err.lines().find(|l| l.starts_with("Error")).unwrap_or("")
    );
    assert_eq!(o.status.code(), Some(2), "a permanent error exits with 2:\n{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "stopped within the bound");
    assert!(err.contains("TopicAuthorizationFailed") && err.contains("ACLs"), "names the cause:\n{err}");
    assert!(err.contains(&format!("of topic `{topic}` at offset 0")), "names partition and offset:\n{err}");
    assert_eq!(ledger::committed(&out), 0, "nothing was read, nothing committed");
}
