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
    #[serde(default)]
    table_format: TableFormat,
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

/// How the raw events and the window aggregates are laid out (`sink.table_format`,
/// `--table-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Parquet files in Hive-style folders, committed through streamlake's `_checkpoint`: the
    /// seed's pandas DAG reads it; other readers see uncommitted files until a restart cleans
    /// them (docs/format.md).
    #[default]
    Parquet,
    /// The same files, each dataset a Delta Lake table: a file is visible to every Delta reader
    /// only once the `_delta_log` commit that adds it exists (docs/format.md, "Delta Lake").
    Delta,
}

impl TableFormat {
    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Parquet => "parquet",
            TableFormat::Delta => "delta",
        }
    }
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
    /// How the raw sink names folders (`sink.partition_by`); `None` for `"none"`: no folders.
    pub partition: Option<Partitioning>,
    /// `sink.table_format` (`--table-format` overrides it).
    pub table_format: TableFormat,
}

/// A partition transform of `sink.partition_by`, in the vocabulary Iceberg uses. What each does to
/// a value and how it names folders is [`crate::format::partition`]; this is what the dataflow
/// file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// The value itself (`"id"`, `id=3/`); the column is left out of the files, as Spark writes it.
    Identity,
    /// Iceberg's `bucket[N]` (`"bucket(id, 16)"`, `id_bucket=3/`): 0 ≤ bucket < N.
    Bucket(u32),
    /// Days since 1970-01-01 (`"day(ts)"`, `ts_day=2026-12-02/`).
    Day,
    /// Hours since 1970-01-01 00:00 UTC (`"hour(ts)"`, `ts_hour=2026-12-02-10/`).
    Hour,
}

/// `sink.partition_by` resolved against the schema: a transform of one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioning {
    /// Index of the source column in the schema.
    pub col: usize,
    /// Its name.
    pub column: String,
    pub transform: Transform,
}

/// What `sink.partition_by` accepts, for messages.
const PARTITION_BY_ACCEPTS: &str = "a column of the schema (identity: `\"id\"`, one folder per value), \
     `\"bucket(<column>, <N>)\"` (int32, int64 or string column, 1 <= N <= 2147483647), `\"day(<column>)\"` or \
     `\"hour(<column>)\"` (timestamp column), or `\"none\"` (no folders)";

