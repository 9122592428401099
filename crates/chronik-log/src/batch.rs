//! Kafka record batch v2 framing: header parsing, validation and splitting.
//!
//! The log only ever looks at batch headers. Records (possibly compressed)
//! are opaque bytes protected by the batch CRC.
//!
//! Layout (big endian):
//!
//! | offset | field                |
//! |-------:|----------------------|
//! | 0      | baseOffset i64       |
//! | 8      | batchLength i32      |
//! | 12     | partitionLeaderEpoch i32 |
//! | 16     | magic i8 (= 2)       |
//! | 17     | crc u32 (CRC-32C of bytes 21..end) |
//! | 21     | attributes i16       |
//! | 23     | lastOffsetDelta i32  |
//! | 27     | baseTimestamp i64    |
//! | 35     | maxTimestamp i64     |
//! | 43     | producerId i64       |
//! | 51     | producerEpoch i16    |
//! | 53     | baseSequence i32     |
//! | 57     | recordCount i32      |
//! | 61     | records ...          |

use std::ops::Range;

/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_LEN: usize = 61;

/// `batchLength` counts the bytes after itself: the whole batch is this much longer.
const LENGTH_PREFIX_LEN: usize = 12;

/// Smallest legal `batchLength`: a header with no records.
const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LENGTH_PREFIX_LEN) as i32;

/// The only batch format the log accepts.
const MAGIC_V2: i8 = 2;

/// Highest known compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
const MAX_COMPRESSION_CODEC: u8 = 4;

/// The CRC covers everything from the attributes to the end of the batch,
/// so `baseOffset` and `partitionLeaderEpoch` can be rewritten by the log.
const CRC_START: usize = 21;

const COMPRESSION_MASK: i16 = 0b111;
pub(crate) const TRANSACTIONAL_FLAG: i16 = 1 << 4;
pub(crate) const CONTROL_FLAG: i16 = 1 << 5;

/// The decoded fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Size of the whole batch in bytes, header included.
    pub fn total_len(&self) -> usize {
        debug_assert!(self.batch_length >= MIN_BATCH_LENGTH);
        self.batch_length as usize + LENGTH_PREFIX_LEN
    }

    /// Offset of the last record. Saturates instead of overflowing so that
    /// headers read from garbage never panic.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// How many offsets the batch spans: its records, and after compaction
    /// the gaps the removed ones left.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }
}

/// Why a byte buffer is not a valid v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch is truncated")]
    Truncated,
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    BadMagic(i8),
    #[error("record batch length {0} is invalid")]
    BadLength(i32),
    #[error("buffer holds {actual} bytes but the batch is {expected} bytes long")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("record batch CRC mismatch: header says {expected:#010x}, data gives {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("record batch record count {0} is negative")]
    BadRecordCount(i32),
    #[error("record batch last offset delta {last_offset_delta} does not match record count {record_count}")]
    BadOffsetDelta { last_offset_delta: i32, record_count: i32 },
    #[error("unknown compression codec {0}")]
    BadCompression(u8),
    /// The records section does not hold the records the header counts.
    #[error("malformed records: {0}")]
    Records(&'static str),
    /// The batch has no records, so it would claim no offset.
    #[error("record batch has no records")]
    NoRecords,
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the fixed header at the start of `buf`.
///
/// Needs at least [`BATCH_HEADER_LEN`] bytes; checks only what the header
/// alone can tell: the magic and that the length covers a whole header.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    let magic = buf[16] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(magic));
    }
    let batch_length = be_i32(buf, 8);
    if batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::BadLength(batch_length));
    }
    Ok(BatchHeader {
        base_offset: be_i64(buf, 0),
        batch_length,
        partition_leader_epoch: be_i32(buf, 12),
        magic,
        crc: be_u32(buf, 17),
        attributes: be_i16(buf, 21),
        last_offset_delta: be_i32(buf, 23),
        base_timestamp: be_i64(buf, 27),
        max_timestamp: be_i64(buf, 35),
        producer_id: be_i64(buf, 43),
        producer_epoch: be_i16(buf, 51),
        base_sequence: be_i32(buf, 53),
        record_count: be_i32(buf, 57),
    })
}

/// Validates that `buf` is exactly one well-formed batch as the log may
/// store it, and returns its header.
///
/// Checks the header, that the length matches the buffer, the CRC, and that
/// the records fit the offsets the batch spans. Records are not decoded.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(BatchError::Truncated);
    }
    if buf.len() > total {
        return Err(BatchError::LengthMismatch {
            expected: total,
            actual: buf.len(),
        });
    }
    let actual = crc32c::crc32c(&buf[CRC_START..]);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    if header.record_count < 0 {
        return Err(BatchError::BadRecordCount(header.record_count));
    }
    // A negative delta would put the last offset before the base offset. A
    // compacted batch keeps its offsets with fewer records, so the records
    // may be fewer than the offsets, never more.
    let delta_ok = header.last_offset_delta >= 0 && i64::from(header.record_count) <= header.offset_count();
    if !delta_ok {
        return Err(bad_delta(&header));
    }
    if header.compression() > MAX_COMPRESSION_CODEC {
        return Err(BatchError::BadCompression(header.compression()));
    }
    Ok(header)
}

