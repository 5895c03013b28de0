//! Balance: when the partitions do not divide evenly over the workers, each worker parses and
//! writes its partitions on threads of their own, one per partition, within each poll batch.
//!
//! Why: ownership is round-robin (`kafka::assignment`), so 3 partitions over 2 workers split
//! 2:1. With one thread per worker the loads are 2/3 and 1/3 of the job's work, and the
//! scheduler shares the cores fairly between runnable threads, not by the work left: worker 0's
//! thread runs at about half a core while worker 1's is busy, and sets the wall time alone after.
//! Measured at 10M events on 3 partitions: `-w 2` took 12.3 s, `-w 3` 8.7 s, and `-w 2` on 12
//! partitions (6:6) 7.8 s. One thread per partition makes the units equal (three of 1/3), and the
//! scheduler then keeps both cores busy to the end.
//!
//! Why threads inside a worker and not an exchange of parsed batches between workers: each
//! partition keeps its owner, its files and its checkpoint entries, so the commit protocol, the
//! crash rules and the restore are untouched; exactly once holds for the same reasons as before.
//!
//! How: a splitting worker gives each partition a queue of its own in the consumer
//! (`BatchReader::for_partition`, made before the partition is assigned, so its records never
//! reach the consumer's queue; a partition's fetches come in runs of up to 512 KiB, so one shared
//! queue would hand a batch of one partition at a time and leave nothing to share). Per poll (a
//! fork and a join), the worker reads the consumer's queue (errors, and any partition without a
//! queue of its own), then one batch of each partition's queue: the first on its own thread, and
//! each other one that holds at least [`LANE_MIN_RECORDS`] records on a scoped thread with that
//! partition's state (`&mut Part`) and a parser of its own; smaller ones on the worker's thread
//! too. A partition's records stay on one thread, in offset order. Its consumer errors come back
//! to the worker, which handles them as it does those of the consumer's queue. The join ends the
//! poll, so everything after it (window deltas, commits, the watermark) sees the same state as
//! before. Each partition's state is touched by one thread at a time; the worker's sink budget is
//! shared, with atomic counts (`sink::raw::budget`).
//!
//! A batch is up to `max_batch` (4096) records per partition, a few milliseconds of work when
//! there is a backlog; a scoped thread costs tens of microseconds to start and join, paid only by
//! the workers that split and only for queues long enough. A worker that is caught up has short
//! queues, which it reads on its own thread.

/// A group smaller than this is parsed on the worker's own thread: a thread for it would cost
/// about as much as the records.
pub const LANE_MIN_RECORDS: usize = 256;

/// The most partitions a worker spreads over threads of its own. Beyond it the round-robin
/// split is within one partition of even (5 against 4 at worst), and a thread per partition
/// would cost more in switches than it balances.
pub const MAX_LANES: usize = 4;

/// Whether a worker owning `owned` of the topic's `partitions`, read by `workers` workers in all
/// processes, parses each of its partitions on a thread of its own.
///
/// Only when the partitions do not divide evenly: otherwise every worker already has the same
/// share, and one thread per worker is the cheapest way to read it.
pub fn split_by_partition(partitions: usize, workers: usize, owned: usize) -> bool {
    workers > 0 && !partitions.is_multiple_of(workers) && (2..=MAX_LANES).contains(&owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::assignment::owned_partitions;

    #[test]
    fn uneven_splits_use_a_thread_per_partition() {
        // The seed's 3 partitions over 2 workers: worker 0 splits, worker 1 has one to read.
        assert!(split_by_partition(3, 2, owned_partitions(0, 2, 3).len()));
        assert!(!split_by_partition(3, 2, owned_partitions(1, 2, 3).len()));
        // 5 over 2: both split, so all five units are the same size.
        assert!(split_by_partition(5, 2, 3) && split_by_partition(5, 2, 2));
    }

    #[test]
    fn even_splits_and_single_partitions_do_not() {
        assert!(!split_by_partition(12, 2, 6), "6:6 is balanced already");
        assert!(!split_by_partition(4, 4, 1));
        assert!(!split_by_partition(3, 1, 3), "one worker: nothing to balance against");
        assert!(!split_by_partition(3, 4, 1), "3 over 4: one each, one idle");
        assert!(!split_by_partition(11, 2, 6), "beyond MAX_LANES the split is near even");
        assert!(!split_by_partition(3, 0, 0));
    }
}
