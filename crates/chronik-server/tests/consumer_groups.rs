//! Consumer groups with rdkafka: a StreamConsumer group commits, the broker
//! restarts, and the group resumes from its committed offsets. Commits that
//! break the group protocol get Kafka's error codes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Broker;
use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;

fn produce(broker: &Broker, from: usize, to: usize) {
    let producer = broker.producer(&[("acks", "all")]);
    for i in from..to {
        let payload = i.to_string();
        let key = (i % 7).to_string();
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    common::flush(&producer, Duration::from_secs(60));
}

fn group_consumer(broker: &Broker, group: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    consumer
}

/// Reads until `count` records arrived, committing synchronously every 500.
async fn consume(consumer: &StreamConsumer, count: usize) -> Vec<usize> {
    let mut values = Vec::with_capacity(count);
    let mut stream = consumer.stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while values.len() < count {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let message = next
            .expect("records arrive in time")
            .expect("stream open")
            .expect("no consume error");
        values.push(
            std::str::from_utf8(message.payload().unwrap())
                .unwrap()
                .parse()
                .unwrap(),
        );
        if values.len() % 500 == 0 {
            consumer.commit_message(&message, CommitMode::Sync).expect("commit");
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("final commit");
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resumes_from_committed_offsets_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(
        &dir.path().join("broker"),
        &[
            "--offsets-topic-partitions",
            "4",
            "--group-initial-rebalance-delay-ms",
            "0",
        ],
    );
    common::create_topic(&broker.addr, TOPIC, PARTITIONS, &[]);
    produce(&broker, 0, 3000);

    let first: HashSet<usize> = {
        let consumer = group_consumer(&broker, "resuming");
        let values = consume(&consumer, 3000).await;
        values.into_iter().collect()
    };
    assert_eq!(first.len(), 3000, "every record once");

    // The committed positions are the high watermarks.
    let check: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "resuming")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        wanted.add_partition(TOPIC, p);
    }
    let committed = check.committed_offsets(wanted, Duration::from_secs(10)).unwrap();
    let plain = broker.consumer();
    for element in committed.elements() {
        let (_, high) = common::watermarks(&plain, TOPIC, element.partition());
        let expected = if high == 0 {
            Offset::Invalid
        } else {
            Offset::Offset(high)
        };
        assert_eq!(
            element.offset(),
            expected,
            "committed position of partition {}",
            element.partition()
        );
    }
    drop(check);

    broker.restart();
    produce(&broker, 3000, 4000);
    let consumer = group_consumer(&broker, "resuming");
    let second = consume(&consumer, 1000).await;
    let second: HashSet<usize> = second.into_iter().collect();
    assert_eq!(
        second,
        (3000..4000).collect::<HashSet<_>>(),
        "the group resumed exactly after its commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"), &["--offsets-topic-partitions", "2"]);
    common::create_topic(&broker.addr, TOPIC, 1, &[]);
    produce(&broker, 0, 10);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "standalone")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(TOPIC, 0, Offset::Offset(7)).unwrap();
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("a commit outside any rebalance");
    drop(consumer);
    broker.kill9();
    broker.restart();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "standalone")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(TOPIC, 0);
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(10)).unwrap();
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(7));
}
