//! Helpers for tests in this and other crates: building valid v2 batches.

use crate::batch::BATCH_HEADER_LEN;

/// Builds a valid uncompressed v2 record batch with base offset 0.
///
/// Record `i` has timestamp `base_timestamp + i`, a null key, a value of
/// `payload_len` bytes and no headers, so the batch's max timestamp is
/// `base_timestamp + records - 1`. With `records == 0` the batch is empty
/// (record count 0, last offset delta 0, max timestamp `base_timestamp`).
pub fn build_batch(records: u32, base_timestamp: i64, payload_len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..records {
        let mut record = Vec::new();
        record.push(0u8); // attributes
        put_varlong(&mut record, i64::from(i)); // timestamp delta
        put_varlong(&mut record, i64::from(i)); // offset delta
        put_varlong(&mut record, -1); // null key
        let value_len = i64::try_from(payload_len).expect("payload fits a varint");
        put_varlong(&mut record, value_len);
        record.extend((0..payload_len).map(|j| (i as usize + j) as u8));
        put_varlong(&mut record, 0); // no headers
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }

    let last_offset_delta = records.saturating_sub(1) as i32;
    let max_timestamp = base_timestamp + i64::from(last_offset_delta);
    let total = BATCH_HEADER_LEN + body.len();
    let batch_length = i32::try_from(total - 12).expect("batch fits i32 length");

    let mut batch = Vec::with_capacity(total);
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&batch_length.to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // crc, filled below
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&last_offset_delta.to_be_bytes());
    batch.extend_from_slice(&base_timestamp.to_be_bytes());
    batch.extend_from_slice(&max_timestamp.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&(records as i32).to_be_bytes());
    debug_assert_eq!(batch.len(), BATCH_HEADER_LEN);
    batch.extend_from_slice(&body);

    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// A record for [`build_keyed_batch`]: a key and a value, either null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl KeyedRecord {
    pub fn new(key: Option<&str>, value: Option<&str>) -> Self {
        Self {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }
}

/// Builds a valid uncompressed v2 batch of `records` with base offset 0;
/// record `i` has timestamp `base_timestamp + i`.
pub fn build_keyed_batch(base_timestamp: i64, records: &[KeyedRecord]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut record = vec![0u8]; // attributes
        put_varlong(&mut record, i as i64); // timestamp delta
        put_varlong(&mut record, i as i64); // offset delta
        for field in [&r.key, &r.value] {
            match field {
                Some(bytes) => {
                    put_varlong(&mut record, bytes.len() as i64);
                    record.extend_from_slice(bytes);
                }
                None => put_varlong(&mut record, -1),
            }
        }
        put_varlong(&mut record, 0); // no headers
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let count = i32::try_from(records.len()).expect("a test batch is small");
    let mut batch = build_batch(0, base_timestamp, 0);
    batch.truncate(BATCH_HEADER_LEN);
    let header = crate::batch::parse_header(&batch).expect("a built header parses");
    let header = crate::batch::BatchHeader {
        last_offset_delta: (count - 1).max(0),
        record_count: count,
        ..header
    };
    crate::batch::rebuild_batch(&header, 0, base_timestamp + i64::from((count - 1).max(0)), &body)
}

/// Marks `batch` as written by idempotent producer `producer_id` at `epoch`,
/// starting at `base_sequence`, and fixes its CRC.
pub fn set_producer(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Marks `batch` as part of a transaction of producer `producer_id`.
pub fn set_transactional(batch: &mut [u8], producer_id: i64, epoch: i16, base_sequence: i32) {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | crate::batch::TRANSACTIONAL_FLAG;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    set_producer(batch, producer_id, epoch, base_sequence);
}

/// Zigzag varint, as used by v2 records for both ints and longs.
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_zigzag_encoded() {
        let encode = |v| {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            out
        };
        assert_eq!(encode(0), [0]);
        assert_eq!(encode(-1), [1]);
        assert_eq!(encode(1), [2]);
        assert_eq!(encode(63), [126]);
        assert_eq!(encode(64), [0x80, 1]);
        assert_eq!(encode(300), [0xd8, 0x04]);
    }

    #[test]
    fn record_layout_matches_spec() {
        let batch = build_batch(1, 7, 2);
        // length=8 -> 16, attrs, ts delta 0, offset delta 0, key -1 -> 1,
        // value len 2 -> 4, value, headers 0.
        assert_eq!(&batch[BATCH_HEADER_LEN..], &[16, 0, 0, 0, 1, 4, 0, 1, 0]);
    }
}
