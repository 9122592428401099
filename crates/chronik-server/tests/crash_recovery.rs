//! kill -9 in the middle of an acks=all stream loses no acknowledged record:
//! after a restart every acknowledged record is read back once, in order, at
//! the offset it was acknowledged with.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Broker, consume_partition};
use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, producer::Producer};

const TOPIC: &str = "crash";
const ACKED_BEFORE_KILL: usize = 30_000;

#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<(usize, i64)>>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        if let Ok(message) = result {
            self.0.lock().unwrap().push((*index, message.offset()));
        }
    }
}

#[test]
fn acknowledged_records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"), &[]);
    common::create_topic(&broker.addr, TOPIC, 1, &[]);

    let acks = Acks::default();
    let producer: ThreadedProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "5000")
        .create_with_context(acks.clone())
        .expect("producer");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0usize;
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let payload = format!("record-{i}");
                let record: BaseRecord<(), String, Box<usize>> = BaseRecord::with_opaque_to(TOPIC, Box::new(i))
                    .partition(0)
                    .payload(&payload);
                match producer.send(record) {
                    Ok(()) => i += 1,
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            let _ = producer.flush(Duration::from_secs(10));
        })
    };

    let deadline = Instant::now() + Duration::from_secs(90);
    while acks.0.lock().unwrap().len() < ACKED_BEFORE_KILL {
        assert!(Instant::now() < deadline, "producer made too little progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    let acked = acks.0.lock().unwrap().clone();
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    broker.restart();
    let consumer = broker.consumer();
    let (low, high) = common::watermarks(&consumer, TOPIC, 0);
    assert_eq!(low, 0);
    assert!(
        high as usize >= acked.len(),
        "high watermark {high} below {} acknowledged records",
        acked.len()
    );

    let mut log = Vec::with_capacity(high as usize);
    let read = consume_partition(
        &consumer,
        TOPIC,
        0,
        Offset::Beginning,
        high as usize,
        Duration::from_secs(60),
        |m| {
            let payload = std::str::from_utf8(m.payload().unwrap()).unwrap();
            let index: usize = payload.strip_prefix("record-").unwrap().parse().unwrap();
            log.push((m.offset(), index));
        },
    );
    assert_eq!(read, high as usize);
    for (position, (offset, _)) in log.iter().enumerate() {
        assert_eq!(*offset, position as i64, "offsets are dense");
    }
    for pair in log.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "record {} follows {}: duplicated or reordered",
            pair[1].1,
            pair[0].1
        );
    }
    for (index, offset) in acked {
        assert_eq!(
            log[offset as usize].1, index,
            "acknowledged record {index} is not at offset {offset}"
        );
    }
}

/// Starts a broker that stops at the crash point `crash_at`, creates
/// `topic`, and writes `record-0` to `record-{last}` to it one batch each,
/// so that record i is the batch at offset i, waiting for each before the
/// last. Returns the broker restarted without the crash point, once it
/// stopped there.
fn crash_while_producing(dir: &std::path::Path, topic: &str, crash_at: &str, last: usize) -> Broker {
    let mut broker = Broker::spawn_with_env(&dir.join("broker"), &[], &[("CHRONIK_CRASH_AT", crash_at)]);
    broker.wait_ready();
    common::create_topic(&broker.addr, topic, 1, &[]);
    let producer = broker.producer(&[("acks", "all"), ("linger.ms", "0"), ("message.timeout.ms", "5000")]);
    for i in 0..=last {
        send_one(&producer, topic, &format!("record-{i}"));
        if i < last {
            common::flush(&producer, Duration::from_secs(30));
        }
    }
    assert_eq!(
        broker.wait_exit(Duration::from_secs(30)),
        Some(86),
        "the broker stopped at {crash_at}; log:\n{}",
        broker.log_tail()
    );
    drop(producer);
    broker.clear_env();
    broker.restart();
    broker
}

fn send_one(producer: &rdkafka::producer::BaseProducer, topic: &str, payload: &str) {
    producer
        .send(BaseRecord::<(), str>::to(topic).partition(0).payload(payload))
        .expect("queue");
}

/// (offset, payload) of the first `count` records of `topic`'s partition 0.
fn read_payloads(consumer: &rdkafka::consumer::BaseConsumer, topic: &str, count: usize) -> Vec<(i64, Option<String>)> {
    let mut read = Vec::new();
    consume_partition(
        consumer,
        topic,
        0,
        Offset::Beginning,
        count,
        Duration::from_secs(30),
        |m| read.push((m.offset(), m.payload().map(|p| String::from_utf8_lossy(p).into_owned()))),
    );
    read
}

