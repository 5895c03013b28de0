//! Chaos on S3 (issue "object storage"): SIGKILLs at every named crash point of the object-store
//! commit path and at random moments, under a live producer, and the S3 server restarted once
//! while a job runs; then the same two checks as on local disk, through the S3 API: the ledger
//! (nothing lost, nothing duplicated) and `validate --audit s3://…`.
//!
//! The test runs its own SeaweedFS ([`OwnS3`]), so that restarting it does not disturb the
//! server the other tests share, and gives the job a short lease (`--object-lease 3s`), so that a
//! restart after a kill waits seconds, not the default 30 s, for the dead process's lease.

use crate::common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::job::Job;
use crate::common::ledger;
use crate::common::s3::OwnS3;
use crate::common::scenario::*;
use crate::common::*;
use rand::{Rng, SeedableRng};

const LEASE: Duration = Duration::from_secs(3);

fn run_s3(brokers: &str, topic: &str, url: &str, s3: &OwnS3, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["run", "--brokers", brokers, "--topic", topic, "--starting-offsets", "earliest", "--no-console"])
        .args(["--run-id", "t", "--output", url, "--metrics-addr", "127.0.0.1:0", "--object-lease", "3s"])
        .args(extra);
    s3.apply(&mut c);
    c
}

#[test]
fn chaos_on_s3_kills_at_every_object_crash_point_and_survives_a_store_restart() {
    let Some(brokers) = brokers() else { return };
    // The shared server's presence says the S3 tests are to run; this test starts its own.
    let Some(_) = common::s3::bucket() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let s3 = OwnS3::start(&tmp.path().join("s3"));
    let topic = unique("s3chaos");
    create_topic(&brokers, &topic, 3);
    let url = "s3://lake/chaos/out".to_string();

    let kills: usize =
        std::env::var("STREAMLAKE_CHAOS_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let seed: u64 = std::env::var("STREAMLAKE_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    println!("[s3 chaos] kills={kills} seed={seed}");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let t0: i64 = 1_750_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = synthetic_stream(&brokers, &topic, t0, 0, 500, stop.clone());

    let points = streamlake::crash::OBJECT_POINTS;
    let mut reached = std::collections::BTreeMap::<&str, u32>::new();
    let mut timed_kills = 0;
    for k in 0..kills.max(points.len() + 2) {
        // The dead process's lease must expire before the next start is let in.
        std::thread::sleep(LEASE + Duration::from_millis(500));
        let workers = ["1", "2", "3"][k % 3];
        let cmd = run_s3(
            &brokers,
            &topic,
            &url,
            &s3,
            &["--roll-interval", "200ms", "--trigger", "200ms", "-w", workers],
        );
        let target = if k < points.len() {
            Some((points[k], 1 + (k % 2) as u32))
        } else if k % 2 == 0 {
            Some((points[rng.random_range(0..points.len())], rng.random_range(1..4)))
        } else {
            // A plain SIGKILL at a random moment, wherever the job is.
            None
        };
        match kill_once(
            cmd,
            tmp.path().join(format!("chaos-{k}.log")),
            target,
            Duration::from_secs(30),
            &mut rng,
            k,
        ) {
            Some(point) => *reached.entry(point).or_insert(0) += 1,
            None => timed_kills += 1,
        }
        println!("[s3 chaos] kill {k}: {target:?}");
    }
    for p in points {
        assert!(reached.contains_key(p), "crash point {p} was never reached: {reached:?}");
    }
    assert!(timed_kills > 0, "random kills as well as crash points");

    // The S3 server restarted while a job runs: the job says it waits, goes on when the store
    // answers again (which, after the outage, needs the lapsed lease taken again), and a SIGTERM
    // sent as soon as the store answers still ends it cleanly, with its last commit made.
    std::thread::sleep(LEASE + Duration::from_millis(500));
    let mut live = Job::spawn(
        run_s3(&brokers, &topic, &url, &s3, &["--roll-interval", "200ms", "--trigger", "200ms", "-w", "2"]),
        tmp.path().join("restart.log"),
    );
    live.wait_log("commits before the restart", Duration::from_secs(60), |log| log.contains("assigned"));
    std::thread::sleep(Duration::from_secs(2));
    s3.stop();
    // Long enough for the lease to lapse (half of it) and for several commits to wait.
    std::thread::sleep(LEASE * 2);
    s3.restart();
    live.wait_log("the job going on after the restart", Duration::from_secs(120), |log| {
        log.contains("the object store answers again")
    });
    assert!(
        live.wait_for(Duration::ZERO).is_none(),
        "the job kept running through the restart:\n{}",
        live.log()
    );
    live.signal(libc::SIGTERM);
    let status = live.wait_for(Duration::from_secs(90)).expect("the job exits on SIGTERM");
    let log = live.log();
    assert!(status.success(), "{log}");
    assert!(log.contains("the object store does not answer"), "the wait was said:\n{log}");
    assert!(log.contains("it is taken again"), "the lapsed lease was taken again:\n{log}");

    stop.store(true, Ordering::SeqCst);
    let produced = producer.join().unwrap();
    println!(
        "[s3 chaos] crash points reached: {reached:?}; timed kills: {timed_kills}; events sent: {produced}"
    );

    // Catch up and close everything, then check through the S3 API.
    run_ok(&mut run_s3(&brokers, &topic, &url, &s3, &["--available-now", "--flush-windows", "-w", "2"]));
    let copy = tempfile::tempdir().unwrap();
    let objects = common::s3::copy_to(&s3.store("chaos"), copy.path());
    println!("[s3 chaos] read back {objects} objects");
    let out = copy.path().join("out");
    let l = ledger::check(&out.join("run_t"), &ledger::consume_topic(&brokers, &topic), future_limit_ms());
    l.assert_exact("s3 chaos");
    assert_eq!(l.produced, produced, "the topic holds what the producer sent");
    assert!(!read_aggregates(&aggregates_of(&out, "run_t")).is_empty(), "windows were written");
    let mut audit = bin();
    audit.args(["validate", "--audit", "--path", &url]);
    s3.apply(&mut audit);
    let audit = audit.output().unwrap();
    let stdout = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "validate --audit {url}: {}", common::process::text(&audit));
    assert!(stdout.lines().any(|l| l.starts_with("audit:") && l.ends_with("OK")), "{stdout}");
}
