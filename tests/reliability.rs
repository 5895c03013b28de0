//! The reliability suite (issue "crashes, broker faults and poison input"): every scenario ends
//! with the same two checks, an independent one and streamlake's own:
//! - [`ledger::check`]: a plain Kafka consumer reads the topic, and the visible files must hold
//!   exactly its records, keyed by (partition, offset): produced = written + quarantined
//!   (+ skipped on purpose), duplicates 0, lost 0, every visible file complete;
//! - `streamlake validate --audit` must pass.
//!
//! Crash windows are hit with named crash points (`STREAMLAKE_CRASH_AT`, feature `crash-points`,
//! which the test command enables). `docs/reliability.md` lists the scenarios.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::job::Job;
use crate::common::ledger::{self, Records};
use crate::common::scenario::*;
use crate::common::*;
use rand::{Rng, SeedableRng};

const RUN: &str = "run_t";
/// The ledger and the audit of `out` against the topic, asserted exact; returns the ledger.
fn verify(scenario: &str, brokers: &str, topic: &str, out: &Path) -> ledger::Ledger {
    verify_against(scenario, &ledger::consume_topic(brokers, topic), out)
}

fn verify_against(scenario: &str, records: &Records, out: &Path) -> ledger::Ledger {
    let l = ledger::check(&out.join(RUN), records, future_limit_ms());
    l.assert_exact(scenario);
    ledger::audit_ok(out);
    l
}

