//! What a leader may do, on three real processes: a new leader serves reads
//! only once it has caught up, so a consumer tailing a partition through a
//! failover sees every record once; and a leader loaded with writes still
//! ticks, so cut off from its followers it steps down.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{Cluster, serial};
use common::delivery::{new_producer, send};
use common::raw::Connection;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Reads `topic`/0 from its end, as a consumer that only wants new records
/// (`auto.offset.reset=latest`), collecting keys until told to stop.
fn tail(bootstrap: String, topic: &'static str, keys: Arc<Mutex<Vec<u64>>>, stop: Arc<AtomicBool>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "tailing")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "20")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::End).unwrap();
    consumer.assign(&assignment).unwrap();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let key = std::str::from_utf8(message.key().unwrap()).unwrap().parse().unwrap();
                keys.lock().unwrap().push(key);
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
}

#[test]
fn a_consumer_tailing_through_a_leader_failover_sees_every_record_once() {
    let _serial = serial();
    const TOPIC: &str = "tailed";
    const WARM_UP: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--offsets-topic-partitions", "1"]);
    common::create_replicated_topic(&cluster.nodes[0].addr, TOPIC, 1, 3, &[]);
    let victim = cluster.wait_for_leaders(1, TOPIC, 1)[0];

    let keys = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = std::thread::spawn({
        let (bootstrap, keys, stop) = (cluster.bootstrap(), keys.clone(), stop.clone());
        move || tail(bootstrap, TOPIC, keys, stop)
    });
    let (producer, deliveries) = new_producer(&cluster.bootstrap(), &[("enable.idempotence", "true")]);
    // Once the consumer has a warm-up record it reads from the end it found.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut warm_up = WARM_UP;
    while !keys.lock().unwrap().iter().any(|k| *k >= WARM_UP) {
        assert!(Instant::now() < deadline, "the consumer never started reading");
        send(&producer, TOPIC, Some(0), warm_up..warm_up + 1);
        warm_up += 1;
        std::thread::sleep(Duration::from_millis(200));
    }

    // Records go on while the leader dies and another takes over.
    let started = Instant::now();
    let mut next = 0u64;
    let mut killed = false;
    while started.elapsed() < Duration::from_secs(12) {
        send(&producer, TOPIC, Some(0), next..next + 20);
        next += 20;
        if !killed && started.elapsed() >= Duration::from_secs(3) {
            cluster.node(victim).kill9();
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    assert!(
        deliveries.failed.lock().unwrap().is_empty(),
        "{:?}",
        deliveries.failed.lock().unwrap()
    );
    let acked: HashSet<u64> = deliveries
        .acked
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.key)
        .filter(|k| *k < WARM_UP)
        .collect();
    assert_eq!(acked.len() as u64, next, "every record was acknowledged");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: HashSet<u64> = keys.lock().unwrap().iter().copied().filter(|k| *k < WARM_UP).collect();
        if seen.is_superset(&acked) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap();
    let keys = keys.lock().unwrap();
    let consumed: Vec<u64> = keys.iter().copied().filter(|k| *k < WARM_UP).collect();
    let distinct: HashSet<u64> = consumed.iter().copied().collect();
    assert_eq!(distinct.len(), consumed.len(), "a record was consumed twice");
    let missing: Vec<u64> = acked.difference(&distinct).copied().collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records never reached the consumer (the first: {:?})",
        missing.len(),
        missing.iter().min()
    );
    assert!(
        consumed.windows(2).all(|w| w[0] < w[1]),
        "records were consumed out of order"
    );
}

#[test]
fn a_leader_under_full_load_cut_off_from_its_followers_steps_down() {
    let _serial = serial();
    const TOPIC: &str = "loaded";
    const ELECTION_TIMEOUT: Duration = Duration::from_secs(1);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &["--offsets-topic-partitions", "1"]);
    common::create_replicated_topic(&cluster.nodes[0].addr, TOPIC, 1, 3, &[]);
    let victim = cluster.wait_for_leaders(1, TOPIC, 1)[0];
    let victim_addr = cluster.nodes[victim as usize - 1].addr.clone();

    // acks=0 producers of one small record per request keep a proposal
    // queued at the victim at nearly every moment, without filling the disk.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop) = (victim_addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let producer: BaseProducer = ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .set("acks", "0")
                    .set("linger.ms", "0")
                    .set("batch.num.messages", "1")
                    .set("queue.buffering.max.messages", "100000")
                    .create()
                    .expect("producer");
                let value = vec![b'x'; 100];
                let deadline = Instant::now() + Duration::from_secs(40);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if producer
                        .send(BaseRecord::<(), [u8]>::to(TOPIC).partition(0).payload(&value))
                        .is_err()
                    {
                        // The queue is full: leave the cores to the brokers.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    producer.poll(Duration::ZERO);
                }
                let _ = producer.flush(Duration::from_secs(1));
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));

    // Cut off, the victim must step down and tell its clients so: its
    // pending acks=all writes then fail with NOT_LEADER_OR_FOLLOWER instead
    // of timing out, and new ones are refused at once.
    let mut connection = Connection::open(&victim_addr);
    connection
        .stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut produce = |timeout_ms: i32| {
        let batch = Bytes::from(chronik_log::testing::build_batch(1, 0, 10));
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partition_data(vec![
                        PartitionProduceData::default().with_index(0).with_records(Some(batch)),
                    ]),
            ]);
        let mut body = connection.call(ApiKey::Produce, 9, &request);
        let response = ProduceResponse::decode(&mut body, 9).unwrap();
        response.responses[0].partition_responses[0].error_code
    };
    assert_eq!(produce(10_000), 0, "the victim still leads, under load");
    cluster.isolate(victim);
    let isolated = Instant::now();
    let stepped_down = loop {
        let error = produce(500);
        assert_ne!(error, 0, "a leader cut off from its followers acknowledged a write");
        if error == ResponseError::NotLeaderOrFollower.code() || isolated.elapsed() > ELECTION_TIMEOUT * 10 {
            break isolated.elapsed();
        }
    };
    stop.store(true, Ordering::Relaxed);
    for producer in load {
        producer.join().unwrap();
    }
    println!("the isolated leader stepped down {stepped_down:?} after it was cut off");
    // Two election timeouts, and the last produce request's timeout.
    assert!(
        stepped_down <= ELECTION_TIMEOUT * 2 + Duration::from_millis(500),
        "the isolated leader kept leading for {stepped_down:?} under load"
    );
    cluster.heal(victim);
}
