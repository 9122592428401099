//! Batches as they lie in the segment files: where their bytes are and what
//! their headers say, without reading the records. Fetch hands the byte
//! ranges to the socket (`sendfile`) where it can and reads them otherwise.
//!
//! The bytes below the log's end never change in place (appends go after
//! them, the cleaner and retention replace or delete whole files), so a
//! range taken under the log's lock stays valid after the lock is released:
//! each range holds its file open.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::BatchHeader;

/// `len` bytes of a segment file from `position`.
#[derive(Debug, Clone)]
pub struct FileRange {
    file: Arc<File>,
    position: u64,
    len: u64,
}

impl FileRange {
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the range's bytes to `out`. Fails if the file no longer
    /// holds them all.
    pub fn read_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        self.file.read_exact_at(&mut out[start..], self.position)
    }
}

/// Whole batches, contiguous by offset, stored in one or more ranges (one
/// per segment they span).
#[derive(Debug, Clone, Default)]
pub struct StoredBatches {
    ranges: Vec<FileRange>,
    headers: Vec<BatchHeader>,
    len: u64,
}

impl StoredBatches {
    /// Total bytes of the batches.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn ranges(&self) -> &[FileRange] {
        &self.ranges
    }

    pub fn headers(&self) -> &[BatchHeader] {
        &self.headers
    }

    /// Adds the batches `headers` describe, stored one after the other in
    /// `file` from `position`.
    pub(crate) fn push(&mut self, file: &Arc<File>, position: u64, headers: Vec<BatchHeader>) {
        let len: u64 = headers.iter().map(|h| h.total_len() as u64).sum();
        if len == 0 {
            return;
        }
        debug_assert!(
            self.headers
                .last()
                .zip(headers.first())
                .is_none_or(|(last, next)| last.last_offset() < next.base_offset),
            "batches are pushed in offset order"
        );
        self.ranges.push(FileRange {
            file: file.clone(),
            position,
            len,
        });
        self.headers.extend(headers);
        self.len += len;
    }

    /// Keeps only the batches that start below `end`.
    pub fn below(mut self, end: i64) -> Self {
        let kept = self.headers.iter().take_while(|h| h.base_offset < end).count();
        if kept == self.headers.len() {
            return self;
        }
        let mut left: u64 = self.headers[..kept].iter().map(|h| h.total_len() as u64).sum();
        self.headers.truncate(kept);
        self.len = left;
        self.ranges.retain_mut(|range| {
            range.len = range.len.min(left);
            left -= range.len;
            range.len > 0
        });
        self
    }

    /// The bytes of all the batches, read from their files.
    pub fn read(&self) -> io::Result<Bytes> {
        let mut out = Vec::with_capacity(self.len());
        for range in &self.ranges {
            range.read_into(&mut out)?;
        }
        Ok(Bytes::from(out))
    }
}
