//! The encoding of partition-group Raft entries.

use bytes::{Buf, BufMut};

const PRODUCE: u8 = 1;
const DELETE_RECORDS: u8 = 2;

/// A change to one partition, as carried by its Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionCommand<'a> {
    /// Record batches, validated, exactly as the producer sent them.
    Produce { batches: &'a [u8] },
    /// Move the log start offset up to `offset`.
    DeleteRecords { offset: i64 },
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
        }
    }

    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (&tag, mut rest) = data.split_first()?;
        match tag {
            PRODUCE => Some(PartitionCommand::Produce { batches: rest }),
            DELETE_RECORDS if rest.len() == 8 => Some(PartitionCommand::DeleteRecords { offset: rest.get_i64() }),
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
        ] {
            assert_eq!(PartitionCommand::decode(&command.encode()), Some(command));
        }
        assert_eq!(PartitionCommand::decode(&[]), None);
        assert_eq!(PartitionCommand::decode(&[2, 1]), None);
        assert_eq!(PartitionCommand::decode(&[9]), None);
    }
}
