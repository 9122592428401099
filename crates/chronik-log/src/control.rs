//! Transaction control batches (KIP-98): the commit and abort markers a
//! transaction coordinator has written into each partition it touched, and
//! the aborted transactions a partition remembers for read_committed
//! consumers and the cleaner.
//!
//! A marker is a batch of one control record, with the transactional and
//! control attributes set and the producer's id and epoch. Its key is
//! `version: i16 = 0, type: i16` (0 abort, 1 commit); its value is
//! `version: i16 = 0, coordinator_epoch: i32`.

use serde::{Deserialize, Serialize};

use crate::batch::{BATCH_HEADER_LEN, BatchHeader, CONTROL_FLAG, TRANSACTIONAL_FLAG, rebuild_batch};

/// What a marker ends a transaction with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub timestamp: i64,
}

/// One aborted transaction of a partition: its producer, and the offsets
/// from its first record to its abort marker. read_committed consumers
/// skip that producer's transactional batches in the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl AbortedTxn {
    /// Whether `header` is a data batch of this transaction.
    pub fn covers(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && header.producer_id == self.producer_id
            && (self.first_offset..=self.last_offset).contains(&header.base_offset)
    }
}

/// Whether `header` is a data batch of one of the `aborted` transactions.
pub fn is_aborted(aborted: &[AbortedTxn], header: &BatchHeader) -> bool {
    header.is_transactional() && !header.is_control() && aborted.iter().any(|a| a.covers(header))
}

/// The marker as a batch at base offset 0 (the log assigns the real one).
pub fn marker_batch(marker: &Marker) -> Vec<u8> {
    let kind: i16 = if marker.commit { 1 } else { 0 };
    let mut record = Vec::with_capacity(17);
    // length, attributes, timestamp delta, offset delta, key, value, headers;
    // every varint below is zigzag-encoded and fits one byte.
    record.extend_from_slice(&[16 << 1, 0, 0, 0, 4 << 1]);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&kind.to_be_bytes());
    record.push(6 << 1);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    record.push(0);
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: TRANSACTIONAL_FLAG | CONTROL_FLAG,
        last_offset_delta: 0,
        base_timestamp: marker.timestamp,
        max_timestamp: marker.timestamp,
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        base_sequence: -1,
        record_count: 1,
    };
    rebuild_batch(&header, header.attributes, marker.timestamp, &record)
}

/// Whether a control batch commits (true) or aborts (false) its producer's
/// transaction; `None` if it is no transaction marker.
pub fn marker_commits(batch: &[u8], header: &BatchHeader) -> Option<bool> {
    if !header.is_control() || header.record_count != 1 {
        return None;
    }
    let section = batch.get(BATCH_HEADER_LEN..)?;
    let record = crate::records::walk(section, 1).ok()?.into_iter().next()?;
    match record.key? {
        [0, 0, 0, 0] => Some(false),
        [0, 0, 0, 1] => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_valid_control_batches_that_read_back() {
        for commit in [true, false] {
            let marker = Marker {
                producer_id: 42,
                producer_epoch: 3,
                commit,
                coordinator_epoch: 7,
                timestamp: 1_700_000_000_000,
            };
            let batch = marker_batch(&marker);
            let header = crate::check_appendable(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(marker_commits(&batch, &header), Some(commit));
            // kafka-protocol, as clients do, reads it as a control record.
            let mut bytes = bytes::Bytes::from(batch);
            let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap();
            let record = &sets[0].records[0];
            assert!(record.control && record.transactional);
            assert_eq!(record.key.as_deref(), Some(&[0, 0, 0, u8::from(commit)][..]));
        }
    }

    #[test]
    fn data_batches_are_no_markers_and_aborted_ranges_cover_their_producer_only() {
        let mut batch = crate::testing::build_batch(2, 0, 10);
        crate::testing::set_producer(&mut batch, 5, 0, 0);
        let mut header = crate::parse_header(&batch).unwrap();
        assert_eq!(marker_commits(&batch, &header), None);
        header.attributes |= TRANSACTIONAL_FLAG;
        header.base_offset = 10;
        let aborted = [AbortedTxn {
            producer_id: 5,
            first_offset: 10,
            last_offset: 20,
        }];
        assert!(is_aborted(&aborted, &header));
        header.producer_id = 6;
        assert!(!is_aborted(&aborted, &header));
        header.producer_id = 5;
        header.base_offset = 21;
        assert!(!is_aborted(&aborted, &header));
    }
}
