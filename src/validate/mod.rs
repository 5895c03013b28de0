//! `streamlake validate`: reads the Parquet output back (placeholder until the module lands).
