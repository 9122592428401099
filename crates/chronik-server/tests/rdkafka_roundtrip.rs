//! rdkafka produces and consumes 100,000 records per run, across every acks
//! setting and every compression codec; keys, headers and timestamps survive.
//! Large records spread over many segments come back whole through the
//! file-to-socket path of Fetch.

mod common;

use std::time::Duration;

use common::{Broker, consume_partition, flush};
use rdkafka::Offset;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord};

const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 3;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// Queues `record`, waiting while the producer's queue is full.
fn send_retrying<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(producer: &BaseProducer, mut record: BaseRecord<'_, K, P>) {
    while let Err((_, returned)) = producer.send(record) {
        producer.poll(Duration::from_millis(10));
        record = returned;
    }
}

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
        send_retrying(&producer, record);
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

/// The bytes of record `i`: a pattern that differs at every position and
/// between records, so a misplaced or shifted range cannot pass.
fn large_value(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|p| (p.wrapping_mul(31) ^ i.wrapping_mul(131)) as u8)
        .collect()
}

/// Fetch sends records from the segment files to the socket. Responses of
/// many MiB, each spanning several 1 MiB segments, fill the socket's send
/// buffer again and again (the connection waits and resumes mid-range),
/// and every record comes back with its bytes, once, at its offset.
#[test]
fn large_records_across_segments_come_back_whole() {
    const COUNT: usize = 240;
    const LEN: usize = 120 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    let topic = "large-records";
    common::create_topic(&broker.addr, topic, 1, &[("segment.bytes", "1048576")]);
    let producer = broker.producer(&[("acks", "all"), ("message.max.bytes", "2000000")]);
    for i in 0..COUNT {
        let value = large_value(i, LEN);
        let key = i.to_string();
        send_retrying(&producer, BaseRecord::to(topic).partition(0).key(&key).payload(&value));
    }
    flush(&producer, Duration::from_secs(60));
    let partition_dir = std::fs::read_dir(dir.path().join("broker/partitions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("large-records-0"))
        .expect("the partition directory");
    let segments = std::fs::read_dir(partition_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count();
    assert!(segments >= 20, "{segments} segments");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "large-records")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "20971520")
        .set("receive.message.max.bytes", "60000000")
        .create()
        .expect("consumer");
    let mut next = 0;
    let seen = consume_partition(
        &consumer,
        topic,
        0,
        Offset::Beginning,
        COUNT,
        Duration::from_secs(60),
        |message| {
            assert_eq!(message.offset(), next as i64, "offsets are dense and in order");
            assert_eq!(message.key(), Some(next.to_string().as_bytes()));
            assert!(
                message.payload() == Some(&large_value(next, LEN)[..]),
                "record {next} came back with other bytes"
            );
            next += 1;
        },
    );
    assert_eq!(seen, COUNT);
}
