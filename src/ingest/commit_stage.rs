//! The commit stage: a worker's commits run on a thread of their own, beside its reading.
//!
//! At a roll the worker swaps each partition's staged files for fresh ones at the next offset
//! and hands the closed set to this stage ([`CommitStage::submit`]). It then goes on reading,
//! parsing and encoding the next interval while the stage does the commit's slow part: footers,
//! the buffered folders of many-key partitions, fsyncs, renames, the checkpoint entry (or the
//! upload and the table commit). The worker learns the outcome at a later activation
//! ([`CommitStage::poll`]) or when it has to wait for it ([`CommitStage::wait`]).
//!
//! Why: a commit used to fsync on the worker's thread, so every stall of the disk (this VM's p99
//! is 139–288 ms, its worst ~750 ms) stopped the reading and landed on every event queued
//! behind it.
//!
//! The rules of `sink::commit` hold as they did:
//! - **files durable before the entry**: one job makes its files durable (step 1), then records
//!   their entries (step 2), in this order, on one thread;
//! - **entries in order per partition**: a worker has at most one job in flight, and waits for it
//!   before it submits the next ([`CommitStage::submit`] refuses a second), so a partition's
//!   entries are written in offset order, and every draft builds on the committed state;
//! - **a crash anywhere leaves a prefix**: what a job had not recorded is uncommitted; a restart
//!   removes its files and reads the range again, as after a crash inside a synchronous commit;
//! - **bounded**: one interval's files in flight besides the one being read. A worker whose next
//!   roll comes while the last commit still runs waits for it, and so does one whose
//!   `--sink-buffer-mib` share is full (the rows in flight count against the share until their
//!   commit releases them): it stops polling, and backpressure reaches the consumer.
//!
//! Why a thread per worker rather than one per process: at a scheduled roll the workers of a
//! process commit to a Delta table together, each waiting briefly for the others
//! (`sink::delta::table::group`); one shared thread would run those waits one after another.
//!
//! Crash points: `commit.files_durable` (a job's files durable, its entries not written, the
//! worker reading on) and `commit.recorded` (the entries written, the worker not yet told).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::partition::EntryDraft;
use super::restore::Totals;
use crate::sink::checkpoint::PartitionEntry;
use crate::sink::commit::{CommitProtocol, Roll, StagedFiles};
use crate::sink::SinkError;

/// One partition's closed interval: its files and the entry that will name them.
pub struct Staged {
    /// The partition's index in the worker's list (`PreparedSource::parts`).
    pub index: usize,
    pub files: Box<dyn StagedFiles>,
    pub next_offset: i64,
    pub draft: EntryDraft,
}

/// One roll of a worker: every partition that rolls, committed together (`record_all`).
pub struct Job {
    pub staged: Vec<Staged>,
    pub roll: Roll,
}

/// A partition's committed range, for the worker's state and counters.
#[derive(Debug)]
pub struct Recorded {
    pub index: usize,
    pub entry: PartitionEntry,
    pub totals: Totals,
    pub rows: u64,
    pub quarantined: u64,
    pub files: u64,
}

/// A job done: its ranges are committed.
#[derive(Debug)]
pub struct Done {
    pub recorded: Vec<Recorded>,
    /// From the roll to the last entry recorded.
    pub took: Duration,
}

/// A worker's commit thread and the one job it may have in flight.
pub struct CommitStage {
    /// `None` once the stage failed: it takes no more jobs.
    jobs: Option<SyncSender<(Job, Instant)>>,
    done: Receiver<Result<Done, SinkError>>,
    in_flight: bool,
    worker: usize,
}

