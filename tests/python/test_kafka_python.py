"""Integration tests driving Chronik with kafka-python (pure-Python client)."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import InvalidConfigurationError, TopicAlreadyExistsError
from kafka.protocol.consumer.offsets import OffsetSpec

from conftest import wait_until

TIMEOUT_MS = 15000


@pytest.fixture
def broker_args():
    return ["--retention-check-interval-ms", "200", "--auto-create-topics", "false"]


@pytest.fixture
def clients(broker):
    """Factory for kafka-python clients, all closed (bounded) before the broker stops."""
    made = []

    common = dict(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS,
                  bootstrap_timeout_ms=10000)

    def admin():
        c = KafkaAdminClient(**common)
        made.append(c)
        return c

    def producer(**extra):
        # kafka-python >= 3 makes producers idempotent by default (KIP-679),
        # which needs InitProducerId; Chronik does not implement it (yet).
        extra.setdefault("enable_idempotence", False)
        c = KafkaProducer(acks="all", linger_ms=5, **common, **extra)
        made.append(c)
        return c

    def consumer(**extra):
        c = KafkaConsumer(group_id=None, enable_auto_commit=False,
                          consumer_timeout_ms=1000, **common, **extra)
        made.append(c)
        return c

    class Clients:
        pass

    cl = Clients()
    cl.admin, cl.producer, cl.consumer = admin, producer, consumer
    yield cl
    for c in reversed(made):
        try:
            if isinstance(c, KafkaProducer):
                c.close(timeout=5)
            else:
                c.close()
        except Exception as e:  # closing must not mask the test's own outcome
            print(f"closing {c!r} failed: {e!r}")


def create_topic(admin, name, partitions=1, configs=None):
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                  topic_configs=configs or {})], timeout_ms=TIMEOUT_MS)
    wait_until(lambda: name in admin.list_topics(), timeout=15, what=f"topic {name}")


def consume_all(consumer, n, timeout=60):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for _tp, records in consumer.poll(timeout_ms=1000, max_records=1000).items():
            out.extend(records)
    assert len(out) == n, f"consumed {len(out)} of {n} records within {timeout}s"
    return out


def test_produce_consume_and_offsets(broker, clients, topic_name):
    admin = clients.admin()
    topic = topic_name("kp")
    create_topic(admin, topic, partitions=2)
    assert topic in admin.list_topics()
    described = admin.describe_topics([topic])
    assert len(described) == 1 and described[0]["name"] == topic
    assert described[0]["error_code"] == 0
    assert sorted(p["partition_index"] for p in described[0]["partitions"]) == [0, 1]
    assert all(p["leader_id"] == 1 for p in described[0]["partitions"])

    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)],
                            timeout_ms=TIMEOUT_MS)

    # Produce 2,000 keyed, timestamped records; remember where each landed.
    n = 2000
    t0 = int(time.time() * 1000) - 3_600_000
    producer = clients.producer()
    futures = []
    for i in range(n):
        futures.append(producer.send(topic, key=b"k%d" % (i % 31), value=b"value-%d" % i,
                                     headers=[("i", str(i).encode())], timestamp_ms=t0 + i))
    producer.flush(timeout=60)
    metas = [f.get(timeout=30) for f in futures]
    placed = {}  # i -> (partition, offset)
    for i, md in enumerate(metas):
        assert md.topic == topic
        assert md.timestamp == t0 + i
        placed[i] = (md.partition, md.offset)
    per_part = {p: sorted(o for (pp, o) in placed.values() if pp == p) for p in (0, 1)}
    assert per_part[0] and per_part[1], "keys should spread over both partitions"
    for p, offs in per_part.items():
        assert offs == list(range(len(offs))), f"partition {p} offsets not contiguous"

    consumer = clients.consumer()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    assert consumer.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
    assert consumer.end_offsets(tps) == {tps[0]: len(per_part[0]), tps[1]: len(per_part[1])}

    consumer.assign(tps)
    consumer.seek_to_beginning()
    records = consume_all(consumer, n)
    assert not consumer.poll(timeout_ms=1000), "no more records expected"

    seen = set()
    last = {0: -1, 1: -1}
    for r in records:
        i = int(dict(r.headers)["i"])
        assert i not in seen
        seen.add(i)
        assert (r.partition, r.offset) == placed[i]
        assert r.key == b"k%d" % (i % 31)
        assert r.value == b"value-%d" % i
        assert r.timestamp == t0 + i
        assert r.timestamp_type == 0  # CreateTime
        assert r.offset == last[r.partition] + 1, "records out of order within a partition"
        last[r.partition] = r.offset
    assert seen == set(range(n))

    # offsets_for_times: the first record at or after the timestamp.
    k = 1234
    p, off = placed[k]
    tp = TopicPartition(topic, p)
    found = consumer.offsets_for_times({tp: t0 + k})
    assert found[tp].offset == off
    assert found[tp].timestamp == t0 + k
    after = consumer.offsets_for_times({tp: t0 + n + 10_000})
    assert after[tp] is None



def test_admin_configs_and_delete(broker, clients, topic_name):
    admin = clients.admin()
    topic = topic_name("kpcfg")
    create_topic(admin, topic, partitions=1)

    # Configs: non-incremental AlterConfigs, then DescribeConfigs shows it.
    res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "5000"})
    result = admin.alter_configs([res], incremental=False)
    assert result == {"topic": {topic: "OK"}}
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    cfg = described["topic"][topic]
    assert cfg["retention.ms"]["value"] == "5000"
    assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"

    # Same through IncrementalAlterConfigs.
    res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "6000"})
    assert admin.alter_configs([res], incremental=True) == {"topic": {topic: "OK"}}
    cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                 config_filter="all")["topic"][topic]
    assert cfg["retention.ms"]["value"] == "6000"
    assert cfg["segment.bytes"]["config_source"] == "DEFAULT_CONFIG"

    # DescribeConfigs restricted to named keys returns just those.
    only = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": None,
                                                                   "cleanup.policy": None})],
        config_filter="all")["topic"][topic]
    assert sorted(only) == ["cleanup.policy", "retention.ms"]
    assert only["cleanup.policy"]["value"] == "delete"

    # An invalid value is refused with INVALID_CONFIG.
    bad = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "abc"})
    result = admin.alter_configs([bad], incremental=True)
    assert result["topic"][topic].startswith(
        f"[Error {InvalidConfigurationError.errno}] InvalidConfigurationError"), result
    assert admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])[
        "topic"][topic]["retention.ms"]["value"] == "6000"

    # Deleting the topic.
    admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)
    wait_until(lambda: topic not in admin.list_topics(), timeout=15, what=f"{topic} deleted")


def test_admin_partitions_records_and_offsets(broker, clients, topic_name):
    admin = clients.admin()
    topic = topic_name("kpadm")
    create_topic(admin, topic, partitions=1)

    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1
    assert [(b["broker_id"], f"{b['host']}:{b['port']}") for b in cluster["brokers"]] == \
        [(1, broker.bootstrap)]
    assert cluster["cluster_id"]

    # gzip needs no optional Python packages.
    producer = clients.producer(compression_type="gzip")
    t0 = int(time.time() * 1000) - 600_000
    for i in range(50):
        producer.send(topic, value=b"g%d" % i, partition=0, timestamp_ms=t0 + i)
    producer.flush(timeout=30)

    tp = TopicPartition(topic, 0)
    assert admin.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp].offset == 0
    assert admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset == 50

    result = admin.delete_records({tp: 20}, timeout_ms=TIMEOUT_MS)
    assert result[tp]["error_code"] == 0
    assert result[tp]["low_watermark"] == 20
    assert admin.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp].offset == 20

    consumer = clients.consumer()
    assert consumer.beginning_offsets([tp]) == {tp: 20}
    assert consumer.end_offsets([tp]) == {tp: 50}
    consumer.assign([tp])
    consumer.seek_to_beginning()
    records = consume_all(consumer, 30, timeout=20)
    assert [r.offset for r in records] == list(range(20, 50))
    assert [r.value for r in records] == [b"g%d" % i for i in range(20, 50)]
    assert [r.timestamp for r in records] == [t0 + i for i in range(20, 50)]

    # Grow to 4 partitions; the new ones are empty and writable.
    admin.create_partitions({topic: 4}, timeout_ms=TIMEOUT_MS)
    wait_until(lambda: len(admin.describe_topics([topic])[0]["partitions"]) == 4,
               timeout=15, what="4 partitions")
    # (a fresh producer: the first one caches metadata with 1 partition)
    md = clients.producer().send(topic, value=b"p3", partition=3).get(timeout=30)
    assert (md.partition, md.offset) == (3, 0)
    new_tps = [TopicPartition(topic, p) for p in (1, 2, 3)]
    assert consumer.end_offsets(new_tps) == {new_tps[0]: 0, new_tps[1]: 0, new_tps[2]: 1}
