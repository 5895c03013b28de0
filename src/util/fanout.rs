//! One fan-out for the whole crate: apply a function to every item on a few scoped threads.
//!
//! Used by the commit path (fsync of a commit's files and folders at once, see
//! [`crate::sink::durable::sync_all_concurrently`]) and by `validate` (reading footers and
//! columns of many Parquet files).
//!
//! Why not `rayon` (assessed for issue 15): its global pool has one thread per core, two on the
//! benchmark VM. The commit's fan-out is not CPU work but waiting on the device: ten concurrent
//! fsyncs took p99 9 ms there against 90 ms sequential, so it needs about as many threads as
//! files (up to 16), not as many as cores; a second, dedicated pool would be one more thing to
//! size and keep alive for a few fsyncs per commit. `validate` alone would fit rayon's pool, but
//! one small helper here serves both, and rayon is not a dependency of the crate today.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The thread count for [`map`] when the work is mostly CPU or disk reads: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Applies `f` to every item on at most `max_threads` threads (none for one item), pulling items
/// from a shared queue so that a few slow items do not leave threads idle. Results come back in
/// item order. Every thread is joined before it returns; a panic in `f` is resumed here.
pub fn map<T: Sync, R: Send>(items: &[T], max_threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = max_threads.min(items.len()).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        // Join every thread before looking at any result, also after a panic: nothing outlives the call.
        let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        joined.into_iter().flat_map(|j| j.unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order() {
        let items: Vec<u64> = (0..200).collect();
        for threads in [1, 2, 16] {
            let got = map(&items, threads, |x| x * 2);
            assert_eq!(got, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert!(map(&[] as &[u8], 4, |x| *x).is_empty());
    }
}
