//! Group commit: at each scheduled roll, the workers of one process commit to a table together,
//! in one table version.
//!
//! Rolls fall on multiples of `--roll-interval` on the wall clock (`ingest::roll`), so every
//! worker reaches the roll numbered `e` at nearly the same moment. Each worker then makes its
//! files durable, writes its checkpoint entries, and hands all of its partitions' ranges to
//! [`DeltaLog::commit_grouped`] with `e` (a worker with nothing new checks in with no range).
//! The first to arrive leads: it waits until every worker of the process that commits to this
//! table has checked in for `e`, then commits every queued range as one version with one `txn`
//! per partition. The others wait for that version. This is the two-phase commit at an epoch of
//! the second design, per process: stage (files and entries durable), then one commit.
//! `examples/delta_commit_shapes.rs` measures it against one commit per partition and one per
//! worker; BENCHMARKS.md, "Delta Lake", has the figures.
//!
//! The wait is bounded ([`Roll::Scheduled`]'s `wait`, `ingest::roll::GATHER_LIMIT`): a worker stuck
//! on a slow disk delays the others' commit by that much at most, after which they commit
//! without it and it commits alone when it arrives. A roll that is not scheduled (`--roll-bytes`,
//! the end of input, a stop) waits for nobody, but takes along whatever is queued. A worker whose
//! source finished leaves the group ([`DeltaLog::leave_group`]), so nobody waits for it.
//!
//! Exactly once does not change: each partition's `txn` moves only with its own files, and a
//! crash before the version leaves every partition of the group one checkpoint entry ahead of its
//! `txn`, which its next start completes alone (`sink::delta::commit`). When a grouped commit
//! fails (a fenced partition, say), every member commits its own ranges again, alone, so each
//! gets its own outcome and error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use deltalake_core::kernel::Add;

use super::{Committed, DeltaLog, TxnMove};
use crate::sink::commit::Roll;
use crate::sink::SinkError;

/// The commits of one table in this process.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    turn: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct State {
    queue: Vec<Request>,
    /// A leader is gathering or committing a batch.
    leading: bool,
    next_ticket: u64,
    /// How the batch of each finished ticket ended.
    finished: HashMap<u64, Outcome>,
    /// The workers that commit to this table, and the newest scheduled roll each checked in for.
    members: BTreeMap<usize, Option<u64>>,
    /// Workers whose source finished: never waited for again.
    left: BTreeSet<usize>,
}

impl State {
    fn check_in(&mut self, worker: usize, roll: Roll) {
        if self.left.contains(&worker) {
            return;
        }
        let seen = self.members.entry(worker).or_insert(None);
        if let Roll::Scheduled { number, .. } = roll {
            *seen = Some(seen.map_or(number, |s| s.max(number)));
        }
    }

    /// Whether every member has checked in for roll `n`.
    fn all_in(&self, n: u64) -> bool {
        self.members.values().all(|seen| seen.is_some_and(|s| s >= n))
    }
}

struct Request {
    ticket: u64,
    txns: Vec<TxnMove>,
    adds: Vec<Add>,
}

#[derive(Clone, Copy)]
enum Outcome {
    Done(Committed),
    /// The group's commit failed: each member commits alone.
    Failed,
}

impl DeltaLog {
    /// Commits `adds` with every `txn` of `txns` moved, in one table version shared with the
    /// other workers of this process at the same roll (see the module doc); with no `txns`, only
    /// checks `worker` in for `roll`. The outcome is [`DeltaLog::commit_all`]'s for these `txns`.
    pub fn commit_grouped(
        &self,
        worker: usize,
        roll: Roll,
        txns: Vec<TxnMove>,
        adds: Vec<Add>,
    ) -> Result<Option<Committed>, SinkError> {
        let group = &self.group;
        let mut state = group.lock();
        state.check_in(worker, roll);
        if txns.is_empty() {
            group.turn.notify_all();
            return Ok(None);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push(Request { ticket, txns: txns.clone(), adds: adds.clone() });
        group.turn.notify_all();
        loop {
            if let Some(outcome) = state.finished.remove(&ticket) {
                drop(state);
                return match outcome {
                    Outcome::Done(done) => Ok(Some(done)),
                    Outcome::Failed => self.commit_all(&txns, adds, self.append_operation()).map(Some),
                };
            }
            if !state.leading {
                state.leading = true;
                if let Roll::Scheduled { number, wait } = roll {
                    let deadline = Instant::now() + wait;
                    while !state.all_in(number) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        state = group.turn.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
                    }
                }
                let batch = std::mem::take(&mut state.queue);
                drop(state);
                let tickets: Vec<u64> = batch.iter().map(|r| r.ticket).collect();
                let alone = batch.len() == 1;
                let (all_txns, all_adds) = merge(batch);
                let result = self.commit_all(&all_txns, all_adds, self.append_operation());
                let outcome = match &result {
                    Ok(done) => Outcome::Done(*done),
                    Err(_) => Outcome::Failed,
                };
                state = group.lock();
                state.leading = false;
                for t in tickets {
                    state.finished.insert(t, outcome);
                }
                group.turn.notify_all();
                if alone {
                    // This worker's own commit: its error is already the precise one.
                    state.finished.remove(&ticket);
                    return result.map(Some);
                }
                continue;
            }
            state = group.turn.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// `worker` commits no more (its source finished): a leader stops waiting for it.
    pub fn leave_group(&self, worker: usize) {
        let mut state = self.group.lock();
        state.members.remove(&worker);
        state.left.insert(worker);
        self.group.turn.notify_all();
    }
}

/// One commit's `txn`s and files from the requests of a batch.
fn merge(batch: Vec<Request>) -> (Vec<TxnMove>, Vec<Add>) {
    let mut txns = Vec::new();
    let mut adds = Vec::new();
    for r in batch {
        txns.extend(r.txns);
        adds.extend(r.adds);
    }
    (txns, adds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(number: u64) -> Roll {
        Roll::Scheduled { number, wait: std::time::Duration::ZERO }
    }

    #[test]
    fn a_roll_waits_for_every_member_that_has_not_left() {
        let mut s = State::default();
        s.check_in(0, at(7));
        s.check_in(1, Roll::Unscheduled);
        assert!(!s.all_in(7), "worker 1 has not reached roll 7");
        s.check_in(1, at(7));
        assert!(s.all_in(7));
        assert!(!s.all_in(8));
        s.check_in(1, at(9));
        s.check_in(0, at(8));
        assert!(s.all_in(8), "a worker one roll ahead counts as in");
        s.members.remove(&0);
        s.left.insert(0);
        s.check_in(0, at(3));
        assert!(s.all_in(9), "a worker that left is not waited for, even if it checks in again");
    }
}