/// Scenario 1, chaos kill: SIGKILL at every named crash point and at random moments while a
/// producer writes, restarting each time; then a final catch-up run. `STREAMLAKE_CHAOS_KILLS`
/// sets the number of kills (default 20; `scripts/chaos.sh` runs a long loop),
/// `STREAMLAKE_CHAOS_SEED` the random seed (printed).
#[test]
fn chaos_kills_at_crash_points_and_random_moments() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("chaos");
    create_topic(&brokers, &topic, 3);
    let kills: usize =
        std::env::var("STREAMLAKE_CHAOS_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("STREAMLAKE_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    println!("[chaos] kills={kills} seed={seed}");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let t0: i64 = 1_750_000_000_000;

    let stop = Arc::new(AtomicBool::new(false));
    // Up to ~10k events/s of input, 20 s of event time per wall second: windows close all the time.
    let producer = synthetic_stream(&brokers, &topic, t0, 0, 1000, stop.clone());

    let points = streamlake::crash::POINTS;
    let mut reached = std::collections::BTreeMap::<&str, u32>::new();
    let mut timed_kills = 0;
    for k in 0..kills {
        let workers = ["1", "2", "3"][k % 3];
        let cmd = run_earliest(
            &brokers,
            &topic,
            &out,
            &["--roll-interval", "200ms", "--trigger", "200ms", "-w", workers],
        );
        // First every point once, then a random mix of points and plain kills at random moments.
        let target = if k < points.len() {
            Some((points[k], 1 + (k % 2) as u32))
        } else if rng.random_bool(0.5) {
            Some((points[rng.random_range(0..points.len())], rng.random_range(1..4)))
        } else {
            None
        };
        match kill_once(
            cmd,
            tmp.path().join(format!("chaos-{k}.log")),
            target,
            Duration::from_secs(20),
            &mut rng,
            k,
        ) {
            Some(point) => *reached.entry(point).or_insert(0) += 1,
            None => timed_kills += 1,
        }
        println!("[chaos] kill {k}: {target:?}");
    }
    stop.store(true, Ordering::SeqCst);
    let produced = producer.join().unwrap();
    println!(
        "[chaos] crash points reached: {reached:?}; timed kills: {timed_kills}; events sent: {produced}"
    );
    for p in points.iter().take(kills) {
        assert!(reached.contains_key(p), "crash point {p} was never reached");
    }

    // Catch up and close everything.
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows", "-w", "2"]));
    let l = verify("chaos", &brokers, &topic, &out);
    assert_eq!(l.produced, produced, "the topic holds what the producer sent");
    assert_eq!(l.quarantined, (0..produced).filter(|i| i % 997 == 500).count() as u64, "the poison records");
    // Every closed window once (read_aggregates panics on a window written twice); the audit
    // above checked that no window counts more records than the raw data holds. (The late
    // counter can over-count after a crash, see docs/reliability.md, so no sum is asserted.)
    assert!(!read_aggregates(&aggregates_of(&out, RUN)).is_empty(), "windows were written");
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// Scenario 2, commit-window replay: the newest checkpoint entry of every partition is removed
/// (as if the process died between writing files and committing them); the restart rewrites
/// that range once. Also shows the ledger catches a duplicate when there is one.
#[test]
fn replay_of_an_uncommitted_range_is_not_written_twice() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("replay");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    // One commit per run: rolls fall on the wall clock, and a roll in the middle of the replay
    // would split the range into other files than the first time (the rows stay exactly once).
    let once = ["--available-now", "--roll-interval", "1h"];
    load(&brokers, &topic, 1_750_000_000_000, 20_000);
    run_ok(&mut run_earliest(&brokers, &topic, &out, &once));
    load(&brokers, &topic, 1_750_000_040_000, 20_000);
    run_ok(&mut run_earliest(&brokers, &topic, &out, &once));
    let files_before = data_files(&out.join(RUN)).len();
    for p in 0..3 {
        let newest = checkpoint_entries(&out.join(RUN), p).pop().unwrap();
        std::fs::remove_file(&newest).unwrap();
    }
    let second = run_ok(&mut run_earliest(
        &brokers,
        &topic,
        &out,
        &[&once[..], &["--flush-windows", "-w", "2"]].concat(),
    ));
    let totals = run_totals(&[second]);
    assert!(totals["messages"] > 0, "the uncommitted ranges were read again: {totals:?}");
    assert_eq!(data_files(&out.join(RUN)).len(), files_before, "the same files, rewritten in place");
    let l = verify("replay", &brokers, &topic, &out);
    assert_eq!(l.produced, 40_000);

    // The check itself: the same rows under another worker's name are a duplicate for both.
    let f = data_files(&out.join(RUN)).into_iter().find(|f| f.to_string_lossy().contains("id=1/")).unwrap();
    let dup = f.with_file_name(
        f.file_name().unwrap().to_string_lossy().replace("-w000", "-w099").replace("-w001", "-w099"),
    );
    std::fs::copy(&f, &dup).unwrap();
    let bad = ledger::check(&out.join(RUN), &ledger::consume_topic(&brokers, &topic), future_limit_ms());
    assert!(bad.duplicates > 0, "the ledger sees the copied file: {bad}");
    let audit = bin().args(["validate", "--audit", "--path"]).arg(&out).output().unwrap();
    assert!(!audit.status.success(), "the audit fails on the copied file");
}

