//! The foundation against a real broker: producer round trip, topic creation, unreachable broker.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[test]
fn produce_round_trip_10000_events_over_3_partitions() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("roundtrip");
    create_topic(&brokers, &topic, 3);
    let out = run_ok(bin().args([
        "produce",
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--count",
        "10000",
        "--rate",
        "max",
        "--seed",
        "7",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("produced 10000 events"), "{stdout}");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "roundtrip-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut per_partition = [0usize; 3];
    let mut ids = BTreeSet::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 10_000 && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else { continue };
        let msg = msg.unwrap();
        let v: serde_json::Value = serde_json::from_slice(msg.payload().unwrap()).expect("well-formed JSON");
        let id = v["id"].as_i64().expect("integer id");
        assert!((0..5).contains(&id));
        let value = v["value"].as_f64().expect("number value");
        assert!((0.0..=100.0).contains(&value));
        assert_eq!(v["source"], "sim-producer");
        let ts = v["ts"].as_str().expect("ts string");
        chrono::DateTime::parse_from_rfc3339(ts).expect("ISO-8601 ts with offset");
        assert!(ts.ends_with("+00:00") && ts.len() == 32, "microseconds and offset: {ts}");
        ids.insert(id);
        per_partition[msg.partition() as usize] += 1;
        seen += 1;
    }
    assert_eq!(seen, 10_000);
    // Nothing beyond the 10,000.
    assert!(consumer.poll(Duration::from_secs(2)).is_none());
    assert!(per_partition.iter().all(|&n| n > 3000), "spread over partitions: {per_partition:?}");
    assert_eq!(ids.len(), 5);
}

#[test]
fn topic_create_is_idempotent_and_rejects_a_different_partition_count() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("create");
    let first = run_ok(bin().args(["topic", "create", "--brokers", &brokers, "--topic", &topic]));
    assert!(String::from_utf8_lossy(&first.stdout).contains("created topic"));
    let again = run_ok(bin().args(["topic", "create", "--brokers", &brokers, "--topic", &topic]));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already exists with 3 partitions"));
    let out = bin()
        .args(["topic", "create", "--brokers", &brokers, "--topic", &topic, "--partitions", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists with 3 partitions, but 5 were requested"), "{err}");
}

#[test]
fn unreachable_broker_is_reported_within_the_bound() {
    // Port 1 on loopback: nothing listens there.
    let mut child = bin()
        .args(["topic", "create", "--brokers", "127.0.0.1:1", "--topic", "x", "--timeout", "5s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("topic create did not give up within the 30 s bound");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Kafka broker answered at 127.0.0.1:1"), "{err}");
    assert!(err.contains("scripts/kafka.sh start"), "says what to do: {err}");
}

#[test]
fn help_explains_options_and_environment() {
    let top = run_ok(bin().arg("--help"));
    let text = String::from_utf8_lossy(&top.stdout);
    for cmd in ["topic", "produce", "run"] {
        assert!(text.contains(cmd), "{text}");
    }
    let produce = String::from_utf8_lossy(&run_ok(bin().args(["produce", "--help"])).stdout).to_string();
    for needle in
        ["--rate", "MSGS_PER_SEC", "--count", "--ids", "--seed", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC"]
    {
        assert!(produce.contains(needle), "produce --help lacks {needle}:\n{produce}");
    }
    let run = String::from_utf8_lossy(&run_ok(bin().args(["run", "--help"])).stdout).to_string();
    for needle in [
        "--workers",
        "--processes",
        "--process",
        "--hostfile",
        "OUTPUT_PATH",
        "RUN_ID",
        "--available-now",
        "--flush-windows",
    ] {
        assert!(run.contains(needle), "run --help lacks {needle}:\n{run}");
    }
    let create =
        String::from_utf8_lossy(&run_ok(bin().args(["topic", "create", "--help"])).stdout).to_string();
    assert!(create.contains("--partitions") && create.contains("--timeout"), "{create}");
}
