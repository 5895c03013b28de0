//! Child processes under a time limit, and the Python of the test venv: one rule for every test
//! binary, so that no test hangs and none silently passes under CI for want of a tool.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Between the SIGTERM at the time limit and the SIGKILL: the scripts forward the SIGTERM to what
/// they started, and `streamlake run` commits before it exits.
const TERM_GRACE: Duration = Duration::from_secs(30);

/// Whether a missing broker or tool must fail the test: under CI (`CI=true`) and whenever
/// `STREAMLAKE_REQUIRE_KAFKA=1` (scripts/test.sh sets it).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("STREAMLAKE_REQUIRE_KAFKA").is_ok_and(|v| v == "1")
}

/// The Python that scripts/test.sh installs (`STREAMLAKE_TEST_PYTHON`: PyYAML, pandas, pyarrow,
/// duckdb). A missing one fails the test where [`required`]; elsewhere the test says what it does
/// not run (`skipping`) and goes on without it.
pub fn python(skipping: &str) -> Option<String> {
    match std::env::var("STREAMLAKE_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if required() => panic!("STREAMLAKE_TEST_PYTHON is not set under CI: run scripts/test.sh"),
        _ => {
            eprintln!("STREAMLAKE_TEST_PYTHON is not set: run scripts/test.sh; {skipping}");
            None
        }
    }
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to completion (stdin from /dev/null, stdout and stderr captured), but at most
/// `limit`; see [`wait_output_within`].
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    wait_output_within(child, limit, &format!("{cmd:?}"))
}

/// Waits for `child` (`what` names it) and collects its piped output. At `limit` it gets a
/// SIGTERM, [`TERM_GRACE`] later a SIGKILL, and the test fails with the output so far: no
/// scenario may hang.
pub fn wait_output_within(mut child: Child, limit: Duration, what: &str) -> Output {
    // Readers on threads: a child that fills a pipe nobody reads would block forever.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline && !timed_out {
            timed_out = true;
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        if timed_out && Instant::now() >= deadline + TERM_GRACE {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() };
    if timed_out {
        panic!("{what} did not finish within {limit:?} (stopped): {}", text(&output));
    }
    output
}
