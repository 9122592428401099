//! An idempotent rdkafka producer whose connections are cut mid-flight, again
//! and again, still leaves each record in the log exactly once, in order.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Broker;
use common::proxy::Proxy;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset};

const RECORDS: usize = 100_000;
const TOPIC: &str = "idempotent";

#[derive(Clone, Default)]
struct Deliveries {
    succeeded: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => self.failures.lock().unwrap().push(e.to_string()),
        }
    }
}

#[test]
fn cut_connections_cause_no_duplicates_or_gaps() {
    let proxy = Proxy::listen();
    let dir = tempfile::tempdir().unwrap();
    let advertised = format!("127.0.0.1:{}", proxy.port);
    let broker = Broker::start(&dir.path().join("broker"), &["--advertised-addr", &advertised]);
    proxy.forward_to(&broker.addr);
    common::create_topic(&broker.addr, TOPIC, 2, &[]);

    let deliveries = Deliveries::default();
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &advertised)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "500")
        .set("message.timeout.ms", "120000")
        // librdkafka's reconnect backoff grows to 10 s by default; with a cut
        // every 100 ms the run would mostly wait it out.
        .set("reconnect.backoff.max.ms", "500")
        .create_with_context(deliveries.clone())
        .expect("producer");

    let done = Arc::new(AtomicBool::new(false));
    let cutter = {
        let done = done.clone();
        let succeeded = deliveries.succeeded.clone();
        let proxy_cuts = Arc::new(proxy);
        let proxy = proxy_cuts.clone();
        let handle = std::thread::spawn(move || {
            let mut cuts = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                // Cutting before the producer has its id tests nothing about
                // duplicates, and connections cut every 100 ms from the start
                // kept librdkafka from getting one before its 120 s timeout.
                if succeeded.load(Ordering::Relaxed) > 0 && proxy.cut() > 0 {
                    cuts += 1;
                }
            }
            cuts
        });
        (handle, proxy_cuts)
    };

    for i in 0..RECORDS {
        let payload = i.to_string();
        let mut record = BaseRecord::<(), String>::to(TOPIC)
            .partition((i % 2) as i32)
            .payload(&payload);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    assert!(Instant::now() < deadline, "producer queue stayed full");
                    std::thread::sleep(Duration::from_millis(1));
                    record = returned;
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(180))
        .expect("every record delivered");
    done.store(true, Ordering::Relaxed);
    let cuts = cutter.0.join().unwrap();
    assert!(cuts >= 3, "the proxy cut connections only {cuts} times");
    let failures = deliveries.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} delivery failures, the first: {:?}",
        failures.len(),
        failures.first()
    );

    let consumer = broker.consumer();
    let mut total = 0;
    for partition in 0..2 {
        let expected = RECORDS / 2;
        let mut seen = HashSet::new();
        let mut previous = None;
        let read = common::consume_partition(
            &consumer,
            TOPIC,
            partition,
            Offset::Beginning,
            expected,
            Duration::from_secs(60),
            |m| {
                let value: usize = std::str::from_utf8(m.payload().unwrap()).unwrap().parse().unwrap();
                assert!(seen.insert(value), "record {value} is in partition {partition} twice");
                assert!(previous < Some(value), "record {value} follows {previous:?}");
                previous = Some(value);
            },
        );
        assert_eq!(read, expected);
        let (_, high) = common::watermarks(&consumer, TOPIC, partition);
        assert_eq!(high as usize, expected, "partition {partition} holds extra records");
        total += read;
    }
    assert_eq!(total, RECORDS);
    let duplicates = std::fs::read_to_string(broker.log_path())
        .unwrap()
        .matches("duplicate batch")
        .count();
    eprintln!("connections were cut {cuts} times; the broker dropped {duplicates} duplicate batches");
}
