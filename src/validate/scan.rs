//! Reading data files: per-file aggregates (in parallel, only the needed columns) and the preview.
//!
//! Each file is reduced to a [`FileAggregate`]: its row count and, per key (the dataflow's key
//! column, `id` in the seed), the number of non-null values (its value column, `value`) and their
//! sum. Totals are folded from these in sorted path order, so a full scan and an
//! incremental run (which keeps the aggregates of files it has seen) add the same numbers in the same
//! order and agree to the last bit.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, SecondsFormat};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};

use super::discover::{DataFile, PartValue};
use super::error::ValidateError;
use super::source::ParquetSource;

/// The columns a report is about, from the dataflow file (`validate --dataflow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// The grouping column of the aggregate (a partition folder or a file column).
    pub key: String,
    /// The aggregated column.
    pub value: String,
    /// The event-time column, which the audit assigns windows by.
    pub time: String,
}

impl Columns {
    pub fn of(spec: &crate::spec::Spec) -> Self {
        Columns {
            key: spec.key_field().name.clone(),
            value: spec.schema[spec.value_col].name.clone(),
            time: spec.schema[spec.time_col].name.clone(),
        }
    }
}

const BATCH_ROWS: usize = 64 * 1024;

/// Applies `f` to every item on about one thread per core (see [`crate::util::fanout`]).
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    crate::util::fanout::map(items, crate::util::fanout::cores(), f)
}

/// One `id` group of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: PartValue,
    /// Rows with this id.
    pub rows: u64,
    /// Rows with a non-null `value` (what pandas' `count` counts).
    pub count: u64,
    /// Sum of the non-null values, kept exactly through JSON (see [`exact_f64`]).
    #[serde(with = "exact_f64")]
    pub sum: f64,
}

/// What one file contributes to the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileAggregate {
    pub rows: u64,
    /// The file's own columns (without partition folders).
    pub columns: Vec<String>,
    /// Per id, sorted by id; rows without an id belong to no group.
    pub groups: Vec<Group>,
}

/// Serializes an `f64` as its shortest round-trip text (`"0.1"`), which `str::parse` reads back
/// bit for bit; serde_json's default number parsing is only best-effort for floats.
pub mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| serde::de::Error::custom(format!("`{text}` is not a number")))
    }
}

#[derive(Default)]
struct Acc {
    rows: u64,
    count: u64,
    sum: f64,
}

impl Acc {
    fn add_values(&mut self, values: &arrow::array::Float64Array) {
        self.rows += values.len() as u64;
        if values.null_count() == 0 {
            for v in values.values().iter() {
                self.sum += v;
            }
            self.count += values.len() as u64;
        } else {
            for v in values.iter().flatten() {
                self.sum += v;
                self.count += 1;
            }
        }
    }
}

fn open_reader(file: &DataFile) -> Result<ParquetRecordBatchReaderBuilder<ParquetSource>, ValidateError> {
    let f = super::source::open(&file.path)
        .map_err(|source| ValidateError::Open { path: file.path.clone(), source })?;
    ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|source| ValidateError::Parquet { path: file.path.clone(), source })
}

/// The projection that reads just the top-level columns named in `names` (those the file has).
fn projection(builder: &ParquetRecordBatchReaderBuilder<ParquetSource>, names: &[&str]) -> ProjectionMask {
    let schema = builder.parquet_schema();
    let roots: Vec<usize> = schema
        .root_schema()
        .get_fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name()))
        .map(|(i, _)| i)
        .collect();
    ProjectionMask::roots(schema, roots)
}

/// The value column as Float64, whatever numeric type the file stores.
fn as_f64(column: &ArrayRef, file: &DataFile, name: &str) -> Result<ArrayRef, ValidateError> {
    match column.data_type() {
        DataType::Float64 => Ok(column.clone()),
        t if t.is_numeric() => arrow::compute::cast(column, &DataType::Float64).map_err(|_| {
            ValidateError::NotNumeric { path: file.path.clone(), column: name.into(), found: t.clone() }
        }),
        t => {
            Err(ValidateError::NotNumeric { path: file.path.clone(), column: name.into(), found: t.clone() })
        }
    }
}