/// Scenario 3, damaged checkpoint: a truncated entry and unreadable JSON stop the run before any
/// work with an error naming the file and the way to recover; a leftover temp file (an entry
/// that was never renamed into place, so never committed) is removed with a warning.
#[test]
fn damaged_checkpoint_is_an_error_naming_the_file_and_the_recovery() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("damaged");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    load(&brokers, &topic, 1_750_000_000_000, 9_000);
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now"]));
    load(&brokers, &topic, 1_750_000_020_000, 9_000);

    let newest = checkpoint_entries(&out.join(RUN), 1).pop().unwrap();
    let good = std::fs::read(&newest).unwrap();
    let files_before = data_files(&out.join(RUN));
    for (what, bytes) in
        [("truncated", good[..good.len() / 2].to_vec()), ("not JSON", b"\x00\x01garbage".to_vec())]
    {
        std::fs::write(&newest, &bytes).unwrap();
        let o = output_within(
            &mut run_earliest(&brokers, &topic, &out, &["--available-now", "-w", "3"]),
            Duration::from_secs(60),
        );
        let err = stderr_of(&o);
        println!(
            "[damaged/{what}] exit {:?}: {}",
            o.status.code(),
            err.lines().find(|l| l.contains("damaged")).unwrap_or("")
        );
        assert!(!o.status.success(), "{what}: the run must refuse");
        assert!(err.contains(&newest.display().to_string()), "{what}: names the file: {err}");
        assert!(err.contains("move the damaged file away"), "{what}: says how to recover: {err}");
        assert_eq!(data_files(&out.join(RUN)), files_before, "{what}: nothing written");
    }

    // Recovery as the message says: the partition resumes from the previous entry.
    std::fs::rename(&newest, tmp.path().join("damaged.json")).unwrap();
    let tmp_entry = newest.with_file_name(format!(".{}.tmp", newest.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp_entry, b"{\"partial").unwrap();
    let o = run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows"]));
    assert!(
        stderr_of(&o).contains("removing an uncommitted checkpoint temp file"),
        "warns about the temp file"
    );
    assert!(!tmp_entry.exists(), "the temp file is gone");
    verify("damaged", &brokers, &topic, &out);
}

/// Kafka messages committed so far over all partitions (newest checkpoint entries).
fn admin(brokers: &str) -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    rdkafka::config::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap()
}

/// Scenario 10, two instances on one RUN_ID: the second refuses with the holder's pid, the
/// first goes on undisturbed.
#[test]
fn a_second_instance_on_the_same_run_id_is_refused() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("lock");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    load(&brokers, &topic, 1_750_000_000_000, 3_000);
    let mut first = Job::spawn(
        run_earliest(&brokers, &topic, &out, &["--roll-interval", "200ms"]),
        tmp.path().join("first.log"),
    );
    first.wait_until("the first instance's commits", Duration::from_secs(60), || {
        ledger::committed(&out) == 3_000
    });
    let o = output_within(
        &mut run_earliest(&brokers, &topic, &out, &["--available-now"]),
        Duration::from_secs(60),
    );
    let err = stderr_of(&o);
    println!("[lock] second instance: exit {:?}: {}", o.status.code(), err.lines().last().unwrap_or(""));
    assert!(!o.status.success(), "the second instance must refuse");
    assert!(err.contains("already being written by another streamlake process"), "{err}");
    assert!(err.contains(&format!("pid={}", first.child.id())), "names the holder's pid: {err}");
    assert!(first.wait_for(Duration::ZERO).is_none(), "the first instance still runs");
    load(&brokers, &topic, 1_750_000_010_000, 3_000);
    first.wait_until("the first instance's later commits", Duration::from_secs(60), || {
        ledger::committed(&out) == 6_000
    });
    first.stop();
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows"]));
    verify("lock", &brokers, &topic, &out);
}

