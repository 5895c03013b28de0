//! Arrow column builders for the raw sink: one per declared field, appended to straight from the
//! parser's slots.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};

use crate::parse::json::Slot;
use crate::spec::ColumnType;

/// Rows buffered in Arrow builders before they go to the Parquet writer.
pub(super) const BATCH_ROWS: usize = 8192;

pub(super) fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::String => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The Arrow type of a key column (for the aggregates dataset).
pub fn key_arrow_type(ty: ColumnType) -> DataType {
    arrow_type(ty)
}

pub(super) enum ColBuilder {
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl ColBuilder {
    /// A builder with room for `rows` values (strings: 16 bytes each) before it grows.
    pub(super) fn with_capacity(ty: ColumnType, rows: usize) -> Self {
        match ty {
            ColumnType::Int32 => ColBuilder::Int32(Int32Builder::with_capacity(rows)),
            ColumnType::Int64 => ColBuilder::Int64(Int64Builder::with_capacity(rows)),
            ColumnType::Float64 => ColBuilder::Float64(Float64Builder::with_capacity(rows)),
            ColumnType::String => ColBuilder::Str(StringBuilder::with_capacity(rows, rows * 16)),
            ColumnType::Bool => ColBuilder::Bool(BooleanBuilder::with_capacity(rows)),
            ColumnType::Timestamp => {
                ColBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
        }
    }

    #[inline]
    pub(super) fn append(&mut self, slot: Slot, text: &str) {
        match (self, slot) {
            (ColBuilder::Int32(b), Slot::Int(v)) => b.append_value(v as i32),
            (ColBuilder::Int64(b), Slot::Int(v)) => b.append_value(v),
            (ColBuilder::Float64(b), Slot::Float(v)) => b.append_value(v),
            (ColBuilder::Float64(b), Slot::Int(v)) => b.append_value(v as f64),
            (ColBuilder::Str(b), Slot::Str { .. }) => b.append_value(text),
            (ColBuilder::Bool(b), Slot::Bool(v)) => b.append_value(v),
            (ColBuilder::Ts(b), Slot::TimestampMicros(v)) => b.append_value(v),
            (ColBuilder::Int32(b), _) => b.append_null(),
            (ColBuilder::Int64(b), _) => b.append_null(),
            (ColBuilder::Float64(b), _) => b.append_null(),
            (ColBuilder::Str(b), _) => b.append_null(),
            (ColBuilder::Bool(b), _) => b.append_null(),
            (ColBuilder::Ts(b), _) => b.append_null(),
        }
    }

    pub(super) fn finish(&mut self) -> ArrayRef {
        match self {
            ColBuilder::Int32(b) => Arc::new(b.finish()),
            ColBuilder::Int64(b) => Arc::new(b.finish()),
            ColBuilder::Float64(b) => Arc::new(b.finish()),
            ColBuilder::Str(b) => Arc::new(b.finish()),
            ColBuilder::Bool(b) => Arc::new(b.finish()),
            ColBuilder::Ts(b) => Arc::new(b.finish()),
        }
    }
}
