"""Consumer groups and the idempotent producer, driven by real clients.

confluent-kafka (librdkafka) for most tests, kafka-python for one.  Every wait
is bounded; group members run in their own threads (one Consumer per thread,
only that thread calls poll/commit/close on it).
"""

import threading
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from clients import RDKAFKA_LOG, TIMEOUT, admin_for, create_topic, produce_retrying, producer_for
from clients import kafka_error as kafka_error_of
from conftest import wait_until



@pytest.fixture
def broker_args():
    # No initial rebalance delay (tests would otherwise wait 3 s per new
    # group) and a small __consumer_offsets topic (fewer Raft groups to start
    # on a small machine; several groups then share a coordinator partition).
    return [
        "--retention-check-interval-ms", "200",
        "--auto-create-topics", "false",
        "--group-initial-rebalance-delay-ms", "0",
        "--offsets-topic-partitions", "4",
    ]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def group_conf(broker, group, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "logger": RDKAFKA_LOG,
    }
    conf.update(extra)
    return conf


def high_watermarks(broker, topic, partitions):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "hwm-probe",
                  "logger": RDKAFKA_LOG})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1]
                for p in range(partitions)}
    finally:
        c.close()


def group_offsets(admin, group, topic, partitions):
    """Committed offsets of `group` via OffsetFetch (AdminClient)."""
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = admin.list_consumer_group_offsets([req], request_timeout=TIMEOUT)[group].result(
        timeout=TIMEOUT)
    out = {}
    for tp in res.topic_partitions:
        assert tp.error is None, f"OffsetFetch error for {tp}: {tp.error}"
        out[tp.partition] = tp.offset
    return out


def describe_group(admin, group):
    return admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(
        timeout=TIMEOUT)