/// Scenario 12, bad configuration: each mistake is a clear error before any work, and no output
/// folder is created.
#[test]
fn bad_configuration_fails_clearly_before_any_work() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("config");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let malformed = tmp.path().join("malformed.toml");
    std::fs::write(&malformed, "name = \"x\"\n[[schema]\nname = ").unwrap();
    let negative = tmp.path().join("negative.toml");
    let events =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/events.toml")).unwrap();
    std::fs::write(&negative, events.replace("size = \"10s\"", "size = \"-10s\"")).unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let unknown = unique("no-such-topic");
    let malformed_s = malformed.display().to_string();
    let negative_s = negative.display().to_string();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("unknown topic", vec!["--topic", &unknown], "does not exist"),
        (
            "unreachable broker",
            vec!["--brokers", &dead, "--connect-timeout", "2s"],
            "no Kafka broker answered",
        ),
        ("malformed dataflow", vec!["--dataflow", &malformed_s], "is not valid"),
        ("negative window", vec!["--dataflow", &negative_s], "is not valid"),
        ("--flush-windows without --available-now", vec!["--flush-windows"], "--available-now"),
        ("process index out of range", vec!["-n", "2", "-p", "2"], "out of range"),
        ("zero idle timeout", vec!["--idle-timeout", "0s"], "--idle-timeout must be positive"),
        ("unknown --on-data-loss", vec!["--on-data-loss", "ignore"], "invalid value"),
        (
            "misspelt --consumer-option",
            vec!["--consumer-option", "fetch.max.byte=1048576"],
            "No such configuration property: \"fetch.max.byte\"",
        ),
        (
            "--consumer-option overriding offsets",
            vec!["--consumer-option", "enable.auto.commit=true"],
            "cannot be overridden",
        ),
    ];
    for (what, args, expect) in cases {
        let mut cmd = bin();
        cmd.args(["run", "--run-id", "t", "--output"]).arg(&out);
        if !args.contains(&"--brokers") {
            cmd.args(["--brokers", &brokers]);
        }
        if !args.contains(&"--topic") {
            cmd.args(["--topic", &topic]);
        }
        cmd.args(&args);
        let o = output_within(&mut cmd, Duration::from_secs(60));
        let err = stderr_of(&o);
        let first = err.lines().find(|l| l.contains("rror")).unwrap_or("");
        println!("[config] {what}: exit {:?}: {first}", o.status.code());
        assert!(!o.status.success(), "{what}: must fail");
        assert!(err.contains(expect), "{what}: expected `{expect}` in:\n{err}");
        assert!(!out.exists(), "{what}: no output folder may be created");
    }
    // An output path below a regular file cannot be created: an error naming it.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = output_within(
        &mut run_earliest(&brokers, &topic, &file.join("parquet"), &["--available-now"]),
        Duration::from_secs(60),
    );
    let err = stderr_of(&o);
    println!(
        "[config] output under a file: exit {:?}: {}",
        o.status.code(),
        err.lines().last().unwrap_or("")
    );
    assert!(!o.status.success() && err.contains(&file.display().to_string()), "{err}");
}

