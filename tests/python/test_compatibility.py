"""Kafka behaviour that clients and tools rely on, through confluent-kafka:
fetch size limits, async commits, Kafka's whole topic-config set with
DescribeConfigs (topics and brokers), the topic configs the broker acts on,
and the admin API end to end."""

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from clients import RDKAFKA_LOG, TIMEOUT, admin_for, create_topic, kafka_error, producer_for, produce_retrying
from conftest import wait_until


def consumer_for(broker, group, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "logger": RDKAFKA_LOG,
    }
    conf.update(extra)
    return Consumer(conf)


def produce(broker, topic, count, value=b"v", partitions=1, **extra):
    producer = producer_for(broker, **extra)
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(err)

    for i in range(count):
        produce_retrying(producer, topic, value=value, key=str(i).encode(),
                         partition=i % partitions, on_delivery=report)
    assert producer.flush(60) == 0
    assert not failures, failures[:3]


def describe(admin, resource_type, name):
    resource = ConfigResource(resource_type, name)
    return admin.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)


# --------------------------------------------------------------------------
# fetch limits and commits
# --------------------------------------------------------------------------


def test_consumer_with_small_fetch_max_bytes_reads_every_partition(broker, topic_name):
    """fetch.max.bytes ~1 MB over 6 partitions of ~1.2 MB each: every
    response must fit receive.message.max.bytes, or librdkafka drops the
    connection and never progresses."""
    admin = admin_for(broker)
    topic = topic_name("fetchcap")
    create_topic(admin, topic, partitions=6)
    value = b"x" * 10_000
    produce(broker, topic, 720, value=value, partitions=6,
            **{"batch.size": 200_000, "linger.ms": 50})
    consumer = consumer_for(broker, topic_name("g"), **{
        "fetch.max.bytes": 1_000_000,
        "receive.message.max.bytes": 1_000_512,
        "max.partition.fetch.bytes": 1_048_576,
    })
    consumer.subscribe([topic])
    seen = {}
    deadline = time.monotonic() + 60
    while sum(seen.values()) < 720 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        seen[msg.partition()] = seen.get(msg.partition(), 0) + 1
    consumer.close()
    assert seen == {p: 120 for p in range(6)}


@pytest.mark.parametrize("store", ["explicit", "stored"])
def test_async_commits_take_effect_in_order(broker, topic_name, store):
    """One async commit per record: the last one committed is what
    OffsetFetch returns, from this member and from a fresh one."""
    admin = admin_for(broker)
    topic = topic_name("asynccommit")
    group = topic_name("g")
    create_topic(admin, topic, partitions=1)
    produce(broker, topic, 300)
    acked = []

    def on_commit(err, partitions):
        assert err is None, err
        acked.extend(p.offset for p in partitions if p.error is None)

    consumer = consumer_for(broker, group, on_commit=on_commit,
                            **{"enable.auto.offset.store": store == "stored"})
    consumer.subscribe([topic])
    read = 0
    deadline = time.monotonic() + 60
    while read < 300 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        read += 1
        if store == "explicit":
            consumer.commit(message=msg, asynchronous=True)
        else:
            consumer.commit(asynchronous=True)
    assert read == 300
    wait_until(lambda: (consumer.poll(0.1), 300 in acked)[1], timeout=30, what="the last commit's callback")
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)[0].offset
    assert committed == 300, f"OffsetFetch says {committed} after the commit of 300 was acknowledged"
    consumer.close()
    other = consumer_for(broker, group)
    assert other.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)[0].offset == 300
    other.close()


# --------------------------------------------------------------------------
# the topic-config set
# --------------------------------------------------------------------------

# Every topic config Kafka 3.9 defines.
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages",
    "flush.ms", "follower.replication.throttled.replicas", "index.interval.bytes",
    "leader.replication.throttled.replicas", "local.retention.bytes", "local.retention.ms",
    "max.compaction.lag.ms", "max.message.bytes", "message.downconversion.enable",
    "message.format.version", "message.timestamp.after.max.ms", "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms", "message.timestamp.type", "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms", "min.insync.replicas", "preallocate", "remote.log.copy.disable",
    "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes", "retention.ms",
    "segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
    "unclean.leader.election.enable",
}


