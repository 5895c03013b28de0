//! A streaming folder's open file. Its rows go to Arrow builders and every `BATCH_ROWS` rows to
//! the Parquet writer, so that a long interval of few keys keeps memory flat instead of holding
//! its rows until the commit; the file keeps its in-progress name until the commit renames it.

use std::fs::File;
use std::path::PathBuf;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::columns::ColBuilder;
use crate::sink::SinkError;

/// A streaming writer: the rows of one folder in the current interval.
pub(super) struct KeyFile {
    pub(super) tmp: PathBuf,
    pub(super) writer: ArrowWriter<File>,
    pub(super) builders: Vec<ColBuilder>,
    pub(super) buffered: usize,
    /// Bytes of the rows in `builders`, held in the budget.
    pub(super) batch_bytes: usize,
    /// The writer's unwritten row group as last measured, held in the budget.
    pub(super) held: usize,
}

impl KeyFile {
    pub(super) fn flush_batch(&mut self, schema: &SchemaRef) -> Result<(), SinkError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(ColBuilder::finish).collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|source| SinkError::Arrow { path: self.tmp.clone(), source })?;
        self.writer.write(&batch).map_err(|source| SinkError::Parquet { path: self.tmp.clone(), source })?;
        self.buffered = 0;
        Ok(())
    }
}