impl CommitStage {
    /// Starts worker `worker`'s commit thread. `delay` stalls every job before its durability
    /// steps (`--commit-delay`, a debug option; zero otherwise).
    pub fn start(
        worker: usize,
        protocol: Arc<dyn CommitProtocol>,
        delay: Duration,
    ) -> Result<Self, SinkError> {
        // Capacity 1 is never used to queue: the worker submits only with nothing in flight.
        let (jobs, queued) = mpsc::sync_channel::<(Job, Instant)>(1);
        let (report, done) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("commit-w{worker}"))
            .spawn(move || {
                for (job, rolled_at) in queued {
                    let result = commit(&*protocol, job, delay, rolled_at);
                    let failed = result.is_err();
                    // The worker is gone (it failed elsewhere): nobody to tell, nothing to add.
                    if report.send(result).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|source| SinkError::Io {
                doing: "start the commit thread",
                path: format!("worker {worker}").into(),
                source,
            })?;
        Ok(CommitStage { jobs: Some(jobs), done, in_flight: false, worker })
    }

    /// Whether a job is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Hands a roll to the thread. The caller has absorbed the previous job's result
    /// ([`Self::wait`]): with one in flight this panics, as a broken ordering rule must.
    pub fn submit(&mut self, job: Job) -> Result<(), SinkError> {
        assert!(!self.in_flight, "a worker submits a commit only when none is in flight");
        let worker = self.worker;
        let jobs = self.jobs.as_ref().ok_or(SinkError::CommitThreadStopped { worker })?;
        jobs.send((job, Instant::now())).map_err(|_| SinkError::CommitThreadStopped { worker })?;
        self.in_flight = true;
        Ok(())
    }

    /// The result of the job in flight if it is done, without waiting.
    pub fn poll(&mut self) -> Result<Option<Done>, SinkError> {
        if !self.in_flight {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(result) => self.finished(result).map(Some),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                self.finished(Err(SinkError::CommitThreadStopped { worker: self.worker })).map(Some)
            }
        }
    }

    /// Waits for the job in flight (if any) and returns its result. A wait of more than a
    /// minute is logged, once a minute, so a stuck disk or store is visible.
    pub fn wait(&mut self) -> Result<Option<Done>, SinkError> {
        if !self.in_flight {
            return Ok(None);
        }
        let since = Instant::now();
        loop {
            match self.done.recv_timeout(Duration::from_secs(60)) {
                Ok(result) => return self.finished(result).map(Some),
                Err(RecvTimeoutError::Timeout) => tracing::warn!(
                    waited_s = since.elapsed().as_secs(),
                    "still waiting for the last commit (a slow disk or object store): reading is \
                     paused until it finishes, so the topic's lag grows meanwhile"
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    return self
                        .finished(Err(SinkError::CommitThreadStopped { worker: self.worker }))
                        .map(Some)
                }
            }
        }
    }

    fn finished(&mut self, result: Result<Done, SinkError>) -> Result<Done, SinkError> {
        self.in_flight = false;
        if result.is_err() {
            self.jobs = None;
        }
        result
    }
}

