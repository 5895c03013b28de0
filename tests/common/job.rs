//! A `streamlake run` child process for scenario tests: log to a file, signals, waits that fail
//! with the log, and a kill on drop so a failed assertion never leaves a job behind.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `streamlake run` whose stdout and stderr go to files (read them with [`Job::log`]).
pub struct Job {
    pub child: Child,
    log: PathBuf,
}

impl Job {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Job {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting streamlake");
        Job { child, log }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.log).unwrap().read_to_string(&mut s).unwrap();
        s
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `pred(log)` holds, or panics after `timeout` with the log.
    pub fn wait_log(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if pred(&log) {
                return;
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("job exited ({s:?}) before {what}; log:\n{log}");
            }
            assert!(Instant::now() < deadline, "no {what} after {timeout:?}; log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `cond()` holds; panics with the job's log after `timeout` or if it exits.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond() {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("job exited ({s:?}) before {what}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM and wait: a graceful stop commits and exits 0.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.wait_for(Duration::from_secs(60)).expect("job did not stop within 60 s of SIGTERM");
        let log = self.log();
        assert!(status.success(), "graceful stop failed ({status:?}); log:\n{log}");
        log
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Job {
    /// A failed assertion must not leave a job running after the test.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
