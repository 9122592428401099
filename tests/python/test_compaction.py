"""Log compaction (cleanup.policy=compact) through real clients: the latest
record of each key stays at its offset, consumers read across the gaps the
cleaner leaves, tombstones stay for delete.retention.ms, the lag setting
holds records back, keyless records are refused, and everything survives a
restart and kill -9 in the middle of compaction. __consumer_offsets is
compacted the same way and committed offsets survive it."""

import random
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from conftest import wait_until

# Small segments roll often, so most of the log is closed and cleanable.
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": "2048",
    "min.cleanable.dirty.ratio": "0.01",
}


@pytest.fixture
def broker_args():
    return ["--log-cleaner-backoff-ms", "200", "--offsets-topic-partitions", "1"]


def metric(http, name):
    """The value of an unlabelled counter on one node's /metrics, 0 if absent."""
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def create(bootstrap, topic, configs):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, 1, 1, config=configs)])
    futures[topic].result(30)


def produce(bootstrap, topic, records):
    """Writes (key, value) pairs one small batch at a time; returns
    {offset: (key, value)} from the delivery reports."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 4})
    stored, errors = {}, []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            stored[msg.offset()] = (msg.key(), msg.value())

    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        if i % 8 == 7:
            producer.flush(30)
    assert producer.flush(30) == 0
    assert not errors, errors
    return stored


def latest_per_key(stored):
    latest = {}
    for offset in sorted(stored):
        latest[stored[offset][0]] = offset
    return latest


def read_confluent(bootstrap, topic, end):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}-{time.monotonic_ns()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = {}
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                assert msg.error() is None, msg.error()
                assert msg.offset() not in seen, f"offset {msg.offset()} read twice"
                seen[msg.offset()] = (msg.key(), msg.value())
            position = consumer.position([TopicPartition(topic, 0)])[0].offset
            if position >= end:
                break
    finally:
        consumer.close()
    return seen


def read_kafka_python(bootstrap, topic, end):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000)
    partition = KTopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    seen = {}
    deadline = time.monotonic() + 30
    try:
        while consumer.position(partition) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    seen[record.offset] = (record.key, record.value)
    finally:
        consumer.close()
    return seen


def high_watermark(bootstrap, topic):
    """(low, high) of partition 0, retried while a restarted node loads."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw"})

    def offsets():
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
        except KafkaException as e:
            # A restarted node's partition is not served until its leader
            # has committed in its term: Kafka's retriable NOT_LEADER, which
            # librdkafka does not flag as retriable for this call.
            if not e.args[0].retriable() and e.args[0].code() != KafkaError.NOT_LEADER_FOR_PARTITION:
                raise
            return None

    try:
        return wait_until(offsets, timeout=30, interval=0.2, what=f"the watermarks of {topic}")
    finally:
        consumer.close()


def assert_compacted(stored, seen, tombstones_kept=True):
    """What a consumer reads after compaction: only records produced at
    those offsets, and the latest record of each key (tombstones too, while
    they are kept)."""
    for offset, record in seen.items():
        assert stored.get(offset) == record, f"offset {offset} holds {record!r}, produced {stored.get(offset)!r}"
    for key, offset in latest_per_key(stored).items():
        if stored[offset][1] is not None or tombstones_kept:
            assert offset in seen, f"latest record of {key!r} at {offset} is missing"


def overwrites(keys, rounds, size=20):
    return [(f"k{k}".encode(), f"r{r}-".encode() + b"x" * size) for r in range(rounds) for k in range(keys)]


def test_compaction_keeps_the_latest_record_of_each_key(broker):
    topic = "compacted"
    create(broker.bootstrap, topic, {**COMPACTED, "delete.retention.ms": "86400000"})
    records = overwrites(keys=40, rounds=15)
    records += [(b"k1", None), (b"k2", None)]
    stored = produce(broker.bootstrap, topic, records)
    # The last segment stays active and is never compacted: roll past the data.
    stored.update(produce(broker.bootstrap, topic, [(b"tail", b"x" * 100)] * 40))
    low, high = high_watermark(broker.bootstrap, topic)
    assert (low, high) == (0, len(stored))

    wait_until(lambda: metric(broker.http, "chronik_log_cleaner_records_removed_total") >= 500,
               timeout=30, what="the cleaner to remove overwritten records")
    assert high_watermark(broker.bootstrap, topic) == (low, high), "compaction moves no offset"

    seen = read_confluent(broker.bootstrap, topic, high)
    assert_compacted(stored, seen)
    assert len(seen) < len(stored) / 3
    offsets = sorted(seen)
    assert any(b - a > 1 for a, b in zip(offsets, offsets[1:])), "the cleaner leaves gaps"
    assert seen[latest_per_key(stored)[b"k1"]] == (b"k1", None), "a recent tombstone stays"
    assert read_kafka_python(broker.bootstrap, topic, high) == seen

    # A consumer starting inside a gap gets the next record that is left.
    gap = next(o for o in range(high) if o not in seen)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "gap", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, gap)])
    try:
        msg = wait_until(lambda: consumer.poll(0.5), timeout=15, what="a record after the gap")
        assert msg.error() is None and msg.offset() == min(o for o in seen if o > gap)
    finally:
        consumer.close()

    for graceful in (True, False):
        broker.restart(graceful=graceful)
        assert high_watermark(broker.bootstrap, topic) == (low, high)
        assert read_confluent(broker.bootstrap, topic, high) == seen


