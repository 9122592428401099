//! The encoding of partition-group Raft entries.
//!
//! A proposer builds `Produce` and `TxnMarker`. The leader's forecast turns
//! each one it judged into its assigned form before it enters the log
//! (`assign_produce`, `assign_marker`): the offsets it will take are in the
//! entry, so every replica checks them at apply, and a batch in the entry
//! is byte for byte what the partition log stores.

use bytes::{Buf, BufMut};
use chronik_log::control::Marker;

const PRODUCE: u8 = 1;
const DELETE_RECORDS: u8 = 2;
const TXN_MARKER: u8 = 3;
const ASSIGNED_PRODUCE: u8 = 4;
const ASSIGNED_TXN_MARKER: u8 = 5;
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
    /// Record batches as a leader judged them: each batch it will append
    /// carries its base offset and the leader epoch in its header (both
    /// outside the CRC); a duplicate or a batch after a refusal is as sent.
    AssignedProduce { batches: &'a [u8] },
    /// A transaction marker the leader will write at `offset`.
    AssignedTxnMarker { marker: Marker, offset: i64 },
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
                let mut out = Vec::with_capacity(1 + TXN_MARKER_LEN + 8);
                out.put_u8(TXN_MARKER);
                put_marker(&mut out, marker);
                out
            }
            PartitionCommand::AssignedProduce { batches } => {
                let mut out = Vec::with_capacity(1 + batches.len());
                out.put_u8(ASSIGNED_PRODUCE);
                out.put_slice(batches);
                out
            }
            PartitionCommand::AssignedTxnMarker { marker, offset } => {
                let mut out = Vec::with_capacity(1 + TXN_MARKER_LEN + 8);
                out.put_u8(ASSIGNED_TXN_MARKER);
                put_marker(&mut out, marker);
                out.put_i64(*offset);
                out
            }
        }
    }

    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (&tag, mut rest) = data.split_first()?;
        match tag {
            PRODUCE => Some(PartitionCommand::Produce { batches: rest }),
            ASSIGNED_PRODUCE => Some(PartitionCommand::AssignedProduce { batches: rest }),
            DELETE_RECORDS if rest.len() == 8 => Some(PartitionCommand::DeleteRecords { offset: rest.get_i64() }),
            TXN_MARKER if rest.len() == TXN_MARKER_LEN => get_marker(&mut rest).map(PartitionCommand::TxnMarker),
            ASSIGNED_TXN_MARKER if rest.len() == TXN_MARKER_LEN + 8 => {
                let marker = get_marker(&mut rest)?;
                Some(PartitionCommand::AssignedTxnMarker {
                    marker,
                    offset: rest.get_i64(),
                })
            }
            _ => None,
        }
    }
}

fn put_marker(out: &mut Vec<u8>, marker: &Marker) {
    out.put_i64(marker.producer_id);
    out.put_i16(marker.producer_epoch);
    out.put_u8(u8::from(marker.commit));
    out.put_i32(marker.coordinator_epoch);
    out.put_i64(marker.timestamp);
}