fn bad_delta(header: &BatchHeader) -> BatchError {
    BatchError::BadOffsetDelta {
        last_offset_delta: header.last_offset_delta,
        record_count: header.record_count,
    }
}

/// `crc` (a CRC32C of what precedes `batch`) extended over `batch`, a batch
/// whose own CRC was checked (see [`validate_batch`]) as `header`: from its
/// first bytes and the CRC it carries, without another pass over the rest.
/// None for bytes shorter than the header claims.
pub fn extend_crc_over_checked(crc: u32, batch: &[u8], header: &BatchHeader) -> Option<u32> {
    if batch.len() != header.total_len() {
        return None;
    }
    let checked = batch.len().checked_sub(CRC_START)?;
    let crc = crc32c::crc32c_append(crc, batch.get(..CRC_START)?);
    Some(crc32c::crc32c_combine(crc, header.crc, checked))
}

/// Validates that `buf` is one batch the log can append: well formed (see
/// [`validate_batch`]), holding at least one record, so that it claims at
/// least one offset, and one record per offset, as a producer writes it. Every check is a pure function of the bytes, so every
/// replica decides the same way.
pub fn check_appendable(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate_batch(buf)?;
    if header.record_count == 0 {
        return Err(BatchError::NoRecords);
    }
    // As a producer writes it: one offset per record.
    if i64::from(header.record_count) != header.offset_count() {
        return Err(bad_delta(&header));
    }
    Ok(header)
}

/// Splits concatenated batches into the byte range of each one, validating
/// every batch. A trailing partial batch is an error.
pub fn split_batches(buf: &[u8]) -> Result<Vec<Range<usize>>, BatchError> {
    let ranges = frame_batches(buf)?;
    for range in &ranges {
        validate_batch(&buf[range.clone()])?;
    }
    Ok(ranges)
}

/// Splits concatenated batches by their length fields alone (no CRC), for
/// callers that validate each batch themselves. A trailing partial batch is
/// an error.
pub fn frame_batches(buf: &[u8]) -> Result<Vec<Range<usize>>, BatchError> {
    let mut ranges = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let total = parse_header(rest)?.total_len();
        if total > rest.len() {
            return Err(BatchError::Truncated);
        }
        ranges.push(pos..pos + total);
        pos += total;
    }
    debug_assert_eq!(pos, buf.len());
    Ok(ranges)
}

