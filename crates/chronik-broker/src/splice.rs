//! Encodes a Fetch response whose records stay in the segment files.
//!
//! `kafka-protocol` encodes the response with a placeholder in each
//! partition's records: a slice of static zeros, of the records' length, at
//! an address no other placeholder of the response starts at. The buffer it
//! encodes into recognises each placeholder by its address as it is put,
//! notes where it belongs and copies nothing, so the frame comes out as the
//! encoded bytes with the partitions' file ranges between them.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::LazyLock;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use chronik_log::StoredBatches;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::frame::{Frame, Part};

/// What placeholders point into; never read. Allocated zeroed, so the
/// kernel maps its pages only if something touches them (a static array
/// would sit in the binary).
static ZEROS: LazyLock<Box<[u8]>> = LazyLock::new(|| vec![0; PLACEHOLDER_SPACE].into_boxed_slice());
const PLACEHOLDER_SPACE: usize = 64 << 20;

/// The records of one partition of a Fetch response.
pub struct PartitionRecords {
    /// Index of the topic in the response.
    pub topic: usize,
    /// Index of the partition within its topic.
    pub partition: usize,
    pub batches: StoredBatches,
}

/// Encodes `response` with header v`header_version`, with the records of
/// `records` spliced in from their files.
pub fn encode_fetch(
    header: &ResponseHeader,
    header_version: i16,
    mut response: FetchResponse,
    version: i16,
    records: Vec<PartitionRecords>,
) -> anyhow::Result<Frame> {
    let mut buf = SpliceBuf::default();
    let mut spliced = Vec::with_capacity(records.len());
    for (
        n,
        PartitionRecords {
            topic,
            partition,
            batches,
        },
    ) in records.into_iter().enumerate()
    {
        let data = response
            .responses
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition))
            .ok_or_else(|| {
                anyhow::anyhow!("records for partition {partition} of topic {topic}, not in the response")
            })?;
        let len = batches.len();
        match placeholder(n, len) {
            Some(zeros) => {
                buf.expected.push_back((zeros.as_ptr() as usize, len));
                data.records = Some(Bytes::from_static(zeros));
                spliced.push(batches);
            }
            // More than the placeholders can stand for: read it now.
            None => match batches.read() {
                Ok(bytes) => data.records = Some(bytes),
                Err(e) => {
                    tracing::error!(partition = data.partition_index, "read failed: {e}");
                    data.records = Some(Bytes::new());
                    data.error_code = ResponseError::KafkaStorageError.code();
                }
            },
        }
    }
    header.encode(&mut buf, header_version)?;
    response.encode(&mut buf, version)?;
    // Every placeholder must have been recognised, or the frame would
    // carry zeros where records belong.
    anyhow::ensure!(
        buf.expected.is_empty() && buf.positions.len() == spliced.len(),
        "a records placeholder was encoded as bytes"
    );
    // Fetch's encoding never goes back over what it wrote (no gaps), so the
    // positions noted are still where the records belong.
    anyhow::ensure!(
        buf.positions.is_sorted() && buf.positions.last().is_none_or(|p| *p <= buf.buf.len()),
        "the encoding moved back over a records placeholder"
    );
    let mut encoded = buf.buf.freeze();
    let mut parts = Vec::with_capacity(spliced.len() * 2 + 1);
    let mut taken = 0;
    for (position, batches) in buf.positions.into_iter().zip(spliced) {
        parts.push(Part::Bytes(encoded.split_to(position - taken)));
        taken = position;
        parts.extend(batches.ranges().iter().cloned().map(Part::File));
    }
    parts.push(Part::Bytes(encoded));
    Ok(Frame::from_parts(parts))
}

/// The `n`th placeholder of a response, for `len` bytes of records.
fn placeholder(n: usize, len: usize) -> Option<&'static [u8]> {
    let zeros: &'static [u8] = &ZEROS;
    zeros.get(n..n.checked_add(len)?).filter(|_| len > 0)
}

