//! One write per record: a data partition's batches go into its segments
//! when their Raft entry is appended, and the Raft log keeps a reference to
//! them instead of the bytes (docs/ARCHITECTURE.md, "One write per record").
//!
//! The writer keeps a tail per partition: the last Raft index it wrote and
//! where the segments end. While a partition has one, its segments hold,
//! from the high watermark to their end, exactly the batches of the Raft
//! log's entries after the applied index, in log order; apply then finds
//! each batch in place and only moves the high watermark. The writer drops
//! the tail when it cannot keep that promise: a new leader's entries
//! replace some of this node's, or an entry carries no offsets it can place.
//! Those entries stay whole in the Raft log and apply writes their batches,
//! as before this level. A tail is taken again once everything in the Raft
//! log is applied.
//!
//! A reference names bytes that were made durable before the reference was
//! written (`sync`), and bytes a reference may name are never cut: a tail is
//! taken (cutting what lies past the high watermark) only when the Raft log
//! holds nothing unapplied, and apply cuts only where the bytes differ from
//! the entry it applies, which no referenced entry's do.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chronik_log::control::marker_batch;
use chronik_log::{BatchHeader, LogError, PartitionLog};
use chronik_raft::{Appending, Bodies, Body, GroupId, fail_stop};

use super::SharedState;
use crate::command::{PartitionCommand, UNASSIGNED};
use crate::leader_epochs::epoch_of_term;
use crate::partition::Partition;
use crate::test_hooks::crash_point;

/// Where the writer stands in one partition.
struct Tail {
    /// The last Raft index written.
    last_index: u64,
    /// The segments' end: the offset after the batches written.
    end: i64,
    /// The headers of the batches written and not yet applied, in order:
    /// apply finds each in place without reading the segment.
    written: VecDeque<BatchHeader>,
}

#[derive(Default)]
pub(crate) struct BodyWriter {
    tails: HashMap<GroupId, Tail>,
    /// Partitions written since the last `sync`.
    unsynced: Vec<Arc<Partition>>,
}

