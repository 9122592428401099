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
    /// Assigning offsets to the batch would overflow `i64`.
    #[error("offset overflow appending at offset {next_offset}")]
    OffsetOverflow { next_offset: i64 },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// `truncate_to` was asked to keep more than the log holds: data that
    /// was made durable is missing, and replaying on top of what is left
    /// would assign other offsets than the other replicas did.
    #[error(
        "the log ends at offset {end} but was checkpointed up to {offset}; \
         data once fsynced is missing, so the partition directory is damaged"
    )]
    ShorterThanCheckpoint { offset: i64, end: i64 },
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

impl LogError {
    /// Whether the error came from the disk rather than from the request:
    /// the same call could succeed on another replica, so it must not be
    /// turned into a result that replicas disagree on.
    pub fn is_io(&self) -> bool {
        matches!(self, LogError::Io(_) | LogError::Corrupt { .. })
    }
}