def test_tombstones_lag_and_dirty_ratio(broker):
    # delete.retention.ms=0: tombstones go at the first pass that sees them.
    expiring = "expiring"
    create(broker.bootstrap, expiring, {**COMPACTED, "delete.retention.ms": "0"})
    # A lag of an hour: nothing written now may be compacted.
    lagged = "lagged"
    create(broker.bootstrap, lagged, {**COMPACTED, "min.compaction.lag.ms": "3600000"})
    # A dirty ratio of 1: a second pass needs nothing but new data.
    stored = {}
    for topic in (expiring, lagged):
        records = overwrites(keys=10, rounds=20) + [(b"k3", None)]
        records += [(b"tail", b"x" * 100)] * 40
        stored[topic] = produce(broker.bootstrap, topic, records)

    wait_until(lambda: metric(broker.http, "chronik_log_cleaner_passes_total") >= 1,
               timeout=30, what="a cleaner pass")
    seen = read_confluent(broker.bootstrap, expiring, len(stored[expiring]))
    assert_compacted(stored[expiring], seen, tombstones_kept=False)
    assert not any(key == b"k3" for key, _ in seen.values()), "the expired tombstone and its key are gone"

    # Several more passes ran over every compacted partition meanwhile.
    time.sleep(2)
    kept = read_confluent(broker.bootstrap, lagged, len(stored[lagged]))
    assert kept == stored[lagged], "records younger than min.compaction.lag.ms stay"


def test_keyless_records_are_refused(broker):
    topic = "keyed"
    create(broker.bootstrap, topic, COMPACTED)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    outcome = []
    # Separate batches: Kafka refuses a batch with any keyless record whole.
    producer.produce(topic, value=b"no key", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(30)
    producer.produce(topic, key=b"k", value=b"keyed", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(30)
    assert outcome[0] is not None and outcome[0].code() == KafkaError.INVALID_RECORD, outcome
    assert outcome[1] is None, outcome

    # Under cleanup.policy=delete the same record is taken.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource("topic", topic, set_config={**COMPACTED, "cleanup.policy": "delete"})
    for future in admin.alter_configs([resource]).values():
        future.result(30)

    def accepted():
        outcome.clear()
        producer.produce(topic, value=b"no key", on_delivery=lambda err, msg: outcome.append(err))
        producer.flush(10)
        return outcome == [None]

    wait_until(accepted, timeout=15, interval=0.5, what="a keyless record accepted under cleanup.policy=delete")


def test_kill_during_compaction_leaves_old_or_new_segments(broker, monkeypatch):
    # Debug builds pause this long at each step of a pass (a staged segment,
    # the swap marker, each swapped segment), so the kills land inside passes.
    monkeypatch.setenv("CHRONIK_CLEANER_STEP_DELAY_MS", "100")
    broker.restart()
    topic = "crashy"
    create(broker.bootstrap, topic, {**COMPACTED, "segment.bytes": "65536", "delete.retention.ms": "86400000"})
    rng = random.Random(16)
    stored = {}
    for round_ in range(6):
        # Even rounds kill while segments are staged, odd ones while they are installed.
        step, within = (" compacting ", 1.0) if round_ % 2 == 0 else (" installing compacted", 0.5)
        steps = broker.log_text().count(step)
        stored.update(produce(broker.bootstrap, topic, overwrites(keys=300, rounds=4, size=rng.randrange(200, 2000))))
        stored.update(produce(broker.bootstrap, topic, [(b"tail", b"x" * 1000)] * 70))
        wait_until(lambda: broker.log_text().count(step) > steps, timeout=60, what=f"{step.strip()!r} in the log")
        time.sleep(rng.uniform(0, within))
        broker.restart(graceful=False)
        end = max(stored) + 1
        assert high_watermark(broker.bootstrap, topic) == (0, end), f"round {round_}"
        seen = read_confluent(broker.bootstrap, topic, end)
        assert_compacted(stored, seen)
    log = broker.log_text()
    finished = log.count("finishing an interrupted compaction")
    discarded = log.count("discarding the staged segments of an interrupted compaction")
    print(f"kills: {finished} after the swap marker, {discarded} before it")
    assert finished >= 1 and discarded >= 1, "kills landed before and after the swap marker"


def test_consumer_offsets_are_compacted_and_survive_restart(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource("topic", "__consumer_offsets",
                              set_config={**COMPACTED, "segment.bytes": "4096"})
    for future in admin.alter_configs([resource]).values():
        future.result(30)
    topic = "source"
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "committer",
                         "enable.auto.commit": False})
    try:
        for i in range(1, 301):
            consumer.commit(offsets=[TopicPartition(topic, p, i * 10 + p) for p in range(4)], asynchronous=False)
    finally:
        consumer.close()
    wait_until(lambda: metric(broker.http, "chronik_log_cleaner_records_removed_total") >= 600,
               timeout=30, what="__consumer_offsets to be compacted")

    def committed():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "committer"})
        try:
            return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)]
        finally:
            c.close()

    assert committed() == [3000 + p for p in range(4)]
    broker.restart(graceful=False)
    assert committed() == [3000 + p for p in range(4)], "the latest commits survive compaction and restart"
