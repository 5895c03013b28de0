//! Scratch folders for tests that write hundreds of thousands of files, and a parallel map for
//! checks that read them.
//!
//! On a file system that discards freed blocks synchronously (ext4 mounted with `discard`, as on
//! the CI machines), every unlink waits for the device: `tempfile::TempDir`'s drop, one unlink
//! after another, took 200 s for the ~300,000 files and folders of one run of
//! tests/many_keys.rs, longer than the run itself. The device takes many discards at once, so
//! [`ScratchDir`] deletes its tree from [`DELETE_THREADS`] threads (4x faster there).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads that unlink at once: the waits are the device's, not the CPU's.
pub const DELETE_THREADS: usize = 16;

/// A temporary folder (as `tempfile::tempdir()`) whose tree is deleted by [`DELETE_THREADS`]
/// threads when it is dropped, also when the test fails.
pub struct ScratchDir {
    dir: Option<tempfile::TempDir>,
}

impl ScratchDir {
    pub fn new() -> ScratchDir {
        ScratchDir { dir: Some(tempfile::tempdir().unwrap()) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            remove_tree_parallel(dir.path());
            // Whatever is left (nothing, unless an unlink failed) goes the usual way.
            drop(dir);
        }
    }
}

/// Deletes everything below `root` (not `root` itself) from many threads: the files first, then
/// the folders, deepest first. Errors are ignored (as a `TempDir`'s drop does); what could not be
/// deleted stays.
pub fn remove_tree_parallel(root: &Path) {
    let mut files = Vec::new();
    let mut dirs: Vec<(usize, PathBuf)> = Vec::new();
    let mut stack = vec![(0usize, root.to_path_buf())];
    while let Some((depth, dir)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push((depth + 1, e.path()));
                stack.push((depth + 1, e.path()));
            } else {
                files.push(e.path());
            }
        }
    }
    par_map(&files, DELETE_THREADS, |f| std::fs::remove_file(f).is_ok());
    // A folder can go once the folders in it are gone: one depth at a time, deepest first.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for level in dirs.chunk_by(|a, b| a.0 == b.0) {
        par_map(level, DELETE_THREADS, |(_, d)| std::fs::remove_dir(d).is_ok());
    }
}

/// `items.iter().map(f).collect()` on up to `threads` threads, results in item order.
pub fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|scope| {
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
        let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        joined.into_iter().flat_map(|j| j.unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Threads for CPU-bound checks: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
