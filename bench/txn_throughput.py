#!/usr/bin/env python3
"""Throughput of transactional produce against idempotent produce.

One node. In each of ROUNDS rounds confluent-kafka writes RECORDS records of
1 KiB (acks=all, linger 5 ms) three ways, each to a fresh one-partition
topic, in an order that rotates from round to round:

- idempotent: enable.idempotence=true, produce everything, flush;
- txn-100: a transactional producer, begin / produce 100 / commit, repeated;
- txn-10000: the same with transactions of 10,000 records.

Timed: the first produce to the last delivery (idempotent) or the last
commit (transactional); producer set-up, InitProducerId and one warm-up
record (a warm-up transaction) before it are not. Reported for each round:
records/s and MB/s (10^6 bytes of values) of each way and the ratio of each
transactional way to the idempotent one of the same round; then the median
ratios, and commit_transaction latency (p50/p99/max, all rounds; it includes
flushing the transaction's last records). Afterwards every topic must hold
its records plus one marker per transaction, with nothing left open
(last stable offset = high watermark). Every wait is bounded.

usage: txn_throughput.py CHRONIK_BIN [RECORDS] [ROUNDS]
"""

import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import IsolationLevel, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

READY = re.compile(r"^chronik-server ready: kafka=(\S+):(\d+) ")
VALUE = b"v" * 1024
TXN_SIZES = (100, 10_000)
PHASE_CAP_S = 600  # any one way of writing the records, in one round
COMMON = {"acks": "all", "linger.ms": 5, "delivery.report.only.error": True}


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Failed(Exception):
    pass


def produce(producer, topic, count, deadline):
    """`count` records, waiting for room while the local queue is full."""
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value=VALUE)
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise Failed(f"{topic}: no room in the producer queue before the deadline")
                producer.poll(0.005)
    producer.poll(0)


def make_producer(bootstrap, errors, **extra):
    def failed(err, msg):
        errors.append(err)

    return Producer({"bootstrap.servers": bootstrap, **COMMON, "on_delivery": failed, **extra})


def idempotent(bootstrap, topic, records, errors):
    """Seconds to write `records` records; one warm-up record first."""
    producer = make_producer(bootstrap, errors, **{"enable.idempotence": True})
    produce(producer, topic, 1, time.monotonic() + 60)
    if producer.flush(60):
        raise Failed(f"{topic}: the warm-up record was not delivered")
    deadline = time.monotonic() + PHASE_CAP_S
    began = time.monotonic()
    produce(producer, topic, records, deadline)
    if producer.flush(max(1.0, deadline - time.monotonic())):
        raise Failed(f"{topic}: records undelivered after {PHASE_CAP_S} s")
    return time.monotonic() - began, []


def transactional(bootstrap, topic, records, size, errors):
    """(seconds, commit latencies) to write `records` records in
    transactions of `size`; one warm-up transaction of one record first."""
    producer = make_producer(bootstrap, errors, **{"transactional.id": f"bench-{topic}"})
    producer.init_transactions(60)
    producer.begin_transaction()
    produce(producer, topic, 1, time.monotonic() + 60)
    producer.commit_transaction(60)
    deadline = time.monotonic() + PHASE_CAP_S
    latencies = []
    began = time.monotonic()
    done = 0
    while done < records:
        n = min(size, records - done)
        producer.begin_transaction()
        produce(producer, topic, n, deadline)
        at = time.monotonic()
        producer.commit_transaction(max(1.0, min(120.0, deadline - at)))
        latencies.append(time.monotonic() - at)
        done += n
        if time.monotonic() > deadline:
            raise Failed(f"{topic}: more than {PHASE_CAP_S} s")
    return time.monotonic() - began, latencies


def stable_and_high(admin, topic):
    tp = TopicPartition(topic, 0)
    return tuple(
        admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=level,
                           request_timeout=30)[tp].result(timeout=30).offset
        for level in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED))