/// One job, on the stage's thread: every file durable, then the entries.
fn commit(
    protocol: &dyn CommitProtocol,
    job: Job,
    delay: Duration,
    rolled_at: Instant,
) -> Result<Done, SinkError> {
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let mut recorded = Vec::with_capacity(job.staged.len());
    let mut entries = Vec::with_capacity(job.staged.len());
    for Staged { index, mut files, next_offset, draft } in job.staged {
        let stats = files.make_durable(next_offset)?;
        // Its slots and buffer share go back to the worker's budget now.
        drop(files);
        let (rows, quarantined, n_files) = (stats.rows, stats.quarantined, stats.files.len() as u64);
        let (entry, totals) = draft.complete(stats, chrono::Utc::now().to_rfc3339());
        entries.push(entry);
        recorded.push((index, totals, rows, quarantined, n_files));
    }
    if !entries.is_empty() {
        crate::crash::point("commit.files_durable");
    }
    if !entries.is_empty() || matches!(job.roll, Roll::Scheduled { .. }) {
        // With nothing to commit at a scheduled roll, this tells the others not to wait.
        protocol.record_all(&entries, job.roll)?;
    }
    if !entries.is_empty() {
        crate::crash::point("commit.recorded");
    }
    let recorded = recorded
        .into_iter()
        .zip(entries)
        .map(|((index, totals, rows, quarantined, files), entry)| Recorded {
            index,
            entry,
            totals,
            rows,
            quarantined,
            files,
        })
        .collect();
    Ok(Done { recorded, took: rolled_at.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::json::RecordParser;
    use crate::sink::raw::CommitStats;
    use std::sync::Mutex;

    /// Files whose step 1 takes `slow` and logs its partition, and a protocol that logs step 2:
    /// the log shows the order of the steps across threads.
    struct Files {
        partition: i32,
        slow: Duration,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl StagedFiles for Files {
        fn append(&mut self, _: &RecordParser, _: &[u8]) -> Result<(), SinkError> {
            Ok(())
        }
        fn quarantine(&mut self, _: i64, _: Option<&[u8]>, _: String) {}
        fn pending_bytes(&self) -> u64 {
            0
        }
        fn over_budget(&self) -> bool {
            false
        }
        fn pending_messages(&self) -> u64 {
            1
        }
        fn make_durable(&mut self, next_offset: i64) -> Result<CommitStats, SinkError> {
            std::thread::sleep(self.slow);
            self.log.lock().unwrap().push(format!("durable p{} {next_offset}", self.partition));
            Ok(CommitStats {
                start_offset: next_offset - 1,
                next_offset,
                messages: 1,
                rows: 1,
                files: vec![format!("p{}-{next_offset}", self.partition)],
                ..Default::default()
            })
        }
    }

    struct Log {
        log: Arc<Mutex<Vec<String>>>,
        fail: bool,
    }

    impl CommitProtocol for Log {
        fn open(&self, _: i32, _: i64) -> Box<dyn StagedFiles> {
            unreachable!("the stage opens nothing")
        }
        fn load(&self, _: i32) -> Result<Option<PartitionEntry>, SinkError> {
            Ok(None)
        }
        fn clean(&self, _: i32, _: i64) -> Result<Vec<String>, SinkError> {
            Ok(Vec::new())
        }
        fn record(&self, entry: &PartitionEntry) -> Result<(), SinkError> {
            if self.fail {
                return Err(SinkError::Io {
                    doing: "write",
                    path: "entry".into(),
                    source: std::io::Error::other("disk full"),
                });
            }
            self.log.lock().unwrap().push(format!("entry p{} {}", entry.partition, entry.next_offset));
            Ok(())
        }
    }

    fn draft(partition: i32) -> EntryDraft {
        let mut part = crate::ingest::partition::tests::part_at(partition);
        part.draft(0, 0)
    }

    fn job(log: &Arc<Mutex<Vec<String>>>, next: i64, slow: Duration) -> Job {
        let staged = (0..2)
            .map(|p| Staged {
                index: p as usize,
                files: Box::new(Files { partition: p, slow, log: log.clone() }),
                next_offset: next,
                draft: draft(p),
            })
            .collect();
        Job { staged, roll: Roll::Unscheduled }
    }

    #[test]
    fn a_job_makes_every_file_durable_before_any_entry_and_the_worker_does_not_wait() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let protocol = Arc::new(Log { log: log.clone(), fail: false });
        let mut stage = CommitStage::start(0, protocol, Duration::ZERO).unwrap();
        let submitted = Instant::now();
        stage.submit(job(&log, 10, Duration::from_millis(200))).unwrap();
        assert!(submitted.elapsed() < Duration::from_millis(200), "submit returns before step 1 ends");
        assert!(stage.in_flight());
        let done = stage.wait().unwrap().expect("a job was in flight");
        assert!(!stage.in_flight());
        assert_eq!(
            *log.lock().unwrap(),
            ["durable p0 10", "durable p1 10", "entry p0 10", "entry p1 10"],
            "step 1 for every partition, then step 2"
        );
        let got: Vec<(usize, i64)> = done.recorded.iter().map(|r| (r.index, r.entry.next_offset)).collect();
        assert_eq!(got, [(0, 10), (1, 10)]);
        assert_eq!(done.recorded[0].entry.files, ["p0-10"]);
        assert_eq!(done.recorded[0].totals.messages, done.recorded[0].entry.total_messages);
        // The next roll's entries follow this one's.
        stage.submit(job(&log, 20, Duration::ZERO)).unwrap();
        stage.wait().unwrap();
        assert_eq!(
            log.lock().unwrap()[4..],
            ["durable p0 20", "durable p1 20", "entry p0 20", "entry p1 20"]
        );
        assert!(stage.poll().unwrap().is_none(), "nothing in flight");
    }

    #[test]
    #[should_panic(expected = "only when none is in flight")]
    fn a_second_job_in_flight_is_refused() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stage =
            CommitStage::start(0, Arc::new(Log { log: log.clone(), fail: false }), Duration::ZERO).unwrap();
        stage.submit(job(&log, 10, Duration::from_millis(50))).unwrap();
        let _ = stage.submit(job(&log, 20, Duration::ZERO));
    }

    #[test]
    fn a_failed_commit_is_reported_and_the_stage_takes_no_more_jobs() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stage =
            CommitStage::start(0, Arc::new(Log { log: log.clone(), fail: true }), Duration::ZERO).unwrap();
        stage.submit(job(&log, 10, Duration::ZERO)).unwrap();
        let err = loop {
            match stage.poll() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Ok(Some(done)) => panic!("the entry write failed, yet: {done:?}"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(stage.submit(job(&log, 20, Duration::ZERO)).is_err());
    }
}