impl BodyWriter {
    /// Writes the batches of `entries` (appended after `last_index`) into
    /// `partition`'s segments where it can, and returns the references the
    /// Raft log stores for the entries whose bytes are all there.
    pub(crate) fn keep(
        &mut self,
        partition: &Arc<Partition>,
        applied: u64,
        last_index: u64,
        entries: &[Appending<'_>],
    ) -> Vec<Option<Vec<u8>>> {
        let group = partition.group;
        let Some(first) = entries.first().map(|e| e.index) else {
            return Vec::new();
        };
        let mut log = partition.log_mut();
        let follows = first == last_index + 1
            && self
                .tails
                .get(&group)
                .is_some_and(|t| t.last_index == last_index && t.end == log.next_offset());
        if !follows {
            self.tails.remove(&group);
            if first != last_index + 1 || last_index != applied {
                // Entries are replaced, or some are not applied yet: their
                // batches may lie past the high watermark, and only apply
                // can tell which are right.
                return Vec::new();
            }
            // Everything in the Raft log is applied: whatever lies past the
            // high watermark belongs to no entry.
            let end = partition.high_watermark();
            partition.cut_tail(&mut log, end);
            self.tails.insert(
                group,
                Tail {
                    last_index,
                    end,
                    written: VecDeque::new(),
                },
            );
        }
        let Some(tail) = self.tails.get_mut(&group) else {
            return Vec::new();
        };
        let mut references = Vec::with_capacity(entries.len());
        let mut wrote = false;
        for entry in entries {
            match write_entry(partition, &mut log, tail, entry) {
                Written::Nothing => references.push(None),
                Written::Batches { end, reference } => {
                    wrote = true;
                    tail.end = end;
                    references.push(reference);
                }
                Written::Unplaceable => {
                    wrote = true;
                    self.tails.remove(&group);
                    break;
                }
            }
            tail.last_index = entry.index;
        }
        if wrote && !self.unsynced.iter().any(|p| Arc::ptr_eq(p, partition)) {
            self.unsynced.push(partition.clone());
        }
        references
    }

    /// Makes everything written since the last call durable: one
    /// partition's segment with its own fdatasync, several with one
    /// `syncfs` of the file system they share (0.92 ms for 12 files here,
    /// where 12 fdatasyncs issued at once took 1.43 ms; see
    /// `bench/fsync_files.py`).
    pub(crate) fn sync(&mut self) {
        if self.unsynced.is_empty() {
            return;
        }
        let fail = |partition: &Partition, e: &dyn std::error::Error| -> ! {
            fail_stop(&format!("cannot sync {}-{}", partition.topic, partition.index), e)
        };
        let mut handles = Vec::with_capacity(self.unsynced.len());
        for partition in self.unsynced.drain(..) {
            let handle = {
                let mut log = partition.log_mut();
                log.sync_handle().map(|file| (file, log.next_offset()))
            };
            match handle {
                Ok((file, end)) => handles.push((partition, file, end)),
                Err(e) => fail(&partition, &e),
            }
        }
        let synced = match handles.as_slice() {
            [(_, file, _)] => file.sync_data(),
            [(_, file, _), ..] => rustix::fs::syncfs(file).map_err(std::io::Error::from),
            [] => Ok(()),
        };
        for (partition, _, end) in handles {
            if let Err(e) = &synced {
                fail(&partition, e);
            }
            partition.note_synced(end);
            // Durable in the segment, not yet in the Raft log.
            crash_point(|| format!("bodies-synced:{}:{end}", partition.topic));
        }
    }

    /// Stops writing `group` at append: its state was replaced or removed,
    /// or apply did something the writer did not foresee.
    pub(crate) fn forget(&mut self, group: GroupId) {
        self.tails.remove(&group);
    }

    /// Whether the batch apply is about to place next in `group` is the one
    /// written next at append (so it is in place). Anything else means
    /// apply and the writer disagree, and the writer stops.
    pub(crate) fn placed(&mut self, group: GroupId, header: &BatchHeader) -> bool {
        let Some(tail) = self.tails.get_mut(&group) else {
            return false;
        };
        if tail.written.pop_front().as_ref() == Some(header) {
            return true;
        }
        self.tails.remove(&group);
        false
    }
}

enum Written {
    /// The entry carries no batches.
    Nothing,
    /// Its batches were written; the segments now end at `end`. The
    /// reference stands for the entry if all its bytes are in place.
    Batches { end: i64, reference: Option<Vec<u8>> },
    /// Its batches cannot be placed: they carry no offsets, or not `end`.
    /// What was written of it is left to apply.
    Unplaceable,
}

/// Writes the batches `entry` carries at the tail's end, the log's end.
fn write_entry(partition: &Partition, log: &mut PartitionLog, tail: &mut Tail, entry: &Appending<'_>) -> Written {
    if !entry.normal || entry.data.is_empty() {
        return Written::Nothing;
    }
    let end = tail.end;
    let written = &mut tail.written;
    // The batch already carries its offset and epoch: it goes in as it is,
    // and its header (checked, CRC included, as it went in) is returned.
    let mut append = |log: &mut PartitionLog, batch: &[u8]| match log.append_assigned(batch) {
        Ok(info) => {
            // Apply compares the header.
            written.push_back(info.header);
            Some((info.last_offset + 1, info.header))
        }
        Err(e) if e.is_io() => fail_stop(&format!("cannot append to {}-{}", partition.topic, partition.index), &e),
        // Apply refuses it the same way.
        Err(_) => None,
    };
    match PartitionCommand::decode(entry.data) {
        Some(PartitionCommand::AssignedProduce { batches }) => {
            let Ok(ranges) = chronik_log::frame_batches(batches) else {
                return Written::Nothing;
            };
            let mut next = end;
            let mut whole = true;
            // The entry's CRC, built from each batch's own as it is checked.
            let mut crc = entry.data.split_first().map(|(tag, _)| crc32c::crc32c(&[*tag]));
            for range in ranges {
                let batch = &batches[range];
                match base_offset(batch) {
                    UNASSIGNED => whole = false,
                    stamped if stamped != next => return Written::Unplaceable,
                    _ => match append(log, batch) {
                        Some((after, header)) => {
                            next = after;
                            crc = crc.and_then(|crc| chronik_log::extend_crc_over_checked(crc, batch, &header));
                        }
                        None => {
                            whole = false;
                            break;
                        }
                    },
                }
            }
            let reference = crc
                .filter(|_| whole)
                .and_then(|crc| Reference::of(entry.data, end, crc))
                .map(|r| r.encode());
            Written::Batches { end: next, reference }
        }
        Some(PartitionCommand::AssignedTxnMarker { marker, offset }) => {
            if offset != end {
                return Written::Unplaceable;
            }
            let mut batch = marker_batch(&marker);
            chronik_log::set_base_offset(&mut batch, offset);
            chronik_log::set_partition_leader_epoch(&mut batch, epoch_of_term(entry.term));
            match append(log, &batch) {
                Some((after, _)) => Written::Batches {
                    end: after,
                    reference: None,
                },
                None => Written::Unplaceable,
            }
        }
        // Offsets assigned at apply: only apply can place them.
        Some(PartitionCommand::Produce { .. } | PartitionCommand::TxnMarker(_)) => Written::Unplaceable,
        Some(PartitionCommand::DeleteRecords { .. }) | None => Written::Nothing,
    }
}

fn base_offset(batch: &[u8]) -> i64 {
    batch
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(UNASSIGNED, i64::from_be_bytes)
}

/// What the Raft log stores for an entry whose batches are in the segments:
/// the entry's tag, where its batches start and how long they are, and a
/// checksum of the whole entry, so that a body read back is the one written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reference {
    tag: u8,
    offset: i64,
    len: u32,
    crc: u32,
}

