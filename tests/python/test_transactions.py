"""Kafka transactions (KIP-98) through confluent-kafka: committed and aborted
transactions as read_committed and read_uncommitted consumers see them, the
last stable offset held back by an open transaction, fencing of a zombie
producer, the broker aborting a transaction that outlives
transaction.timeout.ms, and consume-transform-produce exactly once, on one
node and on three nodes while the transaction coordinator or an output
partition's leader is killed with SIGKILL.

Offsets: every transaction marker (commit or abort) takes one offset in each
partition the transaction wrote, as in Kafka; librdkafka never hands the
markers to the application.
"""

import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from types import SimpleNamespace

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from clients import RDKAFKA_LOG, TIMEOUT, admin_for, create_topic, kafka_error, producer_for, produce_retrying
from conftest import QUICK_GROUP_ARGS, REPO, wait_until

sys.path.insert(0, str(REPO / "tests" / "faults"))
import fault_suite  # noqa: E402

TXN_TOPIC = "__transaction_state"
# What a fenced producer's next produce or commit may fail with.
FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
# Consume-transform-produce: input records, and the transform applied.
EOS_RECORDS = 3000
EOS_PARTITIONS = 3  # fault_suite.create_topic makes this many on the cluster
assert fault_suite.PARTITIONS == EOS_PARTITIONS
# The first InitProducerId may create __transaction_state.
INIT_TIMEOUT = 30


@pytest.fixture
def broker_args():
    return list(QUICK_GROUP_ARGS)


@pytest.fixture(autouse=True)
def few_transaction_state_partitions(monkeypatch):
    """__transaction_state with 4 partitions rather than 50: fewer Raft
    groups to start on a small machine, several still to choose from. An
    environment variable, so the single node and the cluster fixture's
    nodes (whose arguments are fixed) both get it; set before they start."""
    monkeypatch.setenv("CHRONIK_TRANSACTION_STATE_PARTITIONS", "4")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def endpoint_of(cluster):
    """What producer_for / admin_for need of a cluster: its bootstrap list."""
    return SimpleNamespace(bootstrap=cluster.bootstrap())


def transactional_producer(endpoint, transactional_id, **extra):
    return producer_for(endpoint, **{"transactional.id": transactional_id, **extra})


def run_transaction(producer, topic, values, commit=True, partition=0):
    """One transaction of `values` to `partition`, flushed (so every record is
    in the log) and then committed or aborted. Returns {value: offset} from
    the delivery reports."""
    reports, errors = {}, []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports[msg.value().decode()] = msg.offset()

    producer.begin_transaction()
    for value in values:
        produce_retrying(producer, topic, value=value.encode(), partition=partition, on_delivery=delivered)
    assert producer.flush(TIMEOUT) == 0, "records still undelivered"
    assert not errors, errors
    if commit:
        producer.commit_transaction(TIMEOUT)
    else:
        producer.abort_transaction(TIMEOUT)
    return reports


