"""The consumer group protocol (KIP-848) through confluent-kafka with
group.protocol=consumer: members join and leave under load and no record is
delivered twice after a clean leave; ConsumerGroupDescribe; classic groups
side by side."""

import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, ConsumerGroupType, KafkaError, TopicPartition

from clients import RDKAFKA_LOG, TIMEOUT, admin_for, create_topic, producer_for, produce_retrying
from conftest import wait_until

PARTITIONS = 6


@pytest.fixture
def broker_args():
    # Members learn of a new assignment on their next heartbeat.
    return ["--group-consumer-heartbeat-interval-ms", "500", "--group-initial-rebalance-delay-ms", "0"]


class Member:
    """A consumer-protocol member polling on its own thread, recording every
    record it is given."""

    def __init__(self, broker, group, topic, name, delivered, **extra):
        conf = {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "logger": RDKAFKA_LOG,
        }
        conf.update(extra)
        self.name = name
        self.consumer = Consumer(conf)
        self.consumer.subscribe([topic])
        self.delivered = delivered
        self.errors = []
        self.owned = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            msg = self.consumer.poll(0.1)
            # Asked on the polling thread: librdkafka serves it between polls.
            self.owned = {tp.partition for tp in self.consumer.assignment()}
            if msg is None:
                continue
            if msg.error():
                self.errors.append(msg.error())
                continue
            self.delivered.append((msg.partition(), msg.offset(), self.name))

    def assignment(self):
        return self.owned

    def leave(self):
        """A clean leave: stop polling, then close (commits, then leaves)."""
        self.stop.set()
        self.thread.join(10)
        self.consumer.close()


def test_members_join_and_leave_under_load_without_duplicates(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("kip848")
    group = topic_name("g")
    create_topic(admin, topic, partitions=PARTITIONS)

    produced = [0]
    stop_producing = threading.Event()

    def produce():
        producer = producer_for(broker, **{"linger.ms": 5})
        i = 0
        while not stop_producing.is_set():
            produce_retrying(producer, topic, value=str(i).encode(), partition=i % PARTITIONS)
            i += 1
            if i % 50 == 0:
                producer.poll(0)
                time.sleep(0.01)
        assert producer.flush(30) == 0
        produced[0] = i

    producer_thread = threading.Thread(target=produce, daemon=True)
    producer_thread.start()
    delivered = []
    members = []

    def settled(expected):
        """Every partition owned by exactly one of the live members."""
        owned = [m.assignment() for m in members]
        every = sorted(p for o in owned for p in o)
        return len(members) == expected and every == list(range(PARTITIONS)) and all(owned)

    try:
        for n in range(1, 4):
            members.append(Member(broker, group, topic, f"m{n}", delivered))
            wait_until(lambda: settled(n), timeout=30, what=f"{n} members sharing the partitions")
            time.sleep(1)

        description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(TIMEOUT)
        assert description.type == ConsumerGroupType.CONSUMER
        assert len(description.members) == 3
        assigned = sorted(tp.partition for m in description.members for tp in m.assignment.topic_partitions)
        assert assigned == list(range(PARTITIONS))

        while len(members) > 1:
            members.pop(0).leave()
            wait_until(lambda: settled(len(members)), timeout=30, what="the rest taking over")
            time.sleep(1)
    finally:
        stop_producing.set()
        producer_thread.join(30)

    # The last member drains everything produced.
    wait_until(lambda: len({(p, o) for p, o, _ in delivered}) >= produced[0], timeout=60,
               what="every produced record delivered")
    members.pop().leave()
    seen = {}
    duplicates = []
    for partition, offset, name in delivered:
        if (partition, offset) in seen:
            duplicates.append((partition, offset, seen[(partition, offset)], name))
        seen[(partition, offset)] = name
    assert not duplicates, f"{len(duplicates)} records delivered twice, e.g. {duplicates[:5]}"
    assert len(seen) == produced[0]


def test_classic_and_consumer_protocol_groups_side_by_side(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("mixed")
    create_topic(admin, topic, partitions=2)
    producer = producer_for(broker)
    for i in range(20):
        producer.produce(topic, value=str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0

    modern_group, classic_group = topic_name("modern"), topic_name("classic")
    delivered_modern, delivered_classic = [], []
    modern = Member(broker, modern_group, topic, "modern", delivered_modern)
    classic = Member(broker, classic_group, topic, "classic", delivered_classic, **{"group.protocol": "classic"})
    try:
        wait_until(lambda: len(delivered_modern) == 20 and len(delivered_classic) == 20, timeout=30,
                   what="both groups reading the topic")
        listed = admin.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT)
        types = {g.group_id: g.type for g in listed.valid}
        assert types[modern_group] == ConsumerGroupType.CONSUMER
        assert types[classic_group] == ConsumerGroupType.CLASSIC

        # A classic member cannot join the consumer-protocol group.
        intruder = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": modern_group,
                             "group.protocol": "classic", "logger": RDKAFKA_LOG})
        intruder.subscribe([topic])
        error = wait_until(lambda: (lambda m: m.error() if m is not None and m.error() else None)(intruder.poll(0.5)),
                           timeout=30, what="the classic join to be refused")
        assert error.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL, error
        intruder.close()
    finally:
        modern.leave()
        classic.leave()

    # Committed offsets of the consumer-protocol group survive its members.
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(modern_group, [TopicPartition(topic, 0), TopicPartition(topic, 1)])],
        request_timeout=TIMEOUT)[modern_group].result(TIMEOUT)
    assert sorted(tp.offset for tp in committed.topic_partitions) == [10, 10]



class ClusterBroker:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap


def test_members_keep_their_partitions_across_a_coordinator_failover(cluster):
    """The group's state is in __consumer_offsets: when the coordinator dies,
    the new one carries on with the same members and assignments."""
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = ClusterBroker(cluster.bootstrap())
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic, group = "kip848-failover", "kip848-failover-group"
    admin.create_topics([NewTopic(topic, 4, 3)])[topic].result(30)
    producer = producer_for(broker)
    for i in range(400):
        producer.produce(topic, value=str(i).encode(), partition=i % 4)
    assert producer.flush(60) == 0

    delivered = []
    members = [Member(broker, group, topic, f"m{n}", delivered) for n in range(2)]

    def settled():
        owned = [m.assignment() for m in members]
        return sorted(p for o in owned for p in o) == [0, 1, 2, 3] and all(owned)

    try:
        wait_until(settled, timeout=60, what="two members sharing the partitions")
        wait_until(lambda: len(delivered) >= 400, timeout=60, what="the first records")
        before = [set(m.assignment()) for m in members]
        coordinator = next(filter(None, (cluster.partition_info("__consumer_offsets", 0, via)
                                         for via in cluster.nodes)), None)
        assert coordinator and coordinator.get("leader"), coordinator
        cluster.nodes[coordinator["leader"]].kill()

        for i in range(400, 800):
            producer.produce(topic, value=str(i).encode(), partition=i % 4)
        assert producer.flush(60) == 0
        wait_until(lambda: len({(p, o) for p, o, _ in delivered}) >= 800, timeout=90,
                   what="the records produced after the failover")
        assert [set(m.assignment()) for m in members] == before, "a member lost or gained partitions"
        # The new coordinator knew the members: none was sent back to rejoin.
        for node in cluster.nodes.values():
            log = node.log_path.read_text(errors="replace")
            assert "refused a consumer group heartbeat" not in log, node.log_path
    finally:
        for member in members:
            member.leave()
