//! `scripts/kafka.sh`: start twice gives one broker at one address, status tells, stop leaves no
//! broker process behind. Uses its own state folder and port, beside the test suite's broker.

use crate::common;

use std::process::Command;

fn script(state: &std::path::Path, arg: &str) -> std::process::Output {
    Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh"))
        .arg(arg)
        .env("KAFKA_STATE_DIR", state)
        .env("KAFKA_HEAP", "-Xms256m -Xmx256m")
        .env_remove("KAFKA_PORT")
        .env_remove("KAFKA_CONTROLLER_PORT")
        .output()
        .expect("running scripts/kafka.sh")
}

fn pid_alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn start_twice_then_stop_leaves_no_broker() {
    // Needs Java and Maven, which the suite's own broker needs too.
    if common::brokers().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("kafka");
    let first = script(&state, "start");
    assert!(first.status.success(), "start failed: {}", String::from_utf8_lossy(&first.stderr));
    let addr1 = String::from_utf8_lossy(&first.stdout).lines().last().unwrap_or_default().to_string();
    assert!(addr1.starts_with("127.0.0.1:"), "last stdout line is the address: {addr1:?}");
    let pid = std::fs::read_to_string(state.join("kafka.pid")).expect("start records the broker pid");
    let pid = pid.trim().to_string();
    assert!(pid_alive(&pid), "broker {pid} runs after start");
    let second = script(&state, "start");
    assert!(second.status.success());
    let addr2 = String::from_utf8_lossy(&second.stdout).lines().last().unwrap_or_default().to_string();
    assert_eq!(addr1, addr2, "a second start reports the running broker");
    let status = script(&state, "status");
    assert!(status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&addr1)
            || String::from_utf8_lossy(&status.stderr).contains(&addr1)
    );
    let stop = script(&state, "stop");
    assert!(stop.status.success(), "stop failed: {}", String::from_utf8_lossy(&stop.stderr));
    assert!(!pid_alive(&pid), "broker pid {pid} still alive after stop");
    let status = script(&state, "status");
    assert_eq!(status.status.code(), Some(3), "status after stop says not running");
}