/// Overwrites `baseOffset`. It is outside the CRC, so the batch stays valid.
///
/// # Panics
/// If `buf` is shorter than 8 bytes.
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    buf[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites `partitionLeaderEpoch`, which is outside the CRC too.
///
/// # Panics
/// If `buf` is shorter than 16 bytes.
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
    buf[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Attribute bit 3: the batch carries the broker's append time (Kafka's
/// LogAppendTime) in `maxTimestamp`, for all its records.
pub const LOG_APPEND_TIME_FLAG: i16 = 1 << 3;

/// A new batch from `header` with other attributes, `maxTimestamp` and
/// records section; its length and CRC are computed afresh.
pub fn rebuild_batch(header: &BatchHeader, attributes: i16, max_timestamp: i64, records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    let batch_length = (BATCH_HEADER_LEN - LENGTH_PREFIX_LEN + records.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(header.magic as u8);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&header.record_count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..CRC_START].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(out.len(), batch_length as usize + LENGTH_PREFIX_LEN);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crc_extended_over_checked_batches_is_the_crc_of_their_bytes() {
        let first = build_batch(3, 1_000, 100);
        let second = build_batch(5, 2_000, 700);
        let mut crc = crc32c::crc32c(b"tag");
        for batch in [&first, &second] {
            let header = validate_batch(batch).unwrap();
            crc = extend_crc_over_checked(crc, batch, &header).unwrap();
        }
        assert_eq!(crc, crc32c::crc32c(&[&b"tag"[..], &first, &second].concat()));
        let header = validate_batch(&first).unwrap();
        assert_eq!(extend_crc_over_checked(0, &first[..20], &header), None);
    }

    #[test]
    fn rebuilt_batch_is_valid_and_keeps_the_header() {
        let batch = crate::testing::build_batch(3, 1_000, 100);
        let header = validate_batch(&batch).unwrap();
        let rebuilt = rebuild_batch(
            &header,
            header.attributes | LOG_APPEND_TIME_FLAG,
            42,
            &batch[BATCH_HEADER_LEN..],
        );
        let new = validate_batch(&rebuilt).unwrap();
        assert_eq!(new.max_timestamp, 42);
        assert_eq!(new.attributes, header.attributes | LOG_APPEND_TIME_FLAG);
        assert_eq!(
            (new.producer_id, new.base_sequence, new.record_count),
            (header.producer_id, header.base_sequence, 3)
        );
        assert_eq!(
            rebuild_batch(
                &header,
                header.attributes,
                header.max_timestamp,
                &batch[BATCH_HEADER_LEN..]
            ),
            batch
        );
    }
    use crate::testing::build_batch;

    #[test]
    fn parses_built_batch() {
        let batch = build_batch(3, 1_000, 10);
        let header = validate_batch(&batch).unwrap();
        assert_eq!(header.base_offset, 0);
        assert_eq!(header.total_len(), batch.len());
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 1_000);
        assert_eq!(header.max_timestamp, 1_002);
        assert_eq!(header.compression(), 0);
        assert!(!header.is_control());
        assert!(!header.is_transactional());
    }

    #[test]
    fn set_base_offset_keeps_crc_valid() {
        let mut batch = build_batch(5, 0, 4);
        set_base_offset(&mut batch, 1234);
        let header = validate_batch(&batch).unwrap();
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.last_offset(), 1238);
    }

    #[test]
    fn rejects_crc_mismatch() {
        let mut batch = build_batch(2, 0, 8);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(validate_batch(&batch), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn rejects_bad_magic() {
        let mut batch = build_batch(1, 0, 8);
        batch[16] = 1;
        assert_eq!(validate_batch(&batch), Err(BatchError::BadMagic(1)));
    }

    #[test]
    fn rejects_truncated_and_oversized() {
        let batch = build_batch(2, 0, 8);
        assert_eq!(parse_header(&batch[..60]), Err(BatchError::Truncated));
        assert_eq!(validate_batch(&batch[..batch.len() - 1]), Err(BatchError::Truncated));
        let mut longer = batch.clone();
        longer.push(0);
        assert_eq!(
            validate_batch(&longer),
            Err(BatchError::LengthMismatch {
                expected: batch.len(),
                actual: batch.len() + 1
            })
        );
    }

    #[test]
    fn rejects_bad_length() {
        let mut batch = build_batch(1, 0, 8);
        batch[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(parse_header(&batch), Err(BatchError::BadLength(48)));
        batch[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(parse_header(&batch), Err(BatchError::BadLength(-1)));
    }

    /// Rewrites a header field and fixes the CRC so only the semantic check fails.
    fn with_field(mut batch: Vec<u8>, at: usize, value: &[u8]) -> Vec<u8> {
        batch[at..at + value.len()].copy_from_slice(value);
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn rejects_inconsistent_counts() {
        let batch = with_field(build_batch(3, 0, 1), 57, &(-1i32).to_be_bytes());
        assert_eq!(validate_batch(&batch), Err(BatchError::BadRecordCount(-1)));
        // More offsets than records: a compacted batch, stored but not appended.
        let batch = with_field(build_batch(3, 0, 1), 23, &5i32.to_be_bytes());
        assert!(validate_batch(&batch).is_ok());
        let bad_delta = |last_offset_delta, record_count| BatchError::BadOffsetDelta {
            last_offset_delta,
            record_count,
        };
        assert_eq!(check_appendable(&batch), Err(bad_delta(5, 3)));
        // Fewer offsets than records: never valid.
        let batch = with_field(build_batch(3, 0, 1), 23, &1i32.to_be_bytes());
        assert_eq!(validate_batch(&batch), Err(bad_delta(1, 3)));
        let batch = with_field(build_batch(3, 0, 1), 21, &7i16.to_be_bytes());
        assert_eq!(validate_batch(&batch), Err(BatchError::BadCompression(7)));
    }

    #[test]
    fn splits_concatenated_batches() {
        let a = build_batch(1, 0, 3);
        let b = build_batch(4, 0, 30);
        let buf = [a.clone(), b.clone()].concat();
        let ranges = split_batches(&buf).unwrap();
        assert_eq!(ranges, vec![0..a.len(), a.len()..a.len() + b.len()]);
        assert_eq!(split_batches(&[]).unwrap(), vec![]);

        // Framing reads the lengths only: a CRC mismatch passes, a cut does not.
        let mut damaged = buf.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(frame_batches(&damaged).unwrap(), ranges);
        assert!(split_batches(&damaged).is_err());
        assert_eq!(frame_batches(&buf[..buf.len() - 1]), Err(BatchError::Truncated));
    }

    #[test]
    fn split_rejects_partial_and_corrupt_batches() {
        let a = build_batch(1, 0, 3);
        let b = build_batch(4, 0, 30);
        let buf = [a.clone(), b.clone()].concat();
        for cut in [a.len() + 1, a.len() + 61, buf.len() - 1] {
            assert_eq!(split_batches(&buf[..cut]), Err(BatchError::Truncated));
        }
        let mut corrupt = buf.clone();
        corrupt[a.len() + 70] ^= 1;
        assert!(matches!(split_batches(&corrupt), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        let mut garbage = vec![0xffu8; 100];
        garbage[16] = 2;
        garbage[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        let header = parse_header(&garbage).unwrap();
        assert_eq!(header.last_offset(), -1 + -1);
        assert_eq!(validate_batch(&garbage), Err(BatchError::Truncated));
        assert_eq!(split_batches(&garbage), Err(BatchError::Truncated));
    }
}
