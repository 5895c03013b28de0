//! Observability of a running job against a real broker: `/metrics` scraped during a live run
//! agrees exactly with the oracle input (events, bytes, quarantined by reason, late), and the
//! status page, loaded in headless Chromium, shows the partitions, the watermark, closed windows
//! and the idle partition that holds the watermark back. The page's screenshot is saved to
//! `target/test-artifacts/status.png`.
//!
//! Nothing here measures time: the tests wait (with a generous deadline) for states the job must
//! reach, then compare counts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;

const T0_MS: i64 = 1_740_787_200_000; // 2025-03-01T00:00:00Z
const PARTITIONS: i32 = 3;
/// How long a state may take to appear before the test fails: far more than it needs.
const DEADLINE: Duration = Duration::from_secs(120);

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

fn event(id: i64, ms: i64, value: f64) -> Vec<u8> {
    format!(r#"{{"id": {id}, "ts": "{}", "value": {value:?}, "source": "observability"}}"#, iso(ms))
        .into_bytes()
}

/// What the job must count for one batch of input.
#[derive(Default, Debug)]
struct Expected {
    events: u64,
    bytes: u64,
    late: u64,
    quarantined: BTreeMap<&'static str, u64>,
}

impl Expected {
    fn add(&mut self, records: &[(i32, Option<Vec<u8>>)]) {
        self.events += records.len() as u64;
        self.bytes += records.iter().map(|(_, p)| p.as_ref().map_or(0, |p| p.len() as u64)).sum::<u64>();
    }

    fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }
}