class Ownership:
    """Which member owns which partition, as told by the rebalance callbacks.

    Records every moment a partition was owned by two members at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.owners = defaultdict(set)
        self.overlaps = []

    def assign(self, name, partitions):
        with self.lock:
            for p in partitions:
                others = self.owners[p] - {name}
                if others:
                    self.overlaps.append((time.monotonic(), p, name, sorted(others)))
                self.owners[p].add(name)

    def release(self, name, partitions):
        with self.lock:
            for p in partitions:
                self.owners[p].discard(name)

    def snapshot(self):
        with self.lock:
            return {p: set(o) for p, o in self.owners.items()}


class Member(threading.Thread):
    """One group member consuming in its own thread.

    Commits its processed offsets synchronously every `commit_every` records,
    on revoke, and once more before closing.  `stop()` ends the poll loop; the
    member then does its final commit, sets `committed`, waits for
    `close_go` and closes."""

    def __init__(self, name, conf, topic, ownership, seen=None, commit_every=500):
        super().__init__(name=f"member-{name}", daemon=True)
        self.member_name = name
        self.conf = conf
        self.topic = topic
        self.ownership = ownership
        self.seen = seen  # bytearray indexed by value, or None
        self.commit_every = commit_every
        self.consumer = None
        self.owned = set()
        self.processed = {}  # partition -> next offset to consume
        self.values = []
        self.consumed = 0
        self.assign_calls = 0
        self.revoke_calls = 0
        self.lost_calls = 0
        self.events = []  # (monotonic time, kind, partitions)
        self.commit_failures = []
        self.commits = 0
        self.errors = []
        self.exc = None
        self.stop_evt = threading.Event()
        self.close_go = threading.Event()
        self.committed = threading.Event()
        self.done = threading.Event()
        self.subscribed = threading.Event()

    # -- callbacks (run inside poll/consume/close, in this thread) ----------

    def _on_assign(self, consumer, partitions):
        ps = [tp.partition for tp in partitions]
        self.assign_calls += 1
        self.events.append((time.monotonic(), "assign", ps))
        self.ownership.assign(self.member_name, ps)
        self.owned.update(ps)

    def _on_revoke(self, consumer, partitions):
        ps = [tp.partition for tp in partitions]
        self.revoke_calls += 1
        self.events.append((time.monotonic(), "revoke", ps))
        self._commit(ps, "revoke")
        self._drop(ps)

    def _on_lost(self, consumer, partitions):
        ps = [tp.partition for tp in partitions]
        self.lost_calls += 1
        self.events.append((time.monotonic(), "lost", ps))
        self._drop(ps)

    def _drop(self, ps):
        self.ownership.release(self.member_name, ps)
        for p in ps:
            self.owned.discard(p)
            self.processed.pop(p, None)

    # -- commits -------------------------------------------------------------

    def _commit(self, partitions, why):
        offsets = [TopicPartition(self.topic, p, self.processed[p])
                   for p in sorted(partitions) if p in self.processed and p in self.owned]
        if not offsets:
            return
        try:
            res = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            err = e.args[0]
            self.commit_failures.append((why, err.name(), [tp.partition for tp in offsets]))
            return
        bad = [(why, tp.error.name(), [tp.partition]) for tp in (res or []) if tp.error is not None]
        if bad:
            self.commit_failures.extend(bad)
        else:
            self.commits += 1

    def commit_owned(self, why):
        self._commit(list(self.owned), why)

    # -- thread ----------------------------------------------------------------

    def run(self):
        try:
            self.consumer = Consumer(self.conf)
            self.consumer.subscribe([self.topic], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_lost)
            self.subscribed.set()
            since_commit = 0
            while not self.stop_evt.is_set():
                for msg in self.consumer.consume(num_messages=500, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(str(err))
                        continue
                    v = int(msg.value())
                    self.values.append(v)
                    if self.seen is not None:
                        self.seen[v] = 1
                    self.consumed += 1
                    p = msg.partition()
                    if p in self.owned:
                        self.processed[p] = msg.offset() + 1
                    since_commit += 1
                if since_commit >= self.commit_every:
                    self.commit_owned("periodic")
                    since_commit = 0
            self.commit_owned("final")
            self.committed.set()
            self.close_go.wait(timeout=60)
            self.consumer.close()  # revokes (and commits) what is still owned
            self.ownership.release(self.member_name, list(self.owned))
            self.owned.clear()
        except BaseException as e:  # reported by the test
            self.exc = e
        finally:
            self.committed.set()
            self.done.set()

    def stop(self, close=True):
        self.stop_evt.set()
        if close:
            self.close_go.set()

    def finish(self, timeout=30):
        self.stop()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not close within {timeout}s"
        if self.exc is not None:
            raise AssertionError(f"{self.name} failed: {self.exc!r}") from self.exc


def stop_all(members):
    """Best-effort cleanup for the finally blocks."""
    for m in members:
        m.stop()
    for m in members:
        m.join(30)


def produce_paced(producer, topic, total, partitions, rate, progress, reports):
    """Produce values 0..total-1 (partition = value % partitions) at about
    `rate` records/s; `progress[0]` counts produced records."""
    def on_delivery(err, msg):
        reports.append(err)

    start = time.monotonic()
    chunk = 500
    for base in range(0, total, chunk):
        for v in range(base, min(base + chunk, total)):
            produce_retrying(producer, topic, value=str(v).encode(), partition=v % partitions,
                             on_delivery=on_delivery)
        progress[0] = min(base + chunk, total)
        producer.poll(0)
        ahead = start + progress[0] / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records undelivered after 60 s"


# --------------------------------------------------------------------------
# 1. a group under churn
# --------------------------------------------------------------------------


def run_churn(broker, topic_name, strategy, total, rate, *, join_at, leave_at):
    """3 members consume while `total` records are produced; a 4th joins once
    `join_at` records were consumed, an original member leaves once `leave_at`
    were.  Everything is consumed, committed and checked."""
    partitions = 6
    admin = admin_for(broker)
    topic = topic_name("churn")
    group = topic_name("g-churn")
    create_topic(admin, topic, partitions)
    extra = {}
    if strategy is not None:
        extra["partition.assignment.strategy"] = strategy
    ownership = Ownership()
    seen = bytearray(total)

    def member(name):
        m = Member(name, group_conf(broker, group, **extra), topic, ownership, seen)
        m.start()
        return m

    members = [member("c1"), member("c2"), member("c3")]
    t0 = time.monotonic()
    producer = producer_for(broker)
    progress, reports = [0], []
    prod_exc = []

    def produce():
        try:
            produce_paced(producer, topic, total, partitions, rate, progress, reports)
        except BaseException as e:
            prod_exc.append(e)

    prod = threading.Thread(target=produce, name="producer", daemon=True)
    prod.start()
    consumed = lambda: sum(m.consumed for m in members)  # noqa: E731
    try:
        wait_until(lambda: consumed() >= join_at, timeout=60, interval=0.1,
                   what=f"{join_at} records consumed before the 4th member joins")
        t_join = time.monotonic()
        c4 = member("c4")
        members.append(c4)
        wait_until(lambda: c4.owned, timeout=30, interval=0.1, what="partitions for c4")
        t_c4 = time.monotonic()
        wait_until(lambda: consumed() >= leave_at, timeout=60, interval=0.1,
                   what=f"{leave_at} records consumed before c3 leaves")
        c3 = members[2]
        t_leave = time.monotonic()
        c3.finish()
        prod.join(90)
        assert not prod.is_alive(), "producer did not finish within 90 s"
        assert not prod_exc, f"producer failed: {prod_exc[0]!r}"
        t_produced = time.monotonic()
        assert len(reports) == total
        delivery_errors = [e for e in reports if e is not None]
        assert not delivery_errors, f"delivery errors: {delivery_errors[:5]}"

        hwm = high_watermarks(broker, topic, partitions)
        assert sum(hwm.values()) == total, hwm
        live = [m for m in members if m is not c3]

        def caught_up():
            for m in members:
                if m.exc is not None:
                    raise AssertionError(f"{m.name} failed: {m.exc!r}")
            if seen.count(0):
                return False
            owners = ownership.snapshot()
            committed = None
            for p in range(partitions):
                if len(owners.get(p, ())) != 1:
                    return False
                [name] = owners[p]
                m = next((m for m in live if m.member_name == name), None)
                if m is None:
                    return False
                pos = m.processed.get(p)
                if pos is None:
                    # Nothing consumed since it was assigned: it starts at the
                    # committed offset, which must then be the end already.
                    if committed is None:
                        committed = group_offsets(admin, group, topic, partitions)
                    pos = committed.get(p)
                if pos != hwm[p]:
                    return False
            return True

        wait_until(caught_up, timeout=60, interval=0.2,
                   what="every record consumed and every partition's owner at its end")
        t_caught_up = time.monotonic()
        # Final commit by everyone (while all are still members), then close.
        for m in live:
            m.stop(close=False)
        for m in live:
            assert m.committed.wait(30), f"{m.name} did not commit"
        for m in live:
            m.close_go.set()
        for m in live:
            m.finish()
        t_closed = time.monotonic()
    finally:
        stop_all(members)
        prod.join(5)

    for m in members:
        assert m.exc is None, f"{m.name} failed: {m.exc!r}"
        assert not m.errors, f"{m.name} got consumer errors: {m.errors[:5]}"

    counts = Counter()
    for m in members:
        counts.update(m.values)
    dup_values = sum(1 for c in counts.values() if c > 1)
    dup_extra = sum(c - 1 for c in counts.values())
    commit_failures = [(m.member_name, f) for m in members for f in m.commit_failures]
    summary = (
        f"\n[{strategy or 'default'}] {total} records, {dup_values} values consumed more "
        f"than once ({dup_extra} extra deliveries, {100.0 * dup_extra / total:.2f}%); "
        f"commits ok={sum(m.commits for m in members)} failed={len(commit_failures)} "
        f"{dict(Counter(f[1][1] for f in commit_failures))}\n"
        f"  per member consumed={[(m.member_name, m.consumed) for m in members]} "
        f"assign_calls={[(m.member_name, m.assign_calls) for m in members]} "
        f"revoke_calls={[(m.member_name, m.revoke_calls) for m in members]}\n"
        f"  timeline (s): c4 started {t_join - t0:.1f}, c4 assigned {t_c4 - t0:.1f}, "
        f"c3 closed {t_leave - t0:.1f}, produced {t_produced - t0:.1f}, "
        f"caught up {t_caught_up - t0:.1f}, all closed {t_closed - t0:.1f}"
    )
    print(summary)

    # Around a rebalance Kafka may refuse a commit (the member commits again
    # later, or on revoke); any other error is a broker fault.
    unexpected = [f for f in commit_failures
                  if f[1][1] not in ("REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION")]
    assert not unexpected, f"commits failed: {unexpected[:5]}"

    # Every value at least once; duplicates bounded.
    missing = [v for v in range(total) if counts[v] == 0]
    assert not missing, f"{len(missing)} values never consumed, e.g. {missing[:10]}"
    assert set(counts) == set(range(total)), "consumed values that were never produced"
    assert dup_extra < total // 10, f"too many duplicates\n{summary}"

    # Rebalances happened, and no partition ever had two owners.
    assert ownership.overlaps == [], f"partitions owned twice: {ownership.overlaps[:10]}"
    assert all(not o for o in ownership.snapshot().values()), ownership.snapshot()
    lost = [(m.name, m.lost_calls) for m in members if m.lost_calls]
    assert not lost, f"partitions lost (session timeouts?): {lost}"
    for m in members[:2]:  # the original members that lived through the churn
        assert m.assign_calls > 1, (
            f"{m.name}: on_assign called {m.assign_calls} time(s); expected rebalances\n{summary}")
        assert m.events[0][1] == "assign", m.events
    assert c4.assign_calls >= 1

    # The committed offsets are the high watermarks, as seen by a fresh
    # consumer and by the admin client.
    fresh = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                      "enable.auto.commit": False, "logger": RDKAFKA_LOG})
    try:
        committed = fresh.committed([TopicPartition(topic, p) for p in range(partitions)],
                                    timeout=TIMEOUT)
    finally:
        fresh.close()
    assert all(tp.error is None for tp in committed), committed
    assert {tp.partition: tp.offset for tp in committed} == hwm
    assert group_offsets(admin, group, topic, partitions) == hwm
    return dup_values, dup_extra


def test_group_range_rebalances(broker, topic_name):
    """Eager protocol (librdkafka's default range assignor): a smaller run."""
    run_churn(broker, topic_name, None, total=12000, rate=2000, join_at=3000, leave_at=8000)


def test_group_under_churn_cooperative_sticky(broker, topic_name):
    """The main one: 60,000 records, cooperative-sticky, a member joins and
    one leaves mid-stream; at-least-once with every offset committed."""
    run_churn(broker, topic_name, "cooperative-sticky", total=60000, rate=6000,
              join_at=15000, leave_at=40000)


# --------------------------------------------------------------------------
# 2. kafka-python: committed offsets survive a broker restart
# --------------------------------------------------------------------------


def test_kafka_python_group_commit_survives_restart(broker, topic_name):
    from kafka import KafkaConsumer, KafkaProducer

    admin = admin_for(broker)
    topic = topic_name("kp")
    group = topic_name("g-kp")
    create_topic(admin, topic, 2)

    def common():
        return dict(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000,
                    bootstrap_timeout_ms=10000)

    def produce(values):
        # kafka-python 3.x producers are idempotent by default (InitProducerId).
        p = KafkaProducer(acks="all", linger_ms=5, **common())
        try:
            assert p.config["enable_idempotence"] is True
            futs = [p.send(topic, value=v.encode(), partition=i % 2) for i, v in enumerate(values)]
            p.flush(timeout=30)
            for f in futs:
                md = f.get(timeout=30)
                assert md.offset >= 0
        finally:
            p.close(timeout=5)

    def consumer():
        c = KafkaConsumer(group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest", session_timeout_ms=10000,
                          heartbeat_interval_ms=1000, **common())
        c.subscribe([topic])
        return c

    def poll_values(c, n, timeout, extra_wait):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for _tp, recs in c.poll(timeout_ms=500, max_records=500).items():
                out.extend(r.value.decode() for r in recs)
        # Anything beyond n would be wrong; give it a moment to show up.
        deadline = time.monotonic() + extra_wait
        while time.monotonic() < deadline:
            for _tp, recs in c.poll(timeout_ms=300).items():
                out.extend(r.value.decode() for r in recs)
        return out

    old = [f"old-{i}" for i in range(40)]
    new = [f"new-{i}" for i in range(25)]
    produce(old)

    c = consumer()
    try:
        got = poll_values(c, len(old), timeout=40, extra_wait=0.5)
        assert sorted(got) == sorted(old)
        c.commit()
    finally:
        c.close()

    broker.restart()
    assert group_offsets(admin_for(broker), group, topic, 2) == {0: 20, 1: 20}
    produce(new)

    c = consumer()
    try:
        got = poll_values(c, len(new), timeout=40, extra_wait=2.0)
    finally:
        c.close()
    assert sorted(got) == sorted(new), (
        f"expected exactly the {len(new)} new records, got {len(got)}: "
        f"{[v for v in got if v.startswith('old')][:5]} old ones")


# --------------------------------------------------------------------------
# 3. static membership
# --------------------------------------------------------------------------


def test_static_membership(broker, topic_name):
    partitions = 4
    admin = admin_for(broker)
    topic = topic_name("static")
    group = topic_name("g-static")
    create_topic(admin, topic, partitions)
    ownership = Ownership()
    session_s = 10

    def member(instance, name):
        conf = group_conf(broker, group, **{"group.instance.id": instance,
                                            "session.timeout.ms": session_s * 1000})
        m = Member(name, conf, topic, ownership)
        m.start()
        return m

    a = member("a", "a1")
    b = member("b", "b")
    members = [a, b]
    try:
        wait_until(lambda: a.owned and b.owned and len(a.owned | b.owned) == partitions,
                   timeout=30, what="a and b assigned")
        before = wait_until(lambda: (d := describe_group(admin, group)).state
                            == ConsumerGroupState.STABLE and d, timeout=15, what="stable group")
        ids_before = {m.group_instance_id: m.member_id for m in before.members}
        assert set(ids_before) == {"a", "b"}
        a_parts = set(a.owned)
        b_calls = (b.assign_calls, b.revoke_calls, b.lost_calls)

        # A goes away without LeaveGroup (static member) and a replacement
        # with the same instance id comes back within the session timeout.
        t_closed = time.monotonic()
        a.finish()
        a2 = member("a", "a2")
        members.append(a2)
        wait_until(lambda: a2.owned, timeout=session_s - 2, what="replacement assigned")
        assert time.monotonic() - t_closed < session_s
        assert a2.owned == a_parts, (a2.owned, a_parts)
        time.sleep(2.5)  # several of B's heartbeats
        assert (b.assign_calls, b.revoke_calls, b.lost_calls) == b_calls, b.events
        assert b.owned == set(range(partitions)) - a_parts
        after = describe_group(admin, group)
        assert after.state == ConsumerGroupState.STABLE
        ids_after = {m.group_instance_id: m.member_id for m in after.members}
        assert set(ids_after) == {"a", "b"}
        assert ids_after["b"] == ids_before["b"]
        assert ownership.overlaps == []

        # The replacement goes away too; only the session timeout removes it.
        t_closed = time.monotonic()
        a2.finish()
        wait_until(lambda: b.owned == set(range(partitions)), timeout=session_s + 15,
                   what="b owns every partition after a's session timed out")
        took = time.monotonic() - t_closed
        assert took > session_s - 3, f"b got a's partitions after {took:.1f}s, before a's session expired"
        assert b.assign_calls > b_calls[0]
        final = describe_group(admin, group)
        assert [m.group_instance_id for m in final.members] == ["b"]
        assert ownership.overlaps == []
        b.finish()
    finally:
        stop_all(members)


# --------------------------------------------------------------------------
# 4. admin operations on groups
# --------------------------------------------------------------------------


@pytest.fixture
def kp_admin(broker):
    from kafka.admin import KafkaAdminClient

    c = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000,
                         bootstrap_timeout_ms=10000)
    yield c
    c.close()


