//! The records inside a v2 batch's (decompressed) records section, walked
//! without copying: each record's bytes, offset and timestamp deltas, key,
//! and whether it has a value. Enough to check keys at the edge and to
//! decide what the cleaner keeps; a retained record is copied as it is.

use crate::batch::BatchError;

/// One record of a records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The whole record, its length prefix included.
    pub bytes: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    /// A null value makes the record a tombstone.
    pub has_value: bool,
}

/// The `count` records of `section`, which must hold exactly them.
pub fn walk(section: &[u8], count: i32) -> Result<Vec<RecordView<'_>>, BatchError> {
    let count = usize::try_from(count).map_err(|_| BatchError::Records("negative record count"))?;
    // Each record takes at least 7 bytes, so garbage cannot make this allocate much.
    let mut records = Vec::with_capacity(count.min(section.len() / 7 + 1));
    let mut at = 0;
    for _ in 0..count {
        let start = at;
        let len = varint(section, &mut at)?;
        let len = usize::try_from(len).map_err(|_| BatchError::Records("negative record length"))?;
        let body_start = at;
        let end = body_start
            .checked_add(len)
            .filter(|&end| end <= section.len())
            .ok_or(BatchError::Records("record runs past the batch"))?;
        let body = &section[..end];
        at += 1; // attributes
        let timestamp_delta = varint(body, &mut at)?;
        let offset_delta =
            i32::try_from(varint(body, &mut at)?).map_err(|_| BatchError::Records("offset delta out of range"))?;
        let key = bytes_field(body, &mut at)?;
        let has_value = bytes_field(body, &mut at)?.is_some();
        records.push(RecordView {
            bytes: &section[start..end],
            timestamp_delta,
            offset_delta,
            key,
            has_value,
        });
        at = end;
    }
    if at != section.len() {
        return Err(BatchError::Records("bytes left after the last record"));
    }
    Ok(records)
}

/// A length-prefixed byte field; a negative length is null.
fn bytes_field<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, BatchError> {
    let len = varint(buf, at)?;
    if len < 0 {
        return Ok(None);
    }
    let end = at
        .checked_add(len as usize)
        .filter(|&end| end <= buf.len())
        .ok_or(BatchError::Records("field runs past its record"))?;
    let field = &buf[*at..end];
    *at = end;
    Ok(Some(field))
}

/// A zigzag varint of up to 64 bits, as v2 records encode ints and longs.
fn varint(buf: &[u8], at: &mut usize) -> Result<i64, BatchError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at).ok_or(BatchError::Records("varint runs past its record"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(BatchError::Records("varint longer than 10 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BATCH_HEADER_LEN;
    use crate::testing::{KeyedRecord, build_batch, build_keyed_batch};

    #[test]
    fn walks_built_records() {
        let batch = build_batch(3, 1_000, 10);
        let records = walk(&batch[BATCH_HEADER_LEN..], 3).unwrap();
        assert_eq!(records.len(), 3);
        assert!(records.iter().all(|r| r.key.is_none() && r.has_value));
        assert_eq!(records.iter().map(|r| r.offset_delta).collect::<Vec<_>>(), [0, 1, 2]);
        let total: usize = records.iter().map(|r| r.bytes.len()).sum();
        assert_eq!(total, batch.len() - BATCH_HEADER_LEN);
    }

    #[test]
    fn reads_keys_and_tombstones() {
        let batch = build_keyed_batch(
            5,
            &[
                KeyedRecord::new(Some("a"), Some("1")),
                KeyedRecord::new(Some("b"), None),
                KeyedRecord::new(None, Some("x")),
            ],
        );
        let records = walk(&batch[BATCH_HEADER_LEN..], 3).unwrap();
        assert_eq!(records[0].key, Some(&b"a"[..]));
        assert!(records[0].has_value);
        assert_eq!(records[1].key, Some(&b"b"[..]));
        assert!(!records[1].has_value);
        assert_eq!(records[2].key, None);
    }

    #[test]
    fn garbage_is_an_error() {
        let batch = build_batch(2, 0, 4);
        let section = &batch[BATCH_HEADER_LEN..];
        assert!(walk(section, 3).is_err(), "fewer records than counted");
        assert!(walk(section, 1).is_err(), "bytes left over");
        assert!(walk(&section[..section.len() - 1], 2).is_err(), "cut short");
        assert!(walk(&[0xff; 12], 1).is_err(), "endless varint");
        assert!(walk(section, -1).is_err());
    }
}
