//! Production Kafka (issue 14) against the test broker's secured listeners: SASL_SSL with SCRAM,
//! mutual TLS, every compression codec, group offsets in Kafka's own lag tool, a clear error for
//! each bad configuration (before any output folder exists), and no password in any output.
//!
//! The broker is the one `scripts/test.sh` starts (`scripts/kafka.sh`), which exports
//! `STREAMLAKE_TEST_KAFKA_SECURE_DIR`, `STREAMLAKE_TEST_SASL_SSL_BROKERS` and
//! `STREAMLAKE_TEST_SSL_BROKERS`. Under CI (or `STREAMLAKE_REQUIRE_KAFKA=1`) a missing one fails.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::ledger::{audit_ok, check, consume_topic_with};
use crate::common::secure::Secure;
use crate::common::*;

/// `kafka-consumer-groups --describe --group G` (Kafka's own tool, from the broker's jars), the
/// rows of `topic`: (partition, current offset, log end offset, lag). `None` while the group has
/// no offsets for it.
fn describe_group(brokers: &str, group: &str, topic: &str) -> Option<Vec<(i32, i64, i64, i64)>> {
    let libs = std::env::var("STREAMLAKE_TEST_KAFKA_LIBS")
        .expect("STREAMLAKE_TEST_KAFKA_LIBS (run scripts/test.sh)");
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{libs}/*"))
        .arg("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")
        .args(["--bootstrap-server", brokers, "--describe", "--group", group])
        .output()
        .expect("running kafka-consumer-groups (java)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    let rows: Vec<(i32, i64, i64, i64)> = stdout
        .lines()
        .filter(|l| l.split_whitespace().take(2).eq([group, topic]))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
                f.get(4)?.parse().ok()?,
                f.get(5)?.parse().ok()?,
            ))
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

#[test]
fn sasl_ssl_scram_topic_create_produce_run_exactly_once() {
    let Some(secure) = Secure::get() else { return };
    let props = secure.sasl_props();
    let topic = unique("secure-e2e");
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("parquet");
    let kafka = ["--brokers", &secure.sasl_ssl, "--topic", &topic];
    let config = ["--kafka-config", props.to_str().unwrap()];

    let created = run_ok(bin().args(["topic", "create"]).args(kafka).args(config));
    assert!(text(&created).contains("created topic"), "{}", text(&created));
    let produced =
        run_ok(bin().args(["produce", "--count", "100000", "--rate", "max"]).args(kafka).args(config));
    assert!(text(&produced).contains("produced 100000 events"), "{}", text(&produced));
    let run = run_ok(
        bin()
            .args(["run", "--available-now", "--flush-windows", "-w", "2", "--starting-offsets", "earliest"])
            .args(["--no-console", "--metrics-addr", "off", "--run-id", "t", "--output"])
            .arg(&output)
            .args(kafka)
            .args(config),
    );
    let log = text(&run);
    assert!(log.contains("sasl.password=<redacted>"), "the effective settings are logged, redacted:\n{log}");
    assert!(!log.contains(&secure.password()), "the password is in the output");

    let records = consume_topic_with(&secure.sasl_ssl, &topic, &secure.options("client-sasl-ssl.properties"));
    let ledger = check(&output.join("run_t"), &records, i64::MAX);
    println!("SASL_SSL SCRAM-SHA-512: {ledger}");
    ledger.assert_exact("SASL_SSL");
    assert_eq!(ledger.produced, 100_000);
    audit_ok(&output);

    // The group offsets for lag tools: every partition committed to the end (over PLAINTEXT,
    // the broker's own tool needs no credentials there).
    if let Some(plain) = brokers() {
        let rows =
            describe_group(&plain, "streamlake-t", &topic).expect("the group streamlake-t has offsets");
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows.iter().all(|r| r.3 == 0 && r.1 == r.2), "lag 0 after the run: {rows:?}");
        assert_eq!(rows.iter().map(|r| r.1).sum::<i64>(), 100_000);
    }
}

#[test]
fn mutual_tls_reads_and_writes() {
    let Some(secure) = Secure::get() else { return };
    let props = secure.file("client-mtls.properties");
    let topic = unique("secure-mtls");
    let tmp = tempfile::tempdir().unwrap();
    let kafka = ["--brokers", &secure.ssl, "--topic", &topic, "--kafka-config", props.to_str().unwrap()];
    run_ok(bin().args(["topic", "create"]).args(kafka));
    run_ok(bin().args(["produce", "--count", "3000", "--rate", "max"]).args(kafka));
    let run = run_ok(
        bin()
            .args([
                "run",
                "--available-now",
                "--starting-offsets",
                "earliest",
                "--no-console",
                "--metrics-addr",
                "off",
            ])
            .args(["--run-id", "m", "--output"])
            .arg(tmp.path().join("parquet"))
            .args(kafka),
    );
    assert_eq!(run_totals(&[run])["rows"], 3000);
}

#[test]
fn every_codec_is_produced_and_read() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("codecs");
    create_topic(&brokers, &topic, 3);
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for codec in codecs {
        let out = run_ok(
            bin().args(["produce", "--brokers", &brokers, "--topic", &topic, "--count", "2000"]).args([
                "--rate",
                "max",
                "--compression",
                codec,
            ]),
        );
        assert!(text(&out).contains(&format!("{codec} compression")), "{}", text(&out));
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let totals = run_available_now(&brokers, &topic, &out);
    assert_eq!((totals["messages"], totals["rows"]), (10_000, 10_000), "{totals:?}");
}

/// `run --available-now` of `topic` into `out` (below a temp folder, so that the aggregates
/// folder beside it, `out/../aggregates/`, is inside the temp folder too); the run's totals.
fn run_available_now(brokers: &str, topic: &str, out: &Path) -> std::collections::BTreeMap<String, u64> {
    let run = run_ok(&mut run_earliest(brokers, topic, out, &["--available-now", "--metrics-addr", "off"]));
    run_totals(&[run])
}

#[test]
fn a_foreign_producer_with_every_codec_is_read_in_full() {
    let Some(brokers) = brokers() else { return };
    let python =
        std::env::var("STREAMLAKE_TEST_PYTHON").expect("STREAMLAKE_TEST_PYTHON (run scripts/test.sh)");
    let topic = unique("foreign-codecs");
    create_topic(&brokers, &topic, 4);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/foreign_produce.py");
    let out = Command::new(python)
        .arg(script)
        .args([
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--per-codec",
            "5000",
            "--codecs",
            "gzip,snappy,lz4,zstd",
        ])
        .output()
        .expect("running foreign_produce.py");
    assert!(out.status.success(), "foreign producer failed: {}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    let report: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let total = report["total"].as_u64().unwrap();
    assert_eq!(total, 20_000, "{report}");
    assert_eq!(report["codecs"].as_object().unwrap().len(), 4, "{report}");

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    let totals = run_available_now(&brokers, &topic, &out);
    assert_eq!((totals["messages"], totals["rows"], totals["quarantined"]), (total, total, 0), "{totals:?}");
    let ledger = check(&out.join("run_t"), &common::ledger::consume_topic(&brokers, &topic), i64::MAX);
    ledger.assert_exact("foreign codecs");
}

/// Runs `streamlake run` with `args` and checks it fails with `expect` in its message, exit code
/// 1, and no output folder.
fn fails_before_creating_anything(what: &str, brokers: &str, args: &[&str], expect: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    let out = bin()
        .args(["run", "--brokers", brokers, "--topic", "events", "--no-console", "--metrics-addr", "off"])
        .args(["--connect-timeout", "15s", "--output"])
        .arg(&output)
        .args(args)
        .output()
        .unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{what}: exit code 1 expected:\n{msg}");
    for e in expect {
        assert!(msg.contains(e), "{what}: `{e}` expected in:\n{msg}");
    }
    assert!(!output.exists(), "{what}: the output folder was created");
    println!("{what}: {}", msg.lines().find(|l| l.starts_with("Error")).unwrap_or_default());
    msg
}

#[test]
fn each_bad_configuration_gets_a_clear_error_before_any_output_folder() {
    let Some(secure) = Secure::get() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sasl = secure.sasl_props();
    let password = secure.password();
    let sasl_addr = secure.sasl_ssl.as_str();
    let path = |p: &Path| p.to_str().unwrap().to_string();

    let wrong = secure.variant(
        tmp.path(),
        "wrong.properties",
        "client-sasl-ssl.properties",
        &[("sasl.password", Some("not-the-password"))],
    );
    let msg = fails_before_creating_anything(
        "wrong password",
        sasl_addr,
        &["--kafka-config", &path(&wrong)],
        &["SASL authentication failed", sasl_addr, "sasl.password"],
    );
    assert!(!msg.contains("not-the-password"), "the wrong password is quoted:\n{msg}");

    let unknown_user = secure.variant(
        tmp.path(),
        "user.properties",
        "client-sasl-ssl.properties",
        &[("sasl.username", Some("nobody"))],
    );
    fails_before_creating_anything(
        "unknown user",
        sasl_addr,
        &["--kafka-config", &path(&unknown_user)],
        &["SASL authentication failed", "`nobody`"],
    );

    fails_before_creating_anything(
        "unknown SASL mechanism",
        sasl_addr,
        &["--kafka-config", &path(&sasl), "--kafka-option", "sasl.mechanism=SCRAM-SHA-1024"],
        &["SASL mechanism SCRAM-SHA-1024 is not available"],
    );
    fails_before_creating_anything(
        "Kerberos",
        sasl_addr,
        &["--kafka-config", &path(&sasl), "--kafka-option", "sasl.mechanism=GSSAPI"],
        &["GSSAPI is not built in", "gssapi"],
    );

    let other_ca = path(&secure.file("other-ca.pem"));
    fails_before_creating_anything(
        "untrusted CA",
        sasl_addr,
        &["--kafka-config", &path(&sasl), "--kafka-option", &format!("ssl.ca.location={other_ca}")],
        &["TLS certificate is not trusted", "ssl.ca.location", &other_ca],
    );

    let port = sasl_addr.rsplit_once(':').unwrap().1;
    let localhost = format!("localhost:{port}");
    fails_before_creating_anything(
        "host name mismatch",
        &localhost,
        &["--kafka-config", &path(&sasl)],
        &["does not match the address", &localhost],
    );

    fails_before_creating_anything(
        "plaintext client on a TLS listener",
        sasl_addr,
        &[],
        &["closed the connection without answering", "security.protocol=SSL or SASL_SSL", sasl_addr],
    );

    let mtls = secure.file("client-mtls.properties");
    fails_before_creating_anything(
        "missing key file",
        &secure.ssl,
        &["--kafka-config", &path(&mtls), "--kafka-option", "ssl.key.location=/nonexistent/client.key"],
        &["/nonexistent/client.key", "does not exist"],
    );

    let no_cert = secure.variant(
        tmp.path(),
        "nocert.properties",
        "client-mtls.properties",
        &[("ssl.certificate.location", None), ("ssl.key.location", None)],
    );
    fails_before_creating_anything(
        "mutual TLS without a client certificate",
        &secure.ssl,
        &["--kafka-config", &path(&no_cert)],
        &["requires a client certificate", "ssl.certificate.location"],
    );

    let bad = tmp.path().join("bad.properties");
    std::fs::write(&bad, "# ok\nsecurity.protocol=SASL_SSL\nsasl.mechanism: PLAIN\n").unwrap();
    fails_before_creating_anything(
        "unparsable file",
        sasl_addr,
        &["--kafka-config", &path(&bad)],
        &[&format!("{}, line 3", bad.display())],
    );

    let reserved = tmp.path().join("reserved.properties");
    std::fs::write(&reserved, "security.protocol=SASL_SSL\nenable.auto.commit=true\n").unwrap();
    fails_before_creating_anything(
        "reserved setting",
        sasl_addr,
        &["--kafka-config", &path(&reserved)],
        &["line 2", "enable.auto.commit", "cannot be overridden"],
    );

    // The other commands share the settings and the diagnosis.
    let out = bin()
        .args([
            "produce",
            "--brokers",
            sasl_addr,
            "--topic",
            "events",
            "--count",
            "1",
            "--kafka-config",
            &path(&wrong),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("SASL authentication failed"), "{}", text(&out));
    let out = bin()
        .args(["topic", "create", "--brokers", sasl_addr, "--topic", "x", "--kafka-config", &path(&wrong)])
        .output()
        .unwrap();
    assert!(text(&out).contains("SASL authentication failed"), "{}", text(&out));
    assert!(!text(&out).contains(&password));
}

/// A plain HTTP GET: the body.
fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(response)
}

#[test]
fn the_password_is_in_no_log_metrics_or_status_page_and_lag_tools_see_the_group() {
    let Some(secure) = Secure::get() else { return };
    let Some(plain) = brokers() else { return };
    let password = secure.password();
    let topic = unique("secure-live");
    let tmp = tempfile::tempdir().unwrap();
    let props = secure.sasl_props();
    let kafka = ["--brokers", &secure.sasl_ssl, "--topic", &topic, "--kafka-config", props.to_str().unwrap()];
    run_ok(bin().args(["topic", "create"]).args(kafka));
    run_ok(bin().args(["produce", "--count", "20000", "--rate", "max"]).args(kafka));

    let mut child = bin()
        .env("RUST_LOG", "debug")
        .args(["run", "--starting-offsets", "earliest", "--no-console", "--metrics-addr", "127.0.0.1:0"])
        .args([
            "--roll-interval",
            "500ms",
            "--run-id",
            "live",
            "--consumer-group",
            "lag-tools-live",
            "--output",
        ])
        .arg(tmp.path().join("parquet"))
        .args(kafka)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log: Vec<String> = Vec::new();
    let mut addr = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while addr.is_empty() {
        assert!(Instant::now() < deadline, "no listening line:\n{}", log.join("\n"));
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("metrics and status page listening") {
                addr = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).unwrap().to_string();
            }
            log.push(line);
        }
        assert!(child.try_wait().unwrap().is_none(), "the run exited:\n{}", log.join("\n"));
    }
    // Live: the group's offsets reach the end while the job runs.
    let mut live = None;
    while live.is_none() {
        assert!(
            Instant::now() < deadline,
            "the group never reached the end offsets; log:\n{}",
            log.join("\n")
        );
        log.extend(rx.try_iter());
        live = describe_group(&plain, "lag-tools-live", &topic)
            .filter(|rows| rows.iter().map(|r| r.1).sum::<i64>() == 20_000);
        std::thread::sleep(Duration::from_millis(500));
    }
    let metrics = get(&addr, "/metrics");
    let status = get(&addr, "/");
    assert!(metrics.contains("streamlake_group_commits_total"), "{metrics}");
    assert!(metrics.contains("streamlake_group_commit_failures_total 0"), "{metrics}");
    // SAFETY: the child's own pid; SIGTERM asks it to stop after a commit.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status_code = child.wait().unwrap();
    log.extend(rx.iter());
    assert!(status_code.success(), "the run failed:\n{}", log.join("\n"));
    let rows = describe_group(&plain, "lag-tools-live", &topic).unwrap();
    assert!(rows.iter().all(|r| r.3 == 0), "lag 0 after the run: {rows:?}");

    let all_log = log.join("\n");
    assert!(all_log.contains("sasl.password=<redacted>"), "{all_log}");
    for (what, text) in [("log", &all_log), ("/metrics", &metrics), ("status page", &status)] {
        assert!(!text.contains(&password), "the SASL password is in the {what}");
    }
}
