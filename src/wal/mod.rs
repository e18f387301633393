//! Write-ahead log: record format, segments, group-commit flusher, reader.
pub mod record;
