//! Brings a produced batch to its topic's configs before it is proposed:
//! the timestamp bounds, `message.timestamp.type=LogAppendTime`, a
//! `compression.type` other than `producer`, and the keys a compacted
//! topic requires. The leader does this once, so
//! every replica stores the same bytes.

use bytes::Bytes;
use chronik_log::{BATCH_HEADER_LEN, BatchHeader, LOG_APPEND_TIME_FLAG, rebuild_batch};
use chronik_state::topic_config::ProducePolicy;
use kafka_protocol::ResponseError;

use chronik_log::compression::{CodecError, compress, decompress};
use chronik_log::records::walk;

const COMPRESSION_MASK: i16 = 0b111;

/// A record timestamp that was not set.
const NO_TIMESTAMP: i64 = -1;

/// The batch to propose, and the append time it was stamped with, if any.
#[derive(Debug)]
pub struct Conformed {
    pub batch: Bytes,
    pub log_append_time: Option<i64>,
}

/// `batch` (one validated batch with `header`) as the topic stores it.
/// `budget` is what the request's batches may still expand to when they are
/// decompressed; it shrinks by what this one takes.
pub fn conform(
    batch: Bytes,
    header: &BatchHeader,
    policy: &ProducePolicy,
    now_ms: i64,
    budget: &mut usize,
) -> Result<Conformed, ResponseError> {
    // Only the broker stamps append times (Kafka refuses it from producers).
    if header.attributes & LOG_APPEND_TIME_FLAG != 0 {
        return Err(ResponseError::InvalidTimestamp);
    }
    if !policy.log_append_time {
        // Kafka checks CreateTime timestamps against the broker's clock,
        // skipping records without one (-1); the header's first and largest
        // timestamps bound the batch's.
        let too_old = header.base_timestamp != NO_TIMESTAMP
            && header.base_timestamp < now_ms.saturating_sub(policy.before_max_ms);
        let too_new =
            header.max_timestamp != NO_TIMESTAMP && header.max_timestamp > now_ms.saturating_add(policy.after_max_ms);
        if too_old || too_new {
            return Err(ResponseError::InvalidTimestamp);
        }
    }
    let recompress = policy.codec.filter(|codec| codec.id() != header.compression());
    // Decompressed once, for the key check and the recompression alike.
    let section = &batch[BATCH_HEADER_LEN..];
    let plain = if (policy.keys_required || recompress.is_some()) && header.compression() != 0 {
        let plain = decompress(header.compression(), section, *budget).map_err(refusal)?;
        *budget -= plain.len();
        Some(plain)
    } else {
        if recompress.is_some() {
            // Recompressing copies the records whole: they count against the budget too.
            *budget = budget
                .checked_sub(section.len())
                .ok_or(ResponseError::MessageTooLarge)?;
        }
        None
    };
    let records_plain = plain.as_deref().unwrap_or(section);
    if policy.keys_required {
        require_keys(records_plain, header)?;
    }
    if recompress.is_none() && !policy.log_append_time {
        return Ok(Conformed {
            batch,
            log_append_time: None,
        });
    }
    let mut attributes = header.attributes;
    let mut max_timestamp = header.max_timestamp;
    if policy.log_append_time {
        attributes |= LOG_APPEND_TIME_FLAG;
        max_timestamp = now_ms;
    }
    let records = match recompress {
        Some(codec) => {
            attributes = (attributes & !COMPRESSION_MASK) | i16::from(codec.id());
            compress(codec.id(), policy.level, records_plain).map_err(refusal)?
        }
        None => section.to_vec(),
    };
    let rebuilt = rebuild_batch(header, attributes, max_timestamp, &records);
    if rebuilt.len() > policy.max_message_bytes {
        return Err(ResponseError::MessageTooLarge);
    }
    Ok(Conformed {
        batch: Bytes::from(rebuilt),
        log_append_time: policy.log_append_time.then_some(now_ms),
    })
}

/// Kafka refuses a record without a key on a compacted topic: the cleaner
/// could never tell which later record replaces it. `records` is the batch's
/// decompressed records section.
fn require_keys(records: &[u8], header: &BatchHeader) -> Result<(), ResponseError> {
    let records = walk(records, header.record_count).map_err(|_| ResponseError::CorruptMessage)?;
    if records.iter().any(|r| r.key.is_none()) {
        return Err(ResponseError::InvalidRecord);
    }
    Ok(())
}

