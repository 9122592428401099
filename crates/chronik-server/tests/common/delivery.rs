//! Producing with delivery reports: which records were acknowledged, at
//! which offset and when, and which failed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

/// One acknowledged record, and when the acknowledgement arrived.
#[derive(Clone, Copy)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
    pub key: u64,
    pub at: Instant,
}

/// Records every delivery report: each success, and each failure.
#[derive(Clone, Default)]
pub struct Deliveries {
    pub acked: Arc<Mutex<Vec<Ack>>>,
    pub failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let key = std::str::from_utf8(message.key().unwrap()).unwrap().parse().unwrap();
                self.acked.lock().unwrap().push(Ack {
                    partition: message.partition(),
                    offset: message.offset(),
                    key,
                    at: Instant::now(),
                });
            }
            Err((e, _)) => self.failed.lock().unwrap().push(e.to_string()),
        }
    }
}

pub fn new_producer(bootstrap: &str, settings: &[(&str, &str)]) -> (ThreadedProducer<Deliveries>, Deliveries) {
    let deliveries = Deliveries::default();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let producer = config.create_with_context(deliveries.clone()).expect("producer");
    (producer, deliveries)
}

/// Sends `keys` (as decimal strings) with `value_len`-byte values, waiting
/// while the producer's queue is full.
pub fn send(producer: &ThreadedProducer<Deliveries>, topic: &str, partition: Option<i32>, keys: std::ops::Range<u64>) {
    let value = vec![b'v'; 200];
    for key in keys {
        let key = key.to_string();
        loop {
            let mut record = BaseRecord::to(topic).key(&key).payload(&value);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match producer.send(record) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}