def test_admin_on_groups(broker, topic_name, kp_admin):
    from kafka import TopicPartition as KpTopicPartition
    from kafka.errors import GroupSubscribedToTopicError, NoError

    admin = admin_for(broker)
    topic = topic_name("adm")
    group = topic_name("g-adm")
    create_topic(admin, topic, 2)
    p = producer_for(broker)
    for i in range(10):
        p.produce(topic, value=str(i).encode(), partition=i % 2)
    assert p.flush(30) == 0

    ownership = Ownership()
    members = [Member(n, group_conf(broker, group, **{"client.id": f"client-{n}"}), topic,
                      ownership, commit_every=1) for n in ("m1", "m2")]
    for m in members:
        m.start()
    try:
        wait_until(lambda: sum(m.consumed for m in members) == 10 and
                   all(m.owned for m in members), timeout=30, what="both members consuming")
        # Commits happen every record; wait until the last ones landed.
        wait_until(lambda: group_offsets(admin, group, topic, 2) == {0: 5, 1: 5},
                   timeout=15, what="offsets committed")

        listing = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
        assert not listing.errors, listing.errors
        [g] = [g for g in listing.valid if g.group_id == group]
        assert g.state == ConsumerGroupState.STABLE
        assert not g.is_simple_consumer_group
        stable = admin.list_consumer_groups(
            request_timeout=TIMEOUT, states={ConsumerGroupState.STABLE}).result(timeout=TIMEOUT)
        assert group in [x.group_id for x in stable.valid]
        empty = admin.list_consumer_groups(
            request_timeout=TIMEOUT, states={ConsumerGroupState.EMPTY}).result(timeout=TIMEOUT)
        assert group not in [x.group_id for x in empty.valid]

        d = describe_group(admin, group)
        assert d.state == ConsumerGroupState.STABLE
        assert not d.is_simple_consumer_group
        assert d.partition_assignor == "range"
        assert d.coordinator.id == 1
        assert sorted(m.client_id for m in d.members) == ["client-m1", "client-m2"]
        assigned = sorted((tp.topic, tp.partition) for m in d.members
                          for tp in m.assignment.topic_partitions)
        assert assigned == [(topic, 0), (topic, 1)]
        by_client = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions}
                     for m in d.members}
        assert by_client == {"client-m1": members[0].owned, "client-m2": members[1].owned}

        with pytest.raises(KafkaException) as ei:
            admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(
                timeout=TIMEOUT)
        assert kafka_error_of(ei.value).code() == KafkaError.NON_EMPTY_GROUP

        # Offsets of a group with members can only be committed by its members.
        # (librdkafka reports this per partition, not as a failed future).
        res = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])],
            request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
        [tp] = res.topic_partitions
        assert tp.error is not None and tp.error.code() == KafkaError.UNKNOWN_MEMBER_ID, tp
        assert group_offsets(admin, group, topic, 2) == {0: 5, 1: 5}

        # OffsetDelete (kafka-python; confluent-kafka has no API for it):
        # refused for a topic the group's members are subscribed to.
        errs = kp_admin.delete_group_offsets(group, [KpTopicPartition(topic, 0)])
        assert errs == {KpTopicPartition(topic, 0): GroupSubscribedToTopicError}, errs
        assert group_offsets(admin, group, topic, 2) == {0: 5, 1: 5}

        for m in members:
            m.finish()
    finally:
        stop_all(members)

    d = wait_until(lambda: (d := describe_group(admin, group)).state == ConsumerGroupState.EMPTY
                   and d, timeout=15, what="empty group")
    assert d.members == []
    listing = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    [g] = [g for g in listing.valid if g.group_id == group]
    assert g.state == ConsumerGroupState.EMPTY
    assert group_offsets(admin, group, topic, 2) == {0: 5, 1: 5}

    # alter / list round trip on the empty group
    res = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 2),
                                              TopicPartition(topic, 1, 4)])],
        request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    assert all(tp.error is None for tp in res.topic_partitions), res.topic_partitions
    assert group_offsets(admin, group, topic, 2) == {0: 2, 1: 4}

    # A consumer of the group starts where the altered offsets say.
    c = Consumer(group_conf(broker, group))
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 4 and time.monotonic() < deadline:
            for msg in c.consume(num_messages=10, timeout=0.5):
                if msg.error() is None:
                    got.append((msg.partition(), msg.offset()))
        assert sorted(got) == [(0, 2), (0, 3), (0, 4), (1, 4)]
    finally:
        c.close()

    # OffsetDelete on the empty group removes just that partition's offset.
    errs = kp_admin.delete_group_offsets(group, [KpTopicPartition(topic, 1)])
    assert errs == {KpTopicPartition(topic, 1): NoError}, errs
    assert group_offsets(admin, group, topic, 2) == {0: 2, 1: OFFSET_INVALID}

    admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    assert group_offsets(admin, group, topic, 2) == {0: OFFSET_INVALID, 1: OFFSET_INVALID}
    listing = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert group not in [g.group_id for g in listing.valid]
    try:
        d = describe_group(admin, group)
        assert d.state == ConsumerGroupState.DEAD and d.members == []
    except KafkaException as e:
        assert kafka_error_of(e).code() == KafkaError.GROUP_ID_NOT_FOUND

    unknown = topic_name("g-unknown")
    with pytest.raises(KafkaException) as ei:
        admin.delete_consumer_groups([unknown], request_timeout=TIMEOUT)[unknown].result(
            timeout=TIMEOUT)
    assert kafka_error_of(ei.value).code() == KafkaError.GROUP_ID_NOT_FOUND