def test_kafka_topic_configs_are_accepted_and_described(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("std")
    settings = {
        "compression.type": "zstd",
        "message.format.version": "2.8-IV1",
        "unclean.leader.election.enable": "false",
        "min.insync.replicas": "1",
        "cleanup.policy": "compact,delete",
        "segment.ms": "3600000",
        "flush.messages": "10000",
        "min.cleanable.dirty.ratio": "0.3",
        "leader.replication.throttled.replicas": "*",
    }
    create_topic(admin, topic, partitions=1, config=settings)
    configs = describe(admin, ResourceType.TOPIC, topic)
    assert set(configs) == KAFKA_TOPIC_CONFIGS
    for key, value in settings.items():
        assert configs[key].value == value, key
        assert configs[key].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, key
    retention = configs["retention.ms"]
    assert (retention.value, retention.source) == ("604800000", ConfigSource.DEFAULT_CONFIG.value)
    assert not retention.is_read_only and not retention.is_sensitive
    # Synonyms name the broker default each topic config falls back to.
    assert "log.retention.ms" in retention.synonyms
    policy = configs["cleanup.policy"].synonyms
    assert policy["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert policy["log.cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value

    # AlterConfigs of a deprecated key is accepted and kept.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("message.format.version", "3.0-IV1", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("leader.replication.throttled.replicas", "0:1",
                    incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    # APPEND and SUBTRACT work on list-valued configs.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT),
        ConfigEntry("leader.replication.throttled.replicas", "0:2",
                    incremental_operation=AlterConfigOpType.APPEND),
    ])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    configs = describe(admin, ResourceType.TOPIC, topic)
    assert configs["message.format.version"].value == "3.0-IV1"
    assert configs["cleanup.policy"].value == "compact"
    assert configs["leader.replication.throttled.replicas"].value == "0:1,0:2"

    # Kafka's validation: wrong types, ranges and values are INVALID_CONFIG.
    for key, bad in [("compression.type", "brotli"), ("segment.bytes", "4294967296"),
                     ("min.insync.replicas", "0"), ("message.timestamp.type", "Now"),
                     ("min.cleanable.dirty.ratio", "2"), ("remote.storage.enable", "true"),
                     ("preallocate", "maybe")]:
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry(key, bad, incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(KafkaException) as ei:
            admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
        assert kafka_error(ei.value).code() == KafkaError.INVALID_CONFIG, (key, bad)


def test_broker_configs_are_described(broker):
    admin = admin_for(broker)
    node = str(admin.list_topics(timeout=TIMEOUT).controller_id)
    configs = describe(admin, ResourceType.BROKER, node)
    assert configs["broker.id"].value == node
    assert configs["broker.id"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert configs["broker.id"].is_read_only
    assert configs["listeners"].value.startswith("PLAINTEXT://")
    assert configs["log.retention.ms"].value == "604800000"
    assert configs["log.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["message.max.bytes"].value == "1048588"
    assert configs["auto.create.topics.enable"].value in ("true", "false")
    # Broker settings are flags: altering them is refused with a reason.
    res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[
        ConfigEntry("log.retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as ei:
        admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert kafka_error(ei.value).code() == KafkaError.INVALID_REQUEST


def test_log_append_time_and_timestamp_bounds(broker, topic_name):
    admin = admin_for(broker)
    stamped = topic_name("appendtime")
    create_topic(admin, stamped, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    producer = producer_for(broker)
    producer.produce(stamped, value=b"v", timestamp=1_000)
    assert producer.flush(30) == 0
    consumer = consumer_for(broker, topic_name("g"))
    consumer.assign([TopicPartition(stamped, 0, OFFSET_BEGINNING)])
    msg = wait_until(lambda: consumer.poll(0.5), timeout=30, what="the stamped record")
    kind, ts = msg.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= int(time.time() * 1000) + 1000, ts
    consumer.close()

    bounded = topic_name("bounded")
    create_topic(admin, bounded, config={"message.timestamp.before.max.ms": "60000"})
    errors = []
    # One at a time: a batch is refused whole, as Kafka refuses it.
    producer.produce(bounded, value=b"old", timestamp=1_000,
                     on_delivery=lambda err, _m: errors.append(err))
    assert producer.flush(30) == 0
    producer.produce(bounded, value=b"now", on_delivery=lambda err, _m: errors.append(err))
    assert producer.flush(30) == 0
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_TIMESTAMP, errors
    assert errors[1] is None


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd", "uncompressed"])
def test_topic_compression_type_recompresses(broker, topic_name, codec):
    """The broker stores the topic's codec whatever the producer used, and
    consumers read the same records back."""
    admin = admin_for(broker)
    topic = topic_name(f"codec-{codec}")
    create_topic(admin, topic, config={"compression.type": codec})
    produce(broker, topic, 500, value=b"y" * 300, **{"compression.type": "lz4" if codec != "lz4" else "gzip"})
    consumer = consumer_for(broker, topic_name("g"))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 500 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append((msg.offset(), msg.key(), msg.value()))
    consumer.close()
    assert got == [(i, str(i).encode(), b"y" * 300) for i in range(500)]


# --------------------------------------------------------------------------
# the admin API end to end
# --------------------------------------------------------------------------


def test_admin_api_end_to_end(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("admin")
    group = topic_name("g")
    fs = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                       config={"retention.ms": "3600000"})], request_timeout=TIMEOUT)
    fs[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic in admin.list_topics(timeout=TIMEOUT).topics, timeout=TIMEOUT, what="topic")
    admin.create_partitions([NewPartitions(topic, 3)], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    described = admin.describe_topics(
        TopicCollection([topic]), request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    assert len(described.partitions) == 3
    produce(broker, topic, 90, partitions=3)

    # Records: list offsets and delete some.
    latest = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(3)},
                                request_timeout=TIMEOUT)
    assert {tp.partition: f.result(timeout=TIMEOUT).offset for tp, f in latest.items()} == {0: 30, 1: 30, 2: 30}
    deleted = admin.delete_records([TopicPartition(topic, 0, 10)], request_timeout=TIMEOUT)
    assert list(deleted.values())[0].result(timeout=TIMEOUT).low_watermark == 10

    # Groups and offsets: a member commits, the admin lists, alters and deletes.
    consumer = consumer_for(broker, group)
    consumer.subscribe([topic])
    read = 0
    deadline = time.monotonic() + 30
    while read < 80 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            read += 1
    consumer.commit(asynchronous=False)
    groups = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert group in {g.group_id for g in groups.valid}
    description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    assert len(description.members) == 1
    consumer.close()

    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])
    offsets = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    # Every record read: partition 0 from 10 (the deleted ones are gone) to 30.
    assert read == 80
    assert sorted(tp.offset for tp in offsets.topic_partitions) == [30, 30, 30]
    altered = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 1, 5)])
    admin.alter_consumer_group_offsets([altered], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 1)])],
                                                request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    assert offsets.topic_partitions[0].offset == 5
    admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    groups = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert group not in {g.group_id for g in groups.valid}

    # Configs and topic deletion.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert describe(admin, ResourceType.TOPIC, topic)["retention.ms"].value == "7200000"
    admin.delete_topics([topic], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in admin.list_topics(timeout=TIMEOUT).topics, timeout=TIMEOUT,
               what="topic gone")
