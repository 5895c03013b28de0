//! A table's schema against the dataflow's: the same columns with the same types and the same
//! partition columns; a column the dataflow adds is added to the table, nullable (schema
//! evolution); a type change, a dropped required column or another partitioning is refused.

use deltalake_core::kernel::{DataType, PrimitiveType, StructField};
use deltalake_core::DeltaTable;

use super::table::{delta_err, TableSpec};
use crate::sink::SinkError;

/// Checks an existing table against `spec`; returns the dataflow's columns the table lacks.
pub(super) fn check_schema(
    table: &DeltaTable,
    spec: &TableSpec,
    shown: &str,
) -> Result<Vec<StructField>, SinkError> {
    let state = table.snapshot().map_err(delta_err(shown, "read"))?;
    let schema = state.schema();
    let partitions: Vec<String> = state.metadata().partition_columns().to_vec();
    if partitions != spec.partition_by {
        return Err(SinkError::DeltaSchema {
            table: shown.to_string(),
            reason: format!(
                "the table is partitioned by {partitions:?} and the dataflow by {:?} (sink.partition_by)",
                spec.partition_by
            ),
        });
    }
    let mut added = Vec::new();
    for (name, ty, _) in &spec.columns {
        match schema.field(name) {
            Some(field) if field.data_type() != ty => {
                return Err(SinkError::DeltaSchema {
                    table: shown.to_string(),
                    reason: format!(
                        "column `{name}` is {} in the table and {} in the dataflow; a column's type cannot change",
                        field.data_type(),
                        ty
                    ),
                })
            }
            Some(_) => {}
            None => added.push(StructField::new(name.clone(), ty.clone(), true)),
        }
    }
    for field in schema.fields() {
        if !field.is_nullable() && !spec.columns.iter().any(|(n, _, _)| n == field.name()) {
            return Err(SinkError::DeltaSchema {
                table: shown.to_string(),
                reason: format!(
                    "the table has a required column `{}` that the dataflow does not write",
                    field.name()
                ),
            });
        }
    }
    Ok(added)
}

/// The Delta type of a column of the dataflow.
pub fn delta_type(ty: crate::spec::ColumnType) -> DataType {
    use crate::spec::ColumnType as C;
    DataType::Primitive(match ty {
        C::Int32 => PrimitiveType::Integer,
        C::Int64 => PrimitiveType::Long,
        C::Float64 => PrimitiveType::Double,
        C::String => PrimitiveType::String,
        C::Bool => PrimitiveType::Boolean,
        C::Timestamp => PrimitiveType::Timestamp,
    })
}
