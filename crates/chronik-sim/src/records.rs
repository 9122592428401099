//! Record batches as a Kafka client writes and reads them, through the
//! kafka-protocol crate's codec (not the broker's own).

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record, RecordBatchDecoder,
    RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One batch of `values`; idempotent when `producer` gives (id, base sequence).
pub fn encode(values: &[Bytes], producer: Option<(i64, i32)>) -> Vec<u8> {
    encode_batch(values, producer, false)
}

/// One batch of `values` in a transaction of producer (id, base sequence).
pub fn encode_transactional(values: &[Bytes], producer: (i64, i32)) -> Vec<u8> {
    encode_batch(values, Some(producer), true)
}

fn encode_batch(values: &[Bytes], producer: Option<(i64, i32)>, transactional: bool) -> Vec<u8> {
    let (producer_id, producer_epoch, base_sequence) = match producer {
        Some((id, sequence)) => (id, 0, sequence),
        None => (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE),
    };
    let records: Vec<Record> = values
        .iter()
        .zip(0..)
        .map(|(value, delta)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: delta as i64,
            // Offset minus sequence stays constant: one batch.
            sequence: base_sequence + delta,
            timestamp: 0,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("records encode");
    buf.to_vec()
}

/// The (offset, value) of every record in stored batches.
pub fn decode(mut batches: Bytes) -> Result<Vec<(i64, Bytes)>, String> {
    let sets = RecordBatchDecoder::decode_all(&mut batches).map_err(|e| format!("undecodable batches: {e}"))?;
    Ok(sets
        .iter()
        .flat_map(|set| &set.records)
        .map(|r| (r.offset, r.value.clone().unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back() {
        let values = [Bytes::from_static(b"x"), Bytes::from_static(b"y")];
        let batch = encode(&values, Some((7, 3)));
        chronik_log::check_appendable(&batch).unwrap();
        let read = decode(Bytes::from(batch)).unwrap();
        assert_eq!(read, vec![(0, values[0].clone()), (1, values[1].clone())]);
    }
}
