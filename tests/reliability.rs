//! The reliability suite (issue "crashes, broker faults and poison input"): every scenario ends
//! with the same two checks, an independent one and streamlake's own:
//! - [`ledger::check`]: a plain Kafka consumer reads the topic, and the visible files must hold
//!   exactly its records, keyed by (partition, offset): produced = written + quarantined
//!   (+ skipped on purpose), duplicates 0, lost 0, every visible file complete;
//! - `streamlake validate --audit` must pass.
//!
//! Crash windows are hit with named crash points (`STREAMLAKE_CRASH_AT`, feature `crash-points`,
//! which the test command enables). `docs/reliability.md` lists the scenarios.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::ledger::{self, Records};
use common::*;
use rand::{Rng, SeedableRng};

const RUN: &str = "run_t";
/// `--max-future` default (1 h) as the ledger's bound for "dated in the future".
fn future_limit_ms() -> i64 {
    now_ms() + 3_600_000
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `streamlake run` on `topic` writing to `out`, run id `t`, from the earliest offsets.
fn run_cmd(brokers: &str, topic: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["run", "--brokers", brokers, "--topic", topic, "--starting-offsets", "earliest", "--no-console"])
        .args(["--run-id", "t", "--output"])
        .arg(out)
        .args(extra);
    c
}

/// A running `streamlake run` whose stdout and stderr go to files (read them with [`Job::log`]).
struct Job {
    child: Child,
    log: PathBuf,
}

impl Job {
    fn spawn(mut cmd: Command, log: PathBuf) -> Job {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting streamlake");
        Job { child, log }
    }

    fn log(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.log).unwrap().read_to_string(&mut s).unwrap();
        s
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `pred(log)` holds, or panics after `timeout` with the log.
    fn wait_log(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if pred(&log) {
                return;
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("job exited ({s:?}) before {what}; log:\n{log}");
            }
            assert!(Instant::now() < deadline, "no {what} after {timeout:?}; log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait: a graceful stop commits and exits 0.
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.wait_for(Duration::from_secs(60)).expect("job did not stop within 60 s of SIGTERM");
        let log = self.log();
        assert!(status.success(), "graceful stop failed ({status:?}); log:\n{log}");
        log
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The i-th event of a synthetic stream: 2 ms of event time apart (so windows close while it
/// flows), five ids, all partitions in turn; one in 997 is not JSON (quarantined).
fn synthetic(t0: i64, i: u64) -> (i32, Option<Vec<u8>>) {
    if i % 997 == 500 {
        return ((i % 3) as i32, Some(format!("{{not json {i}").into_bytes()));
    }
    let value = ((i * 7919) % 100_000) as f64 / 1000.0;
    event_at((i % 5) as i64, t0 + 2 * i as i64, value)
}

/// Sends synthetic events in batches until `stop` is set (or `limit` is reached); returns how
/// many were sent (all acknowledged).
fn paced_producer(
    brokers: String,
    topic: String,
    t0: i64,
    per_batch: u64,
    pause: Duration,
    limit: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) && i < limit {
            let n = per_batch.min(limit - i);
            let batch: Vec<_> = (i..i + n).map(|k| synthetic(t0, k)).collect();
            send(&brokers, &topic, &batch);
            i += n;
            sent.store(i, Ordering::SeqCst);
            std::thread::sleep(pause);
        }
        i
    })
}

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
    let sent = Arc::new(AtomicU64::new(0));
    // ~10k events/s of input, 20 s of event time per wall second: windows close all the time.
    let producer = paced_producer(
        brokers.clone(),
        topic.clone(),
        t0,
        1000,
        Duration::from_millis(100),
        u64::MAX,
        stop.clone(),
        sent.clone(),
    );

    let points = streamlake::crash::POINTS;
    let mut reached = std::collections::BTreeMap::<&str, u32>::new();
    let mut timed_kills = 0;
    for k in 0..kills {
        let workers = ["1", "2", "3"][k % 3];
        let mut cmd = run_cmd(
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
        if let Some((point, nth)) = target {
            cmd.env("STREAMLAKE_CRASH_AT", format!("{point}:{nth}"));
        }
        let mut job = Job::spawn(cmd, tmp.path().join(format!("chaos-{k}.log")));
        match target {
            Some((point, _)) => match job.wait_for(Duration::from_secs(20)) {
                Some(status) => {
                    let log = job.log();
                    assert!(
                        log.contains(&format!("crash point {point} reached")),
                        "kill {k}: exited ({status:?}) without reaching {point}; log:\n{log}"
                    );
                    *reached.entry(point).or_insert(0) += 1;
                }
                None => {
                    // Not reached in 20 s (e.g. no window closed): an ordinary kill instead.
                    job.kill();
                    timed_kills += 1;
                }
            },
            None => {
                std::thread::sleep(Duration::from_millis(rng.random_range(300..2500)));
                if job.wait_for(Duration::ZERO).is_some() {
                    panic!("kill {k}: the job exited by itself; log:\n{}", job.log());
                }
                job.kill();
                timed_kills += 1;
            }
        }
        println!("[chaos] kill {k}: {:?} (sent so far {})", target, sent.load(Ordering::SeqCst));
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
    run_ok(&mut run_cmd(&brokers, &topic, &out, &["--available-now", "--flush-windows", "-w", "2"]));
    let l = verify("chaos", &brokers, &topic, &out);
    assert_eq!(l.produced, produced, "the topic holds what the producer sent");
    assert_eq!(l.quarantined, (0..produced).filter(|i| i % 997 == 500).count() as u64, "the poison records");
    // Every closed window once (read_aggregates panics on a window written twice).
    let aggs = read_aggregates(&tmp.path().join("aggregates").join(RUN));
    let aggregated: i64 = aggs.values().map(|(_, c)| c).sum();
    assert_eq!(
        aggregated as u64 + l.late,
        l.written,
        "every raw row is in one final window row or counted late"
    );
}
