//! Applying a produce entry: the idempotent-producer checks and the appends,
//! written once for two sinks. One is the partition log; the other counts
//! offsets only, for the leader's forecast of entries not yet committed
//! (`forecast`). Both take the same decisions from the same state.

use std::sync::RwLockWriteGuard;

use chronik_log::control::{Marker, marker_batch};
use chronik_log::{BatchHeader, LogError, PartitionLog};
use chronik_raft::fail_stop;
use kafka_protocol::ResponseError;

use super::batch_error;
use super::bodies::BodyWriter;
use crate::partition::Partition;
use crate::producer_state::{ProducerStates, SequenceCheck};

/// Where the batches of a produce entry go.
pub(crate) trait BatchSink {
    fn next_offset(&self) -> i64;

    /// Appends one batch at `next_offset()`. A refusal is deterministic:
    /// the same on every replica and in a forecast.
    fn append(&mut self, batch: &[u8]) -> Result<(), ResponseError>;

    /// A batch an idempotent producer sent again, first written at `base_offset`.
    fn duplicate(&mut self, _header: &chronik_log::BatchHeader, _base_offset: i64) {}
}

/// Appends the batches of one produce entry after the idempotent-producer
/// checks; returns the base offset of the first. A duplicate is answered
/// with the offset it was first written at.
///
/// Every failure is a pure function of the entry and the state before it.
/// Batches are checked before any is appended, so an entry the leader should
/// have refused changes nothing; what was appended before a later refusal
/// stays.
pub(crate) fn append_batches(
    sink: &mut impl BatchSink,
    producers: &mut ProducerStates,
    batches: &[u8],
) -> Result<i64, ResponseError> {
    let ranges = chronik_log::frame_batches(batches).map_err(|_| ResponseError::CorruptMessage)?;
    if ranges.is_empty() {
        return Err(ResponseError::CorruptMessage);
    }
    let headers = ranges
        .iter()
        .map(|range| chronik_log::parse_header(&batches[range.clone()]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ResponseError::CorruptMessage)?;
    if ranges.len() > 1 {
        // Several batches (the edge sends one): all are checked before any is
        // appended. A single batch is checked by the append itself.
        for range in &ranges {
            chronik_log::check_appendable(&batches[range.clone()]).map_err(|e| batch_error(&e))?;
        }
    }
    let mut first = None;
    for (range, header) in ranges.into_iter().zip(headers) {
        let base_offset = match producers.check(&header) {
            SequenceCheck::Reject(error) => return Err(error),
            SequenceCheck::Duplicate { base_offset } => {
                sink.duplicate(&header, base_offset);
                first.get_or_insert(base_offset);
                continue;
            }
            SequenceCheck::Append => sink.next_offset(),
        };
        sink.append(&batches[range])?;
        producers.record(&header, base_offset);
        first.get_or_insert(base_offset);
    }
    first.ok_or(ResponseError::CorruptMessage)
}

/// Writes a transaction marker built from `marker` (the same bytes on
/// every replica) and ends the producer's transaction in the partition. A
/// marker of an older producer epoch than the partition knows comes from a
/// fenced coordinator and is refused.
pub(crate) fn append_marker(
    sink: &mut impl BatchSink,
    producers: &mut ProducerStates,
    marker: &Marker,
    log_start_offset: i64,
) -> Result<(), ResponseError> {
    producers.check_marker(marker)?;
    let offset = sink.next_offset();
    sink.append(&marker_batch(marker))?;
    producers.end_transaction(marker, offset, log_start_offset);
    Ok(())
}

/// The partition log as a sink: each batch is stamped with the leader
/// `epoch`, put at the high watermark `next`, noted in the partition's
/// leader epochs, and handed as stored to `on_stored`. A batch already
/// stored there (written when its entry was appended, or before a restart)
/// is only checked; anything else stored there is cut first. An I/O error
/// stops the process (fail-stop).
pub(crate) struct LogSink<'a, F: FnMut(&[u8])> {
    pub partition: &'a Partition,
    pub log: RwLockWriteGuard<'a, PartitionLog>,
    /// The offset the next batch takes: the high watermark as it moves.
    pub next: i64,
    pub epoch: i32,
    /// The batches carry the base offsets their leader assigned
    /// (`AssignedProduce`): each must be the log's next offset.
    pub assigned: bool,
    pub buffer: Vec<u8>,
    /// What was written when the entries were appended.
    pub written: &'a mut BodyWriter,
    pub on_stored: F,
}