fn refusal(error: CodecError) -> ResponseError {
    match error {
        CodecError::TooLarge(_) => ResponseError::MessageTooLarge,
        CodecError::Corrupt(_) | CodecError::Unknown(_) => ResponseError::CorruptMessage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_state::topic_config::{Codec, produce_policy};
    use std::collections::BTreeMap;

    fn policy(configs: &[(&str, &str)]) -> ProducePolicy {
        let map: BTreeMap<String, String> = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        produce_policy(&map)
    }

    fn batch() -> (Bytes, BatchHeader) {
        let bytes = chronik_log::testing::build_batch(5, 1_000_000, 200);
        let header = chronik_log::validate_batch(&bytes).unwrap();
        (Bytes::from(bytes), header)
    }

    #[test]
    fn producer_compression_leaves_the_batch_alone() {
        let (bytes, header) = batch();
        let out = conform(bytes.clone(), &header, &policy(&[]), 1_000_000, &mut (1 << 20)).unwrap();
        assert_eq!(out.batch, bytes);
        assert_eq!(out.log_append_time, None);
    }

    #[test]
    fn recompresses_to_the_topic_codec() {
        let (bytes, header) = batch();
        let out = conform(
            bytes.clone(),
            &header,
            &policy(&[("compression.type", "zstd")]),
            1_000_000,
            &mut (1 << 20),
        )
        .unwrap();
        let new = chronik_log::validate_batch(&out.batch).unwrap();
        assert_eq!(new.compression(), Codec::Zstd.id());
        assert_eq!(
            (new.record_count, new.producer_id, new.base_sequence),
            (5, header.producer_id, header.base_sequence)
        );
        let plain = decompress(new.compression(), &out.batch[BATCH_HEADER_LEN..], 1 << 20).unwrap();
        assert_eq!(plain, &bytes[BATCH_HEADER_LEN..]);
        // Back to uncompressed gives the original bytes.
        let back = conform(
            out.batch,
            &new,
            &policy(&[("compression.type", "uncompressed")]),
            1_000_000,
            &mut (1 << 20),
        )
        .unwrap();
        assert_eq!(back.batch, bytes);
    }

    #[test]
    fn stamps_log_append_time() {
        let (bytes, header) = batch();
        let out = conform(
            bytes,
            &header,
            &policy(&[("message.timestamp.type", "LogAppendTime")]),
            7,
            &mut (1 << 20),
        )
        .unwrap();
        let new = chronik_log::validate_batch(&out.batch).unwrap();
        assert_eq!(out.log_append_time, Some(7));
        assert_eq!(new.max_timestamp, 7);
        assert_ne!(new.attributes & LOG_APPEND_TIME_FLAG, 0);
    }

    #[test]
    fn refuses_timestamps_out_of_bounds() {
        let (bytes, header) = batch();
        let bounded = policy(&[
            ("message.timestamp.before.max.ms", "1000"),
            ("message.timestamp.after.max.ms", "1000"),
        ]);
        let now = header.base_timestamp;
        assert!(conform(bytes.clone(), &header, &bounded, now, &mut (1 << 20)).is_ok());
        assert_eq!(
            conform(bytes.clone(), &header, &bounded, now + 5_000, &mut (1 << 20)).unwrap_err(),
            ResponseError::InvalidTimestamp
        );
        assert_eq!(
            conform(bytes, &header, &bounded, now - 5_000, &mut (1 << 20)).unwrap_err(),
            ResponseError::InvalidTimestamp
        );
    }

    #[test]
    fn a_compacted_topic_refuses_keyless_records() {
        use chronik_log::testing::{KeyedRecord, build_keyed_batch};
        let compacted = policy(&[("cleanup.policy", "compact,delete")]);
        let keyed = Bytes::from(build_keyed_batch(5, &[KeyedRecord::new(Some("k"), None)]));
        let header = chronik_log::validate_batch(&keyed).unwrap();
        assert!(conform(keyed, &header, &compacted, 5, &mut (1 << 20)).is_ok());
        let keyless = build_keyed_batch(
            5,
            &[
                KeyedRecord::new(Some("k"), Some("v")),
                KeyedRecord::new(None, Some("v")),
            ],
        );
        let header = chronik_log::validate_batch(&keyless).unwrap();
        let refused = conform(Bytes::from(keyless.clone()), &header, &compacted, 5, &mut (1 << 20));
        assert_eq!(refused.unwrap_err(), ResponseError::InvalidRecord);
        // Compressed, the records are checked after decompression.
        let section = compress(4, 3, &keyless[BATCH_HEADER_LEN..]).unwrap();
        let zstd = chronik_log::rebuild_batch(&header, 4, header.max_timestamp, &section);
        let header = chronik_log::validate_batch(&zstd).unwrap();
        let refused = conform(Bytes::from(zstd.clone()), &header, &compacted, 5, &mut (1 << 20));
        assert_eq!(refused.unwrap_err(), ResponseError::InvalidRecord);
        assert!(conform(Bytes::from(zstd), &header, &policy(&[]), 5, &mut (1 << 20)).is_ok());
    }
}
