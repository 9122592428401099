"""Integration tests driving Chronik with confluent-kafka (librdkafka)."""

import time
from collections import defaultdict

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
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

from clients import RDKAFKA_LOG, TIMEOUT, admin_for, create_topic, kafka_error, producer_for
from conftest import wait_until



@pytest.fixture
def broker_args():
    # Explicit topic management only: nothing in this module relies on
    # auto-creation, and it must not mask a failed CreateTopics.
    return ["--retention-check-interval-ms", "200", "--auto-create-topics", "false"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def first_consume_error(consumer, timeout=15):
    """The first error a consumer reports; no record may come before it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None:
            assert msg.error() is not None, f"unexpected record at offset {msg.offset()}"
            return msg.error()
    return None


def consumer_for(broker, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": "chronik-python-tests",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "logger": RDKAFKA_LOG,
    }
    conf.update(extra)
    return Consumer(conf)


def kafka_error_of(excinfo):
    return kafka_error(excinfo.value)


def produce_all(producer, items, timeout=60):
    """Produce `items` (dicts of kwargs for Producer.produce); return the
    delivery reports (err, topic, partition, offset, key) in callback order."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.topic(), msg.partition(), msg.offset(), msg.key()))

    for kw in items:
        while True:
            try:
                producer.produce(on_delivery=on_delivery, **kw)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    assert len(reports) == len(items)
    return reports


def consume_n(consumer, n, timeout=60):
    """Consume exactly `n` messages (bounded by `timeout`), failing on errors."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=min(1000, n - len(out)), timeout=1.0):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error: {msg.error()}")
            out.append(msg)
    assert len(out) == n, f"consumed {len(out)} of {n} messages within {timeout}s"
    return out


def assert_no_more(consumer, wait=1.5):
    extra = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=100, timeout=0.3):
            if msg.error() and msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            extra.append(msg)
    assert not extra, f"unexpected extra messages: {[(m.partition(), m.offset(), m.error()) for m in extra][:10]}"


def describe_topic_configs(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)


# --------------------------------------------------------------------------
# 1. topic creation
# --------------------------------------------------------------------------


def test_create_topics(broker, topic_name):
    admin = admin_for(broker)
    name = topic_name("create")
    create_topic(admin, name, partitions=3, config={"retention.ms": "86400000"})

    md = admin.list_topics(timeout=TIMEOUT)
    assert name in md.topics
    tmd = md.topics[name]
    assert tmd.error is None, tmd.error
    assert sorted(tmd.partitions) == [0, 1, 2]
    for p in tmd.partitions.values():
        assert p.error is None, p.error
        assert p.leader == 1
        assert list(p.replicas) == [1]
        assert list(p.isrs) == [1]
    assert list(md.brokers) == [1]
    assert f"{md.brokers[1].host}:{md.brokers[1].port}" == broker.bootstrap

    # The config given at creation time is in effect.
    configs = describe_topic_configs(admin, name)
    assert configs["retention.ms"].value == "86400000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Creating it again fails with TOPIC_ALREADY_EXISTS.
    fs = admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)],
                             request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[name].result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.TOPIC_ALREADY_EXISTS

    # An invalid name fails with INVALID_TOPIC_EXCEPTION.
    bad = "bad name!"
    fs = admin.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1)],
                             request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[bad].result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.TOPIC_EXCEPTION

    # An unknown topic config key is refused with INVALID_CONFIG.
    other = topic_name("badcfg")
    fs = admin.create_topics(
        [NewTopic(other, num_partitions=1, replication_factor=1, config={"no.such.config": "1"})],
        request_timeout=TIMEOUT,
    )
    with pytest.raises(KafkaException) as ei:
        fs[other].result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_CONFIG

    # Neither failed creation left a topic behind; the good one still has 3 partitions.
    topics = admin.list_topics(timeout=TIMEOUT).topics
    assert bad not in topics
    assert other not in topics
    assert len(topics[name].partitions) == 3


# --------------------------------------------------------------------------
# 2. produce / consume round trip
# --------------------------------------------------------------------------


def test_produce_consume_roundtrip(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("roundtrip")
    create_topic(admin, topic, partitions=3)

    n = 5000
    t0 = int(time.time() * 1000) - 3_600_000  # an hour ago, well within retention
    items = []
    expected = {}
    for i in range(n):
        key = f"key-{i % 97}".encode()
        value = (f"value-{i}-" + "x" * (i % 50)).encode()
        headers = [("seq", str(i).encode()), ("h", b"\x00\x01" * (i % 3))]
        if i % 10 == 0:
            headers.append(("h", b"dup"))  # duplicate header key, order matters
        ts = t0 + i
        items.append(dict(topic=topic, key=key, value=value, headers=headers, timestamp=ts))
        expected[i] = (key, value, headers, ts)

    producer = producer_for(broker)
    reports = produce_all(producer, items)

    by_partition = defaultdict(list)
    for err, rtopic, partition, offset, key in reports:
        assert err is None, f"delivery failed: {err}"
        assert rtopic == topic
        assert partition in (0, 1, 2)
        by_partition[partition].append(offset)
    assert sum(len(v) for v in by_partition.values()) == n
    assert len(by_partition) == 3, "keys should have spread over all 3 partitions"
    for p, offsets in by_partition.items():
        assert offsets == sorted(offsets), f"delivery offsets not increasing on partition {p}"
        assert offsets == list(range(len(offsets))), f"offsets not contiguous from 0 on partition {p}"

    # Same key -> same partition (librdkafka's default partitioner is consistent).
    key_partition = {}
    for _err, _t, partition, _off, key in reports:
        assert key_partition.setdefault(key, partition) == partition

    # Watermarks agree with the delivery reports.
    consumer = consumer_for(broker)
    try:
        for p in range(3):
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)
            assert (lo, hi) == (0, len(by_partition[p]))

        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        msgs = consume_n(consumer, n)
        assert_no_more(consumer)
    finally:
        consumer.close()

    got_by_partition = defaultdict(list)
    for m in msgs:
        assert m.topic() == topic
        seq = int(dict(m.headers())["seq"])
        key, value, headers, ts = expected[seq]
        assert m.key() == key
        assert m.value() == value
        assert m.headers() == headers
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, ts)
        got_by_partition[m.partition()].append((m.offset(), seq))

    # Per partition: offsets 0..n-1 in order, and records in produce order.
    for p in range(3):
        got = got_by_partition[p]
        assert [o for o, _ in got] == list(range(len(by_partition[p])))
        seqs = [s for _, s in got]
        assert seqs == sorted(seqs), f"partition {p} records out of produce order"
    # Every record came back exactly once.
    assert sorted(s for v in got_by_partition.values() for _, s in v) == list(range(n))


def test_null_key_value_and_empty_records(broker, topic_name):
    """Tombstones (null value), null keys and empty payloads survive the trip."""
    admin = admin_for(broker)
    topic = topic_name("nulls")
    create_topic(admin, topic, partitions=1)
    items = [
        dict(topic=topic, partition=0, key=None, value=b"no-key"),
        dict(topic=topic, partition=0, key=b"tombstone", value=None),
        dict(topic=topic, partition=0, key=b"", value=b""),
        dict(topic=topic, partition=0, key=b"k", value=b"v" * 200_000),
    ]
    producer = producer_for(broker)
    reports = produce_all(producer, items)
    assert [r[0] for r in reports] == [None] * 4
    assert [r[3] for r in reports] == [0, 1, 2, 3]

    consumer = consumer_for(broker)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume_n(consumer, 4, timeout=20)
    finally:
        consumer.close()
    assert [(m.key(), m.value()) for m in msgs] == [
        (None, b"no-key"),
        (b"tombstone", None),
        (b"", b""),
        (b"k", b"v" * 200_000),
    ]
    assert [m.offset() for m in msgs] == [0, 1, 2, 3]
    assert all(m.headers() is None for m in msgs)


# --------------------------------------------------------------------------
# 3. offsets for times / watermarks / list_offsets
# --------------------------------------------------------------------------


def test_offsets_for_times_and_watermarks(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("times")
    create_topic(admin, topic, partitions=1)

    n = 200
    t0 = int(time.time() * 1000) - 600_000
    producer = producer_for(broker)
    reports = produce_all(
        producer,
        [dict(topic=topic, partition=0, key=str(i).encode(), value=b"v", timestamp=t0 + i)
         for i in range(n)],
    )
    assert [r[3] for r in reports] == list(range(n))

    consumer = consumer_for(broker)
    try:
        # Exact timestamps map to their own offset.
        for k in (0, 1, 57, 100, n - 1):
            [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, t0 + k)], timeout=TIMEOUT)
            assert tp.error is None, tp.error
            assert tp.offset == k, f"timestamp T0+{k} resolved to offset {tp.offset}"
        # A timestamp before the first record gives the first offset.
        [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, t0 - 1000)], timeout=TIMEOUT)
        assert tp.offset == 0
        # A timestamp after the last record gives -1 (no such offset).
        [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, t0 + n + 1000)], timeout=TIMEOUT)
        assert tp.error is None, tp.error
        assert tp.offset == -1

        lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
        assert (lo, hi) == (0, n)

        # Starting in the middle of a batch yields records from exactly there.
        [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, t0 + 57)], timeout=TIMEOUT)
        consumer.assign([tp])
        msgs = consume_n(consumer, n - 57, timeout=20)
        assert [m.offset() for m in msgs] == list(range(57, n))
        assert [m.timestamp()[1] for m in msgs] == [t0 + i for i in range(57, n)]
    finally:
        consumer.close()

    tp = TopicPartition(topic, 0)
    for spec, expected_offset, expected_ts in [
        (OffsetSpec.earliest(), 0, None),
        (OffsetSpec.latest(), n, None),
        (OffsetSpec.for_timestamp(t0 + 42), 42, t0 + 42),
        (OffsetSpec.for_timestamp(t0 + n + 1000), -1, None),
    ]:
        info = admin.list_offsets({tp: spec}, request_timeout=TIMEOUT)[tp].result(timeout=TIMEOUT)
        assert info.offset == expected_offset, f"{type(spec).__name__}: got offset {info.offset}"
        if expected_ts is not None:
            assert info.timestamp == expected_ts


def test_list_offsets_max_timestamp(broker, topic_name):
    """OffsetSpec.max_timestamp (ListOffsets v7, timestamp -3) names the
    record with the largest timestamp (KIP-734), not its batch."""
    admin = admin_for(broker)
    topic = topic_name("maxts")
    create_topic(admin, topic, partitions=1)
    t0 = int(time.time() * 1000) - 600_000
    # Timestamps out of order; the maximum sits in the middle of the batch.
    stamps = [t0 + 5, t0 + 1, t0 + 90, t0 + 7, t0 + 3]
    producer = producer_for(broker, **{"linger.ms": 100})
    produce_all(producer, [dict(topic=topic, partition=0, value=b"v", timestamp=ts) for ts in stamps])
    tp = TopicPartition(topic, 0)
    info = admin.list_offsets({tp: OffsetSpec.max_timestamp()},
                              request_timeout=TIMEOUT)[tp].result(timeout=TIMEOUT)
    assert (info.offset, info.timestamp) == (2, t0 + 90)


def test_list_offsets_on_empty_partition(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("empty")
    create_topic(admin, topic, partitions=2)
    consumer = consumer_for(broker)
    try:
        for p in range(2):
            assert consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT) == (0, 0)
    finally:
        consumer.close()
    tp = TopicPartition(topic, 1)
    for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
        info = admin.list_offsets({tp: spec}, request_timeout=TIMEOUT)[tp].result(timeout=TIMEOUT)
        assert info.offset == 0


# --------------------------------------------------------------------------
# 4. configs
# --------------------------------------------------------------------------


def test_incremental_alter_and_describe_configs(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("cfg")
    create_topic(admin, topic, partitions=1)

    before = describe_topic_configs(admin, topic)
    for key in ("retention.ms", "retention.bytes", "segment.bytes", "max.message.bytes",
                "cleanup.policy"):
        assert key in before, f"{key} missing from DescribeConfigs: {sorted(before)}"
    assert before["cleanup.policy"].value == "delete"
    assert before["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert before["retention.ms"].is_default

    def incremental(entries):
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
        return admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res]

    incremental([ConfigEntry("retention.ms", "1234",
                             incremental_operation=AlterConfigOpType.SET)]).result(timeout=TIMEOUT)
    after = describe_topic_configs(admin, topic)
    assert after["retention.ms"].value == "1234"
    assert after["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not after["retention.ms"].is_default
    # Untouched keys keep their values.
    assert after["segment.bytes"].value == before["segment.bytes"].value

    # An invalid value is refused with INVALID_CONFIG and changes nothing.
    with pytest.raises(KafkaException) as ei:
        incremental([ConfigEntry("retention.ms", "abc",
                                 incremental_operation=AlterConfigOpType.SET)]).result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_CONFIG
    # So is an unknown key.
    with pytest.raises(KafkaException) as ei:
        incremental([ConfigEntry("no.such.config", "1",
                                 incremental_operation=AlterConfigOpType.SET)]).result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_CONFIG
    assert describe_topic_configs(admin, topic)["retention.ms"].value == "1234"

    # DELETE reverts to the default.
    incremental([ConfigEntry("retention.ms", None,
                             incremental_operation=AlterConfigOpType.DELETE)]).result(timeout=TIMEOUT)
    reverted = describe_topic_configs(admin, topic)["retention.ms"]
    assert reverted.value == before["retention.ms"].value
    assert reverted.source == ConfigSource.DEFAULT_CONFIG.value

    # validate_only does not apply the change.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "777", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], validate_only=True,
                                    request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert describe_topic_configs(admin, topic)["retention.ms"].value == before["retention.ms"].value

    # Configs of a missing topic: UNKNOWN_TOPIC_OR_PART.
    missing = ConfigResource(ResourceType.TOPIC, topic_name("missing"))
    with pytest.raises(KafkaException) as ei:
        admin.describe_configs([missing], request_timeout=TIMEOUT)[missing].result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_legacy_alter_configs(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("legacy")
    create_topic(admin, topic, partitions=1, config={"retention.ms": "1234"})

    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.bytes": "1048576"})
    with pytest.warns(DeprecationWarning):
        fut = admin.alter_configs([res], request_timeout=TIMEOUT)[res]
    fut.result(timeout=TIMEOUT)

    configs = describe_topic_configs(admin, topic)
    assert configs["segment.bytes"].value == "1048576"
    assert configs["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Non-incremental AlterConfigs replaces the whole set: retention.ms,
    # not mentioned, goes back to its default.
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    default_retention = configs["retention.ms"].value
    assert default_retention != "1234"

    bad = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "abc"})
    with pytest.warns(DeprecationWarning):
        fut = admin.alter_configs([bad], request_timeout=TIMEOUT)[bad]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_CONFIG
    assert describe_topic_configs(admin, topic)["segment.bytes"].value == "1048576"


def test_configs_survive_restart(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("persist")
    create_topic(admin, topic, partitions=2, config={"retention.ms": "4321"})
    producer = producer_for(broker)
    produce_all(producer, [dict(topic=topic, partition=1, value=b"x%d" % i) for i in range(10)])

    broker.restart()
    admin = admin_for(broker)
    md = admin.list_topics(timeout=TIMEOUT)
    assert len(md.topics[topic].partitions) == 2
    assert describe_topic_configs(admin, topic)["retention.ms"].value == "4321"
    consumer = consumer_for(broker)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=TIMEOUT) == (0, 10)
        consumer.assign([TopicPartition(topic, 1, OFFSET_BEGINNING)])
        msgs = consume_n(consumer, 10, timeout=20)
    finally:
        consumer.close()
    assert [m.value() for m in msgs] == [b"x%d" % i for i in range(10)]


# --------------------------------------------------------------------------
# 5. delete records
# --------------------------------------------------------------------------


def test_delete_records(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("delrec")
    create_topic(admin, topic, partitions=1)
    n = 100
    t0 = int(time.time() * 1000) - 600_000
    producer = producer_for(broker)
    produce_all(producer, [dict(topic=topic, partition=0, value=b"r%d" % i, timestamp=t0 + i)
                           for i in range(n)])

    tp = TopicPartition(topic, 0, 40)
    result = admin.delete_records([tp], request_timeout=TIMEOUT)
    [(rtp, fut)] = list(result.items())
    assert (rtp.topic, rtp.partition) == (topic, 0)
    deleted = fut.result(timeout=TIMEOUT)
    assert deleted.low_watermark == 40

    consumer = consumer_for(broker)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (40, n)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume_n(consumer, n - 40, timeout=20)
        assert_no_more(consumer, wait=1.0)
    finally:
        consumer.close()
    assert [m.offset() for m in msgs] == list(range(40, n))
    assert [m.value() for m in msgs] == [b"r%d" % i for i in range(40, n)]

    info = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()},
                              request_timeout=TIMEOUT)[TopicPartition(topic, 0)].result(timeout=TIMEOUT)
    assert info.offset == 40

    # Fetching below the log start offset is OFFSET_OUT_OF_RANGE.
    consumer = consumer_for(broker, **{"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, 10)])
        err = first_consume_error(consumer)
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        consumer.close()

    # Deleting beyond the high watermark is OFFSET_OUT_OF_RANGE.
    result = admin.delete_records([TopicPartition(topic, 0, n + 10)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        list(result.values())[0].result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.OFFSET_OUT_OF_RANGE

    # The low watermark survives a restart.
    broker.restart()
    consumer = consumer_for(broker)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (40, n)
    finally:
        consumer.close()

    # OFFSET_END (-1) deletes everything.
    admin = admin_for(broker)
    result = admin.delete_records([TopicPartition(topic, 0, -1)], request_timeout=TIMEOUT)
    assert list(result.values())[0].result(timeout=TIMEOUT).low_watermark == n
    consumer = consumer_for(broker)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (n, n)
    finally:
        consumer.close()


def test_offsets_for_times_after_delete_records(broker, topic_name):
    """ListOffsets by timestamp never names an offset below the log start
    offset: Kafka searches from logStartOffset."""
    admin = admin_for(broker)
    topic = topic_name("delts")
    create_topic(admin, topic, partitions=1)
    n = 100
    t0 = int(time.time() * 1000) - 600_000
    producer = producer_for(broker)
    produce_all(producer, [dict(topic=topic, partition=0, value=b"r%d" % i, timestamp=t0 + i)
                           for i in range(n)])
    result = admin.delete_records([TopicPartition(topic, 0, 40)], request_timeout=TIMEOUT)
    assert list(result.values())[0].result(timeout=TIMEOUT).low_watermark == 40

    consumer = consumer_for(broker)
    try:
        [found] = consumer.offsets_for_times([TopicPartition(topic, 0, t0 + 60)], timeout=TIMEOUT)
        assert found.offset == 60
        [found] = consumer.offsets_for_times([TopicPartition(topic, 0, t0 + 10)], timeout=TIMEOUT)
        assert found.offset == 40, "ListOffsets by timestamp returned an offset below the log start"
    finally:
        consumer.close()
    tp = TopicPartition(topic, 0)
    info = admin.list_offsets({tp: OffsetSpec.for_timestamp(t0)},
                              request_timeout=TIMEOUT)[tp].result(timeout=TIMEOUT)
    assert (info.offset, info.timestamp) == (40, t0 + 40)


# --------------------------------------------------------------------------
# 6. create partitions / delete topics
# --------------------------------------------------------------------------


def test_create_partitions_and_delete_topics(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("grow")
    create_topic(admin, topic, partitions=1)

    admin.create_partitions([NewPartitions(topic, 3)],
                            request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_until(lambda: len(admin.list_topics(timeout=TIMEOUT).topics[topic].partitions) == 3,
               timeout=TIMEOUT, what="3 partitions in metadata")
    assert sorted(admin.list_topics(timeout=TIMEOUT).topics[topic].partitions) == [0, 1, 2]

    # The new partitions accept records.
    producer = producer_for(broker)
    reports = produce_all(producer, [dict(topic=topic, partition=2, value=b"p2"),
                                     dict(topic=topic, partition=1, value=b"p1")])
    assert sorted((r[2], r[3], r[0]) for r in reports) == [(1, 0, None), (2, 0, None)]

    # Shrinking is refused with INVALID_PARTITIONS.
    with pytest.raises(KafkaException) as ei:
        admin.create_partitions([NewPartitions(topic, 2)],
                                request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_PARTITIONS

    # Delete the topic; it disappears from metadata.
    keep = topic_name("keep")
    create_topic(admin, keep, partitions=1)
    admin.delete_topics([topic], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in admin.list_topics(timeout=TIMEOUT).topics,
               timeout=TIMEOUT, what=f"{topic} gone from metadata")
    assert keep in admin.list_topics(timeout=TIMEOUT).topics

    # Deleting it again: UNKNOWN_TOPIC_OR_PART.
    with pytest.raises(KafkaException) as ei:
        admin.delete_topics([topic], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    assert kafka_error_of(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # The name can be reused, and the new topic starts empty.
    create_topic(admin, topic, partitions=1)
    consumer = consumer_for(broker)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (0, 0)
    finally:
        consumer.close()


def test_describe_cluster(broker):
    admin = admin_for(broker)
    desc = admin.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert [n.id for n in desc.nodes] == [1]
    assert f"{desc.nodes[0].host}:{desc.nodes[0].port}" == broker.bootstrap
    assert desc.controller is not None and desc.controller.id == 1
    assert desc.cluster_id


# --------------------------------------------------------------------------
# more produce / fetch semantics
# --------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches(broker, topic_name, codec):
    admin = admin_for(broker)
    topic = topic_name(codec)
    create_topic(admin, topic, partitions=1)
    n = 300
    t0 = int(time.time() * 1000) - 60_000
    producer = producer_for(broker, **{"compression.type": codec, "linger.ms": 50})
    reports = produce_all(producer, [
        dict(topic=topic, partition=0, key=b"k%d" % i, value=b"compressible " * 20 + b"%d" % i,
             headers=[("i", b"%d" % i)], timestamp=t0 + i)
        for i in range(n)])
    assert all(r[0] is None for r in reports)
    assert sorted(r[3] for r in reports) == list(range(n))

    consumer = consumer_for(broker)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume_n(consumer, n, timeout=20)
        # Timestamp lookup inside a compressed batch.
        [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, t0 + 123)], timeout=TIMEOUT)
        assert tp.offset == 123
    finally:
        consumer.close()
    assert [m.offset() for m in msgs] == list(range(n))
    assert [m.value() for m in msgs] == [b"compressible " * 20 + b"%d" % i for i in range(n)]
    assert [m.headers() for m in msgs] == [[("i", b"%d" % i)] for i in range(n)]
    assert [m.timestamp()[1] for m in msgs] == [t0 + i for i in range(n)]


def test_max_message_bytes_enforced(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("maxmsg")
    create_topic(admin, topic, partitions=1, config={"max.message.bytes": "2000"})
    producer = producer_for(broker, **{"linger.ms": 0})
    reports = produce_all(producer, [dict(topic=topic, partition=0, value=b"x" * 10_000)])
    err = reports[0][0]
    assert err is not None, "a 10 kB record must not fit max.message.bytes=2000"
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    # A small record is still accepted, at offset 0 (nothing was appended).
    reports = produce_all(producer, [dict(topic=topic, partition=0, value=b"small")])
    assert reports[0][0] is None
    assert reports[0][3] == 0


def test_fetch_returns_batch_larger_than_fetch_limits(broker, topic_name):
    """KIP-74: the first batch is returned even if it exceeds the fetch limits."""
    admin = admin_for(broker)
    topic = topic_name("bigfetch")
    create_topic(admin, topic, partitions=1)
    big = bytes(range(256)) * 1200  # ~300 kB
    producer = producer_for(broker)
    produce_all(producer, [dict(topic=topic, partition=0, value=big),
                           dict(topic=topic, partition=0, value=b"after")])
    consumer = consumer_for(broker, **{"message.max.bytes": 1000,
                                       "fetch.max.bytes": 1024,
                                       "max.partition.fetch.bytes": 1024,
                                       "receive.message.max.bytes": 1_000_000})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume_n(consumer, 2, timeout=20)
    finally:
        consumer.close()
    assert [m.value() for m in msgs] == [big, b"after"]


def test_fetch_out_of_range_resets(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("oor")
    create_topic(admin, topic, partitions=1)
    producer = producer_for(broker)
    produce_all(producer, [dict(topic=topic, partition=0, value=b"m%d" % i) for i in range(10)])

    # auto.offset.reset=error surfaces the broker's OFFSET_OUT_OF_RANGE.
    consumer = consumer_for(broker, **{"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, 1000)])
        err = first_consume_error(consumer)
        assert err is not None, "no error reported for an out-of-range fetch"
        assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        consumer.close()

    # auto.offset.reset=earliest resets to the start.
    consumer = consumer_for(broker, **{"auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 1000)])
        msgs = consume_n(consumer, 10, timeout=15)
    finally:
        consumer.close()
    assert [m.offset() for m in msgs] == list(range(10))


def test_retention_ms_deletes_old_segments(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("retain")
    create_topic(admin, topic, partitions=1,
                 config={"segment.bytes": "1024", "retention.ms": "60000"})
    old = int(time.time() * 1000) - 3_600_000
    producer = producer_for(broker, **{"linger.ms": 0})
    n_old, n_new = 40, 5
    # One record per request so that the old records span many small segments.
    for i in range(n_old):
        produce_all(producer, [dict(topic=topic, partition=0, value=b"o" * 100, timestamp=old + i)])
    for i in range(n_new):
        produce_all(producer, [dict(topic=topic, partition=0, value=b"new%d" % i)])
    total = n_old + n_new

    consumer = consumer_for(broker)
    try:
        tp = TopicPartition(topic, 0)
        # Segments hold ~5 records each: all but the last segment with old
        # records expire; the segment(s) holding current records must stay.
        lo, hi = wait_until(
            lambda: (lambda w: w if w[0] >= n_old - 10 else None)(
                consumer.get_watermark_offsets(tp, timeout=TIMEOUT)),
            timeout=15, what="retention to delete the expired segments")
        assert hi == total
        assert lo <= n_old, "retention deleted records that had not expired"
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume_n(consumer, total - lo, timeout=15)
    finally:
        consumer.close()
    assert msgs[0].offset() == lo
    assert [m.value() for m in msgs[-n_new:]] == [b"new%d" % i for i in range(n_new)]


def test_retention_bytes_caps_partition_size(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("retbytes")
    create_topic(admin, topic, partitions=1,
                 config={"segment.bytes": "1024", "retention.bytes": "3000"})
    producer = producer_for(broker, **{"linger.ms": 0})
    n = 60
    for i in range(n):
        produce_all(producer, [dict(topic=topic, partition=0, value=b"%03d" % i + b"b" * 100)])
    consumer = consumer_for(broker)
    try:
        tp = TopicPartition(topic, 0)
        # ~170 bytes per single-record batch: 3000 bytes hold ~18 of them.
        # Retention deletes whole segments until the rest fits (plus, at
        # most, one segment), and never goes below retention.bytes.
        lo, hi = wait_until(
            lambda: (lambda w: w if n - w[0] <= 30 else None)(
                consumer.get_watermark_offsets(tp, timeout=TIMEOUT)),
            timeout=15, what="retention.bytes to shrink the partition")
        assert hi == n
        assert n - lo >= 10, f"retention.bytes deleted too much: {(lo, hi)}"
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume_n(consumer, n - lo, timeout=15)
    finally:
        consumer.close()
    assert [m.value()[:3] for m in msgs] == [b"%03d" % i for i in range(lo, n)]


def test_acks_zero_and_one(broker, topic_name):
    """acks=0 requests get no response (the broker must not send one, or the
    client's correlation ids go astray); acks=1 behaves like acks=all here."""
    admin = admin_for(broker)
    topic = topic_name("acks")
    create_topic(admin, topic, partitions=1)
    p0 = producer_for(broker, **{"acks": "0", "linger.ms": 0})
    reports = produce_all(p0, [dict(topic=topic, partition=0, value=b"a0-%d" % i) for i in range(200)])
    assert all(r[0] is None for r in reports), [r[0] for r in reports if r[0]][:3]
    p1 = producer_for(broker, **{"acks": "1"})
    reports = produce_all(p1, [dict(topic=topic, partition=0, value=b"a1-%d" % i) for i in range(50)])
    assert all(r[0] is None for r in reports)
    assert sorted(r[3] for r in reports) == list(range(200, 250))
    consumer = consumer_for(broker)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (0, 250)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume_n(consumer, 250, timeout=20)
    finally:
        consumer.close()
    assert [m.value() for m in msgs] == [b"a0-%d" % i for i in range(200)] + [b"a1-%d" % i for i in range(50)]


def test_consumer_sees_records_produced_after_assign(broker, topic_name):
    """Long-polling Fetch returns new records promptly."""
    admin = admin_for(broker)
    topic = topic_name("live")
    create_topic(admin, topic, partitions=1)
    consumer = consumer_for(broker, **{"fetch.wait.max.ms": 500})
    producer = producer_for(broker)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert consumer.poll(1.0) is None
        for round_ in range(3):
            produce_all(producer, [dict(topic=topic, partition=0, value=b"live-%d" % round_)])
            start = time.monotonic()
            [msg] = consume_n(consumer, 1, timeout=10)
            assert msg.value() == b"live-%d" % round_
            assert msg.offset() == round_
            assert time.monotonic() - start < 5
    finally:
        consumer.close()


def test_topic_admin_errors(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("errs")
    create_topic(admin, topic, partitions=2)
    missing = topic_name("missing")

    def err_of(fut):
        with pytest.raises(KafkaException) as ei:
            fut.result(timeout=TIMEOUT)
        return kafka_error_of(ei).code()

    def create(new_topic, **kw):
        return admin.create_topics([new_topic], request_timeout=TIMEOUT, **kw)[new_topic.topic]

    # Invalid names.
    for bad in ["", ".", "..", "a" * 250, "with/slash", "tab\there"]:
        if bad == "":
            continue  # librdkafka refuses an empty name locally
        assert err_of(create(NewTopic(bad, num_partitions=1, replication_factor=1))) == \
            KafkaError.TOPIC_EXCEPTION, bad
    # 249 characters is the longest legal name.
    long_ok = "l" * 249
    create(NewTopic(long_ok, num_partitions=1, replication_factor=1)).result(timeout=TIMEOUT)

    # Bad partition / replication counts.
    assert err_of(create(NewTopic(topic_name("zero"), num_partitions=0, replication_factor=1))) == \
        KafkaError.INVALID_PARTITIONS
    assert err_of(create(NewTopic(topic_name("rf3"), num_partitions=1, replication_factor=3))) == \
        KafkaError.INVALID_REPLICATION_FACTOR
    # A cleanup.policy Kafka does not know: INVALID_CONFIG.
    assert err_of(create(NewTopic(topic_name("shred"), num_partitions=1, replication_factor=1,
                                  config={"cleanup.policy": "shred"}))) == KafkaError.INVALID_CONFIG

    # validate_only creates nothing.
    vo = topic_name("validate")
    create(NewTopic(vo, num_partitions=1, replication_factor=1),
           validate_only=True).result(timeout=TIMEOUT)
    # Broker default partition count (-1) is allowed (CreateTopics v4+).
    dflt = topic_name("default")
    create(NewTopic(dflt)).result(timeout=TIMEOUT)

    topics = wait_until(lambda: (lambda t: t if dflt in t else None)(admin.list_topics(timeout=TIMEOUT).topics),
                        timeout=TIMEOUT, what="default-partitions topic")
    assert vo not in topics
    assert long_ok in topics
    assert len(topics[dflt].partitions) == 1  # --default-partitions defaults to 1

    # Operations on a missing topic: UNKNOWN_TOPIC_OR_PART.
    assert err_of(admin.create_partitions([NewPartitions(missing, 3)],
                                          request_timeout=TIMEOUT)[missing]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert err_of(admin.delete_topics([missing], request_timeout=TIMEOUT)[missing]) == \
        KafkaError.UNKNOWN_TOPIC_OR_PART
    res = ConfigResource(ResourceType.TOPIC, missing, incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    assert err_of(admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res]) == \
        KafkaError.UNKNOWN_TOPIC_OR_PART
    # librdkafka resolves DeleteRecords leaders from Metadata first, so a
    # missing topic / partition may be reported with its local error codes.
    unknown = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
               KafkaError._UNKNOWN_TOPIC, KafkaError._NOENT}
    result = admin.delete_records([TopicPartition(missing, 0, 0)], request_timeout=TIMEOUT)
    assert err_of(list(result.values())[0]) in unknown
    # A missing partition of an existing topic.
    result = admin.delete_records([TopicPartition(topic, 7, 0)], request_timeout=TIMEOUT)
    assert err_of(list(result.values())[0]) in unknown

    # CreatePartitions to the current count: INVALID_PARTITIONS.
    assert err_of(admin.create_partitions([NewPartitions(topic, 2)],
                                          request_timeout=TIMEOUT)[topic]) == KafkaError.INVALID_PARTITIONS
    # validate_only CreatePartitions changes nothing.
    admin.create_partitions([NewPartitions(topic, 5)], validate_only=True,
                            request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    assert len(admin.list_topics(timeout=TIMEOUT).topics[topic].partitions) == 2

    # APPEND / SUBTRACT are for list-valued configs only: INVALID_CONFIG.
    for op in (AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT):
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", "5", incremental_operation=op)])
        assert err_of(admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res]) == \
            KafkaError.INVALID_CONFIG, op

    # Metadata for a missing topic (auto-creation is off): UNKNOWN_TOPIC_OR_PART.
    md = admin.list_topics(topic=missing, timeout=TIMEOUT)
    assert md.topics[missing].error is not None
    assert md.topics[missing].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert missing not in admin.list_topics(timeout=TIMEOUT).topics


class TestAutoCreate:
    @pytest.fixture
    def broker_args(self):
        return ["--auto-create-topics", "true", "--default-partitions", "3"]

    def test_produce_auto_creates_topic(self, broker, topic_name):
        admin = admin_for(broker)
        topic = topic_name("auto")
        producer = producer_for(broker)
        reports = produce_all(producer, [dict(topic=topic, key=b"k%d" % i, value=b"v") for i in range(60)],
                              timeout=30)
        assert all(r[0] is None for r in reports), [r[0] for r in reports if r[0]][:3]
        assert {r[2] for r in reports} == {0, 1, 2}
        md = admin.list_topics(timeout=TIMEOUT)
        assert len(md.topics[topic].partitions) == 3

    def test_metadata_request_auto_creates_topic(self, broker, topic_name):
        admin = admin_for(broker)
        topic = topic_name("automd")
        md = wait_until(
            lambda: (lambda m: m if m.topics[topic].error is None and m.topics[topic].partitions else None)(
                admin.list_topics(topic=topic, timeout=TIMEOUT)),
            timeout=TIMEOUT, what="auto-created topic in metadata")
        assert sorted(md.topics[topic].partitions) == [0, 1, 2]
        assert topic in admin.list_topics(timeout=TIMEOUT).topics


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
def test_restart_keeps_topics_records_and_offsets(broker, topic_name, graceful):
    """Acknowledged (acks=all) records, topics and deletions survive a
    restart, including a crash; offsets continue where they left off."""
    admin = admin_for(broker)
    keep, gone = topic_name("keep"), topic_name("gone")
    create_topic(admin, keep, partitions=2)
    create_topic(admin, gone, partitions=1)
    admin.delete_topics([gone], request_timeout=TIMEOUT)[gone].result(timeout=TIMEOUT)
    n = 1000
    producer = producer_for(broker)
    reports = produce_all(producer, [dict(topic=keep, partition=i % 2, value=b"r%d" % i) for i in range(n)])
    assert all(r[0] is None for r in reports)
    del producer

    broker.restart(graceful=graceful)

    admin = admin_for(broker)
    topics = admin.list_topics(timeout=TIMEOUT).topics
    assert keep in topics and len(topics[keep].partitions) == 2
    assert gone not in topics, "a deleted topic came back after restart"

    producer = producer_for(broker)
    more = produce_all(producer, [dict(topic=keep, partition=0, value=b"after")])
    assert more[0][0] is None
    assert more[0][3] == n // 2, "offsets must continue after a restart"

    consumer = consumer_for(broker)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(keep, 0), timeout=TIMEOUT) == (0, n // 2 + 1)
        assert consumer.get_watermark_offsets(TopicPartition(keep, 1), timeout=TIMEOUT) == (0, n // 2)
        consumer.assign([TopicPartition(keep, p, OFFSET_BEGINNING) for p in (0, 1)])
        msgs = consume_n(consumer, n + 1, timeout=30)
    finally:
        consumer.close()
    p0 = [m.value() for m in msgs if m.partition() == 0]
    p1 = [m.value() for m in msgs if m.partition() == 1]
    assert p0 == [b"r%d" % i for i in range(0, n, 2)] + [b"after"]
    assert p1 == [b"r%d" % i for i in range(1, n, 2)]
