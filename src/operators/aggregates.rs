//! The aggregates sink: final window rows → Parquet, exactly once, on worker 0.
//!
//! Final rows are few (one per key per window), so they all go to one writer; that makes the
//! "written up to" mark a single fact in `_checkpoint/windows.json` instead of a per-worker
//! agreement that would break when the worker count changes between runs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::window::WindowOutput;
use super::FLUSH_TIME;
use crate::error::WorkerError;
use crate::sink::aggregates::{write_windows, AggregatesOwner, WindowRow};
use crate::sink::checkpoint::{CheckpointDir, WindowsEntry};
use crate::sink::delta::files::NewFile;
use crate::sink::object::ObjectTarget;
use crate::spec::Field;

/// Where the sink writes and what it starts from.
pub struct AggregatesTarget {
    pub dir: PathBuf,
    pub owner: AggregatesOwner,
    pub checkpoint: CheckpointDir,
    pub key: Field,
    pub window_ms: u64,
    pub restored: WindowsEntry,
    /// Only worker 0 receives rows and writes; the other workers' instances only pass the frontier.
    pub is_writer: bool,
    /// `--output s3://…`: `dir` is then the local spool, each file is uploaded once written and
    /// `windows.json` is put on the store.
    pub object: Option<Arc<ObjectTarget>>,
    /// `--table-format delta`: each written batch is committed to the aggregates table once
    /// `windows.json` marks it (a crash between the two is completed at the next start).
    pub delta: Option<Arc<crate::sink::delta::DeltaTables>>,
}

/// What the sink did, for the run summary; an error stops the run.
#[derive(Debug, Default)]
pub struct AggregatesReport {
    pub rows: u64,
    pub files: u64,
    pub closed_through_ms: u64,
    pub error: Option<WorkerError>,
}

pub trait WriteAggregates<'scope> {
    /// Input: window rows; only finals (`true`) are written.
    ///
    /// Routing: everything to worker 0 (other workers' instances see no data).
    ///
    /// Output: nothing; its frontier is what a probe watches. Frontier behaviour: final rows are
    /// stashed with a retained capability until the input frontier passes their time; they are
    /// then written (fsync + rename) and `windows.json` is updated *before* the capability is
    /// released. So a probe at or past `t` proves the final rows of every window ending before
    /// `t` are durable — the sources rely on this to drop those windows from their checkpoints.
    fn write_aggregates(
        self,
        target: AggregatesTarget,
        report: Rc<RefCell<AggregatesReport>>,
    ) -> Stream<'scope, u64, Vec<()>>;
}

impl<'scope> WriteAggregates<'scope> for Stream<'scope, u64, Vec<WindowOutput>> {
    fn write_aggregates(
        self,
        target: AggregatesTarget,
        report: Rc<RefCell<AggregatesReport>>,
    ) -> Stream<'scope, u64, Vec<()>> {
        let route = Exchange::new(|_: &WindowOutput| 0);
        self.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            route,
            "WriteAggregates",
            move |_cap, _info| {
                let mut stash: BTreeMap<u64, (Capability<u64>, Vec<WindowRow>)> = BTreeMap::new();
                let mut windows = target.restored.clone();
                report.borrow_mut().closed_through_ms = windows.closed_through_ms;
                let mut max_written = windows.closed_through_ms;
                let mut held: Vec<Capability<u64>> = Vec::new();
                move |(input, frontier), _output| {
                    input.for_each(|cap, data| {
                        let Some(cap) = cap.retain_least(0) else { return };
                        let time = *cap.time();
                        for (row, is_final) in data.drain(..) {
                            if !is_final || row.end_ms <= windows.closed_through_ms {
                                continue;
                            }
                            stash.entry(time).or_insert_with(|| (cap.clone(), Vec::new())).1.push(row);
                        }
                    });
                    if report.borrow().error.is_some() || !target.is_writer {
                        return;
                    }
                    let watermark = frontier.frontier().iter().min().copied();
                    let mut ready: Vec<WindowRow> = Vec::new();
                    let mut unpublished: Option<NewFile> = None;
                    let mut caps = Vec::new();
                    while let Some(entry) = stash.first_entry() {
                        if watermark.is_some_and(|w| *entry.key() >= w) {
                            break;
                        }
                        let (_, (cap, rows)) = entry.remove_entry();
                        ready.extend(rows);
                        caps.push(cap);
                    }
                    if !ready.is_empty() {
                        ready.sort();
                        let written =
                            write_windows(&target.dir, &target.owner, &target.key, target.window_ms, &ready)
                                .and_then(|name| {
                                    let path = target.dir.join(&name);
                                    let size = std::fs::metadata(&path)
                                        .map_err(crate::sink::io_err("stat", &path))?
                                        .len();
                                    match &target.object {
                                        Some(object) => object.upload_windows(&name).map(|()| (name, size)),
                                        None => Ok((name, size)),
                                    }
                                });
                        match written {
                            Ok((name, size)) => {
                                unpublished =
                                    Some(NewFile { rel: name.clone(), size, rows: Some(ready.len() as u64) });
                                windows.files.push(name);
                                max_written =
                                    max_written.max(ready.iter().map(|r| r.end_ms).max().unwrap_or(0));
                                let mut r = report.borrow_mut();
                                r.rows += ready.len() as u64;
                                r.files += 1;
                            }
                            Err(e) => {
                                report.borrow_mut().error = Some(WorkerError::WriteWindows(Arc::new(e)));
                                held.extend(caps); // the probe must never pass unwritten windows
                                return;
                            }
                        }
                    }
                    // Everything ending before the watermark is final and written. After a flush the
                    // watermark is "infinite", but only the windows that existed were closed.
                    let step = target.window_ms;
                    let closed = match watermark {
                        Some(w) if w >= FLUSH_TIME => max_written,
                        Some(w) => (w.saturating_sub(1) / step) * step,
                        None => max_written.min(windows.closed_through_ms.max(max_written)),
                    }
                    .max(windows.closed_through_ms);
                    if closed != windows.closed_through_ms || !ready.is_empty() {
                        windows.closed_through_ms = closed;
                        let marked = match &target.object {
                            Some(object) => object.write_windows(&windows),
                            None => target.checkpoint.write_windows(&windows),
                        };
                        if let Err(e) = marked {
                            report.borrow_mut().error = Some(WorkerError::MarkWindows(Arc::new(e)));
                            held.extend(caps); // the probe must never pass unwritten windows
                            return;
                        }
                        crate::crash::point("aggregates.after_mark");
                        if let (Some(tables), Some(file)) = (&target.delta, unpublished.take()) {
                            if let Err(e) = tables.commit_windows(file, closed) {
                                report.borrow_mut().error = Some(WorkerError::MarkWindows(Arc::new(e)));
                                held.extend(caps); // the probe must never pass uncommitted windows
                                return;
                            }
                        }
                        report.borrow_mut().closed_through_ms = closed;
                    }
                    drop(caps);
                }
            },
        )
    }
}
