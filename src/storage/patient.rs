//! Waiting out an object store that does not answer, instead of failing the job.
//!
//! `object_store` retries a failed request itself for [`super::object`]'s retry timeout (20 s),
//! which is right for a start-up check (a wrong endpoint is named quickly) and wrong for a job
//! that has run for hours: a store restarted for maintenance, a network partition or a burst of
//! 503s would stop it, and someone would have to start it again. [`Patient`] wraps the store a
//! running job writes through and retries every operation that failed for a reason that passes
//! (the store cannot be reached, or answered 5xx), with backoff from 1 s to 30 s, for as long as
//! it takes. It says so in the log when it starts waiting, every minute while it waits, and when
//! the store answers again. Other errors (access denied, a missing bucket) are returned at once:
//! waiting cannot fix them.
//!
//! Why retrying is safe: every operation of the commit protocol is idempotent. `put` and
//! `put_all` write the same bytes to the same keys again; `get`, `list` and `delete` change
//! nothing or the same thing; a `create` whose first attempt was applied but whose answer was
//! lost returns `Exists` on the retry, which the protocol recognises by reading the bytes back
//! (see [`super::Store::create`]). Nothing is committed while the store is away, so the job's
//! position is the last entry that was created, and the output stays exactly once.
//!
//! A stop asked for (SIGINT/SIGTERM) does not end the waiting at once: a store that is restarting
//! usually answers within seconds, and the stop's last commit should land. After a grace of 30 s
//! past the stop (Kubernetes' default termination grace) the operation's error is returned, the
//! job stops without committing more, and a restart resumes from the last entry. A second signal
//! ends the process at once, as always.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::store::{Created, Listed, Store, StoreError};

/// The first wait after a failure; each further one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a long wait is reported again.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// How long a stop may still wait for the store.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Requests sent to the store, by kind (every attempt counts, retries included; `put_all`
/// counts one PUT per object): what a run's commits cost on a store billed per request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    pub get: u64,
    pub put: u64,
    /// Conditional PUTs (`If-None-Match: *`).
    pub create: u64,
    pub list: u64,
    pub delete: u64,
}

/// A store whose transient failures are retried until it answers or a stop is asked for.
pub struct Patient {
    inner: Arc<dyn Store>,
    stop: Arc<dyn Fn() -> bool + Send + Sync>,
    backoff: (Duration, Duration),
    grace: Duration,
    /// When a stop was first seen.
    stopped_at: std::sync::OnceLock<Instant>,
    /// get, put, create, list, delete.
    sent: [AtomicU64; 5],
}

const GET: usize = 0;
const PUT: usize = 1;
const CREATE: usize = 2;
const LIST: usize = 3;
const DELETE: usize = 4;

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient").field("inner", &self.inner).finish()
    }
}

impl Patient {
    /// Wraps `inner`; `stop` says when to give up waiting (a shutdown was asked for).
    pub fn new(inner: Arc<dyn Store>, stop: Arc<dyn Fn() -> bool + Send + Sync>) -> Patient {
        Patient {
            inner,
            stop,
            backoff: (FIRST_BACKOFF, MAX_BACKOFF),
            grace: STOP_GRACE,
            stopped_at: std::sync::OnceLock::new(),
            sent: Default::default(),
        }
    }

    /// The same with other backoff bounds and stop grace (tests).
    pub fn with_backoff(mut self, first: Duration, max: Duration, grace: Duration) -> Patient {
        self.backoff = (first, max);
        self.grace = grace;
        self
    }

    /// The requests sent so far.
    pub fn requests(&self) -> Requests {
        let n = |i: usize| self.sent[i].load(Ordering::Relaxed);
        Requests { get: n(GET), put: n(PUT), create: n(CREATE), list: n(LIST), delete: n(DELETE) }
    }

    fn count(&self, kind: usize, n: u64) {
        self.sent[kind].fetch_add(n, Ordering::Relaxed);
    }

    /// Whether to stop waiting for the store: a stop was asked for more than the grace ago.
    pub fn give_up(&self) -> bool {
        (self.stop)() && self.stopped_at.get_or_init(Instant::now).elapsed() >= self.grace
    }

