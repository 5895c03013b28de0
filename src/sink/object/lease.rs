//! One writer per run and process index on an object store: a lease, since there is no `flock`.
//!
//! The lock of process P is a sequence of generations,
//! `_checkpoint/locks/process-<P>/<GEN, 20 digits>.json`, each created with a conditional create,
//! so of two processes that take the lock at once exactly one wins a generation. The holder puts
//! its generation again every `lease / 6` with a fresh `renewed_ms`, and stops committing if it
//! has not renewed for `lease / 2` (it may be cut off from the store) or sees a newer generation
//! (another process took over). Commits then wait ([`Lease::wait_valid`]) rather than fail: once
//! the store answers again, a holder whose renewals lapsed takes the lock again by creating the
//! next generation (conditionally, so a process that started meanwhile and created it first
//! wins, and this one stops), then goes on. A process starting finds the newest generation:
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
    /// The generation this process holds (a lapsed holder takes the next one).
    key: Mutex<String>,
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
            key: Mutex::new(key.clone()),
            run: run.to_string(),
            lease,
            valid_until_ms: AtomicI64::new(holder.renewed_ms + lease.as_millis() as i64 / 2),
            holder: Mutex::new(holder),
            lost: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let renewer = me.clone();
        std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || renewer.renew_loop())
            .map_err(|source| SinkError::Io { doing: "start the lease thread", path: key.into(), source })?;
        Ok(me)
    }

    fn key(&self) -> String {
        self.key.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Whether commits are still allowed: the lease was renewed recently and nobody took over.
    pub fn check(&self) -> Result<(), SinkError> {
        if let Some(reason) = self.lost_reason() {
            return Err(SinkError::LeaseLost { run: self.run.clone(), key: self.key(), reason });
        }
        if now_ms() > self.valid_until_ms.load(Ordering::Acquire) {
            return Err(self.lapsed("the object store did not answer"));
        }
        Ok(())
    }

    /// Returns once commits are allowed again: at once while the lease is fresh; after a lapse
    /// (the store did not answer renewals), when the renewing thread has renewed or taken the
    /// lock again. Fails if another process took over, or if `stop` says to give up waiting.
    pub fn wait_valid(&self, stop: &dyn Fn() -> bool) -> Result<(), SinkError> {
        let mut since: Option<std::time::Instant> = None;
        loop {
            if let Some(reason) = self.lost_reason() {
                return Err(SinkError::LeaseLost { run: self.run.clone(), key: self.key(), reason });
            }
            if now_ms() <= self.valid_until_ms.load(Ordering::Acquire) {
                if let Some(since) = since {
                    tracing::info!(lock = %self.key(), waited_s = since.elapsed().as_secs(), "the run's lock is renewed; commits resume");
                }
                return Ok(());
            }
            if stop() {
                return Err(self.lapsed("the object store did not answer, and a stop was asked for"));
            }
            if since.is_none() {
                tracing::warn!(
                    lock = %self.key(),
                    "the run's lock could not be renewed for {} s (the object store does not answer); commits wait \
                     until it is renewed",
                    self.lease.as_secs() / 2
                );
                since = Some(std::time::Instant::now());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn lapsed(&self, why: &str) -> SinkError {
        SinkError::LeaseLost {
            run: self.run.clone(),
            key: self.key(),
            reason: format!("could not be renewed for {} s ({why})", self.lease.as_secs() / 2),
        }
    }

    fn lost_reason(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    fn renew_loop(self: Arc<Self>) {
        let every = self.lease / 6;
        let key = self.key();
        let dir = key.rsplit_once('/').map_or(String::new(), |(d, _)| format!("{d}/"));
        let mut mine = generation(&dir, &key).unwrap_or(0);
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
                    tracing::warn!(error = %e, lock = %self.key(), "cannot renew the run's lease; retrying");
                    continue;
                }
            }
            let bytes = {
                let Ok(mut h) = self.holder.lock() else { break };
                h.renewed_ms = sent;
                serde_json::to_vec(&*h).unwrap_or_default()
            };
            let lapsed = sent > self.valid_until_ms.load(Ordering::Acquire);
            if !lapsed {
                match self.store.put(&self.key(), Bytes::from(bytes)) {
                    Ok(()) => {
                        self.valid_until_ms
                            .store(sent + self.lease.as_millis() as i64 / 2, Ordering::Release);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, lock = %self.key(), "cannot renew the run's lease; retrying")
                    }
                }
                continue;
            }
            // Commits stopped half a lease after the last renewal, and a process starting may
            // take over a whole lease after it: renewing the old generation now could race such
            // a taker. Creating the next one cannot: exactly one of the two creates it.
            let next = format!("{dir}{:020}.json", mine + 1);
            match self.store.create(&next, Bytes::from(bytes)) {
                Ok(Created::New) => {
                    let old = std::mem::replace(
                        &mut *self.key.lock().unwrap_or_else(|e| e.into_inner()),
                        next.clone(),
                    );
                    mine += 1;
                    self.valid_until_ms.store(sent + self.lease.as_millis() as i64 / 2, Ordering::Release);
                    tracing::info!(lock = %next, "the run's lock had lapsed while the object store did not answer; it is taken again");
                    let _ = self.store.delete(&old);
                }
                Ok(Created::Exists) => {
                    self.lose(format!("was taken over by another process (generation {})", mine + 1));
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, lock = %next, "cannot take the run's lock again; retrying")
                }
            }
        }
    }

    fn lose(&self, reason: String) {
        tracing::error!(lock = %self.key(), %reason, "this process lost its hold on the run and stops committing");
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
        if let Err(e) = self.store.put(&self.key(), Bytes::from(bytes)) {
            tracing::warn!(error = %e, lock = %self.key(), "cannot release the run's lock; the next start waits for it to expire");
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
    /// A local folder that answers "unreachable" while `down` is set.
    #[derive(Debug)]
    struct Outage {
        inner: LocalStore,
        down: AtomicBool,
    }

    impl Outage {
        fn gate(&self) -> Result<(), crate::storage::StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::storage::StoreError::Unreachable {
                    endpoint: "http://127.0.0.1:9".into(),
                    doing: "test",
                    detail: "down".into(),
                });
            }
            Ok(())
        }
    }

    impl Store for Outage {
        fn get(&self, key: &str) -> Result<Option<Bytes>, crate::storage::StoreError> {
            self.gate()?;
            self.inner.get(key)
        }
        fn put(&self, key: &str, bytes: Bytes) -> Result<(), crate::storage::StoreError> {
            self.gate()?;
            self.inner.put(key, bytes)
        }
        fn create(&self, key: &str, bytes: Bytes) -> Result<Created, crate::storage::StoreError> {
            self.gate()?;
            self.inner.create(key, bytes)
        }
        fn list(&self, prefix: &str) -> Result<Vec<crate::storage::Listed>, crate::storage::StoreError> {
            self.gate()?;
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), crate::storage::StoreError> {
            self.gate()?;
            self.inner.delete(key)
        }
        fn describe(&self) -> String {
            "outage".into()
        }
    }

    /// A held lease on a store that then goes down until the lease lapses.
    fn lapsed(tmp: &std::path::Path) -> (Arc<Outage>, Arc<Lease>) {
        let store = Arc::new(Outage { inner: LocalStore::new(tmp), down: AtomicBool::new(false) });
        let lease = Lease::acquire(store.clone(), "r", "r", 0, Duration::from_millis(1200)).unwrap();
        lease.wait_valid(&|| false).unwrap();
        store.down.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lease.check().is_ok() {
            assert!(std::time::Instant::now() < deadline, "the lease never lapsed");
            std::thread::sleep(Duration::from_millis(20));
        }
        (store, lease)
    }

    fn generations(store: &Outage) -> Vec<String> {
        store.inner.list("r/_checkpoint/locks/process-0/").unwrap().into_iter().map(|l| l.key).collect()
    }

    #[test]
    fn a_lapsed_holder_takes_the_lock_again_once_the_store_answers() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, lease) = lapsed(tmp.path());
        // While the store is down, commits wait; a stop ends the wait with the lapse named.
        let err = lease.wait_valid(&|| true).unwrap_err();
        assert!(err.to_string().contains("could not be renewed"), "{err}");
        store.down.store(false, Ordering::SeqCst);
        lease.wait_valid(&|| false).unwrap();
        assert_eq!(generations(&store), vec!["r/_checkpoint/locks/process-0/00000000000000000002.json"]);
        // And a second process is still refused: the lock is held.
        let second = Lease::acquire(store.clone(), "r", "r", 0, Duration::from_millis(1200)).unwrap_err();
        assert!(matches!(second, SinkError::LeaseHeld { .. }), "{second}");
    }

    #[test]
    fn a_lapsed_holder_whose_lock_was_taken_meanwhile_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, lease) = lapsed(tmp.path());
        // A process that started during the outage (reaching the store by another path) took
        // the next generation.
        store
            .inner
            .create("r/_checkpoint/locks/process-0/00000000000000000002.json", Bytes::from_static(b"{}"))
            .unwrap();
        store.down.store(false, Ordering::SeqCst);
        let err = lease.wait_valid(&|| false).unwrap_err();
        assert!(err.to_string().contains("taken over"), "{err}");
    }
}