def reader(endpoint, topic, partitions=1, committed=True):
    """A consumer assigned every partition of `topic` from the beginning."""
    consumer = Consumer({
        "bootstrap.servers": endpoint.bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed" if committed else "read_uncommitted",
        "logger": RDKAFKA_LOG,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    return consumer


def poll_records(consumer, count, idle=1.0, timeout=30.0):
    """(partition, offset, value) of the records `consumer` gets until it has
    at least `count` and then none for `idle` seconds, or `timeout` passes.
    Consumer errors (a node restarting) are skipped."""
    out = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() < deadline:
        msgs = consumer.consume(500, 0.2)
        now = time.monotonic()
        for msg in msgs:
            if msg.error() is None:
                out.append((msg.partition(), msg.offset(), msg.value().decode()))
                last = now
        if len(out) >= count and now - last >= idle:
            break
    return out


def read_records(endpoint, topic, count, partitions=1, committed=True, idle=1.0, timeout=30.0):
    consumer = reader(endpoint, topic, partitions, committed)
    try:
        return poll_records(consumer, count, idle, timeout)
    finally:
        consumer.close()


def values_of(records):
    return [value for _, _, value in records]


def offsets_of(records):
    return [offset for _, offset, _ in records]


def stable_and_high(admin, topic, partition=0):
    """(last stable offset, high watermark) of a partition, from ListOffsets
    with each isolation level."""
    tp = TopicPartition(topic, partition)
    out = []
    for level in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
        info = admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=level,
                                  request_timeout=TIMEOUT)[tp].result(timeout=TIMEOUT)
        out.append(info.offset)
    return tuple(out)


def watermark_offsets(endpoint, topic, partitions=1, timeout=30.0):
    """{partition: (low, high)} from a read_uncommitted consumer (librdkafka's
    default isolation level is read_committed, which would give the last
    stable offset), retried while a node restarts."""
    consumer = Consumer({"bootstrap.servers": endpoint.bootstrap, "group.id": "watermarks",
                         "isolation.level": "read_uncommitted", "logger": RDKAFKA_LOG})
    deadline = time.monotonic() + timeout
    try:
        marks = {p: fault_suite.watermarks(consumer, topic, p, deadline) for p in range(partitions)}
    finally:
        consumer.close()
    assert all(marks.values()), f"no watermarks for {topic}: {marks}"
    return marks


def transactions_settled(admin, topic, partitions=1):
    """Whether every partition's last stable offset is its high watermark
    (no open transaction); False while ListOffsets fails (a node restarting)."""
    try:
        return all(len(set(stable_and_high(admin, topic, p))) == 1 for p in range(partitions))
    except KafkaException:
        return False


def java_hash(text):
    """Java's String.hashCode (UTF-16 code units, 32-bit wrap-around)."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key, partitions):
    """Kafka's `Utils.abs(key.hashCode) % partitions` (Utils.abs maps
    Integer.MIN_VALUE to 0), for groups and transactional ids alike."""
    h = java_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % max(partitions, 1)


assert partition_for("my-group", 50) == 12  # Java: "my-group".hashCode() == -1906497762


def find_coordinator(addr, key, key_type=1, timeout=3.0):
    """(error code, node id) of a FindCoordinator v1 request for `key`
    (key type 1: a transactional id) sent to the node at `addr` itself;
    None if it does not answer."""
    client, name = b"chronik-tests", key.encode()
    body = struct.pack(">hhih", 10, 1, 1, len(client)) + client
    body += struct.pack(">h", len(name)) + name + struct.pack(">b", key_type)
    try:
        with socket.create_connection(fault_suite._split(addr), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", fault_suite._recv_exact(s, 4))[0]
            data = fault_suite._recv_exact(s, size)
        # correlation id, throttle time, error code, error message, node id
        error = struct.unpack_from(">h", data, 8)[0]
        message_len = struct.unpack_from(">h", data, 10)[0]
        node = struct.unpack_from(">i", data, 12 + max(message_len, 0))[0]
    except (OSError, struct.error):
        return None
    return error, node


def partition_leader(cluster, topic, partition, exclude=()):
    """The leader of a partition as `cluster partition-info` tells it,
    asking the running nodes; None while it has none (or only an excluded
    node is named)."""
    for via, node in cluster.nodes.items():
        if via in exclude or not node.running():
            continue
        info = cluster.partition_info(topic, partition, via)
        if info and info.get("leader") and info["leader"] not in exclude:
            return info["leader"]
    return None


def transaction_coordinator(cluster, transactional_id):
    """(partition of __transaction_state, node leading it) for a
    transactional id, once the topic exists; every node's FindCoordinator
    must name the same node."""
    admin = admin_for(endpoint_of(cluster))

    def txn_partitions():
        try:
            topic = admin.list_topics(timeout=TIMEOUT).topics.get(TXN_TOPIC)
        except KafkaException:
            return None
        return len(topic.partitions) if topic is not None and not topic.error else None

    count = wait_until(txn_partitions, timeout=30, interval=0.5, what=f"{TXN_TOPIC} in metadata")
    partition = partition_for(transactional_id, count)
    leader = wait_until(lambda: partition_leader(cluster, TXN_TOPIC, partition), timeout=30,
                        interval=0.5, what=f"a leader of {TXN_TOPIC}-{partition}")
    wait_until(lambda: all(find_coordinator(node.kafka_addr, transactional_id) == (0, leader)
                           for node in cluster.nodes.values()),
               timeout=15, interval=0.5,
               what=f"FindCoordinator naming node {leader}, the leader of {TXN_TOPIC}-{partition}")
    return partition, leader


def produce_input(endpoint, topic, count):
    """`count` keyed records v0..v<count-1>, plain (non-transactional)."""
    producer = producer_for(endpoint)
    errors = []
    for i in range(count):
        produce_retrying(producer, topic, key=f"k{i % 97}".encode(), value=f"v{i}".encode(),
                         on_delivery=lambda err, msg: err is not None and errors.append(err))
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors[:5]


def check_exactly_once(records, count):
    """Every input value v<i> appears exactly once, transformed, in `records`."""
    seen = Counter(values_of(records))
    expected = {f"t:v{i}" for i in range(count)}
    missing = sorted(expected - set(seen))
    duplicated = sorted(v for v, n in seen.items() if n > 1)
    unexpected = sorted(set(seen) - expected)
    assert not missing and not duplicated and not unexpected, (
        f"{len(missing)} missing (e.g. {missing[:5]}), {len(duplicated)} duplicated "
        f"(e.g. {duplicated[:5]}), {len(unexpected)} unexpected (e.g. {unexpected[:5]}) "
        f"of {count} input records")


class Pipeline:
    """A consume-transform-produce application, exactly once: a group
    consumer (read_committed, no auto commit) and a transactional producer.
    For each batch: begin, produce `t:<value>` per input record, send the
    consumer's positions with its group metadata, commit. Every
    `abort_every`-th batch is flushed and aborted instead.

    Errors are handled as confluent-kafka documents: a retriable commit is
    retried; an abortable (or retriable) error aborts the transaction; a
    fatal error (or a failed abort) replaces the producer, whose
    init_transactions fences the old one. After any abort the consumer is
    rewound to the group's committed offsets. Every wait is bounded by
    `deadline`; whatever `run` raises is kept in `failure`."""

    def __init__(self, endpoint, source, sink, group, transactional_id, ends, deadline,
                 batch=100, abort_every=0, pace=0.0):
        self.endpoint, self.source, self.sink = endpoint, source, sink
        self.group, self.transactional_id = group, transactional_id
        self.ends = ends  # {partition: end offset of the input}
        self.deadline, self.batch, self.abort_every, self.pace = deadline, batch, abort_every, pace
        self.committed = {}  # {partition: offset}, as the group last committed it
        self.next = {}  # {partition: offset the next record read must have}
        self.stats = Counter()
        self.errors = []
        self.failure = None
        self.initialized = threading.Event()
        self.finished = threading.Event()
        self.stop = threading.Event()  # set by a failing test: give up at once

    # -- progress, read from other threads --

    def progress(self):
        return sum(dict(self.committed).values())

    def done(self):
        return all(self.committed.get(p, 0) >= end for p, end in self.ends.items())

    def describe(self):
        return (f"committed {self.committed} of {self.ends}; stats {dict(self.stats)}; "
                f"errors (last 10) {self.errors[-10:]}")

    # -- the loop --

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e
        finally:
            self.finished.set()

    def _check_deadline(self, doing):
        if self.stop.is_set():
            raise AssertionError(f"stopped while {doing}")
        if time.monotonic() > self.deadline:
            raise AssertionError(f"deadline passed while {doing}: {self.describe()}")

    def _note(self, where, err):
        self.stats[f"error:{where}:{err.name()}"] += 1
        self.errors.append(f"{where}: {err}")

    def _run(self):
        consumer = Consumer({
            "bootstrap.servers": self.endpoint.bootstrap,
            "group.id": self.group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "logger": RDKAFKA_LOG,
        })
        producer = None
        try:
            consumer.subscribe([self.source])
            producer = self._init()
            self.initialized.set()
            batches = 0
            rewind = False
            while not self.done():
                self._check_deadline("processing")
                if rewind:
                    rewind = not self._rewind(consumer)
                    if rewind:
                        time.sleep(0.2)
                    continue
                msgs = []
                for msg in consumer.consume(self.batch, 0.5):
                    if msg.error() is None:
                        msgs.append(msg)
                    else:
                        self._note("consume", msg.error())
                if not msgs:
                    continue
                positions = self._positions(consumer, msgs)
                if positions is None:
                    # Not the records after the last ones processed (say a
                    # rebalance inside consume()): start again from the commit.
                    self.stats["inconsistent_batches"] += 1
                    rewind = True
                    continue
                batches += 1
                deliberate = self.abort_every and batches % self.abort_every == 0
                try:
                    producer.begin_transaction()
                    for msg in msgs:
                        produce_retrying(producer, self.sink, key=msg.key(), value=b"t:" + msg.value())
                    producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 10)
                    if deliberate:
                        producer.flush(10)  # the aborted records reach the log
                        producer.abort_transaction(10)
                        self.stats["deliberate_aborts"] += 1
                        rewind = True
                        continue
                    self._commit(producer)
                except KafkaException as e:
                    err = kafka_error(e)
                    self._note("transaction", err)
                    rewind = True
                    if err.fatal() or not (err.txn_requires_abort() or err.retriable()):
                        producer = self._replace(producer)
                    else:
                        producer = self._abort(producer)
                    continue
                self.stats["commits"] += 1
                for tp in positions:
                    self.committed[tp.partition] = tp.offset
                if self.pace:
                    time.sleep(self.pace)
        finally:
            consumer.close()
            if producer is not None:
                producer.flush(5)

    def _positions(self, consumer, msgs):
        """consumer.position() of the partitions in the batch, to send with
        the transaction; None unless the batch goes on exactly where the
        last one left each partition (the input has no gaps) and each
        position is just past the batch's last record in its partition."""
        last = {}
        for msg in msgs:
            p = msg.partition()
            expected = last[p] + 1 if p in last else self.next.get(p, msg.offset())
            if msg.offset() != expected:
                return None
            last[p] = msg.offset()
        # Partitions not in the batch are left out: their position may be
        # stale after a seek, and their offsets are committed already.
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.partition in last]
        if sorted((tp.partition, tp.offset) for tp in positions) != sorted((p, o + 1) for p, o in last.items()):
            return None
        for p, offset in last.items():
            self.next[p] = offset + 1
        return positions

    def _commit(self, producer):
        while True:
            try:
                producer.commit_transaction(10)
                return
            except KafkaException as e:
                err = kafka_error(e)
                if not err.retriable() or err.txn_requires_abort() or err.fatal():
                    raise
                self._note("commit-retry", err)
                self._check_deadline("retrying a commit")

    def _init(self):
        """A new transactional producer, initialized (retried while retriable)."""
        extra = {"transaction.timeout.ms": 10000, "message.timeout.ms": 10000}
        while True:
            producer = transactional_producer(self.endpoint, self.transactional_id, **extra)
            while True:
                self._check_deadline("initializing transactions")
                try:
                    producer.init_transactions(10)
                    self.stats["producers"] += 1
                    return producer
                except KafkaException as e:
                    err = kafka_error(e)
                    self._note("init", err)
                    if not err.retriable() or err.fatal():
                        break
                    time.sleep(0.2)
            self._discard(producer)
            time.sleep(0.2)

    def _abort(self, producer):
        for _ in range(3):
            try:
                producer.abort_transaction(10)
                self.stats["aborts_after_error"] += 1
                return producer
            except KafkaException as e:
                err = kafka_error(e)
                self._note("abort", err)
                if err.fatal() or not err.retriable():
                    break
                self._check_deadline("aborting")
        return self._replace(producer)

    def _replace(self, producer):
        self.stats["replaced_producers"] += 1
        self._discard(producer)
        return self._init()

    @staticmethod
    def _discard(producer):
        try:
            producer.purge()
            producer.poll(0)
        except (KafkaException, RuntimeError):
            pass

    def _rewind(self, consumer):
        """Seek every assigned partition to the group's committed offset.
        False if that cannot be done now (the coordinator moving)."""
        assignment = consumer.assignment()
        if not assignment:
            return True  # the next assignment starts from the committed offsets
        try:
            committed = consumer.committed(assignment, timeout=5)
            for tp in committed:
                if tp.error is not None:
                    self.errors.append(f"committed: {tp.error}")
                    return False
            for tp in committed:
                consumer.seek(TopicPartition(tp.topic, tp.partition,
                                             tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
                # The input starts at offset 0.
                self.next[tp.partition] = max(tp.offset, 0)
                if tp.offset >= 0:
                    self.committed[tp.partition] = tp.offset
        except KafkaException as e:
            self._note("rewind", kafka_error(e))
            return False
        self.stats["rewinds"] += 1
        return True


def committed_offsets(endpoint, group, topic, partitions):
    """{partition: offset} the group committed (stable offsets only), retried
    while the group coordinator moves or loads."""
    consumer = Consumer({"bootstrap.servers": endpoint.bootstrap, "group.id": group,
                         "isolation.level": "read_committed", "logger": RDKAFKA_LOG})

    def fetch():
        try:
            found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=5)
        except KafkaException:
            return None
        if any(tp.error is not None for tp in found):
            return None
        return {tp.partition: tp.offset for tp in found}

    try:
        return wait_until(fetch, timeout=30, interval=0.5, what=f"the offsets group {group} committed")
    finally:
        consumer.close()


def check_pipeline_output(endpoint, pipeline, source, sink, ends):
    """The output holds each input record exactly once for read_committed,
    the group committed the input's end, and no transaction is left open."""
    assert pipeline.stats["commits"] > 0 and pipeline.stats["deliberate_aborts"] > 0, pipeline.describe()
    check_exactly_once(read_records(endpoint, sink, EOS_RECORDS, EOS_PARTITIONS, timeout=40),
                       EOS_RECORDS)
    assert committed_offsets(endpoint, pipeline.group, source, EOS_PARTITIONS) == ends
    admin = admin_for(endpoint)
    wait_until(lambda: transactions_settled(admin, sink, EOS_PARTITIONS), timeout=25, interval=0.5,
               what="the last stable offset of every output partition at its end")
    # The aborted transactions' records are in the log all the same.
    uncommitted = read_records(endpoint, sink, EOS_RECORDS + 1, EOS_PARTITIONS, committed=False, timeout=40)
    assert len(uncommitted) > EOS_RECORDS, f"{len(uncommitted)} records for read_uncommitted"


# --------------------------------------------------------------------------
# one node
# --------------------------------------------------------------------------


def test_committed_and_aborted_transactions(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("txn")
    create_topic(admin, topic)
    producer = transactional_producer(broker, f"tx-{topic}")
    producer.init_transactions(INIT_TIMEOUT)
    first = [f"c1-{i}" for i in range(10)]
    aborted = [f"a-{i}" for i in range(7)]
    second = [f"c2-{i}" for i in range(5)]
    reports = run_transaction(producer, topic, first)
    reports.update(run_transaction(producer, topic, aborted, commit=False))
    reports.update(run_transaction(producer, topic, second))
    # Each transaction's marker takes the offset after its records: 10, 18, 24.
    committed_at = list(range(0, 10)) + list(range(19, 24))
    all_offsets = list(range(0, 10)) + list(range(11, 18)) + list(range(19, 24))
    assert [reports[v] for v in first + aborted + second] == all_offsets, reports

    committed = read_records(broker, topic, len(first + second))
    assert values_of(committed) == first + second
    assert offsets_of(committed) == committed_at
    everything = read_records(broker, topic, len(first + aborted + second), committed=False)
    assert values_of(everything) == first + aborted + second, "aborted records are read uncommitted"
    assert offsets_of(everything) == all_offsets, "no control record reaches the application"

    assert watermark_offsets(broker, topic) == {0: (0, 25)}, "22 records and 3 markers"
    assert stable_and_high(admin, topic) == (25, 25)

    # kafka-python filters aborted transactions itself, from the Fetch
    # response's aborted-transaction list.
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False, auto_offset_reset="earliest")
    partition = KTopicPartition(topic, 0)
    consumer.assign([partition])
    seen = []
    deadline = time.monotonic() + 20
    try:
        while len(seen) < len(first + second) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                seen += [r.value.decode() for r in records]
        for records in consumer.poll(timeout_ms=500).values():  # anything more
            seen += [r.value.decode() for r in records]
    finally:
        consumer.close()
    assert seen == first + second


def test_open_transaction_holds_back_read_committed(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("lso")
    create_topic(admin, topic)
    producer = transactional_producer(broker, f"tx-{topic}")
    producer.init_transactions(INIT_TIMEOUT)
    before = [f"b-{i}" for i in range(5)]
    run_transaction(producer, topic, before)  # offsets 0-4, marker 5

    opened = [f"o-{i}" for i in range(20)]
    producer.begin_transaction()
    for value in opened:
        produce_retrying(producer, topic, value=value.encode(), partition=0)
    assert producer.flush(TIMEOUT) == 0  # offsets 6-25, in the log, not committed

    committed_reader = reader(broker, topic)
    try:
        # The committed records come; then nothing for 2 s.
        got = poll_records(committed_reader, len(before), idle=2.0, timeout=20)
        assert values_of(got) == before, "read_committed stops at the open transaction"
        everything = read_records(broker, topic, len(before + opened), committed=False)
        assert values_of(everything) == before + opened
        assert stable_and_high(admin, topic) == (6, 26), "the last stable offset is the open transaction's first"
        assert watermark_offsets(broker, topic) == {0: (0, 26)}

        producer.commit_transaction(TIMEOUT)
        got = poll_records(committed_reader, len(opened), idle=1.0, timeout=20)
        assert values_of(got) == opened, "the same consumer goes on after the commit"
    finally:
        committed_reader.close()
    assert stable_and_high(admin, topic) == (27, 27)


def test_a_new_producer_fences_the_old_one(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("fence")
    create_topic(admin, topic)
    transactional_id = f"tx-{topic}"
    zombie = transactional_producer(broker, transactional_id)
    zombie.init_transactions(INIT_TIMEOUT)
    zombie_values = [f"z-{i}" for i in range(10)]
    zombie.begin_transaction()
    for value in zombie_values:
        produce_retrying(zombie, topic, value=value.encode(), partition=0)
    assert zombie.flush(TIMEOUT) == 0  # offsets 0-9, open

    successor = transactional_producer(broker, transactional_id)
    successor.init_transactions(INIT_TIMEOUT)  # aborts the zombie's transaction: marker at 10

    with pytest.raises(KafkaException) as excinfo:
        zombie.produce(topic, value=b"z-late", partition=0)
        zombie.commit_transaction(TIMEOUT)
    err = kafka_error(excinfo.value)
    assert err.fatal() or err.code() in FENCED, f"the zombie's commit failed with {err}"
    Pipeline._discard(zombie)

    successor_values = [f"s-{i}" for i in range(10)]
    run_transaction(successor, topic, successor_values)  # offsets 11-20, marker 21

    committed = read_records(broker, topic, len(successor_values))
    assert values_of(committed) == successor_values
    everything = read_records(broker, topic, len(zombie_values + successor_values), committed=False)
    assert values_of(everything) == zombie_values + successor_values, \
        "the zombie's open records stay (aborted); its late record is refused"
    assert stable_and_high(admin, topic) == (22, 22)


def test_the_broker_aborts_a_transaction_past_its_timeout(broker, topic_name):
    admin = admin_for(broker)
    topic = topic_name("timeout")
    create_topic(admin, topic)
    # librdkafka requires message.timeout.ms <= transaction.timeout.ms.
    stalled = transactional_producer(broker, f"stalled-{topic}",
                                     **{"transaction.timeout.ms": 3000, "message.timeout.ms": 3000})
    stalled.init_transactions(INIT_TIMEOUT)
    stalled_values = [f"s-{i}" for i in range(10)]
    began = time.monotonic()
    stalled.begin_transaction()
    for value in stalled_values:
        produce_retrying(stalled, topic, value=value.encode(), partition=0)
    assert stalled.flush(TIMEOUT) == 0
    assert stable_and_high(admin, topic) == (0, 10), "the transaction is open"

    # The producer stalls; the broker aborts the transaction (marker at 10).
    wait_until(lambda: stable_and_high(admin, topic) == (11, 11), timeout=20, interval=0.1,
               what="the broker to abort the timed-out transaction")
    waited = time.monotonic() - began
    assert waited >= 2.5, f"aborted after {waited:.1f} s, before transaction.timeout.ms"

    other = transactional_producer(broker, f"other-{topic}")
    other.init_transactions(INIT_TIMEOUT)
    other_values = [f"c-{i}" for i in range(5)]
    run_transaction(other, topic, other_values)  # offsets 11-15, marker 16

    with pytest.raises(KafkaException):
        stalled.commit_transaction(TIMEOUT)

    committed = read_records(broker, topic, len(other_values))
    assert values_of(committed) == other_values
    everything = read_records(broker, topic, len(stalled_values + other_values), committed=False)
    assert values_of(everything) == stalled_values + other_values
    assert stable_and_high(admin, topic) == (17, 17), "the stalled commit wrote nothing"


def test_consume_transform_produce_exactly_once(broker, topic_name):
    admin = admin_for(broker)
    source, sink = topic_name("eos-in"), topic_name("eos-out")
    for topic in (source, sink):
        create_topic(admin, topic, partitions=EOS_PARTITIONS)
    produce_input(broker, source, EOS_RECORDS)
    ends = {p: high for p, (_, high) in watermark_offsets(broker, source, EOS_PARTITIONS).items()}
    assert sum(ends.values()) == EOS_RECORDS

    pipeline = Pipeline(broker, source, sink, f"eos-{source}", f"tx-{source}", ends,
                        deadline=time.monotonic() + 60, batch=100, abort_every=4)
    pipeline.run()
    assert pipeline.failure is None, f"{pipeline.failure!r}; {pipeline.describe()}"
    # Nothing fails on one healthy node: no transaction error reached the
    # application (init_transactions may time out while __transaction_state
    # is created, and is retried).
    failed = ("error:transaction", "error:commit-retry", "error:abort")
    assert not [k for k in pipeline.stats if k.startswith(failed)], pipeline.describe()
    check_pipeline_output(broker, pipeline, source, sink, ends)


# --------------------------------------------------------------------------
# three nodes, kill -9
# --------------------------------------------------------------------------


def run_pipeline_through_a_kill(cluster, topic_name, choose_victim):
    """Runs the pipeline on the cluster; when a third of the input is
    committed, kills -9 the node `choose_victim(cluster, sink, coordinator)`
    names, checks that __transaction_state's partition for the pipeline
    has a live leader that FindCoordinator names and that transactions
    still commit without the node, restarts it, lets the pipeline finish
    and checks the output. Returns (victim, coordinator)."""
    endpoint = endpoint_of(cluster)
    source, sink = topic_name("eos-in"), topic_name("eos-out")
    for topic in (source, sink):
        assert fault_suite.create_topic(endpoint.bootstrap, topic, RDKAFKA_LOG, timeout=30), topic
    produce_input(endpoint, source, EOS_RECORDS)
    ends = {p: high for p, (_, high) in watermark_offsets(endpoint, source, EOS_PARTITIONS).items()}
    assert sum(ends.values()) == EOS_RECORDS

    transactional_id = f"tx-{source}"
    pipeline = Pipeline(endpoint, source, sink, f"eos-{source}", transactional_id, ends,
                        deadline=time.monotonic() + 50, batch=50, abort_every=5, pace=0.05)
    worker = threading.Thread(target=pipeline.run, name="pipeline", daemon=True)
    worker.start()
    victim = coordinator = None
    try:
        wait_until(lambda: pipeline.initialized.is_set() or pipeline.finished.is_set(), timeout=40,
                   what="init_transactions")
        assert pipeline.initialized.is_set(), f"{pipeline.failure!r}; {pipeline.describe()}"
        txn_partition, coordinator = transaction_coordinator(cluster, transactional_id)
        wait_until(lambda: pipeline.progress() >= EOS_RECORDS // 3 or pipeline.finished.is_set(),
                   timeout=40, interval=0.05, what="a third of the input processed")
        assert not pipeline.finished.is_set(), f"finished before the kill: {pipeline.failure!r}; {pipeline.describe()}"
        victim = choose_victim(cluster, sink, coordinator)
        commits = pipeline.stats["commits"]
        cluster.nodes[victim].kill()
        now_coordinator = wait_until(
            lambda: partition_leader(cluster, TXN_TOPIC, txn_partition, exclude=(victim,)),
            timeout=30, interval=0.5, what=f"a leader of {TXN_TOPIC}-{txn_partition} other than node {victim}")
        survivor = next(node for n, node in cluster.nodes.items() if n != victim)
        wait_until(lambda: find_coordinator(survivor.kafka_addr, transactional_id) == (0, now_coordinator),
                   timeout=15, interval=0.5, what=f"FindCoordinator naming node {now_coordinator}")
        wait_until(lambda: pipeline.stats["commits"] > commits or pipeline.finished.is_set(),
                   timeout=30, interval=0.1, what=f"a transaction committed with node {victim} down")
        assert pipeline.failure is None, f"{pipeline.failure!r}; {pipeline.describe()}"
    except BaseException:
        pipeline.stop.set()
        raise
    finally:
        if victim is not None:
            cluster.nodes[victim].start(bootstrap=False)
            assert cluster.nodes[victim].wait_ready(), f"node {victim} did not restart"
        worker.join(max(0.0, pipeline.deadline - time.monotonic()) + 15)
    assert not worker.is_alive(), f"the pipeline did not stop: {pipeline.describe()}"
    assert pipeline.failure is None, f"{pipeline.failure!r}; {pipeline.describe()}"
    print(f"killed node {victim} (transaction coordinator {coordinator}); {pipeline.describe()}")
    check_pipeline_output(endpoint, pipeline, source, sink, ends)
    return victim, coordinator


def test_exactly_once_through_a_transaction_coordinator_kill(cluster, topic_name):
    def coordinator_node(cluster, sink, coordinator):
        return coordinator

    run_pipeline_through_a_kill(cluster, topic_name, coordinator_node)


def test_exactly_once_through_an_output_leader_kill(cluster, topic_name):
    def output_leader(cluster, sink, coordinator):
        """The leader of an output partition, not the coordinator if
        another node leads one."""
        leaders = [partition_leader(cluster, sink, p) for p in range(EOS_PARTITIONS)]
        assert any(leaders), f"no leaders of {sink}: {leaders}"
        return next((n for n in leaders if n and n != coordinator), next(n for n in leaders if n))

    victim, coordinator = run_pipeline_through_a_kill(cluster, topic_name, output_leader)
    print(f"output leader {victim} {'is' if victim == coordinator else 'is not'} the coordinator")
