//! Readers of the platform's container files for `tests/platform.rs`: `docker-compose.yml`
//! (through PyYAML, as compose itself reads YAML) and the `Dockerfile`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::process::text;

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn map<'a>(v: &'a Value, what: &str) -> &'a serde_json::Map<String, Value> {
    v.as_object().unwrap_or_else(|| panic!("{what} is not a mapping: {v}"))
}

/// A service's environment as name → value, from either compose form (mapping or `K=V` list).
pub fn environment(service: &Value) -> Vec<(String, String)> {
    match &service["environment"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let s = i.as_str().unwrap_or_default();
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("environment must be a mapping or a list: {other}"),
    }
}

pub fn env_value(service: &Value, name: &str) -> Option<String> {
    environment(service).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The command as a list of words (compose allows a string too).
pub fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(a) => {
            a.iter().map(|w| w.as_str().map_or_else(|| w.to_string(), str::to_string)).collect()
        }
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// depends_on as service → condition (`service_started` for the short list form).
pub fn depends_on(service: &Value) -> Vec<(String, String)> {
    match &service["depends_on"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v["condition"].as_str().unwrap_or("service_started").to_string()))
            .collect(),
        Value::Array(a) => {
            a.iter().map(|s| (s.as_str().unwrap_or_default().to_string(), "service_started".into())).collect()
        }
        _ => Vec::new(),
    }
}

/// Volume mounts as (source, target), from the short `source:target[:mode]` or the long form.
pub fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .map(|vols| {
            vols.iter()
                .map(|v| match v {
                    Value::String(s) => {
                        let mut parts = s.splitn(3, ':');
                        (
                            parts.next().unwrap_or_default().to_string(),
                            parts.next().unwrap_or_default().to_string(),
                        )
                    }
                    _ => (
                        v["source"].as_str().unwrap_or_default().to_string(),
                        v["target"].as_str().unwrap_or_default().to_string(),
                    ),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn load_compose(py: &str) -> Value {
    let out = Command::new(py)
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(repo("docker-compose.yml"))
        .output()
        .expect("running python");
    assert!(out.status.success(), "PyYAML could not load docker-compose.yml: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
pub fn dockerfile_instructions() -> Vec<String> {
    let text = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
            }
        }
    }
    out
}
