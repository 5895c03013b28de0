//! Pipeline definitions: the `dataflows/*.toml` files that say which topic to read, what the JSON
//! looks like, how to window it and how to lay out the raw sink.
//!
//! The engine is generic over flat JSON objects whose fields are int32, int64, float64, string,
//! bool or timestamp; `dataflows/events.toml` is the original platform's pipeline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::util::duration::parse_duration;

/// A dataflow file that cannot be used. Its own type, not `crate::error::ConfigError`, so that the
/// spec (read by the parser, the sinks and `validate`) depends on nothing above it.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read dataflow file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataflow file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Column types a dataflow schema may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Int32,
    Int64,
    Float64,
    String,
    Bool,
    /// ISO-8601 with an offset (or `Z`) in JSON; stored as UTC microseconds.
    Timestamp,
}

impl ColumnType {
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int32 => "int32",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::String => "string",
            ColumnType::Bool => "bool",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    time: String,
    key: String,
    value: String,
    size: String,
    watermark: String,
    trigger: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    partition_by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    topic: String,
    schema: Vec<Field>,
    window: RawWindow,
    sink: RawSink,
}

/// A validated pipeline definition. Field references are resolved to column indexes.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub topic: String,
    pub schema: Vec<Field>,
    /// Index of the event-time column (a required timestamp).
    pub time_col: usize,
    /// Index of the group-by key (a required int32/int64/string/bool).
    pub key_col: usize,
    /// Index of the averaged column (a required float64/int32/int64).
    pub value_col: usize,
    pub window_ms: u64,
    pub watermark_ms: u64,
    pub trigger: Duration,
    /// Index of the column the raw sink partitions folders by.
    pub partition_col: usize,
}

impl Spec {
    /// Loads and validates a dataflow file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        Spec::parse(&text, path)
    }

    /// Parses a dataflow definition; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
        let invalid = |reason: String| SpecError::Invalid { path: PathBuf::from(path), reason };
        let raw: RawSpec = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.schema.is_empty() {
            return Err(invalid("the schema declares no fields".into()));
        }
        for (i, f) in raw.schema.iter().enumerate() {
            if raw.schema[..i].iter().any(|g| g.name == f.name) {
                return Err(invalid(format!("field `{}` is declared twice", f.name)));
            }
        }
        let find = |role: &str, name: &str| {
            raw.schema
                .iter()
                .position(|f| f.name == name)
                .ok_or_else(|| invalid(format!("{role} `{name}` is not a field of the schema")))
        };
        let time_col = find("window.time", &raw.window.time)?;
        let key_col = find("window.key", &raw.window.key)?;
        let value_col = find("window.value", &raw.window.value)?;
        let partition_col = find("sink.partition_by", &raw.sink.partition_by)?;
        let field = |i: usize| &raw.schema[i];
        if field(time_col).ty != ColumnType::Timestamp || !field(time_col).required {
            return Err(invalid(format!("window.time `{}` must be a required timestamp", raw.window.time)));
        }
        if !matches!(
            field(key_col).ty,
            ColumnType::Int32 | ColumnType::Int64 | ColumnType::String | ColumnType::Bool
        ) || !field(key_col).required
        {
            return Err(invalid(format!(
                "window.key `{}` must be a required int32, int64, string or bool",
                raw.window.key
            )));
        }
        if !matches!(field(value_col).ty, ColumnType::Float64 | ColumnType::Int32 | ColumnType::Int64)
            || !field(value_col).required
        {
            return Err(invalid(format!("window.value `{}` must be a required number", raw.window.value)));
        }
        if partition_col != key_col {
            return Err(invalid(format!(
                "sink.partition_by `{}` must be the window key `{}` (one folder per key)",
                raw.sink.partition_by, raw.window.key
            )));
        }
        let dur = |what: &str, s: &str| parse_duration(s).map_err(|e| invalid(format!("{what}: {e}")));
        let window_ms = dur("window.size", &raw.window.size)?.as_millis() as u64;
        let watermark_ms = dur("window.watermark", &raw.window.watermark)?.as_millis() as u64;
        let trigger = dur("window.trigger", &raw.window.trigger)?;
        if window_ms == 0 {
            return Err(invalid("window.size must be at least 1ms".into()));
        }
        if trigger.is_zero() {
            return Err(invalid("window.trigger must be positive".into()));
        }
        Ok(Spec {
            name: raw.name,
            topic: raw.topic,
            schema: raw.schema,
            time_col,
            key_col,
            value_col,
            window_ms,
            watermark_ms,
            trigger,
            partition_col,
        })
    }

    /// End (exclusive, ms) of the tumbling window that holds event time `ts_ms`.
    pub fn window_end(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.window_ms as i64) * self.window_ms as i64 + self.window_ms as i64
    }

    pub fn key_field(&self) -> &Field {
        &self.schema[self.key_col]
    }
}

/// The seed pipeline, compiled in so `run` works from any folder; `dataflows/events.toml` is the
/// same file.
pub const EVENTS_TOML: &str = include_str!("../dataflows/events.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pipeline_loads() {
        let spec = Spec::parse(EVENTS_TOML, Path::new("events.toml")).unwrap();
        assert_eq!(spec.topic, "events");
        assert_eq!(spec.window_ms, 10_000);
        assert_eq!(spec.watermark_ms, 30_000);
        assert_eq!(spec.schema[spec.key_col].name, "id");
        assert_eq!(spec.window_end(0), 10_000);
        assert_eq!(spec.window_end(9_999), 10_000);
        assert_eq!(spec.window_end(10_000), 20_000);
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        let bad = EVENTS_TOML.replace("key = \"id\"", "key = \"nope\"");
        let err = Spec::parse(&bad, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("window.key `nope` is not a field"), "{err}");
        let bad = EVENTS_TOML.replace("size = \"10s\"", "size = \"ten\"");
        let err = Spec::parse(&bad, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("window.size"), "{err}");
    }
}