    /// Runs `op` on the store underneath until it succeeds or fails for good, waiting out
    /// transient failures; `gate` runs before each attempt and its error ends the wait. A write
    /// that only the holder of a lease may make passes a gate that waits for the lease to be
    /// valid, so that no attempt starts after another process may have taken over (a plain
    /// retry of a request sent before a long outage could land after a takeover).
    pub fn retry_with<T, E: From<StoreError>>(
        &self,
        doing: &str,
        key: &str,
        gate: impl Fn() -> Result<(), E>,
        op: impl Fn(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, E> {
        let (mut delay, max) = self.backoff;
        let mut waiting: Option<(Instant, Instant)> = None; // (since, last report)
        loop {
            gate()?;
            match op(&Counted(self)) {
                Err(e) if e.is_transient() && !self.give_up() => {
                    let now = Instant::now();
                    match &mut waiting {
                        None => {
                            tracing::warn!(
                                store = %self.inner.describe(), doing, key, error = %e,
                                "the object store does not answer; the job waits and retries (nothing is committed \
                                 meanwhile, nothing is lost); SIGTERM stops it"
                            );
                            waiting = Some((now, now));
                        }
                        Some((since, last)) if now.duration_since(*last) >= REPORT_EVERY => {
                            tracing::warn!(
                                store = %self.inner.describe(), doing, key, error = %e,
                                waited_s = now.duration_since(*since).as_secs(),
                                "still waiting for the object store"
                            );
                            *last = now;
                        }
                        Some(_) => {}
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(max);
                }
                result => {
                    if let Some((since, _)) = waiting {
                        tracing::info!(
                            store = %self.inner.describe(), doing, key,
                            waited_s = since.elapsed().as_secs(),
                            "the object store answers again; the job goes on"
                        );
                    }
                    return Ok(result?);
                }
            }
        }
    }

    fn retry<T>(
        &self,
        doing: &str,
        key: &str,
        op: impl Fn(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.retry_with(doing, key, || Ok::<(), StoreError>(()), op)
    }
}

impl Store for Patient {
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.retry("read", key, |s| s.get(key))
    }

    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.retry("write", key, |s| s.put(key, bytes.clone()))
    }

    fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StoreError> {
        self.retry("create", key, |s| s.create(key, bytes.clone()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        self.retry("list", prefix, |s| s.list(prefix))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.retry("delete", key, |s| s.delete(key))
    }

    fn put_all(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        let first = objects.first().map(|(k, _)| k.clone()).unwrap_or_default();
        self.retry("write", &first, |s| s.put_all(objects.clone()))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// The store underneath, counting what is sent to it.
#[derive(Debug)]
struct Counted<'a>(&'a Patient);

impl Store for Counted<'_> {
    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.0.count(GET, 1);
        self.0.inner.get(key)
    }

    fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.0.count(PUT, 1);
        self.0.inner.put(key, bytes)
    }

    fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StoreError> {
        self.0.count(CREATE, 1);
        self.0.inner.create(key, bytes)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        self.0.count(LIST, 1);
        self.0.inner.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.count(DELETE, 1);
        self.0.inner.delete(key)
    }

    fn put_all(&self, objects: Vec<(String, Bytes)>) -> Result<(), StoreError> {
        self.0.count(PUT, objects.len() as u64);
        self.0.inner.put_all(objects)
    }

    fn describe(&self) -> String {
        self.0.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A store that fails its first `fail` calls with `error`, then works (on a local folder).
    #[derive(Debug)]
    struct Flaky {
        inner: super::super::LocalStore,
        fail: usize,
        calls: AtomicUsize,
        error: fn() -> StoreError,
    }

    impl Flaky {
        fn gate(&self) -> Result<(), StoreError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
                return Err((self.error)());
            }
            Ok(())
        }
    }

    impl Store for Flaky {
        fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
            self.gate()?;
            self.inner.get(key)
        }
        fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
            self.gate()?;
            self.inner.put(key, bytes)
        }
        fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StoreError> {
            self.gate()?;
            self.inner.create(key, bytes)
        }
        fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
            self.gate()?;
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.gate()?;
            self.inner.delete(key)
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    fn unreachable() -> StoreError {
        StoreError::Unreachable {
            endpoint: "http://127.0.0.1:9".into(),
            doing: "write",
            detail: "refused".into(),
        }
    }

    fn denied() -> StoreError {
        StoreError::Denied { url: "s3://b/x".into(), doing: "write", detail: "AccessDenied".into() }
    }

    fn flaky(dir: &std::path::Path, fail: usize, error: fn() -> StoreError) -> Arc<Flaky> {
        Arc::new(Flaky { inner: super::super::LocalStore::new(dir), fail, calls: AtomicUsize::new(0), error })
    }

    fn patient(inner: Arc<Flaky>, stop: Arc<AtomicBool>) -> Patient {
        Patient::new(inner, Arc::new(move || stop.load(Ordering::SeqCst))).with_backoff(
            Duration::from_millis(1),
            Duration::from_millis(4),
            Duration::from_millis(50),
        )
    }

    #[test]
    fn an_unreachable_store_is_waited_for_and_the_write_lands_once() {
        let tmp = tempfile::tempdir().unwrap();
        let inner = flaky(tmp.path(), 5, unreachable);
        let store = patient(inner.clone(), Arc::new(AtomicBool::new(false)));
        store.put("a/b", Bytes::from_static(b"x")).unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 6, "five failures, then the write");
        assert_eq!(
            store.requests(),
            Requests { put: 6, ..Requests::default() },
            "every attempt is a request"
        );
        assert_eq!(store.get("a/b").unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(store.create("a/b", Bytes::from_static(b"y")).unwrap(), Created::Exists);
    }

    #[test]
    fn an_error_waiting_cannot_fix_is_returned_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let inner = flaky(tmp.path(), 5, denied);
        let store = patient(inner.clone(), Arc::new(AtomicBool::new(false)));
        assert!(matches!(store.put("a", Bytes::from_static(b"x")), Err(StoreError::Denied { .. })));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_stop_ends_the_wait_with_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let inner = flaky(tmp.path(), usize::MAX, unreachable);
        let stop = Arc::new(AtomicBool::new(false));
        let store = Arc::new(patient(inner.clone(), stop.clone()));
        let waiting = {
            let store = store.clone();
            std::thread::spawn(move || store.list("x"))
        };
        while inner.calls.load(Ordering::SeqCst) < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::SeqCst);
        assert!(matches!(waiting.join().unwrap(), Err(StoreError::Unreachable { .. })));
    }

    #[test]
    fn a_stop_still_waits_out_a_short_outage_so_its_last_commit_lands() {
        let tmp = tempfile::tempdir().unwrap();
        let inner = flaky(tmp.path(), 3, unreachable);
        let store = patient(inner.clone(), Arc::new(AtomicBool::new(true)));
        store.put("a", Bytes::from_static(b"x")).unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 4);
    }
}
