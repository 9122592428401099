//! Retention by size and by time deletes old segments; consumers then start at
//! the new log start offset, which survives a restart.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Broker, consume_partition, watermarks};
use rdkafka::Offset;
use rdkafka::producer::BaseRecord;

const RECORDS: usize = 300;

fn produce(broker: &Broker, topic: &str, timestamp: i64) {
    // One record per batch, so segments of a few KiB hold several batches.
    let producer = broker.producer(&[("acks", "all"), ("linger.ms", "0"), ("batch.num.messages", "1")]);
    let payload = [b'r'; 200];
    for _ in 0..RECORDS {
        let record: BaseRecord<(), [u8]> = BaseRecord::to(topic)
            .partition(0)
            .payload(&payload[..])
            .timestamp(timestamp);
        producer.send(record).map_err(|(e, _)| e).expect("enqueue");
        producer.poll(Duration::ZERO);
    }
    common::flush(&producer, Duration::from_secs(60));
}

fn wait_for_low_watermark(broker: &Broker, topic: &str, done: impl Fn(i64) -> bool) -> (i64, i64) {
    let consumer = broker.consumer();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (low, high) = watermarks(&consumer, topic, 0);
        if done(low) {
            return (low, high);
        }
        assert!(
            Instant::now() < deadline,
            "retention did not run: low watermark still {low}; log:\n{}",
            broker.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn size_retention_moves_the_log_start_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"), &["--retention-check-interval-ms", "100"]);
    common::create_topic(
        &broker.addr,
        "by-size",
        1,
        &[("segment.bytes", "4096"), ("retention.bytes", "16384")],
    );
    produce(&broker, "by-size", now_ms());

    let (low, high) = wait_for_low_watermark(&broker, "by-size", |low| low > 0);
    assert_eq!(high, RECORDS as i64, "retention never touches the end of the log");
    let segment_dir = std::fs::read_dir(dir.path().join("broker/partitions"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log_bytes: u64 = std::fs::read_dir(&segment_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(log_bytes < 16384 + 2 * 4096, "{log_bytes} bytes left on disk");

    let consumer = broker.consumer();
    let mut first = None;
    consume_partition(
        &consumer,
        "by-size",
        0,
        Offset::Beginning,
        1,
        Duration::from_secs(20),
        |m| {
            first = Some(rdkafka::message::Message::offset(m));
        },
    );
    let low_now = watermarks(&consumer, "by-size", 0).0;
    assert!(
        first.unwrap() >= low && first.unwrap() <= low_now,
        "consumer started at {first:?}, log start {low}"
    );

    broker.restart();
    let consumer = broker.consumer();
    let (low_after, high_after) = watermarks(&consumer, "by-size", 0);
    assert!(
        low_after >= low,
        "log start offset went back from {low} to {low_after} after restart"
    );
    assert_eq!(high_after, RECORDS as i64);
}

#[test]
fn time_retention_deletes_expired_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &["--retention-check-interval-ms", "100"]);
    common::create_topic(
        &broker.addr,
        "by-time",
        1,
        &[("segment.bytes", "4096"), ("retention.ms", "60000")],
    );
    // Stamped an hour ago: every segment is past retention.ms.
    produce(&broker, "by-time", now_ms() - 3_600_000);
    let (low, high) = wait_for_low_watermark(&broker, "by-time", |low| low == RECORDS as i64);
    assert_eq!((low, high), (RECORDS as i64, RECORDS as i64));

    // Fresh records are kept and readable from the new start.
    produce(&broker, "by-time", now_ms());
    let consumer = broker.consumer();
    let mut offsets = Vec::new();
    let read = consume_partition(
        &consumer,
        "by-time",
        0,
        Offset::Beginning,
        RECORDS,
        Duration::from_secs(20),
        |m| {
            offsets.push(rdkafka::message::Message::offset(m));
        },
    );
    assert_eq!(read, RECORDS);
    assert_eq!(offsets.first(), Some(&(RECORDS as i64)));
}
