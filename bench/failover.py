#!/usr/bin/env python3
"""Produce pause when a partition's leader is killed under load.

Starts three release nodes (fresh data, direct peer connections), creates a
one-partition topic with replication factor 3, and runs a confluent-kafka
producer at RATE records/s of 1 KiB, acks=all, idempotent, linger 0. Then,
KILLS times: waits for a steady stretch and a random fraction of a second,
kills the partition's leader with SIGKILL, and measures the produce pause: the longest gap between two
consecutive delivery reports from one second before the kill until
deliveries have run steadily again. The killed node is restarted and given
time to catch up before the next kill.

Prints one line per kill and the median and max pause; --json prints them
as JSON instead.

usage: failover.py CHRONIK_BIN [--kills N] [--rate R] [--json]
"""

import argparse
import json
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))
from fault_suite import NODES, Node, free_port  # noqa: E402

TOPIC = "failover"
# Deliveries must run this long without a gap over STEADY_GAP_S before a
# kill, and again after one before the pause is measured.
STEADY_S = 3.0
STEADY_GAP_S = 0.2
RESUME_TIMEOUT_S = 30.0
CATCH_UP_S = 5.0


class LoadProducer(threading.Thread):
    """Sends at a fixed rate and keeps the time of every delivery report."""

    def __init__(self, bootstrap, rate):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                                  "enable.idempotence": True, "message.timeout.ms": 60000})
        self.rate = rate
        self.deliveries = []
        self.failures = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def _on_delivery(self, err, _msg):
        now = time.monotonic()
        with self.lock:
            if err is None:
                self.deliveries.append(now)
            else:
                self.failures += 1

    def run(self):
        value = b"x" * 1024
        start = time.monotonic()
        sent = 0
        while not self.done.is_set():
            due = start + sent / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                self.producer.poll(min(delay, 0.01))
                continue
            try:
                self.producer.produce(TOPIC, value, partition=0, on_delivery=self._on_delivery)
                sent += 1
            except BufferError:
                self.producer.poll(0.01)
            self.producer.poll(0)
        self.producer.flush(30)

    def since(self, t):
        with self.lock:
            return [d for d in self.deliveries if d >= t]


def longest_gap(times):
    return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


def wait_steady(load, deadline, after=0.0):
    """Waits until the last STEADY_S of deliveries, all later than `after`,
    had no gap over STEADY_GAP_S."""
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now - STEADY_S < after:
            time.sleep(0.1)
            continue
        recent = load.since(now - STEADY_S)
        if recent and recent[0] - (now - STEADY_S) < STEADY_GAP_S and now - recent[-1] < STEADY_GAP_S \
                and longest_gap(recent) < STEADY_GAP_S:
            return True
        time.sleep(0.1)
    return False


def leader_of(admin):
    partition = admin.list_topics(topic=TOPIC, timeout=10).topics[TOPIC].partitions[0]
    return partition.leader if partition.error is None else -1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1, help="draws the delay before each kill")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="failover-"))
    secret = secrets.token_hex(16)
    kafka = {n: free_port() for n in NODES}
    raft = {n: free_port() for n in NODES}
    nodes = {}
    for n in NODES:
        peers = ",".join(f"{m}@127.0.0.1:{raft[m]}" for m in NODES if m != n)
        nodes[n] = Node(args.binary, n, kafka[n], raft[n], peers, work / f"node{n}", work / f"node{n}.log", secret)
    for node in nodes.values():
        node.start(bootstrap=True)
    if not all(node.wait_ready() for node in nodes.values()):
        sys.exit(f"a node did not start; see {work}")
    bootstrap = ",".join(node.kafka_addr for node in nodes.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, 1, 3)], operation_timeout=30).values():
        future.result(timeout=60)

    load = LoadProducer(bootstrap, args.rate)
    load.start()
    pauses = []
    phase = random.Random(args.seed)
    try:
        for kill in range(args.kills):
            if not wait_steady(load, time.monotonic() + 60):
                sys.exit(f"kill {kill + 1}: deliveries never ran steadily; see {work}")
            # librdkafka looks for a new leader on a one-second timer, so
            # kills at a fixed period would all land at the same phase of it.
            time.sleep(phase.uniform(0.0, 1.0))
            leader = leader_of(admin)
            if leader not in nodes:
                sys.exit(f"kill {kill + 1}: no leader named; see {work}")
            killed_at = time.monotonic()
            nodes[leader].kill()
            if not wait_steady(load, killed_at + RESUME_TIMEOUT_S, after=killed_at):
                sys.exit(f"kill {kill + 1}: deliveries did not resume within {RESUME_TIMEOUT_S} s; see {work}")
            pause = longest_gap(load.since(killed_at - 1.0))
            pauses.append(pause)
            if not args.json:
                print(f"kill {kill + 1}: node {leader}, produce paused {pause:.2f} s", flush=True)
            nodes[leader].start(bootstrap=True)
            if not nodes[leader].wait_ready():
                sys.exit(f"kill {kill + 1}: node {leader} did not restart; see {work}")
            time.sleep(CATCH_UP_S)
    finally:
        load.done.set()
        load.join(60)
        for node in nodes.values():
            node.stop()
    result = {"kills": len(pauses), "median_s": statistics.median(pauses), "max_s": max(pauses),
              "pauses_s": [round(p, 3) for p in pauses], "failed_deliveries": load.failures}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"produce pause over {len(pauses)} kills: median {result['median_s']:.2f} s, "
              f"max {result['max_s']:.2f} s; failed deliveries: {load.failures}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
