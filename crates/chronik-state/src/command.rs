//! The encoding of partition-group Raft entries.

use bytes::{Buf, BufMut};
use chronik_log::control::Marker;

const PRODUCE: u8 = 1;
const DELETE_RECORDS: u8 = 2;
const TXN_MARKER: u8 = 3;
/// Producer id, epoch, commit, coordinator epoch, timestamp.
const TXN_MARKER_LEN: usize = 8 + 2 + 1 + 4 + 8;

/// A change to one partition, as carried by its Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionCommand<'a> {
    /// Record batches, validated, exactly as the producer sent them.
    Produce { batches: &'a [u8] },
    /// Move the log start offset up to `offset`.
    DeleteRecords { offset: i64 },
    /// End a producer's transaction in this partition with a control batch
    /// built at apply, the same on every replica.
    TxnMarker(Marker),
}

impl<'a> PartitionCommand<'a> {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            PartitionCommand::Produce { batches } => {
                let mut out = Vec::with_capacity(1 + batches.len());
                out.put_u8(PRODUCE);
                out.put_slice(batches);
                out
            }
            PartitionCommand::DeleteRecords { offset } => {
                let mut out = Vec::with_capacity(9);
                out.put_u8(DELETE_RECORDS);
                out.put_i64(*offset);
                out
            }
            PartitionCommand::TxnMarker(marker) => {
                let mut out = Vec::with_capacity(1 + TXN_MARKER_LEN);
                out.put_u8(TXN_MARKER);
                out.put_i64(marker.producer_id);
                out.put_i16(marker.producer_epoch);
                out.put_u8(u8::from(marker.commit));
                out.put_i32(marker.coordinator_epoch);
                out.put_i64(marker.timestamp);
                out
            }
        }
    }

    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (&tag, mut rest) = data.split_first()?;
        match tag {
            PRODUCE => Some(PartitionCommand::Produce { batches: rest }),
            DELETE_RECORDS if rest.len() == 8 => Some(PartitionCommand::DeleteRecords { offset: rest.get_i64() }),
            TXN_MARKER if rest.len() == TXN_MARKER_LEN => {
                let producer_id = rest.get_i64();
                let producer_epoch = rest.get_i16();
                let commit = match rest.get_u8() {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                Some(PartitionCommand::TxnMarker(Marker {
                    producer_id,
                    producer_epoch,
                    commit,
                    coordinator_epoch: rest.get_i32(),
                    timestamp: rest.get_i64(),
                }))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for command in [
            PartitionCommand::Produce { batches: b"abc" },
            PartitionCommand::DeleteRecords { offset: 42 },
            PartitionCommand::TxnMarker(Marker {
                producer_id: 7,
                producer_epoch: 2,
                commit: true,
                coordinator_epoch: 3,
                timestamp: 99,
            }),
        ] {
            assert_eq!(PartitionCommand::decode(&command.encode()), Some(command));
        }
        assert_eq!(PartitionCommand::decode(&[]), None);
        assert_eq!(PartitionCommand::decode(&[2, 1]), None);
        assert_eq!(PartitionCommand::decode(&[9]), None);
    }
}