impl Partitioning {
    /// Parses and resolves a `partition_by` text against `schema`: `Ok(None)` for `"none"`. The
    /// error names the text, what is accepted and an example.
    pub fn parse(text: &str, schema: &[Field]) -> Result<Option<Partitioning>, String> {
        let wrong = |why: String| {
            format!(
                "sink.partition_by `{text}`: {why}; accepted: {PARTITION_BY_ACCEPTS}; for example \
                 partition_by = \"bucket(id, 16)\""
            )
        };
        let t = text.trim();
        if t == "none" {
            return Ok(None);
        }
        let (transform, column) = match t.split_once('(') {
            None => (Transform::Identity, t),
            Some((name, rest)) => {
                let args = rest
                    .strip_suffix(')')
                    .ok_or_else(|| wrong("a transform's arguments end with `)`".into()))?;
                let args: Vec<&str> = args.split(',').map(str::trim).collect();
                match (name.trim(), args.as_slice()) {
                    ("identity", [column]) => (Transform::Identity, *column),
                    ("bucket", [column, n]) => {
                        let n =
                            n.parse::<u32>().ok().filter(|n| (1..=i32::MAX as u32).contains(n)).ok_or_else(
                                || {
                                    wrong(format!(
                                    "the number of buckets `{n}` is not a whole number from 1 to 2147483647"
                                ))
                                },
                            )?;
                        (Transform::Bucket(n), *column)
                    }
                    ("bucket", _) => {
                        return Err(wrong(
                            "bucket takes a column and a number of buckets, `bucket(id, 16)`".into(),
                        ))
                    }
                    ("day" | "hour", [column]) => {
                        (if name.trim() == "day" { Transform::Day } else { Transform::Hour }, *column)
                    }
                    ("day" | "hour" | "identity", _) => {
                        return Err(wrong(format!("{} takes one column", name.trim())))
                    }
                    (other, _) => {
                        return Err(wrong(format!(
                        "`{other}` is not a transform streamlake knows (Iceberg's year, month, truncate and \
                             void are not supported)"
                    )))
                    }
                }
            }
        };
        if column.is_empty() {
            return Err(wrong("no column is named".into()));
        }
        let col = schema
            .iter()
            .position(|f| f.name == column)
            .ok_or_else(|| wrong(format!("`{column}` is not a field of the schema")))?;
        let field = &schema[col];
        let ty = field.ty;
        let fits = match transform {
            Transform::Identity => {
                matches!(ty, ColumnType::Int32 | ColumnType::Int64 | ColumnType::String | ColumnType::Bool)
            }
            Transform::Bucket(_) => matches!(ty, ColumnType::Int32 | ColumnType::Int64 | ColumnType::String),
            Transform::Day | Transform::Hour => ty == ColumnType::Timestamp,
        };
        if !fits {
            let needs = match transform {
                Transform::Identity => {
                    "an int32, int64, string or bool column (bucket or day/hour other types)"
                }
                Transform::Bucket(_) => {
                    "an int32, int64 or string column (bool, float64 and timestamp cannot be bucketed)"
                }
                Transform::Day | Transform::Hour => "a timestamp column",
            };
            return Err(wrong(format!("`{column}` is {} but this transform needs {needs}", ty.name())));
        }
        if !field.required {
            return Err(wrong(format!(
                "`{column}` must be `required = true`: a record without it would have no folder"
            )));
        }
        let p = Partitioning { col, column: column.to_string(), transform };
        let folder = p.folder_column();
        if transform != Transform::Identity && schema.iter().any(|f| f.name == folder) {
            return Err(wrong(format!(
                "its folders would be named `{folder}=…`, which is also a field of the schema, so readers would see \
                 two `{folder}` columns"
            )));
        }
        Ok(Some(p))
    }

    /// The name of the folders' column: the source column for identity (`id`), else the source
    /// column and the transform, as Iceberg names partition fields (`id_bucket`, `ts_day`, `ts_hour`).
    pub fn folder_column(&self) -> String {
        match self.transform {
            Transform::Identity => self.column.clone(),
            Transform::Bucket(_) => format!("{}_bucket", self.column),
            Transform::Day => format!("{}_day", self.column),
            Transform::Hour => format!("{}_hour", self.column),
        }
    }
}

/// The normalized text: `id`, `bucket(id, 16)`, `day(ts)`, `hour(ts)` (identity is the column's
/// name, as run folders written before transforms recorded it).
impl std::fmt::Display for Partitioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.transform {
            Transform::Identity => f.write_str(&self.column),
            Transform::Bucket(n) => write!(f, "bucket({}, {n})", self.column),
            Transform::Day => write!(f, "day({})", self.column),
            Transform::Hour => write!(f, "hour({})", self.column),
        }
    }
}