#[derive(Default)]
struct SpliceBuf {
    buf: BytesMut,
    /// Address and length of each placeholder still to come, in encoding
    /// order.
    expected: VecDeque<(usize, usize)>,
    /// Where in `buf` each recognised placeholder's records belong.
    positions: Vec<usize>,
}

// SAFETY: every method forwards to the `BytesMut`, which keeps the
// contract; `put_slice` only decides whether to forward.
unsafe impl BufMut for SpliceBuf {
    fn remaining_mut(&self) -> usize {
        self.buf.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.buf.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.buf.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if self.expected.front() == Some(&(src.as_ptr() as usize, src.len())) {
            self.expected.pop_front();
            self.positions.push(self.buf.len());
        } else {
            self.buf.put_slice(src);
        }
    }
}

impl ByteBufMut for SpliceBuf {
    fn offset(&self) -> usize {
        self.buf.offset()
    }

    fn seek(&mut self, offset: usize) {
        self.buf.seek(offset)
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        self.buf.range(r)
    }
}

#[cfg(test)]
mod tests {
    use chronik_log::{LogConfig, PartitionLog, testing::build_batch};
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, ResponseKind, TopicName};

    use super::*;
    use crate::codec;

    fn log_with_batches(dir: &std::path::Path, count: usize) -> PartitionLog {
        let config = LogConfig {
            segment_bytes: 2_000,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir, config).unwrap();
        for i in 0..count {
            log.append(&mut build_batch(1 + i as u32 % 3, 1_000, 100 + i)).unwrap();
        }
        log
    }

    /// The spliced frame carries the same bytes as the response encoded
    /// with its records read into memory, in every Fetch version's form
    /// (int32 lengths before v12, compact after), with empty partitions
    /// and errors among the ones with records.
    #[test]
    fn a_spliced_frame_equals_the_response_encoded_in_memory() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let logs = [
            log_with_batches(dirs[0].path(), 40),
            log_with_batches(dirs[1].path(), 5),
        ];
        let stored = [
            logs[0].stored_within(3, usize::MAX, true).unwrap(),
            logs[1].stored_within(0, 700, true).unwrap(),
        ];
        assert!(stored[0].ranges().len() > 1, "spans segments");
        let partition = |index: i32| {
            PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(9)
        };
        let response = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName("a".into()))
                .with_partitions(vec![partition(0), partition(1).with_error_code(1), partition(2)]),
            FetchableTopicResponse::default()
                .with_topic(TopicName("b".into()))
                .with_partitions(vec![partition(0)]),
        ]);
        for version in [4, 7, 11, 12] {
            let records = vec![
                PartitionRecords {
                    topic: 0,
                    partition: 0,
                    batches: stored[0].clone(),
                },
                PartitionRecords {
                    topic: 1,
                    partition: 0,
                    batches: stored[1].clone(),
                },
            ];
            let frame = codec::encode_fetch(7, version, response.clone(), records).unwrap();
            let mut inline = response.clone();
            inline.responses[0].partitions[0].records = Some(stored[0].read().unwrap());
            inline.responses[1].partitions[0].records = Some(stored[1].read().unwrap());
            let expected = codec::encode(7, ApiKey::Fetch, version, ResponseKind::Fetch(inline)).unwrap();
            assert_eq!(frame.to_bytes().unwrap(), expected.to_bytes().unwrap(), "v{version}");
            assert_eq!(frame.len(), expected.len());
        }
    }

    /// Each placeholder starts at its own address and lies within the
    /// zeros; records that would not fit are read into the frame instead.
    #[test]
    fn placeholders_start_apart_within_the_zeros() {
        let a = placeholder(0, 10).unwrap();
        let b = placeholder(1, 10).unwrap();
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_eq!(
            placeholder(0, PLACEHOLDER_SPACE).map(<[u8]>::len),
            Some(PLACEHOLDER_SPACE)
        );
        assert!(placeholder(1, PLACEHOLDER_SPACE).is_none());
        assert!(placeholder(2, 0).is_none(), "empty records need none");
    }
}