/// Per-row keys of a key column stored in the file (datasets not partitioned by the key).
fn ids_of(column: &ArrayRef) -> Vec<PartValue> {
    let ints = column
        .data_type()
        .is_integer()
        .then(|| arrow::compute::cast(column, &DataType::Int64).ok())
        .flatten();
    if let Some(ints) = ints {
        return ints
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map_or(PartValue::Null, PartValue::Int))
            .collect();
    }
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(column.as_ref(), &options) {
        Ok(fmt) => {
            (0..column.len())
                .map(|i| {
                    if column.is_null(i) {
                        PartValue::Null
                    } else {
                        PartValue::Str(fmt.value(i).to_string())
                    }
                })
                .collect()
        }
        Err(_) => vec![PartValue::Null; column.len()],
    }
}

/// Reads the key and value columns of one file (only those) and reduces them to a
/// [`FileAggregate`]. The key comes from the file's `<key>=` folder when there is one.
pub fn aggregate_file(file: &DataFile, names: &Columns) -> Result<FileAggregate, ValidateError> {
    let (key_column, value_column) = (names.key.as_str(), names.value.as_str());
    let builder = open_reader(file)?;
    let schema = builder.schema().clone();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let folder_id = file.partition(key_column).cloned();
    let has_value = schema.index_of(value_column).is_ok();
    let file_id = folder_id.is_none() && schema.index_of(key_column).is_ok();
    let footer_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);

    let mut groups: BTreeMap<PartValue, Acc> = BTreeMap::new();
    let mut rows = 0u64;
    if !has_value && !file_id {
        // Nothing to aggregate; the row count is all the file contributes.
        rows = footer_rows;
        if let Some(id) = folder_id {
            groups.insert(id, Acc { rows, count: 0, sum: 0.0 });
        }
    } else {
        let mask = projection(&builder, &[key_column, value_column]);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|source| ValidateError::Parquet { path: file.path.clone(), source })?;
        for batch in reader {
            let batch = batch.map_err(|source| ValidateError::Decode { path: file.path.clone(), source })?;
            let n = batch.num_rows();
            rows += n as u64;
            let values = match batch.column_by_name(value_column) {
                Some(c) => as_f64(c, file, value_column)?,
                None => arrow::array::new_null_array(&DataType::Float64, n),
            };
            let values = values.as_primitive::<Float64Type>();
            match (&folder_id, batch.column_by_name(key_column)) {
                (Some(id), _) => groups.entry(id.clone()).or_default().add_values(values),
                (None, Some(ids)) => {
                    for (i, id) in ids_of(ids).into_iter().enumerate() {
                        if id == PartValue::Null {
                            continue;
                        }
                        let acc = groups.entry(id).or_default();
                        acc.rows += 1;
                        if values.is_valid(i) {
                            acc.count += 1;
                            acc.sum += values.value(i);
                        }
                    }
                }
                (None, None) => {}
            }
        }
    }
    let groups = groups
        .into_iter()
        .filter(|(id, _)| *id != PartValue::Null)
        .map(|(id, a)| Group { id, rows: a.rows, count: a.count, sum: a.sum })
        .collect();
    Ok(FileAggregate { rows, columns, groups })
}

/// One cell of the preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("null"),
            Cell::Bool(b) => write!(f, "{b}"),
            Cell::Int(n) => write!(f, "{n}"),
            Cell::Float(x) => write!(f, "{x}"),
            Cell::Text(s) => f.write_str(s),
        }
    }
}

impl From<&PartValue> for Cell {
    fn from(v: &PartValue) -> Cell {
        match v {
            PartValue::Null => Cell::Null,
            PartValue::Int(n) => Cell::Int(*n),
            PartValue::Str(s) => Cell::Text(s.clone()),
        }
    }
}

/// The first rows of the dataset: partition columns first, then the file columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

