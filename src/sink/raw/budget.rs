//! The raw sink's bounds: how many files a worker keeps open and how many bytes of rows it holds,
//! whatever the number of keys.
//!
//! A process gets `--max-open-files` and `--sink-buffer-mib`; each of its workers gets an equal
//! share ([`SinkLimits::per_worker`]), shared by that worker's partitions through one
//! [`WorkerBudget`]. A partition opens a streaming writer for a new folder while the worker has a
//! file to spare, and otherwise buffers the folder's rows until its commit, where they are written
//! one file at a time. When the held bytes reach the share, the source commits early (as for
//! `--roll-size`), so memory stays within the share instead of growing with the key count.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// File descriptors a process keeps beyond its sink files: Kafka sockets (a few per broker and
/// consumer), the checkpoint and lock files, the metrics server, the log, standard streams.
pub const FD_RESERVE: u64 = 64;

/// The bounds of one worker's raw sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkLimits {
    /// Streaming writers (open files) the worker keeps at once, over all its partitions.
    pub open_files: usize,
    /// Bytes of rows the worker holds in memory (buffered rows and its writers' unwritten row
    /// groups) before it commits.
    pub buffer_bytes: usize,
}

impl SinkLimits {
    /// A worker's share of a process's `--max-open-files` and `--sink-buffer-mib`.
    pub fn per_worker(max_open_files: usize, buffer_mib: usize, workers: usize) -> Self {
        let workers = workers.max(1);
        SinkLimits {
            open_files: (max_open_files / workers).max(1),
            buffer_bytes: (buffer_mib << 20) / workers,
        }
    }
}

impl Default for SinkLimits {
    /// One worker with the flags' defaults.
    fn default() -> Self {
        SinkLimits::per_worker(DEFAULT_MAX_OPEN_FILES, DEFAULT_BUFFER_MIB, 1)
    }
}

/// `--max-open-files`'s default: with [`FD_RESERVE`] well under the common `ulimit -n 1024`.
pub const DEFAULT_MAX_OPEN_FILES: usize = 256;
/// `--sink-buffer-mib`'s default.
pub const DEFAULT_BUFFER_MIB: usize = 64;
/// Bytes a partition takes in before it adds them to the worker's count: small against any
/// share (a 64 MiB buffer over 8 workers is 8 MiB each), large enough that the count is touched
/// about once per 600 seed records.
pub const PUBLISH_BYTES: usize = 64 << 10;

/// What the partitions of one worker use of its [`SinkLimits`]. Several threads update it: the
/// worker's, its reading lanes (`ingest::lanes`) and its commit thread (which gives a committed
/// interval's slots and bytes back while the worker fills the next), so every update is one
/// atomic read-modify-write. Partitions publish their bytes in steps of [`PUBLISH_BYTES`], not
/// per row, to keep those locked instructions off the per-record path. `Relaxed` is enough: the
/// counters order nothing else.
#[derive(Debug)]
pub struct WorkerBudget {
    limits: SinkLimits,
    open: AtomicUsize,
    held: AtomicUsize,
    /// Whether an early commit was logged (once per worker: it is advice, not an event).
    told: AtomicBool,
}

impl WorkerBudget {
    pub fn new(limits: SinkLimits) -> Self {
        WorkerBudget {
            limits,
            open: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            told: AtomicBool::new(false),
        }
    }

    pub fn limits(&self) -> SinkLimits {
        self.limits
    }

    /// Takes a file slot if one is free.
    pub fn try_open(&self) -> bool {
        let max = self.limits.open_files;
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| (open < max).then_some(open + 1))
            .is_ok()
    }

    /// Gives `n` file slots back.
    pub fn closed(&self, n: usize) {
        self.open.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn open_files(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Adds `bytes` to what the worker holds.
    #[inline]
    pub fn hold(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives `bytes` back.
    #[inline]
    pub fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether the worker holds its whole share: its partitions should commit.
    pub fn full(&self) -> bool {
        self.full_with(0)
    }

    /// As [`WorkerBudget::full`], with `unpublished` bytes the asking partition has not added yet.
    pub fn full_with(&self, unpublished: usize) -> bool {
        self.held() + unpublished >= self.limits.buffer_bytes
    }

    /// True the first time it is asked (for a one-time log line).
    pub fn first_telling(&self) -> bool {
        !self.told.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_process_limits_evenly() {
        let l = SinkLimits::per_worker(256, 64, 2);
        assert_eq!(l, SinkLimits { open_files: 128, buffer_bytes: 32 << 20 });
        assert_eq!(SinkLimits::per_worker(3, 1, 4).open_files, 1, "a worker always gets one file");
    }

    #[test]
    fn slots_and_bytes_are_counted() {
        let b = WorkerBudget::new(SinkLimits { open_files: 2, buffer_bytes: 100 });
        assert!(b.try_open() && b.try_open());
        assert!(!b.try_open(), "the third file waits for a slot");
        b.closed(1);
        assert!(b.try_open());
        assert_eq!(b.open_files(), 2);
        b.hold(60);
        assert!(!b.full());
        b.hold(40);
        assert!(b.full());
        b.release(100);
        assert_eq!(b.held(), 0);
    }

    /// The worker, its lanes and its commit thread update one budget at once: no update may be
    /// lost (with a load and a store instead of one atomic step, these counts drift).
    #[test]
    fn concurrent_updates_are_not_lost() {
        let b = WorkerBudget::new(SinkLimits { open_files: 4, buffer_bytes: usize::MAX });
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..200_000 {
                        b.hold(i % 7 + 1);
                        b.release(i % 7 + 1);
                        if b.try_open() {
                            assert!(b.open_files() <= 4, "never more slots than the limit");
                            b.closed(1);
                        }
                    }
                });
            }
        });
        assert_eq!((b.held(), b.open_files()), (0, 0));
    }
}