/// Scenario 8, poison mix: every kind of bad record is quarantined with its partition, offset
/// and reason; the good ones around them are kept; counters are exact.
#[test]
fn poison_records_are_quarantined_and_good_ones_kept() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("poison");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let t0: i64 = 1_750_000_000_000;
    let ts = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    // Cut off before its end: not JSON.
    let big_bad =
        format!(r#"{{"id": 1, "ts": "{}", "value": 1.0, "source": "{}"#, ts(t0), "x".repeat(900_000));
    let big_good =
        format!(r#"{{"id": 2, "ts": "{}", "value": 1.5, "source": "{}"}}"#, ts(t0), "y".repeat(900_000));
    let day_ahead = ts(now_ms() + 86_400_000);
    let poison: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("bad_json", Some(br#"{"id": 1, "ts": "#.to_vec())),
        ("missing_field", Some(br#"{"id": 1, "value": 2.0}"#.to_vec())),
        ("wrong_type", Some(format!(r#"{{"id": "one", "ts": "{}", "value": 2.0}}"#, ts(t0)).into_bytes())),
        ("null_key", Some(format!(r#"{{"id": null, "ts": "{}", "value": 2.0}}"#, ts(t0)).into_bytes())),
        ("not_utf8", Some(vec![b'{', 0xff, 0xfe, b'}'])),
        ("empty_payload", Some(Vec::new())),
        ("empty_payload", None),
        (
            "timestamp_without_offset",
            Some(br#"{"id": 1, "ts": "2025-06-15T16:00:00", "value": 2.0}"#.to_vec()),
        ),
        (
            "timestamp_in_future",
            Some(format!(r#"{{"id": 1, "ts": "{day_ahead}", "value": 2.0}}"#).into_bytes()),
        ),
        ("bad_json", Some(big_bad.into_bytes())),
    ];
    // Good events around every bad one, on every partition.
    let mut records = Vec::new();
    let mut want_reasons = std::collections::BTreeMap::<String, u64>::new();
    for p in 0..3 {
        for (k, (reason, payload)) in poison.iter().enumerate() {
            let (_, good) = event_at(k as i64 % 5, t0 + 1000 * k as i64 + p as i64, k as f64 + 0.25);
            records.push((p, good));
            records.push((p, payload.clone()));
            *want_reasons.entry(reason.to_string()).or_insert(0) += 1;
        }
    }
    records.push((1, Some(big_good.into_bytes())));
    send(&brokers, &topic, &records);
    let o =
        run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows", "-w", "2"]));
    let totals = run_totals(&[o]);
    let l = verify("poison", &brokers, &topic, &out);
    println!("[poison] quarantined by reason: {:?}", l.quarantine_reasons);
    assert_eq!(l.quarantine_reasons, want_reasons, "each bad record under its reason");
    assert_eq!(totals["quarantined"], 30, "the run's counter");
    assert_eq!(totals["rows"], 31, "the run's counter of good rows");
    assert_eq!(l.written, 31);
    // The checkpoint's per-reason counters agree.
    let mut by_reason = std::collections::BTreeMap::<String, u64>::new();
    for e in ledger::newest_entries(&out.join(RUN)).values() {
        for (r, n) in e["quarantined_by_reason"].as_object().unwrap() {
            *by_reason.entry(r.clone()).or_insert(0) += n.as_u64().unwrap();
        }
    }
    assert_eq!(by_reason, want_reasons, "checkpoint counters by reason");
}

/// Scenario 7, watermark edge cases while streaming live data (event time = wall clock): an
/// idle partition does not stop windows from closing; an event dated a day ahead is quarantined
/// and does not pin the watermark; events behind the watermark are counted late and kept raw.
#[test]
fn watermark_survives_idle_partitions_future_events_and_late_data() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("watermark");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let aggs = aggregates_of(&out, RUN);
    // Partitions 0 and 1 only: partition 2 stays idle. One minute of backlog, then live events.
    let start = now_ms();
    let backlog: Vec<_> =
        (0..600).map(|i| (i % 2, event_at(i as i64 % 3, start - 60_000 + 100 * i as i64, 1.5).1)).collect();
    send(&brokers, &topic, &backlog);
    let stop = Arc::new(AtomicBool::new(false));
    let live = paced_producer(
        brokers.clone(),
        topic.clone(),
        |i| ((i % 2) as i32, event_at((i % 3) as i64, now_ms(), 2.5).1),
        50,
        Duration::from_millis(100),
        stop.clone(),
    );
    let mut job = Job::spawn(
        run_earliest(
            &brokers,
            &topic,
            &out,
            &["--idle-timeout", "3s", "--roll-interval", "200ms", "--trigger", "200ms"],
        ),
        tmp.path().join("watermark.log"),
    );
    // The watermark is min(partitions 0, 1) - 30 s while they are live: windows of the backlog
    // close only if idle partition 2 is left out.
    let closed_before = (start - 30_000) * 1000;
    job.wait_until("windows closed with partition 2 idle", Duration::from_secs(60), || {
        read_aggregates(&aggs).keys().any(|&(end, _)| end <= closed_before)
    });
    let future = format!(
        r#"{{"id": 1, "ts": "{}", "value": 5.0}}"#,
        chrono::DateTime::from_timestamp_millis(now_ms() + 86_400_000).unwrap().to_rfc3339()
    );
    send(&brokers, &topic, &[(0, Some(future.into_bytes()))]);
    let after_future = now_ms();
    // Windows keep closing after it (had it moved the watermark a day ahead, all would be late).
    job.wait_until("windows closed after the future-dated event", Duration::from_secs(90), || {
        read_aggregates(&aggs)
            .keys()
            .any(|&(end, _)| end > (after_future - 30_000) * 1000 && end <= (now_ms() - 30_000) * 1000)
    });
    stop.store(true, Ordering::SeqCst);
    let sent = live.join().unwrap();
    let total = 600 + sent + 1;
    job.wait_until("the live events committed", Duration::from_secs(60), || ledger::committed(&out) == total);
    let late_before: u64 =
        ledger::newest_entries(&out.join(RUN)).values().map(|e| e["total_late"].as_u64().unwrap()).sum();
    assert_eq!(late_before, 0, "nothing late: the future event did not move the watermark");

    // Five events ten minutes old: behind the watermark, counted late, kept raw.
    let late: Vec<_> = (0..5).map(|i| (i % 2, event_at(1, now_ms() - 600_000 + i as i64, 9.0).1)).collect();
    send(&brokers, &topic, &late);
    job.wait_until("the late events committed", Duration::from_secs(60), || {
        ledger::committed(&out) == total + 5
    });
    job.stop();
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows"]));
    let l = verify("watermark", &brokers, &topic, &out);
    assert_eq!(l.late, 5, "the five late events are counted late");
    assert_eq!(l.quarantine_reasons.get("timestamp_in_future"), Some(&1));
    assert_eq!(l.written, total - 1 + 5, "late events are kept in the raw data");
}

/// Scenario 6, a partition added while running (3 → 4): picked up, read from its beginning,
/// and part of the watermark (its events are on time).
#[test]
fn a_partition_added_while_running_is_read_from_the_beginning() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("grow");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let t0: i64 = 1_750_000_000_000;
    load(&brokers, &topic, t0, 3_000);
    let mut job = Job::spawn(
        run_earliest(
            &brokers,
            &topic,
            &out,
            &["--partition-discovery", "1s", "--roll-interval", "200ms", "-w", "2"],
        ),
        tmp.path().join("grow.log"),
    );
    job.wait_until("the first commits", Duration::from_secs(60), || ledger::committed(&out) == 3_000);
    let new = rdkafka::admin::NewPartitions::new(&topic, 4);
    let res = futures_executor::block_on(
        admin(&brokers).create_partitions([&new], &rdkafka::admin::AdminOptions::new()),
    )
    .unwrap();
    assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
    // Events for the new partition, inside the windows still open (event time near the others').
    let p3: Vec<_> = (0..500).map(|i| (3, event_at(i % 5, t0 + 5_000 + 2 * i, 3.0).1)).collect();
    send(&brokers, &topic, &p3);
    // Both workers saw it (each logs it).
    job.wait_log("the new partition", Duration::from_secs(60), |l| {
        l.matches("partitions added to the topic").count() >= 2
    });
    // 3 partitions over 2 workers split (src/ingest/lanes.rs), 4 do not: the old partitions,
    // read from queues of their own until now, must still be read after the add.
    let old: Vec<_> =
        (0..300).map(|i| ((i % 3) as i32, event_at(i % 5, t0 + 6_000 + 2 * i, 1.0).1)).collect();
    send(&brokers, &topic, &old);
    job.wait_until("partition 3 and the old partitions committed", Duration::from_secs(60), || {
        ledger::committed(&out) == 3_800
    });
    job.stop();
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows"]));
    let l = verify("partition added", &brokers, &topic, &out);
    assert_eq!(ledger::newest_entries(&out.join(RUN))[&3]["first_offset"].as_i64(), Some(0), "from earliest");
    assert_eq!(l.late, 0, "partition 3's events were on time: it counts in the watermark");
}

/// Scenario 5, offsets out of range: retention (here delete-records) removed offsets the
/// checkpoint still needs. The run fails naming the partition and the range; with
/// `--on-data-loss=skip` it goes on and the audit records the skipped range.
#[test]
fn offsets_gone_from_the_broker_fail_or_are_skipped_deliberately() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("gone");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let t0: i64 = 1_750_000_000_000;
    load(&brokers, &topic, t0, 3_000); // 1000 per partition
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now"]));
    let more: Vec<_> = (3_000..6_000).map(|i| synthetic(t0, i)).collect();
    send(&brokers, &topic, &more);
    let all = ledger::consume_topic(&brokers, &topic); // before the deletion: what was produced
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(1_500)).unwrap();
    futures_executor::block_on(admin(&brokers).delete_records(&tpl, &rdkafka::admin::AdminOptions::new()))
        .unwrap();

    let o = output_within(
        &mut run_earliest(&brokers, &topic, &out, &["--available-now"]),
        Duration::from_secs(60),
    );
    let err = stderr_of(&o);
    println!("[gone] fail: exit {:?}: {}", o.status.code(), err.lines().last().unwrap_or(""));
    assert!(!o.status.success(), "data loss is an error by default");
    assert!(
        err.contains("partition 0") && err.contains("1000") && err.contains("1500"),
        "names partition and range: {err}"
    );
    assert_eq!(ledger::committed(&out), 3_000, "nothing committed past the gap");

    let o = run_ok(&mut run_earliest(
        &brokers,
        &topic,
        &out,
        &["--available-now", "--flush-windows", "--on-data-loss", "skip"],
    ));
    assert!(stderr_of(&o).contains("--on-data-loss=skip"), "the skip is logged");
    let l = verify_against("gone", &all, &out);
    assert_eq!(l.skipped, 500, "offsets [1000, 1500) of partition 0 skipped, and recorded");
    let audit = ledger::audit_ok(&out);
    assert!(audit.contains("skipped=500"), "the audit reports the skipped records:\n{audit}");
}

/// Scenario 11, disk full: a file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, so writes
/// fail with EFBIG as on a full disk) stops the run with a clear error; what is committed is
/// consistent; a restart with room completes exactly once.
#[test]
fn a_full_disk_stops_the_run_and_a_restart_completes_exactly_once() {
    use std::os::unix::process::CommandExt;
    let Some(brokers) = brokers() else { return };
    let topic = unique("full");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    // A first run with room commits the first 3,000 records; then 57,000 more arrive and the
    // next run fails in its one commit (`--roll-interval 1h`: a single commit at the end of the
    // available data, whose files are larger than the limit whatever the fetch sizes were).
    let t0 = 1_750_000_000_000;
    load(&brokers, &topic, t0, 3_000);
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now"]));
    assert_eq!(ledger::committed(&out), 3_000);
    send(&brokers, &topic, &(3_000..60_000).map(|i| synthetic(t0, i)).collect::<Vec<_>>());
    let mut cmd = run_earliest(&brokers, &topic, &out, &["--available-now", "--roll-interval", "1h"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 16 * 1024, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = output_within(&mut cmd, Duration::from_secs(120));
    let err = stderr_of(&o);
    println!("[disk full] exit {:?}: {}", o.status.code(), err.lines().last().unwrap_or(""));
    assert!(!o.status.success(), "a write failure stops the run");
    assert!(err.contains("File too large") && err.contains("the disk has room"), "{err}");
    let partial = ledger::committed(&out);
    println!("[disk full] committed before the failure: {partial} of 60000");
    assert_eq!(partial, 3_000, "the failed commit left the earlier one as it was");
    // What is visible is complete and not duplicated (the rest is simply not there yet).
    let mid = ledger::check(&out.join(RUN), &ledger::consume_topic(&brokers, &topic), future_limit_ms());
    println!("[disk full] after the failure: {mid}");
    assert_eq!(mid.duplicates, 0);
    assert!(mid.problems.iter().all(|p| p.contains("offsets in no commit")), "{:?}", mid.problems);

    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows"]));
    verify("disk full", &brokers, &topic, &out);
}

/// Scenario 9, a peer process dies: in a 2-process cluster one process is SIGKILLed; the other
/// stops at once with one clear error (no hang, no backtrace). A restart with another shape
/// (1 process, 2 workers) gives output identical to an undisturbed run's.
#[test]
fn a_dead_peer_stops_the_cluster_and_a_restart_gives_identical_output() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("peer");
    create_topic(&brokers, &topic, 3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    load(&brokers, &topic, 1_750_000_000_000, 30_000);
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let hosts_s = hosts.display().to_string();
    let mut procs: Vec<Job> = (0..2)
        .map(|p| {
            let p = p.to_string();
            Job::spawn(
                run_earliest(
                    &brokers,
                    &topic,
                    &out,
                    &["-n", "2", "-p", &p, "-h", &hosts_s, "--roll-interval", "200ms"],
                ),
                tmp.path().join(format!("peer-{p}.log")),
            )
        })
        .collect();
    procs[0]
        .wait_until("the cluster's first commits", Duration::from_secs(90), || ledger::committed(&out) > 0);
    let survivor = procs.remove(0);
    procs.pop().unwrap().kill();
    let mut survivor = survivor;
    let status = survivor.wait_for(Duration::from_secs(30)).unwrap_or_else(|| {
        panic!("the surviving process still runs 30 s after its peer died; log:\n{}", survivor.log())
    });
    let log = survivor.log();
    let error = log.lines().find(|l| l.starts_with("Error:")).unwrap_or("");
    println!("[peer] survivor exit {:?}: {error}", status.code());
    assert_eq!(status.code(), Some(streamlake::peer::EXIT_PEER_LOST), "{log}");
    assert!(error.contains("lost its connection to another process of the cluster"), "{log}");
    assert!(!log.contains("stack backtrace"), "one clear error, not backtraces:\n{log}");

    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows", "-w", "2"]));
    verify("peer", &brokers, &topic, &out);
    // The same input, undisturbed, in one worker: identical raw rows and window rows.
    let reference = tmp.path().join("ref/parquet");
    run_ok(&mut run_earliest(&brokers, &topic, &reference, &["--available-now", "--flush-windows"]));
    assert_eq!(read_raw(&out.join(RUN)), read_raw(&reference.join(RUN)), "raw rows");
    assert_eq!(
        read_aggregates(&aggregates_of(&out, RUN)),
        read_aggregates(&aggregates_of(&reference, RUN)),
        "window rows"
    );
}

/// Scenario 4, broker restart: the broker is stopped for 30 s mid-stream and started again. The
/// job says what it waits for, does not exit or hang, and resumes without loss.
#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    // Needs the shared test broker's presence only as the signal that Kafka tests run here.
    let Some(_) = brokers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let broker = OwnBroker::start(&tmp.path().join("kafka"));
    let brokers = broker.addr.clone();
    let topic = unique("restart");
    create_topic(&brokers, &topic, 3);
    let out = tmp.path().join("parquet");
    let t0 = 1_750_000_000_000;
    load(&brokers, &topic, t0, 20_000);
    let mut job = Job::spawn(
        run_earliest(&brokers, &topic, &out, &["--roll-interval", "200ms", "-w", "2"]),
        tmp.path().join("restart.log"),
    );
    job.wait_until("the first 20000 committed", Duration::from_secs(60), || {
        ledger::committed(&out) == 20_000
    });
    broker.stop();
    let down = Instant::now();
    job.wait_log("the job to say it waits for the broker", Duration::from_secs(60), |l| {
        l.contains("waiting for the Kafka broker") || l.contains("lost the Kafka broker")
    });
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    assert!(job.wait_for(Duration::ZERO).is_none(), "the job waits, it does not exit:\n{}", job.log());
    let waiting = job.log().lines().filter(|l| l.contains("Kafka broker")).count();
    println!("[broker restart] down for {:?}; {waiting} log line(s) about the broker", down.elapsed());
    broker.restart();
    let more: Vec<_> = (20_000..40_000).map(|i| synthetic(t0, i)).collect();
    send(&brokers, &topic, &more);
    job.wait_until("everything committed after the restart", Duration::from_secs(120), || {
        ledger::committed(&out) == 40_000
    });
    let log = job.stop();
    assert!(log.contains("the Kafka broker is back"), "says it resumed:\n{log}");
    run_ok(&mut run_earliest(&brokers, &topic, &out, &["--available-now", "--flush-windows"]));
    verify("broker restart", &brokers, &topic, &out);
}
