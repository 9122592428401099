"""Kafka's admin APIs for moving replicas, from Kafka's own admin clients.

kafka-python's KafkaAdminClient drives AlterPartitionReassignments and
ListPartitionReassignments; confluent-kafka's AdminClient asks for a
preferred-leader election (ElectLeaders). A three-node cluster from the
fault suite's harness.
"""

import time

import pytest
from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, TopicPartition

TOPIC = "reassigned"
# Kafka's error codes.
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REPLICA_ASSIGNMENT = 39
ELECTION_NOT_NEEDED = 84
NO_REASSIGNMENT_IN_PROGRESS = 85
RECORDS = 2000



def replicas_of(admin, partition):
    topic = admin.list_topics(TOPIC, timeout=10).topics[TOPIC]
    p = topic.partitions[partition]
    return list(p.replicas), p.leader


def wait_until(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_reassignment_and_preferred_election_through_kafka_admin_clients(cluster):
    bootstrap = cluster.bootstrap()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, 2, 2)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(RECORDS):
        producer.produce(TOPIC, key=str(i).encode(), value=b"x" * 100, partition=i % 2)
        producer.poll(0)
    assert producer.flush(60) == 0

    before = wait_until("partition 0's leader", lambda: replicas_of(admin, 0)[1] >= 0 and replicas_of(admin, 0)[0])
    spare = next(n for n in (1, 2, 3) if n not in before)
    target = [spare, before[0]]  # a new preferred leader, and one replica kept

    kp = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        errors = kp.alter_partition_reassignments({
            TopicPartition(TOPIC, 0): target,
            TopicPartition(TOPIC, 7): [1, 2],
            TopicPartition(TOPIC, 1): [1, 1],
        })
        by_partition = {tp.partition: error for tp, error in errors.items()}
        assert by_partition[0] is None, errors
        assert by_partition[7].errno == UNKNOWN_TOPIC_OR_PARTITION, errors
        assert by_partition[1].errno == INVALID_REPLICA_ASSIGNMENT, errors

        # The move shows in ListPartitionReassignments until it is done.
        wait_until("the move to finish", lambda: TopicPartition(TOPIC, 0) not in kp.list_partition_reassignments())
        cancel = kp.alter_partition_reassignments({TopicPartition(TOPIC, 0): None})
        assert list(cancel.values())[0].errno == NO_REASSIGNMENT_IN_PROGRESS, cancel
    finally:
        kp.close()

    replicas, _ = replicas_of(admin, 0)
    assert replicas == target

    def preferred_leads():
        admin.elect_leaders(ElectionType.PREFERRED, [CkTopicPartition(TOPIC, 0)]).result(30)
        return replicas_of(admin, 0)[1] == target[0]
    wait_until("the preferred replica to lead", preferred_leads)
    result = admin.elect_leaders(ElectionType.PREFERRED, [CkTopicPartition(TOPIC, 0)]).result(30)
    error = result[CkTopicPartition(TOPIC, 0)]
    assert error is not None and error.code() == ELECTION_NOT_NEEDED, result

    # Every record is still there, read from the new replicas.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reassign-check",
                         "enable.auto.commit": False})
    consumer.assign([CkTopicPartition(TOPIC, 0, 0)])
    keys = []
    deadline = time.monotonic() + 60
    while len(keys) < RECORDS // 2 and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            keys.append(int(message.key()))
    consumer.close()
    assert keys == list(range(0, RECORDS, 2))


def test_manual_replica_assignment_at_creation_and_growth(cluster):
    """CreateTopics and CreatePartitions with replica_assignment, validated
    against the live nodes; validate_only creates nothing."""
    from confluent_kafka import KafkaException

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})

    def error_of(future):
        with pytest.raises(KafkaException) as ei:
            future.result(30)
        return ei.value.args[0].code()

    topic = "assigned"
    bad = {"unknown node": [[1, 9]], "duplicate node": [[2, 2]], "uneven": [[1, 2], [3]]}
    for what, assignment in bad.items():
        future = admin.create_topics([NewTopic(topic, len(assignment), replica_assignment=assignment)])[topic]
        assert error_of(future) == INVALID_REPLICA_ASSIGNMENT, what
    admin.create_topics([NewTopic(topic, 2, replica_assignment=[[3, 1], [2, 3]])],
                        validate_only=True)[topic].result(30)
    assert topic not in admin.list_topics(timeout=10).topics, "validate_only created the topic"

    admin.create_topics([NewTopic(topic, 2, replica_assignment=[[3, 1], [2, 3]])])[topic].result(30)
    wait_until("the assigned topic", lambda: topic in admin.list_topics(timeout=10).topics)
    topic_metadata = admin.list_topics(topic, timeout=10).topics[topic]
    assert [list(topic_metadata.partitions[p].replicas) for p in (0, 1)] == [[3, 1], [2, 3]]

    from confluent_kafka.admin import NewPartitions
    grow = admin.create_partitions([NewPartitions(topic, 3, replica_assignment=[[1, 9]])])[topic]
    assert error_of(grow) == INVALID_REPLICA_ASSIGNMENT
    admin.create_partitions([NewPartitions(topic, 3, replica_assignment=[[1, 2]])],
                            validate_only=True)[topic].result(30)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 2
    admin.create_partitions([NewPartitions(topic, 3, replica_assignment=[[1, 2]])])[topic].result(30)
    wait_until("the third partition", lambda: len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3)
    assert list(admin.list_topics(topic, timeout=10).topics[topic].partitions[2].replicas) == [1, 2]

    # Each partition takes writes on the nodes it was given.
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all"})
    for partition in range(3):
        producer.produce(topic, value=b"v", partition=partition)
    assert producer.flush(60) == 0