/// A batch whose entry was in the Raft log, with the offset its leader
/// assigned, but not yet applied when the process died, is applied at
/// restart at that offset: replay checks it against the log it rebuilt.
#[test]
fn a_batch_logged_but_not_applied_at_a_crash_lands_at_its_assigned_offset() {
    const LOGGED: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let broker = crash_while_producing(dir.path(), "assigned", "apply-assigned:assigned:20", LOGGED);
    let consumer = broker.consumer();
    assert_eq!(
        common::watermarks(&consumer, "assigned", 0),
        (0, LOGGED as i64 + 1),
        "the logged batch is applied after the restart; log:\n{}",
        broker.log_tail()
    );
    let expected: Vec<(i64, Option<String>)> = (0..=LOGGED).map(|i| (i as i64, Some(format!("record-{i}")))).collect();
    assert_eq!(read_payloads(&consumer, "assigned", LOGGED + 1), expected);
}

/// One write per record: a batch's bytes are made durable in its segment
/// before the Raft log stores the entry that references them. A crash
/// between the two leaves bytes no entry names past the high watermark:
/// they are never shown, and the next batch takes their offset.
#[test]
fn a_batch_in_the_segment_but_not_in_the_raft_log_at_a_crash_is_never_shown() {
    const UNLOGGED: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    // Synced with the log ending after offset 20, the crash comes before
    // the Raft log write.
    let broker = crash_while_producing(dir.path(), "unlogged", "bodies-synced:unlogged:21", UNLOGGED);
    let consumer = broker.consumer();
    assert_eq!(
        common::watermarks(&consumer, "unlogged", 0),
        (0, UNLOGGED as i64),
        "the unlogged batch is not there; log:\n{}",
        broker.log_tail()
    );
    let producer = broker.producer(&[("acks", "all"), ("linger.ms", "0")]);
    for i in 0..3 {
        send_one(&producer, "unlogged", &format!("after-{i}"));
        common::flush(&producer, Duration::from_secs(30));
    }
    let expected: Vec<(i64, Option<String>)> = (0..UNLOGGED)
        .map(|i| format!("record-{i}"))
        .chain((0..3).map(|i| format!("after-{i}")))
        .enumerate()
        .map(|(offset, payload)| (offset as i64, Some(payload)))
        .collect();
    assert_eq!(read_payloads(&consumer, "unlogged", UNLOGGED + 3), expected);
}

/// A crash after a topic's creation is applied and saved, but before its
/// partitions' Raft groups exist, used to leave those partitions without a
/// group on that node for good. At start the node now creates them.
#[test]
fn partitions_assigned_before_a_crash_are_created_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::spawn_with_env(
        &dir.path().join("broker"),
        &[],
        &[("CHRONIK_CRASH_AT", "metadata-saved:create-topic:orphans")],
    );
    broker.wait_ready();
    let addr = broker.addr.clone();
    // Creating the topic reaches the crash point; the client gets no answer.
    std::thread::spawn(move || common::try_create_topic(&addr, "orphans", 3));
    assert_eq!(
        broker.wait_exit(Duration::from_secs(30)),
        Some(86),
        "the broker stopped at the crash point; log:\n{}",
        broker.log_tail()
    );

    broker.clear_env();
    broker.restart();
    let producer = broker.producer(&[("acks", "all")]);
    for partition in 0..3 {
        producer
            .send(BaseRecord::<(), str>::to("orphans").partition(partition).payload("x"))
            .expect("queue");
    }
    common::flush(&producer, Duration::from_secs(30));
    let consumer = broker.consumer();
    for partition in 0..3 {
        assert_eq!(common::watermarks(&consumer, "orphans", partition), (0, 1));
    }
}

/// A partition log that lost data it had checkpointed (a segment cut short
/// behind the broker's back) cannot be replayed to the same offsets as the
/// other replicas: the broker refuses to start and says why.
#[test]
fn a_log_shorter_than_its_checkpoint_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"), &[]);
    common::create_topic(&broker.addr, "cut", 1, &[]);
    let producer = broker.producer(&[("acks", "all"), ("batch.num.messages", "1")]);
    for i in 0..20 {
        producer
            .send(BaseRecord::<(), str>::to("cut").payload(&format!("record {i}")))
            .expect("queue");
        common::flush(&producer, Duration::from_secs(30));
    }
    broker.stop();
    let partition_dir = std::fs::read_dir(dir.path().join("broker/partitions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("cut-0"))
        .expect("the partition directory");
    let segment = partition_dir.join("00000000000000000000.log");
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    broker.respawn();
    let code = broker.wait_exit(Duration::from_secs(30));
    assert!(
        matches!(code, Some(c) if c != 0),
        "the broker refused to start: {code:?}"
    );
    let log = std::fs::read_to_string(broker.log_path()).unwrap();
    assert!(
        log.contains("checkpointed up to") && log.contains("damaged"),
        "the log says what is wrong:\n{}",
        broker.log_tail()
    );
}

/// Found by CI: a test stopped a node the moment its ready line appeared,
/// and the node died by the signal (exit -15) instead of stopping cleanly,
/// because the SIGTERM handler was installed only after that line. `stop`
/// asserts a successful exit.
#[test]
fn sigterm_right_after_the_ready_line_stops_the_node_cleanly() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Broker::start(dir.path(), &[]);
        broker.stop();
    }
}
