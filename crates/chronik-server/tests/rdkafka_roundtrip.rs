//! rdkafka produces and consumes 100,000 records per run, across every acks
//! setting and every compression codec; keys, headers and timestamps survive.

mod common;

use std::time::Duration;

use common::{Broker, consume_partition, flush};
use rdkafka::Offset;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;

const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 3;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

fn roundtrip(broker: &Broker, acks: &str, compression: &str) {
    let topic = format!("roundtrip-acks{acks}-{compression}");
    common::create_topic(&broker.addr, &topic, PARTITIONS, &[]);
    let producer = broker.producer(&[
        ("acks", acks),
        ("compression.codec", compression),
        ("queue.buffering.max.messages", "200000"),
    ]);
    for i in 0..RECORDS {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(i % 64));
        let headers = OwnedHeaders::new().insert(Header {
            key: "index",
            value: Some(&i.to_be_bytes()),
        });
        let record = BaseRecord::to(&topic)
            .partition((i % PARTITIONS as usize) as i32)
            .key(&key)
            .payload(&value)
            .headers(headers)
            .timestamp(BASE_TIMESTAMP + i as i64);
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    producer.poll(Duration::from_millis(10));
                    record = returned;
                }
            }
        }
    }
    flush(&producer, Duration::from_secs(120));

    let consumer = broker.consumer();
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let expected: Vec<usize> = (0..RECORDS)
            .filter(|i| i % PARTITIONS as usize == partition as usize)
            .collect();
        let mut next = 0;
        let mut last_offset = -1;
        let seen = consume_partition(
            &consumer,
            &topic,
            partition,
            Offset::Beginning,
            expected.len(),
            Duration::from_secs(120),
            |message| {
                let i = expected[next];
                next += 1;
                assert_eq!(message.offset(), last_offset + 1, "offsets are dense and in order");
                last_offset = message.offset();
                assert_eq!(message.key(), Some(format!("key-{i}").as_bytes()));
                assert_eq!(
                    message.payload(),
                    Some(format!("value-{i}-{}", "x".repeat(i % 64)).as_bytes())
                );
                assert_eq!(message.timestamp().to_millis(), Some(BASE_TIMESTAMP + i as i64));
                let headers = message.headers().expect("headers");
                assert_eq!(headers.count(), 1);
                let header = headers.get(0);
                assert_eq!(header.key, "index");
                assert_eq!(header.value, Some(&i.to_be_bytes()[..]));
            },
        );
        assert_eq!(seen, expected.len(), "partition {partition} of {topic}");
        let (low, high) = common::watermarks(&consumer, &topic, partition);
        assert_eq!(
            (low, high),
            (0, expected.len() as i64),
            "watermarks of {topic}/{partition}"
        );
        total += seen;
    }
    assert_eq!(total, RECORDS);
}

#[test]
fn every_acks_and_codec_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    // Each acks setting and each codec appears at least once.
    for (acks, compression) in [
        ("all", "none"),
        ("1", "gzip"),
        ("0", "snappy"),
        ("all", "lz4"),
        ("1", "zstd"),
    ] {
        roundtrip(&broker, acks, compression);
    }
}
