//! Errors returned by the partition log.

use std::path::PathBuf;

use crate::batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The batch handed to `append` is malformed.
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),
    /// The batch handed to `append` has no records, so it would claim no offset.
    #[error("record batch has no records")]
    EmptyBatch,
    /// Assigning offsets to the batch would overflow `i64`.
    #[error("offset overflow appending at offset {next_offset}")]
    OffsetOverflow { next_offset: i64 },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// `truncate_to` was asked to cut where no stored batch starts.
    #[error("offset {offset} is not a batch boundary")]
    NotBatchBoundary { offset: i64 },
    /// Data that passed validation when written no longer parses.
    #[error("corrupt batch in {path} at position {position}: {source}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        source: BatchError,
    },
}