fn cells_of(column: &ArrayRef) -> Vec<Cell> {
    let len = column.len();
    let t = column.data_type();
    let cast = |to: &DataType| arrow::compute::cast(column, to).ok();
    let cells: Option<Vec<Cell>> = if t.is_integer() {
        cast(&DataType::Int64)
            .map(|a| a.as_primitive::<Int64Type>().iter().map(|v| v.map_or(Cell::Null, Cell::Int)).collect())
    } else if t.is_floating() {
        cast(&DataType::Float64).map(|a| {
            a.as_primitive::<Float64Type>().iter().map(|v| v.map_or(Cell::Null, Cell::Float)).collect()
        })
    } else if let DataType::Timestamp(unit, tz) = t {
        cast(&DataType::Int64).map(|a| {
            a.as_primitive::<Int64Type>()
                .iter()
                .map(|v| {
                    v.and_then(|v| timestamp_text(v, *unit, tz.is_some())).map_or(Cell::Null, Cell::Text)
                })
                .collect()
        })
    } else if *t == DataType::Boolean {
        Some(column.as_boolean().iter().map(|v| v.map_or(Cell::Null, Cell::Bool)).collect())
    } else {
        None
    };
    cells.unwrap_or_else(|| {
        let options = FormatOptions::default();
        match ArrayFormatter::try_new(column.as_ref(), &options) {
            Ok(fmt) => (0..len)
                .map(|i| if column.is_null(i) { Cell::Null } else { Cell::Text(fmt.value(i).to_string()) })
                .collect(),
            Err(_) => vec![Cell::Text(format!("<{t}>")); len],
        }
    })
}

/// RFC 3339 text of a timestamp: an instant (`Z`) when the column has a time zone, a local
/// date-time otherwise. Formatted here because arrow's formatter needs its `chrono-tz` feature for
/// named zones such as `UTC`.
fn timestamp_text(v: i64, unit: TimeUnit, instant: bool) -> Option<String> {
    let dt = match unit {
        TimeUnit::Second => DateTime::from_timestamp(v, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(v),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(v),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(v)),
    }?;
    Some(if instant {
        dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    } else {
        dt.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string()
    })
}

/// Reads up to `limit` rows from the first files in `files` order (all columns). Files that cannot
/// be read are passed over here; the aggregate pass reports them.
pub fn read_head(files: &[DataFile], limit: usize) -> Head {
    let mut head = Head::default();
    let mut rows: Vec<BTreeMap<usize, Cell>> = Vec::new();
    let column_index = |name: &str, head: &mut Head| match head.columns.iter().position(|c| c == name) {
        Some(i) => i,
        None => {
            head.columns.push(name.to_string());
            head.columns.len() - 1
        }
    };
    for file in files {
        if rows.len() >= limit {
            break;
        }
        let Ok(builder) = open_reader(file) else { continue };
        let Ok(reader) = builder.with_limit(limit - rows.len()).with_batch_size(limit).build() else {
            continue;
        };
        let part_cols: Vec<(usize, Cell)> =
            file.partitions.iter().map(|(name, v)| (column_index(name, &mut head), Cell::from(v))).collect();
        for batch in reader {
            let Ok(batch) = batch else { break };
            let schema = batch.schema();
            let mut columns: Vec<(usize, Vec<Cell>)> = Vec::new();
            for (field, array) in schema.fields().iter().zip(batch.columns()) {
                if file.partition(field.name()).is_some() {
                    continue; // the folder value wins, as in Hive
                }
                columns.push((column_index(field.name(), &mut head), cells_of(array)));
            }
            for r in 0..batch.num_rows().min(limit - rows.len()) {
                let mut row: BTreeMap<usize, Cell> = part_cols.iter().cloned().collect();
                for (c, cells) in &columns {
                    row.insert(*c, cells[r].clone());
                }
                rows.push(row);
            }
        }
    }
    head.rows = rows
        .into_iter()
        .map(|mut row| (0..head.columns.len()).map(|c| row.remove(&c).unwrap_or(Cell::Null)).collect())
        .collect();
    head
}