/// The normalized `partition_by` text of a partitioning: its [`Partitioning`] text, or `none`.
pub fn partition_by_text(partition: Option<&Partitioning>) -> String {
    partition.map_or_else(|| "none".to_string(), Partitioning::to_string)
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
        // The window key and the folders are unrelated: the sink may partition by any transform.
        let partition = Partitioning::parse(&raw.sink.partition_by, &raw.schema).map_err(invalid)?;
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
            partition,
            table_format: raw.sink.table_format,
        })
    }

    /// End (exclusive, ms) of the tumbling window that holds event time `ts_ms`.
    pub fn window_end(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.window_ms as i64) * self.window_ms as i64 + self.window_ms as i64
    }

    pub fn key_field(&self) -> &Field {
        &self.schema[self.key_col]
    }

    /// The normalized `sink.partition_by` (`id`, `bucket(id, 16)`, `none`), as `identity.json`
    /// records it.
    pub fn partition_by(&self) -> String {
        partition_by_text(self.partition.as_ref())
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

    fn with_partition(text: &str) -> Result<Spec, String> {
        let toml = EVENTS_TOML.replace("partition_by = \"id\"", &format!("partition_by = \"{text}\""));
        Spec::parse(&toml, Path::new("x.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn partition_transforms_parse_and_normalize() {
        let p = |text: &str| with_partition(text).unwrap().partition;
        let id = p("id").unwrap();
        assert_eq!((id.col, id.transform, id.to_string()), (0, Transform::Identity, "id".to_string()));
        assert_eq!(p("identity(id)").unwrap().to_string(), "id");
        let b = p(" bucket( id ,16 ) ").unwrap();
        assert_eq!(
            (b.transform, b.to_string(), b.folder_column()),
            (Transform::Bucket(16), "bucket(id, 16)".into(), "id_bucket".into())
        );
        assert_eq!(p("day(ts)").unwrap().folder_column(), "ts_day");
        assert_eq!(p("hour(ts)").unwrap().to_string(), "hour(ts)");
        assert_eq!(p("none"), None);
        assert_eq!(with_partition("none").unwrap().partition_by(), "none");
        // The folder no longer has to be the window key.
        let other = EVENTS_TOML.replace("partition_by = \"id\"", "partition_by = \"source\"").replace(
            "name = \"source\"\ntype = \"string\"\nrequired = false",
            "name = \"source\"\ntype = \"string\"\nrequired = true",
        );
        let spec = Spec::parse(&other, Path::new("x.toml")).unwrap();
        assert_eq!(spec.partition.map(|p| (p.col, p.transform)), Some((3, Transform::Identity)));
        assert_eq!(spec.schema[spec.key_col].name, "id");
    }

    #[test]
    fn partition_transforms_refuse_what_they_cannot_do() {
        let bad = |text: &str, says: &str| {
            let err = with_partition(text).map(|_| ()).unwrap_err();
            assert!(err.contains(&format!("sink.partition_by `{text}`")), "{err}");
            assert!(err.contains(says), "{text}: {err}");
            assert!(
                err.contains("accepted:") && err.contains("for example partition_by = \"bucket(id, 16)\""),
                "{err}"
            );
        };
        bad("bucket(id)", "bucket takes a column and a number of buckets");
        bad("bucket(id, 0)", "the number of buckets `0` is not a whole number from 1 to 2147483647");
        bad("bucket(id, -3)", "`-3` is not a whole number");
        bad("bucket(id, 2147483648)", "is not a whole number");
        bad("bucket(ts, 4)", "`ts` is timestamp but this transform needs an int32, int64 or string column");
        bad("bucket(value, 4)", "`value` is float64");
        bad("day(value)", "`value` is float64 but this transform needs a timestamp column");
        bad("hour(id)", "`id` is int32 but this transform needs a timestamp column");
        bad("month(ts)", "`month` is not a transform streamlake knows");
        bad("day(ts", "end with `)`");
        bad("day(ts, 3)", "day takes one column");
        bad("nope", "`nope` is not a field of the schema");
        bad("bucket(nope, 4)", "`nope` is not a field of the schema");
        bad("bucket(source, 4)", "`source` must be `required = true`");
        bad("value", "`value` is float64 but this transform needs an int32, int64, string or bool column");
        // A folder column that is also a field would give readers two columns of one name.
        let clash = EVENTS_TOML
            .replace("partition_by = \"id\"", "partition_by = \"day(ts)\"")
            .replace("[window]", "[[schema]]\nname = \"ts_day\"\ntype = \"string\"\n\n[window]");
        let err = Spec::parse(&clash, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("`ts_day=…`, which is also a field of the schema"), "{err}");
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