const REFERENCE_LEN: usize = 1 + 8 + 4 + 4;

impl Reference {
    /// `data` is an entry of a tag byte and batches that start at
    /// `offset`, and `crc` its CRC32C; none for one too long to name
    /// (entries are far shorter).
    fn of(data: &[u8], offset: i64, crc: u32) -> Option<Reference> {
        debug_assert_eq!(crc, crc32c::crc32c(data), "the entry's own CRC");
        let (&tag, batches) = data.split_first()?;
        Some(Reference {
            tag,
            offset,
            len: u32::try_from(batches.len()).ok()?,
            crc,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REFERENCE_LEN);
        out.push(self.tag);
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Reference> {
        if bytes.len() != REFERENCE_LEN {
            return None;
        }
        Some(Reference {
            tag: bytes[0],
            offset: i64::from_be_bytes(bytes[1..9].try_into().ok()?),
            len: u32::from_be_bytes(bytes[9..13].try_into().ok()?),
            crc: u32::from_be_bytes(bytes[13..17].try_into().ok()?),
        })
    }
}

/// Reads one partition's references back from its segments.
pub(crate) struct SegmentBodies {
    pub shared: Arc<SharedState>,
    pub group: GroupId,
}

impl Bodies for SegmentBodies {
    fn read(&self, reference: &[u8]) -> Result<Body, String> {
        let reference = Reference::decode(reference).ok_or("not a reference")?;
        let partition = self.shared.partition(self.group).ok_or("the partition is gone")?;
        match read_body(&partition, &reference) {
            Ok(body) => Ok(Body::Whole(body)),
            // Below the last checkpoint: retention or the cleaner may have
            // taken it since, and a restart does not apply it again.
            Err(_) if reference.offset < partition.durable_end() => Ok(Body::Applied),
            Err(why) => Err(why),
        }
    }
}

/// The entry `reference` stands for, from the segments (below the log
/// start too: DeleteRecords moves it past batches a replay applies).
fn read_body(partition: &Partition, reference: &Reference) -> Result<Vec<u8>, String> {
    let len = reference.len as usize;
    let stored = partition
        .log()
        .stored_regardless_of_start(reference.offset, len)
        .map_err(|e: LogError| e.to_string())?;
    if stored.headers().first().map(|h| h.base_offset) != Some(reference.offset) || stored.len() != len {
        return Err(format!("no batches of {len} bytes at offset {}", reference.offset));
    }
    let mut body = Vec::with_capacity(1 + len);
    body.push(reference.tag);
    for range in stored.ranges() {
        range.read_into(&mut body).map_err(|e| e.to_string())?;
    }
    if crc32c::crc32c(&body) != reference.crc {
        return Err(format!(
            "the batches at offset {} are not the entry's",
            reference.offset
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip() {
        let reference = Reference::of(&[7, 1, 2, 3], 42, crc32c::crc32c(&[7, 1, 2, 3])).unwrap();
        assert_eq!(reference.len, 3);
        assert_eq!(Reference::decode(&reference.encode()), Some(reference));
        assert_eq!(Reference::decode(&[7, 1]), None);
    }
}
