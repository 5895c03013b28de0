//! How the validator reads a Parquet file: a small one in a single read into memory, a large one
//! through its handle.
//!
//! Raw files are small when keys are many (one file per key folder per commit: ~1.5 KB each with
//! 100,000 ids), and `validate --audit` reads each of them three times (the report's aggregate,
//! the audit's footer, the window counts). Through a `File`, parquet reads the length, the footer
//! and every column chunk with their own `stat`/`seek`/`read` calls and a duplicated descriptor
//! per chunk; from memory it is one `read`. Both parse the same bytes, so every check sees the
//! same file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use bytes::Bytes;
use parquet::errors::Result as ParquetResult;
use parquet::file::reader::{ChunkReader, Length};

/// Files up to this size are read into memory whole.
pub const IN_MEMORY_MAX: u64 = 1 << 20;

/// A Parquet file's bytes: in memory (small files) or behind its handle (large ones).
pub enum ParquetSource {
    Memory(Bytes),
    File(File),
}

/// Opens `path` for a Parquet reader (see [`ParquetSource`]).
pub fn open(path: &Path) -> std::io::Result<ParquetSource> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > IN_MEMORY_MAX {
        return Ok(ParquetSource::File(file));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.read_to_end(&mut buf)?;
    Ok(ParquetSource::Memory(Bytes::from(buf)))
}

impl Length for ParquetSource {
    fn len(&self) -> u64 {
        match self {
            ParquetSource::Memory(b) => b.len() as u64,
            ParquetSource::File(f) => f.len(),
        }
    }
}

/// The reader of a [`ParquetSource`] at an offset.
pub enum SourceRead {
    Memory(bytes::buf::Reader<Bytes>),
    File(BufReader<File>),
}

impl Read for SourceRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            SourceRead::Memory(r) => r.read(buf),
            SourceRead::File(r) => r.read(buf),
        }
    }
}

impl ChunkReader for ParquetSource {
    type T = SourceRead;

    fn get_read(&self, start: u64) -> ParquetResult<SourceRead> {
        Ok(match self {
            ParquetSource::Memory(b) => SourceRead::Memory(b.get_read(start)?),
            ParquetSource::File(f) => SourceRead::File(f.get_read(start)?),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> ParquetResult<Bytes> {
        match self {
            ParquetSource::Memory(b) => b.get_bytes(start, length),
            ParquetSource::File(f) => f.get_bytes(start, length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    fn rows_of(source: ParquetSource) -> Vec<i64> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(source).unwrap().build().unwrap();
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            out.extend(col.values().iter().copied());
        }
        out
    }

    #[test]
    fn small_files_are_read_from_memory_large_ones_through_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, n: i64| {
            let path = dir.path().join(name);
            let batch = RecordBatch::try_from_iter([(
                "x",
                Arc::new(Int64Array::from_iter_values(0..n)) as arrow::array::ArrayRef,
            )])
            .unwrap();
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::UNCOMPRESSED)
                .set_dictionary_enabled(false)
                .build();
            let mut w =
                ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            path
        };
        let small = write("small.parquet", 10);
        let large = write("large.parquet", 200_000);
        assert!(matches!(open(&small).unwrap(), ParquetSource::Memory(_)));
        assert!(matches!(open(&large).unwrap(), ParquetSource::File(_)));
        assert_eq!(rows_of(open(&small).unwrap()), (0..10).collect::<Vec<_>>());
        assert_eq!(rows_of(open(&large).unwrap()), (0..200_000).collect::<Vec<_>>());
        // A truncated file fails the same way from memory.
        let cut = dir.path().join("cut.parquet");
        let bytes = std::fs::read(&small).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        assert!(ParquetRecordBatchReaderBuilder::try_new(open(&cut).unwrap()).is_err());
    }
}