def start(binary, tmp):
    env = dict(os.environ, CHRONIK_HTTP_ADDR="127.0.0.1:0", NO_COLOR="1")
    log = open(Path(tmp) / "broker.log", "ab")
    proc = subprocess.Popen([binary, "--data-dir", str(Path(tmp) / "data"), "--kafka-port", "0"],
                            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env)
    log.close()
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline().decode() if ready else ""
    match = READY.match(line)
    if not match:
        proc.kill()
        proc.wait(10)
        tail = (Path(tmp) / "broker.log").read_text(errors="replace").splitlines()[-30:]
        sys.exit(f"no ready line: {line!r}\n" + "\n".join(tail))
    return proc, f"{match[1]}:{match[2]}"


def main():
    binary = sys.argv[1]
    records = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    modes = ["idempotent"] + [f"txn-{size}" for size in TXN_SIZES]
    results = []  # (round, mode, seconds)
    latencies = {size: [] for size in TXN_SIZES}
    problems = []
    with tempfile.TemporaryDirectory(prefix="txn-throughput-") as tmp:
        proc, bootstrap = start(binary, tmp)
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            topics = [f"{mode}-r{r}" for r in range(rounds) for mode in modes]
            for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
                future.result(60)
            errors = []
            for r in range(rounds):
                for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
                    topic = f"{mode}-r{r}"
                    if mode == "idempotent":
                        seconds, _ = idempotent(bootstrap, topic, records, errors)
                    else:
                        size = int(mode.split("-")[1])
                        seconds, commits = transactional(bootstrap, topic, records, size, errors)
                        latencies[size] += commits
                    results.append((r, mode, seconds))
                    print(f"round {r + 1} {mode}: {records / seconds:,.0f} records/s", file=sys.stderr)
            if errors:
                problems.append(f"{len(errors)} failed deliveries, e.g. {errors[:3]}")
            for r in range(rounds):
                for mode in modes:
                    # One warm-up record; a marker per transaction, warm-up included.
                    markers = 0 if mode == "idempotent" else -(-records // int(mode.split("-")[1])) + 1
                    expected = records + 1 + markers
                    got = stable_and_high(admin, f"{mode}-r{r}")
                    if got != (expected, expected):
                        problems.append(f"{mode}-r{r}: (last stable offset, high watermark) {got}, "
                                        f"expected ({expected}, {expected})")
        except (Failed, KafkaException) as e:
            problems.append(f"the run failed: {e}")
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    if not results:
        sys.exit("\n".join(problems) or "no results")
    seconds = {(r, mode): s for r, mode, s in results}
    print(f"{records} records of 1 KiB per way and round, {rounds} rounds, acks=all, linger 5 ms, one partition")
    print("| round | way | seconds | records/s | MB/s | ratio to idempotent |")
    print("|---|---|---|---|---|---|")
    ratios = {size: [] for size in TXN_SIZES}
    for r in range(rounds):
        base = seconds.get((r, "idempotent"))
        for mode in modes:
            s = seconds.get((r, mode))
            if s is None:
                continue
            ratio = ""
            if mode != "idempotent" and base:
                value = base / s  # throughput ratio txn / idempotent
                ratios[int(mode.split("-")[1])].append(value)
                ratio = f"{value:.3f}"
            print(f"| {r + 1} | {mode} | {s:.2f} | {records / s:,.0f} | {records * len(VALUE) / s / 1e6:.1f} | {ratio} |")
    for size in TXN_SIZES:
        if ratios[size]:
            print(f"median ratio txn-{size}/idempotent: {statistics.median(ratios[size]):.3f} "
                  f"(rounds: {', '.join(f'{v:.3f}' for v in ratios[size])})")
    print("| commit_transaction | commits | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for size in TXN_SIZES:
        if latencies[size]:
            row = [percentile(latencies[size], q) * 1000 for q in (0.5, 0.99)] + [max(latencies[size]) * 1000]
            print(f"| {size} records | {len(latencies[size])} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    if problems:
        print("PROBLEMS:\n" + "\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
