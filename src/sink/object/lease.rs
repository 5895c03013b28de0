//! One writer per run and process index on an object store: a lease, since there is no `flock`.
//!
//! The lock of process P is a sequence of generations,
//! `_checkpoint/locks/process-<P>/<GEN, 20 digits>.json`, each created with a conditional create,
//! so of two processes that take the lock at once exactly one wins a generation. The holder puts
//! its generation again every `lease / 6` with a fresh `renewed_ms`, and stops committing if it
//! has not renewed for `lease / 2` (it may be cut off from the store) or sees a newer generation
//! (another process took over). A process starting finds the newest generation:
//! - renewed less than `lease` ago: someone holds the run; refused before anything is touched;
//! - older, or released by a clean exit: it creates the next generation and holds the run.
//!
//! Why that is safe: the taker waits a whole lease since the last renewal, the holder stops half
//! a lease after it; the half lease left covers clock skew between hosts and a request in flight.
//! The checkpoint's conditional create stays the last line of defence: two writers that both
//! believe they hold the run still cannot both commit one entry.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::sink::SinkError;
use crate::storage::{Created, Store};

/// What a generation of the lock holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    started: String,
    /// Wall-clock ms of the last renewal; 0 once released.
    renewed_ms: i64,
}

/// This process's hold on its run and process index; dropping it releases the lock.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn Store>,
    key: String,
    run: String,
    lease: Duration,
    holder: Mutex<Holder>,
    /// Wall-clock ms until which commits are allowed (half a lease after the last renewal).
    valid_until_ms: AtomicI64,
    lost: Mutex<Option<String>>,
    stop: AtomicBool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

impl Lease {
    /// Takes the lock of `process` under `run_key`, or says who holds it. `run` names the run in
    /// messages. Starts a thread that renews it.
    pub fn acquire(
        store: Arc<dyn Store>,
        run_key: &str,
        run: &str,
        process: usize,
        lease: Duration,
    ) -> Result<Arc<Lease>, SinkError> {
        let dir = format!(
            "{run_key}/{}/{}/process-{process}/",
            crate::format::CHECKPOINT_DIR,
            crate::format::LOCKS_DIR
        );
        let listed = store.list(&dir)?;
        let newest = listed.iter().filter_map(|l| generation(&dir, &l.key).map(|g| (g, &l.key))).max();
        let next = match newest {
            Some((gen, key)) => {
                let current = store.get(key)?.and_then(|b| serde_json::from_slice::<Holder>(&b).ok());
                if let Some(h) = current.filter(|h| h.renewed_ms > 0) {
                    let age = now_ms().saturating_sub(h.renewed_ms);
                    if age < lease.as_millis() as i64 {
                        return Err(SinkError::LeaseHeld {
                            run: run.to_string(),
                            process,
                            key: key.clone(),
                            holder: format!("pid={} host={} started={}", h.pid, h.host, h.started),
                            age_s: (age / 1000) as u64,
                            lease_s: lease.as_secs(),
                        });
                    }
                }
                gen + 1
            }
            None => 1,
        };
        let key = format!("{dir}{next:020}.json");
        let holder = Holder {
            pid: std::process::id(),
            host: hostname(),
            started: chrono::Utc::now().to_rfc3339(),
            renewed_ms: now_ms(),
        };
        let bytes =
            Bytes::from(serde_json::to_vec(&holder).map_err(std::io::Error::other).map_err(|source| {
                SinkError::Io { doing: "serialize the lock", path: key.clone().into(), source }
            })?);
        if store.create(&key, bytes)? == Created::Exists {
            return Err(SinkError::LeaseHeld {
                run: run.to_string(),
                process,
                key,
                holder: "another process that started at the same moment".into(),
                age_s: 0,
                lease_s: lease.as_secs(),
            });
        }
        // Older generations are history; keep the store tidy (a failure here changes nothing).
        for l in &listed {
            if generation(&dir, &l.key).is_some() {
                let _ = store.delete(&l.key);
            }
        }
        let me = Arc::new(Lease {
            store,
            key,
            run: run.to_string(),
            lease,
            valid_until_ms: AtomicI64::new(holder.renewed_ms + lease.as_millis() as i64 / 2),
            holder: Mutex::new(holder),
            lost: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let renewer = me.clone();
        std::thread::Builder::new().name("lease".into()).spawn(move || renewer.renew_loop()).map_err(
            |source| SinkError::Io { doing: "start the lease thread", path: me.key.clone().into(), source },
        )?;
        Ok(me)
    }

    /// Whether commits are still allowed: the lease was renewed recently and nobody took over.
    pub fn check(&self) -> Result<(), SinkError> {
        if let Some(reason) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(SinkError::LeaseLost { run: self.run.clone(), key: self.key.clone(), reason });
        }
        if now_ms() > self.valid_until_ms.load(Ordering::Acquire) {
            return Err(SinkError::LeaseLost {
                run: self.run.clone(),
                key: self.key.clone(),
                reason: format!(
                    "could not be renewed for {} s (the object store did not answer)",
                    self.lease.as_secs() / 2
                ),
            });
        }
        Ok(())
    }

    fn renew_loop(self: Arc<Self>) {
        let every = self.lease / 6;
        let dir = self.key.rsplit_once('/').map_or(String::new(), |(d, _)| format!("{d}/"));
        let mine = generation(&dir, &self.key).unwrap_or(0);
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(every.max(Duration::from_millis(100)));
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let sent = now_ms();
            let newer =
                self.store.list(&dir).map(|l| l.iter().filter_map(|x| generation(&dir, &x.key)).max());
            match newer {
                Ok(Some(g)) if g > mine => {
                    self.lose(format!("was taken over by another process (generation {g})"));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, lock = %self.key, "cannot renew the run's lease; retrying");
                    continue;
                }
            }
            let bytes = {
                let Ok(mut h) = self.holder.lock() else { break };
                h.renewed_ms = sent;
                serde_json::to_vec(&*h).unwrap_or_default()
            };
            match self.store.put(&self.key, Bytes::from(bytes)) {
                Ok(()) => {
                    self.valid_until_ms.store(sent + self.lease.as_millis() as i64 / 2, Ordering::Release);
                }
                Err(e) => {
                    tracing::warn!(error = %e, lock = %self.key, "cannot renew the run's lease; retrying")
                }
            }
        }
    }

    fn lose(&self, reason: String) {
        tracing::error!(lock = %self.key, %reason, "this process lost its hold on the run and stops committing");
        if let Ok(mut l) = self.lost.lock() {
            l.get_or_insert(reason);
        }
    }

    /// Marks the lock released, so the next start need not wait for it to expire.
    pub fn release(&self) {
        self.stop.store(true, Ordering::Release);
        if self.lost.lock().is_ok_and(|l| l.is_some()) {
            return;
        }
        let bytes = match self.holder.lock() {
            Ok(mut h) => {
                h.renewed_ms = 0;
                serde_json::to_vec(&*h).unwrap_or_default()
            }
            Err(_) => return,
        };
        if let Err(e) = self.store.put(&self.key, Bytes::from(bytes)) {
            tracing::warn!(error = %e, lock = %self.key, "cannot release the run's lock; the next start waits for it to expire");
        }
    }
}