# --------------------------------------------------------------------------
# 5. idempotent producer
# --------------------------------------------------------------------------


def test_idempotent_producer(broker, topic_name):
    total, partitions = 20000, 3
    admin = admin_for(broker)
    topic = topic_name("idem")
    create_topic(admin, topic, partitions)
    producer = producer_for(broker, **{"enable.idempotence": True, "linger.ms": 2})
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset(), int(msg.value())))

    for v in range(total):
        produce_retrying(producer, topic, value=str(v).encode(), partition=v % partitions,
                         on_delivery=on_delivery)
        if v % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert len(reports) == total
    errors = [r for r in reports if r[0] is not None]
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    expected = {p: list(range(p, total, partitions)) for p in range(partitions)}
    for p in range(partitions):
        delivered = sorted((off, v) for _e, pp, off, v in reports if pp == p)
        assert [off for off, _ in delivered] == list(range(len(expected[p])))
        assert [v for _, v in delivered] == expected[p], f"partition {p}: out of order"

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "idem-reader",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "logger": RDKAFKA_LOG})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got = defaultdict(list)
        eof = set()
        deadline = time.monotonic() + 60
        while len(eof) < partitions and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, err
                    eof.add(msg.partition())  # everything was produced before
                    continue
                got[msg.partition()].append((msg.offset(), int(msg.value())))
        assert len(eof) == partitions, "did not reach the end of every partition in 60 s"
    finally:
        c.close()
    for p in range(partitions):
        assert [off for off, _ in got[p]] == list(range(len(expected[p])))
        assert [v for _, v in got[p]] == expected[p], f"partition {p}: duplicates or gaps"