/// One malformed record of every kind per partition, with the reason the job must count it under.
fn malformed(exp: &mut Expected) -> Vec<(i32, Option<Vec<u8>>)> {
    let ts = iso(T0_MS + 100_000);
    let kinds: Vec<(Option<Vec<u8>>, &'static str)> = vec![
        (None, "empty_payload"),
        (Some(Vec::new()), "empty_payload"),
        (Some(b"{not json".to_vec()), "bad_json"),
        (Some(b"\xff\xfe\xfd".to_vec()), "not_utf8"),
        (Some(format!(r#"{{"ts": "{ts}", "value": 1.0}}"#).into_bytes()), "missing_field"),
        (Some(format!(r#"{{"id": null, "ts": "{ts}", "value": 1.0}}"#).into_bytes()), "null_key"),
        (Some(format!(r#"{{"id": "three", "ts": "{ts}", "value": 1.0}}"#).into_bytes()), "wrong_type"),
        (
            Some(br#"{"id": 1, "ts": "2025-03-01T00:01:40", "value": 1.0}"#.to_vec()),
            "timestamp_without_offset",
        ),
        (Some(format!(r#"{{"id": 1, "ts": "{ts}", "value": "high"}}"#).into_bytes()), "wrong_type"),
    ];
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        for (payload, reason) in &kinds {
            out.push((p, payload.clone()));
            *exp.quarantined.entry(reason).or_default() += 1;
        }
    }
    out
}

/// A running `streamlake run` whose stderr is collected; it finds the status server's address
/// from the `metrics and status page listening` log line (the run asks for port 0).
struct Job {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Job {
    fn start(brokers: &str, topic: &str, out: &Path, extra: &[&str]) -> Job {
        let mut child = bin()
            .args([
                "run",
                "--brokers",
                brokers,
                "--topic",
                topic,
                "--starting-offsets",
                "earliest",
                "--no-console",
            ])
            .args([
                "--run-id",
                "obs",
                "--metrics-addr",
                "127.0.0.1:0",
                "--roll-interval",
                "500ms",
                "--trigger",
                "1s",
            ])
            .arg("--output")
            .arg(out)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting streamlake run");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut job = Job { child, addr: String::new(), stderr: rx, log: Vec::new() };
        let deadline = Instant::now() + DEADLINE;
        while job.addr.is_empty() {
            assert!(Instant::now() < deadline, "no `listening` line; stderr:\n{}", job.log.join("\n"));
            match job.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if line.contains("metrics and status page listening") {
                        let addr = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).unwrap();
                        job.addr = addr.to_string();
                    }
                    job.log.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(
                        job.child.try_wait().unwrap().is_none(),
                        "the run exited: {}",
                        job.log.join("\n")
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the run exited: {}", job.log.join("\n")),
            }
        }
        job
    }

    /// A plain HTTP/1.1 GET of `path` on the job's server: the body.
    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(&self.addr).expect("connecting to the status server");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
        body.to_string()
    }

    /// `/metrics` as name{labels} → value.
    fn metrics(&self) -> BTreeMap<String, f64> {
        self.get("/metrics")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap())))
            .collect()
    }

    /// Scrapes until `done` holds; fails with the last scrape after [`DEADLINE`].
    fn wait_metrics(
        &self,
        what: &str,
        done: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let m = self.metrics();
            if done(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "waited for {what}; last scrape: {m:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the job with SIGTERM (it commits and exits 0) and returns its stdout and stderr.
    fn stop(mut self) -> (String, String) {
        // SAFETY: kill(2) on the PID of a child this test started and has not yet reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM to the run");
        let status = self.child.wait().unwrap();
        let mut stdout = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        self.log.extend(self.stderr.iter());
        let stderr = self.log.join("\n");
        assert!(status.success(), "the run stopped cleanly: {status:?}\n{stderr}");
        (stdout, stderr)
    }
}

fn counter(m: &BTreeMap<String, f64>, name: &str) -> u64 {
    m.get(name).copied().unwrap_or_else(|| panic!("no {name} in {m:#?}")) as u64
}

/// Events, bytes, quarantined (by reason) and late records, scraped from `/metrics` while a
/// two-worker job runs, equal what was produced. The late records are late under every
/// interleaving: their windows were closed by a first run (`--flush-windows`).
#[test]
fn metrics_agree_exactly_with_the_oracle_input() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("obs-metrics");
    create_topic(&brokers, &topic, PARTITIONS);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");

    // First run: 20 s of event time, every window closed at the end of input.
    let first: Vec<_> = (0..3000)
        .map(|i| (i % PARTITIONS, Some(event(i as i64 % 5, T0_MS + 2_000 + i as i64 * 6, 1.5))))
        .collect();
    send(&brokers, &topic, &first);
    run_ok(
        bin()
            .args(["run", "--brokers", &brokers, "--topic", &topic, "--starting-offsets", "earliest"])
            .args([
                "--available-now",
                "--flush-windows",
                "--no-console",
                "--run-id",
                "obs",
                "--metrics-addr",
                "off",
            ])
            .arg("--output")
            .arg(&out),
    );

    // Second run, live: on-time events 100 s later (spanning less than the 30 s watermark delay,
    // so none can be late), late ones for the first run's windows, and malformed records.
    let mut exp = Expected::default();
    let mut second: Vec<(i32, Option<Vec<u8>>)> = Vec::new();
    for i in 0..4000i64 {
        let value = (i * 7919 % 100_000) as f64 / 1000.0;
        second.push(((i % 3) as i32, Some(event(i % 5, T0_MS + 100_000 + i * 5, value))));
    }
    for i in 0..40i64 {
        // In [2 s, 18 s): inside the first run's windows, which all end by 20 s.
        second.push(((i % 3) as i32, Some(event(i % 5, T0_MS + 2_000 + i * 400, 2.0))));
        exp.late += 1;
    }
    second.extend(malformed(&mut exp));
    exp.add(&second);
    // Interleave so malformed and late records sit between good ones, deterministically.
    second.sort_by_key(|(p, payload)| {
        (*p, payload.as_ref().map_or(0, |b| b.iter().map(|&x| x as u64).sum::<u64>() % 97))
    });
    send(&brokers, &topic, &second);

    let job = Job::start(&brokers, &topic, &out, &["-w", "2"]);
    let high: u64 = 3000 + second.len() as u64;
    let m = job.wait_metrics("every record read and committed", |m| {
        m.get("streamlake_events_read_total").is_some_and(|&v| v as u64 == exp.events)
            && (0..PARTITIONS).all(|p| {
                m.get(&format!("streamlake_partition_lag_records{{partition=\"{p}\"}}")) == Some(&0.0)
            })
    });
    assert_eq!(counter(&m, "streamlake_events_read_total"), exp.events, "events read");
    assert_eq!(counter(&m, "streamlake_bytes_read_total"), exp.bytes, "payload bytes read");
    assert_eq!(counter(&m, "streamlake_late_records_dropped_total"), exp.late, "late records");
    assert_eq!(
        counter(&m, "streamlake_events_written_total"),
        exp.events - exp.quarantined_total(),
        "rows written: every record that was not quarantined, late ones included"
    );
    let by_reason: BTreeMap<String, u64> = m
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("streamlake_quarantined_total{reason=\"")
                .and_then(|r| r.strip_suffix("\"}"))
                .map(|r| (r.to_string(), *v as u64))
        })
        .filter(|(_, v)| *v > 0)
        .collect();
    let want: BTreeMap<String, u64> = exp.quarantined.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(by_reason, want, "quarantined by reason");
    let committed: u64 = (0..PARTITIONS)
        .map(|p| counter(&m, &format!("streamlake_partition_committed_offset{{partition=\"{p}\"}}")))
        .sum();
    let marks: u64 = (0..PARTITIONS)
        .map(|p| counter(&m, &format!("streamlake_partition_high_watermark{{partition=\"{p}\"}}")))
        .sum();
    assert_eq!((committed, marks), (high, high), "committed offsets reach the high-water marks");
    assert!(counter(&m, "streamlake_files_committed_total") > 0);
    for w in 0..2 {
        assert!(
            m.contains_key(&format!("streamlake_worker_busy_seconds_total{{worker=\"{w}\"}}")),
            "worker {w}"
        );
    }
    assert!(m.contains_key("streamlake_watermark_seconds"));
    assert!(m.contains_key("streamlake_checkpoint_age_seconds"));
    assert!(m.contains_key("streamlake_last_commit_duration_seconds"));

    let (stdout, stderr) = job.stop();
    // The run's own summary says the same, and a progress line was logged per trigger.
    let summary = stdout.lines().find(|l| l.starts_with("run finished:")).expect("summary");
    assert!(summary.contains(&format!("messages={} ", exp.events)), "{summary}");
    assert!(summary.contains(&format!("quarantined={} ", exp.quarantined_total())), "{summary}");
    assert!(summary.contains(&format!("late={} ", exp.late)), "{summary}");
    let progress = stderr.lines().find(|l| l.contains(" progress ")).expect("a progress line");
    for field in ["input_rows_per_s=", "processed_rows_per_s=", "watermark=", "batch_duration_ms="] {
        assert!(progress.contains(field), "{field} in {progress}");
    }
}

/// Chromium from Debian's `chromium` package. Under the test command (or CI) it must be there.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|d| d.join("chromium")).find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var("STREAMLAKE_REQUIRE_KAFKA").is_ok_and(|v| v == "1")
            || std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!required, "chromium is not installed: scripts/test.sh installs Debian's `chromium` package");
        eprintln!("no chromium: run scripts/test.sh; not running the status page test");
    }
    found
}

/// Headless Chromium on a loopback URL only: no sandbox (tests may run as root), no GPU, and
/// every background service off. Everything but 127.0.0.1 goes to a proxy on the discard port,
/// so the browser cannot reach the network; `<-loopback>` drops Chromium's implicit loopback
/// bypass and `127.0.0.1` puts back exactly the address the page is served on.
fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--no-pings",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>;127.0.0.1",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    c.stdin(Stdio::null());
    c
}

/// The page shows the partitions, the global watermark, closed windows with their averages, and
/// names the idle partition that holds the watermark back; the screenshot is a test artifact.
///
/// Partition 2 receives records only in the first batch; partitions 0 and 1 keep going 60 s of
/// event time further. With a long `--idle-timeout`, partition 2 still counts, so the global
/// watermark stays at its `max event time − 30 s` and the page must blame it, as idle.
#[test]
fn status_page_in_headless_chromium() {
    let Some(brokers) = brokers() else { return };
    let Some(chromium) = chromium() else { return };
    let topic = unique("obs-page");
    create_topic(&brokers, &topic, PARTITIONS);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");

    // Batch A: an event every 100 ms over 60 s, round robin over the three partitions.
    let a: Vec<_> = (0..600i64)
        .map(|i| ((i % 3) as i32, Some(event(i % 4, T0_MS + i * 100, (i % 10) as f64 + 0.25))))
        .collect();
    let hold_ms = (0..600i64).filter(|i| i % 3 == 2).map(|i| T0_MS + i * 100).max().unwrap() - 30_000;
    send(&brokers, &topic, &a);
    let job = Job::start(&brokers, &topic, &out, &["-w", "2", "--idle-timeout", "10m"]);
    job.wait_metrics("batch A read and committed", |m| {
        m.get("streamlake_events_read_total") == Some(&600.0)
            && m.get("streamlake_events_written_total") == Some(&600.0)
    });

    // A validation report for the page's last section.
    run_ok(bin().args(["validate", "--path"]).arg(&out));

    // Batch B: partitions 0 and 1 only, 60 s of event time further.
    let b: Vec<_> = (600..1200i64)
        .map(|i| ((i % 2) as i32, Some(event(i % 4, T0_MS + i * 100, (i % 10) as f64 + 0.5))))
        .collect();
    send(&brokers, &topic, &b);
    job.wait_metrics("batch B read and windows closed", |m| {
        m.get("streamlake_events_read_total") == Some(&1200.0)
            && (0..2)
                .map(|w| {
                    m.get(&format!("streamlake_windows_closed_total{{worker=\"{w}\"}}"))
                        .copied()
                        .unwrap_or(0.0)
                })
                .sum::<f64>()
                > 0.0
    });
    // Partition 2 is shown as idle once it has been silent for a few seconds.
    let deadline = Instant::now() + DEADLINE;
    while !job.get("/").contains("id=\"idle-holder\"") {
        assert!(Instant::now() < deadline, "the page never named an idle holder:\n{}", job.get("/"));
        std::thread::sleep(Duration::from_millis(500));
    }

    let url = format!("http://{}/", job.addr);
    let profile = tempfile::tempdir().unwrap();
    let dom = run_ok(headless(&chromium, profile.path()).arg("--dump-dom").arg(&url));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    for p in 0..PARTITIONS {
        assert!(dom.contains(&format!("data-partition=\"{p}\"")), "partition {p} row in:\n{dom}");
    }
    let watermark =
        chrono::DateTime::from_timestamp_millis(hold_ms).unwrap().format("%Y-%m-%d %H:%M:%SZ").to_string();
    assert!(
        dom.contains(&format!("id=\"watermark\">{watermark}<")),
        "global watermark {watermark} in:\n{dom}"
    );
    assert!(dom.contains("Held back by partition 2"), "partition 2 holds the watermark back:\n{dom}");
    assert!(dom.contains("partition 2 is idle"), "partition 2 is named as idle:\n{dom}");
    assert!(dom.contains("<tr class=\"window\">"), "at least one closed window:\n{dom}");
    // The first window, [00:00:00, 00:00:10): ids 0..3, values (i % 10) + 0.25 for i ≡ id (mod 4).
    assert!(
        dom.contains("2025-03-01 00:00:00Z – 2025-03-01 00:00:10Z"),
        "the first window is listed:\n{dom}"
    );
    assert!(dom.contains("id=\"reports\""), "validation reports section:\n{dom}");

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("status.png");
    let _ = std::fs::remove_file(&png);
    run_ok(
        headless(&chromium, profile.path())
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1280,1400")
            .arg(&url),
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG at {}", png.display());
    eprintln!("status page screenshot: {}", png.display());

    job.stop();
}
