//! Helpers of the reliability scenarios (`tests/reliability.rs`, `tests/s3_chaos.rs`): a
//! synthetic event stream, a paced producer, one chaos kill, and a broker of the test's own that
//! it can stop and start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{event_at, send};

/// `--max-future` default (1 h) as the ledger's bound for "dated in the future".
pub fn future_limit_ms() -> i64 {
    now_ms() + 3_600_000
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The i-th event of a synthetic stream: 2 ms of event time apart (so windows close while it
/// flows), five ids, all partitions in turn; one in 997 is not JSON (quarantined).
pub fn synthetic(t0: i64, i: u64) -> (i32, Option<Vec<u8>>) {
    if i % 997 == 500 {
        return ((i % 3) as i32, Some(format!("{{not json {i}").into_bytes()));
    }
    let value = ((i * 7919) % 100_000) as f64 / 1000.0;
    event_at((i % 5) as i64, t0 + 2 * i as i64, value)
}

/// Sends `make(i)` for i = 0, 1, … in batches of `per_batch`, `pause` apart, until `stop` is
/// set; returns how many were sent (all acknowledged).
pub fn paced_producer(
    brokers: String,
    topic: String,
    make: impl Fn(u64) -> (i32, Option<Vec<u8>>) + Send + 'static,
    per_batch: u64,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let batch: Vec<_> = (i..i + per_batch).map(&make).collect();
            send(&brokers, &topic, &batch);
            i += per_batch;
            std::thread::sleep(pause);
        }
        i
    })
}

/// [`paced_producer`] of [`synthetic`] events `first`, `first + 1`, …, `per_tick` every 100 ms:
/// the live producer of the chaos tests. Returns how many it sent.
pub fn synthetic_stream(
    brokers: &str,
    topic: &str,
    t0: i64,
    first: u64,
    per_tick: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let make = move |i| synthetic(t0, first + i);
    paced_producer(brokers.to_string(), topic.to_string(), make, per_tick, Duration::from_millis(100), stop)
}

/// Loads `n` synthetic events (one acknowledged batch).
pub fn load(brokers: &str, topic: &str, t0: i64, n: u64) {
    let batch: Vec<_> = (0..n).map(|i| synthetic(t0, i)).collect();
    send(brokers, topic, &batch);
}

/// A Kafka broker of the test's own (scripts/kafka.sh with a private state folder), so it can be
/// stopped and started. Stopped on drop.
pub struct OwnBroker {
    state: PathBuf,
    pub addr: String,
}

impl OwnBroker {
    pub fn kafka_sh(state: &Path, action: &str, port: Option<u16>) -> std::process::Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg(action).env("KAFKA_STATE_DIR", state).env("KAFKA_HEAP", "512m");
        if let Ok(libs) = std::env::var("STREAMLAKE_TEST_KAFKA_LIBS") {
            cmd.env("KAFKA_LIBS_DIR", libs);
        }
        if let Some(port) = port {
            cmd.env("KAFKA_PORT", port.to_string());
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "kafka.sh {action} failed:\n{}", String::from_utf8_lossy(&o.stderr));
        o
    }

    pub fn start(state: &Path) -> OwnBroker {
        let o = Self::kafka_sh(state, "start", None);
        let addr = String::from_utf8_lossy(&o.stdout).lines().last().unwrap().trim().to_string();
        OwnBroker { state: state.to_path_buf(), addr }
    }

    pub fn stop(&self) {
        Self::kafka_sh(&self.state, "stop", None);
    }

    pub fn restart(&self) {
        let port = self.addr.rsplit_once(':').unwrap().1.parse().unwrap();
        Self::kafka_sh(&self.state, "start", Some(port));
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| Self::kafka_sh(&self.state, "stop", None));
    }
}

/// One kill of a chaos scenario, the `k`-th. With `target`, a crash point and which hit of it
/// (`STREAMLAKE_CRASH_AT`), `cmd` runs until it dies there, which its log must say; a point not
/// reached within `wait` (no window closed, say) becomes an ordinary kill. Without one, the job is
/// killed with SIGKILL after a random 300-2500 ms, and must not have exited by itself before.
/// Returns the point reached, or `None` for a kill at a random moment.
pub fn kill_once(
    mut cmd: Command,
    log: PathBuf,
    target: Option<(&'static str, u32)>,
    wait: Duration,
    rng: &mut impl rand::Rng,
    k: usize,
) -> Option<&'static str> {
    if let Some((point, nth)) = target {
        cmd.env("STREAMLAKE_CRASH_AT", format!("{point}:{nth}"));
    }
    let mut job = super::job::Job::spawn(cmd, log);
    match target {
        Some((point, _)) => match job.wait_for(wait) {
            Some(status) => {
                let log = job.log();
                assert!(
                    log.contains(&format!("crash point {point} reached")),
                    "kill {k}: exited ({status:?}) without reaching {point}; log:\n{log}"
                );
                Some(point)
            }
            None => {
                job.kill();
                None
            }
        },
        None => {
            std::thread::sleep(Duration::from_millis(rng.random_range(300..2500)));
            if job.wait_for(Duration::ZERO).is_some() {
                panic!("kill {k}: the job exited by itself; log:\n{}", job.log());
            }
            job.kill();
            None
        }
    }
}
