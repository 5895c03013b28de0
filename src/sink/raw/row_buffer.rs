//! The buffered folders' rows: once the worker's file slots are taken, a new folder's rows wait
//! here until the commit writes each folder's file one at a time. One partition-wide buffer in
//! arrival order (chunks of `BATCH_ROWS` rows plus a `u32` folder number per row) rather than one
//! per folder, so that 100,000 folders of a few rows each cost their rows and little else.

use std::path::Path;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::columns::ColBuilder;
use crate::sink::SinkError;

/// The buffered folders' rows, in arrival order.
pub(super) struct RowBuffer {
    pub(super) builders: Vec<ColBuilder>,
    pub(super) in_builders: usize,
    pub(super) chunks: Vec<RecordBatch>,
    /// The folder of every buffered row, in order (chunks first, then the builders).
    pub(super) folder_of: Vec<u32>,
}

impl RowBuffer {
    pub(super) fn new() -> Self {
        RowBuffer { builders: Vec::new(), in_builders: 0, chunks: Vec::new(), folder_of: Vec::new() }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.folder_of.is_empty()
    }

    pub(super) fn seal(&mut self, schema: &SchemaRef, path: &Path) -> Result<(), SinkError> {
        if self.in_builders == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(ColBuilder::finish).collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|source| SinkError::Arrow { path: path.to_path_buf(), source })?;
        self.chunks.push(batch);
        self.in_builders = 0;
        Ok(())
    }

    /// Every buffered row's (chunk, row) position, grouped by folder and in arrival order within
    /// one (a counting sort: two passes, no comparison), with each folder's start in it.
    pub(super) fn grouped(&self, folders: usize) -> (Vec<(usize, usize)>, Vec<usize>) {
        let mut starts = vec![0usize; folders + 1];
        for &f in &self.folder_of {
            starts[f as usize + 1] += 1;
        }
        for i in 0..folders {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut order = vec![(0usize, 0usize); self.folder_of.len()];
        let mut row = 0;
        for (c, chunk) in self.chunks.iter().enumerate() {
            for r in 0..chunk.num_rows() {
                let f = self.folder_of[row] as usize;
                order[next[f]] = (c, r);
                next[f] += 1;
                row += 1;
            }
        }
        (order, starts)
    }

    pub(super) fn clear(&mut self) {
        self.chunks.clear();
        self.folder_of.clear();
        self.in_builders = 0;
    }
}