fn get_marker(rest: &mut &[u8]) -> Option<Marker> {
    let producer_id = rest.get_i64();
    let producer_epoch = rest.get_i16();
    let commit = match rest.get_u8() {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some(Marker {
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch: rest.get_i32(),
        timestamp: rest.get_i64(),
    })
}

/// Turns an encoded `Produce` entry into `AssignedProduce` in place: the
/// batch at position i gets `base_offsets[i]` (none for a batch the leader
/// will not append) and `epoch`. The forecast assigns only produce
/// entries it has framed; anything else is left as it is.
pub fn assign_produce(entry: &mut [u8], base_offsets: &[Option<i64>], epoch: i32) {
    let Some((tag @ &mut PRODUCE, batches)) = entry.split_first_mut() else {
        debug_assert!(false, "only a produce entry is assigned");
        return;
    };
    let Ok(ranges) = chronik_log::frame_batches(batches) else {
        debug_assert!(false, "a judged entry is framed");
        return;
    };
    *tag = ASSIGNED_PRODUCE;
    let mut assigned = base_offsets.iter();
    for range in ranges {
        match assigned.next().copied().flatten() {
            Some(base_offset) => {
                chronik_log::set_base_offset(&mut batches[range.clone()], base_offset);
                chronik_log::set_partition_leader_epoch(&mut batches[range], epoch);
            }
            // Not appended (a duplicate, or after a refusal): marked so, so
            // that whoever writes the entry's batches at append skips it.
            None => chronik_log::set_base_offset(&mut batches[range], UNASSIGNED),
        }
    }
}

/// The base offset of a batch in an assigned entry that is not appended.
pub const UNASSIGNED: i64 = -1;

/// Turns an encoded `TxnMarker` entry into `AssignedTxnMarker` at
/// `offset`; anything else is left as it is.
pub fn assign_marker(entry: &mut Vec<u8>, offset: i64) {
    if entry.first() != Some(&TXN_MARKER) || entry.len() != 1 + TXN_MARKER_LEN {
        debug_assert!(false, "only a marker entry is assigned");
        return;
    }
    entry[0] = ASSIGNED_TXN_MARKER;
    entry.put_i64(offset);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: Marker = Marker {
        producer_id: 7,
        producer_epoch: 2,
        commit: true,
        coordinator_epoch: 3,
        timestamp: 99,
    };

    #[test]
    fn round_trips() {
        for command in [
            PartitionCommand::Produce { batches: b"abc" },
            PartitionCommand::DeleteRecords { offset: 42 },
            PartitionCommand::TxnMarker(MARKER),
            PartitionCommand::AssignedProduce { batches: b"abc" },
            PartitionCommand::AssignedTxnMarker {
                marker: MARKER,
                offset: 12,
            },
        ] {
            assert_eq!(PartitionCommand::decode(&command.encode()), Some(command));
        }
        assert_eq!(PartitionCommand::decode(&[]), None);
        assert_eq!(PartitionCommand::decode(&[2, 1]), None);
        assert_eq!(PartitionCommand::decode(&[9]), None);
    }

    #[test]
    fn assigning_stamps_the_appended_batches_only() {
        let one = chronik_log::testing::build_batch(2, 1_700_000_000_000, 8);
        let batches = [one.clone(), one.clone(), one.clone(), one].concat();
        let mut entry = PartitionCommand::Produce { batches: &batches }.encode();
        // The fourth batch was not reached (the list stops after a refusal).
        assign_produce(&mut entry, &[Some(40), None, Some(42)], 5);
        let Some(PartitionCommand::AssignedProduce { batches: assigned }) = PartitionCommand::decode(&entry) else {
            panic!("not an assigned produce entry");
        };
        let headers: Vec<_> = chronik_log::frame_batches(assigned)
            .unwrap()
            .into_iter()
            .map(|range| chronik_log::validate_batch(&assigned[range]).unwrap())
            .collect();
        let stamps: Vec<_> = headers
            .iter()
            .map(|h| (h.base_offset, h.partition_leader_epoch))
            .collect();
        let (_, unstamped_epoch) = stamps[1];
        assert_eq!(
            stamps,
            [
                (40, 5),
                (UNASSIGNED, unstamped_epoch),
                (42, 5),
                (UNASSIGNED, unstamped_epoch)
            ]
        );

        let mut entry = PartitionCommand::TxnMarker(MARKER).encode();
        let capacity = entry.capacity();
        assign_marker(&mut entry, 77);
        assert_eq!(entry.capacity(), capacity, "assigning a marker does not reallocate");
        assert_eq!(
            PartitionCommand::decode(&entry),
            Some(PartitionCommand::AssignedTxnMarker {
                marker: MARKER,
                offset: 77
            })
        );
    }
}
