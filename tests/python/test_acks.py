"""acks=1 is answered from the leader's own log, with the offset the record
gets once committed: producers with acks=1 and acks=all writing the same
partitions side by side are told exactly the offsets a consumer then reads
their records at."""

import threading
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

RECORDS = 3000


def produce(bootstrap, topic, acks, tag, reports, errors):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "enable.idempotence": False,
                         "linger.ms": 2, "batch.num.messages": 50})

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports[msg.value()] = (msg.partition(), msg.offset())

    for i in range(RECORDS):
        while True:
            try:
                producer.produce(topic, value=f"{tag}-{i}".encode(), partition=i % 2, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 100 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def read_all(bootstrap, topic, count):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    stored = {}
    deadline = time.monotonic() + 60
    try:
        while len(stored) < count and time.monotonic() < deadline:
            for msg in consumer.consume(500, 1.0):
                if msg.error() is None:
                    stored[(msg.partition(), msg.offset())] = msg.value()
    finally:
        consumer.close()
    return stored


def local_answers(http):
    """chronik_raft_local_answers_total of one node."""
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("chronik_raft_local_answers_total "):
                return float(line.split()[1])
    return 0.0


def check_offsets(bootstrap, topic):
    reports, errors = {}, []
    writers = [threading.Thread(target=produce, args=(bootstrap, topic, acks, f"acks{acks}", reports, errors))
               for acks in ("1", "all")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert not errors, errors[:5]
    assert len(reports) == 2 * RECORDS
    stored = read_all(bootstrap, topic, 2 * RECORDS)
    assert len(stored) == 2 * RECORDS
    # Every acknowledged offset holds the record it was given to, and the
    # offsets of each partition are dense.
    for value, position in reports.items():
        assert stored.get(position) == value, f"{value!r} acknowledged at {position}, stored {stored.get(position)!r}"
    for partition in (0, 1):
        offsets = sorted(o for p, o in stored if p == partition)
        assert offsets == list(range(len(offsets)))


def test_acks_1_offsets_on_one_node(broker, topic_name):
    topic = topic_name("acks1")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    check_offsets(broker.bootstrap, topic)
    # The acks=1 batches were answered from the leader's log, not after apply.
    assert local_answers(broker.http) > 0


def test_acks_1_offsets_on_a_cluster(cluster, topic_name):
    topic = topic_name("acks1")
    bootstrap = cluster.nodes[1].kafka_addr
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=3)])[topic].result(30)
    check_offsets(bootstrap, topic)
    assert sum(local_answers(node.http) for node in cluster.nodes.values()) > 0