/// The generation of a lock key under `dir`.
fn generation(dir: &str, key: &str) -> Option<u64> {
    key.strip_prefix(dir)?.strip_suffix(".json")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    #[test]
    fn a_held_lease_refuses_a_second_and_a_released_one_is_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(tmp.path()));
        let lease = Duration::from_secs(30);
        let first = Lease::acquire(store.clone(), "out/run_x", "run_x", 0, lease).unwrap();
        first.check().unwrap();
        let err = Lease::acquire(store.clone(), "out/run_x", "run_x", 0, lease).unwrap_err();
        assert!(matches!(err, SinkError::LeaseHeld { process: 0, .. }), "{err}");
        assert!(err.to_string().contains(&format!("pid={}", std::process::id())), "{err}");
        // Another process index is another lock.
        Lease::acquire(store.clone(), "out/run_x", "run_x", 1, lease).unwrap().release();
        first.release();
        let second = Lease::acquire(store.clone(), "out/run_x", "run_x", 0, lease).unwrap();
        second.check().unwrap();
        let keys: Vec<String> = store
            .list("out/run_x/_checkpoint/locks/process-0/")
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, vec!["out/run_x/_checkpoint/locks/process-0/00000000000000000002.json"]);
    }

    #[test]
    fn a_holder_that_was_taken_over_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(tmp.path()));
        let first = Lease::acquire(store.clone(), "r", "r", 0, Duration::from_millis(1200)).unwrap();
        // A taker that saw the lease expired creates the next generation.
        store
            .create("r/_checkpoint/locks/process-0/00000000000000000002.json", Bytes::from_static(b"{}"))
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while first.check().is_ok() {
            assert!(std::time::Instant::now() < deadline, "the holder never noticed");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(first.check().unwrap_err().to_string().contains("taken over"));
    }
}