impl<F: FnMut(&[u8])> LogSink<'_, F> {
    /// The last offset of the batch of `header`, stamped as apply stamps
    /// it, if it is the one written at `next` when its entry was appended
    /// (that append checked it, so it is not checked again); and whether it
    /// came stamped so (by its leader), so that it needs no copy.
    fn written_as(&mut self, header: BatchHeader) -> Option<(i64, bool)> {
        if self.log.next_offset() <= self.next {
            return None;
        }
        let stamped = BatchHeader {
            base_offset: self.next,
            partition_leader_epoch: self.epoch,
            ..header
        };
        self.written
            .placed(self.partition.group, &stamped)
            .then(|| (self.next + i64::from(stamped.last_offset_delta), stamped == header))
    }

    /// Puts `batch` into `buffer` with the offset and epoch apply gives it.
    fn stamp_into_buffer(&mut self, batch: &[u8]) {
        self.buffer.clear();
        self.buffer.extend_from_slice(batch);
        chronik_log::set_partition_leader_epoch(&mut self.buffer, self.epoch);
        chronik_log::set_base_offset(&mut self.buffer, self.next);
    }

    /// Moves past a batch stored at `next` and ending at `last_offset`.
    fn advance(&mut self, last_offset: i64) {
        self.partition.leader_epochs_mut().record(self.epoch, self.next);
        self.next = last_offset + 1;
    }

    /// Checks the batch in `buffer` and puts it at `next`: found there
    /// (after a restart), or written over whatever else lies there.
    fn store(&mut self) -> Result<i64, LogError> {
        let partition = self.partition;
        let header = chronik_log::check_appendable(&self.buffer)?;
        let stored = match self.log.stored_header(self.next) {
            Ok(stored) => stored,
            Err(e) if e.is_io() => fail_stop(&format!("cannot read {}-{}", partition.topic, partition.index), &e),
            // Damaged: not the batch, and cut below.
            Err(_) => None,
        };
        if stored == Some(header) {
            return Ok(self.next + i64::from(header.last_offset_delta));
        }
        partition.cut_tail(&mut self.log, self.next);
        self.log.append(&mut self.buffer).map(|info| info.last_offset)
    }
}

impl<F: FnMut(&[u8])> BatchSink for LogSink<'_, F> {
    fn next_offset(&self) -> i64 {
        self.next
    }

    fn append(&mut self, batch: &[u8]) -> Result<(), ResponseError> {
        let partition = self.partition;
        if self.assigned {
            let stamped = batch.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes);
            check_assigned(partition, stamped, self.next)?;
        }
        let written = chronik_log::parse_header(batch)
            .ok()
            .and_then(|header| self.written_as(header));
        let stored = match written {
            Some((last_offset, true)) => {
                self.advance(last_offset);
                (self.on_stored)(batch);
                return Ok(());
            }
            Some((last_offset, false)) => {
                self.stamp_into_buffer(batch);
                Ok(last_offset)
            }
            None => {
                self.stamp_into_buffer(batch);
                self.store()
            }
        };
        match stored {
            Ok(last_offset) => {
                self.advance(last_offset);
                (self.on_stored)(&self.buffer);
                Ok(())
            }
            Err(e) if e.is_io() => fail_stop(&format!("cannot append to {}-{}", partition.topic, partition.index), &e),
            Err(e) => {
                // Deterministic (a malformed batch, an offset overflow): the
                // same on every replica.
                tracing::warn!(topic = %partition.topic, partition = partition.index, "batch refused: {e}");
                Err(match e {
                    LogError::Batch(e) => batch_error(&e),
                    _ => ResponseError::InvalidRecord,
                })
            }
        }
    }

    fn duplicate(&mut self, header: &chronik_log::BatchHeader, base_offset: i64) {
        tracing::info!(
            topic = %self.partition.topic,
            partition = self.partition.index,
            producer = header.producer_id,
            sequence = header.base_sequence,
            base_offset,
            "duplicate batch from an idempotent producer; answered with its original offset"
        );
    }
}

/// Checks an offset a leader assigned (`stamped`) against the log's next
/// offset. They differ only through a defect in the forecast; the refusal
/// is the same on every replica, and an acks=all producer retries (an
/// acks=1 one was answered from the forecast, and its batch is lost).
pub(crate) fn check_assigned(
    partition: &Partition,
    stamped: Option<i64>,
    next_offset: i64,
) -> Result<(), ResponseError> {
    if stamped == Some(next_offset) {
        return Ok(());
    }
    tracing::error!(
        topic = %partition.topic,
        partition = partition.index,
        ?stamped,
        next_offset,
        "an entry's assigned offset is not the log's next offset; refused"
    );
    Err(ResponseError::KafkaStorageError)
}

/// Offsets only: what the log would do, for a forecast.
pub(crate) struct OffsetSink {
    pub next_offset: i64,
    /// Per batch seen, in order: the base offset it is appended at (or
    /// would have been, for one the log refuses), or none for a duplicate.
    pub base_offsets: Vec<Option<i64>>,
}

impl OffsetSink {
    pub(crate) fn at(next_offset: i64) -> Self {
        OffsetSink {
            next_offset,
            base_offsets: Vec::new(),
        }
    }
}

impl BatchSink for OffsetSink {
    fn next_offset(&self) -> i64 {
        self.next_offset
    }

    fn duplicate(&mut self, _header: &chronik_log::BatchHeader, _base_offset: i64) {
        self.base_offsets.push(None);
    }

    fn append(&mut self, batch: &[u8]) -> Result<(), ResponseError> {
        // Noted before the checks: a batch the log refuses is stamped too,
        // so that apply reaches the log's refusal and not a stamp mismatch.
        self.base_offsets.push(Some(self.next_offset));
        // The log's own checks, in its order: the batch, then the offsets.
        let header = chronik_log::check_appendable(batch).map_err(|e| batch_error(&e))?;
        let last = self
            .next_offset
            .checked_add(i64::from(header.last_offset_delta))
            .filter(|&last| last < i64::MAX)
            .ok_or(ResponseError::InvalidRecord)?;
        self.next_offset = last + 1;
        Ok(())
    }
}
