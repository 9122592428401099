"""Rebalance time of a consumer group, classic protocol against the consumer
group protocol (KIP-848), measured with confluent-kafka members.

For each protocol and each group size N: N-1 members share a 12-partition
topic; the clock starts when the N-th member subscribes and stops when every
partition is owned by exactly one member and each of the N owns some
(join). Then one member closes and the clock stops when the others own every
partition again (leave). Each case runs --rounds times on a fresh group.

It starts its own single-node chronik-server from BINARY for each broker
setting, so the heartbeat interval of the new protocol can be varied.

Usage: group_rebalance.py BINARY [--sizes 3,4,5,6] [--rounds 3] [--json FILE]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 12
READY = re.compile(r"chronik-server ready: kafka=(\S+) ")


class Broker:
    def __init__(self, binary, args):
        self.dir = tempfile.TemporaryDirectory()
        self.proc = subprocess.Popen([binary, "--data-dir", self.dir.name, "--kafka-port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=dict(os.environ, CHRONIK_HTTP_ADDR="127.0.0.1:0"))
        line = self.proc.stdout.readline()
        self.bootstrap = READY.match(line).group(1)

    def close(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.dir.cleanup()


class Member:
    def __init__(self, bootstrap, group, topic, protocol):
        conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                "group.protocol": protocol}
        self.consumer = Consumer(conf)
        self.consumer.subscribe([topic])
        self.stop = threading.Event()
        self.owned = set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            self.consumer.poll(0.05)
            self.owned = {tp.partition for tp in self.consumer.assignment()}

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.consumer.close()


def settled(members):
    owned = [m.owned for m in members]
    every = sorted(p for o in owned for p in o)
    return every == list(range(PARTITIONS)) and all(owned)


def wait_settled(members, timeout=120):
    start = time.monotonic()
    while not settled(members):
        if time.monotonic() - start > timeout:
            raise TimeoutError("the group did not settle")
        time.sleep(0.01)
    return time.monotonic() - start


def one_round(bootstrap, topic, protocol, size):
    group = f"bench-{uuid.uuid4().hex[:8]}"
    members = [Member(bootstrap, group, topic, protocol) for _ in range(size - 1)]
    try:
        wait_settled(members)
        time.sleep(1)
        start = time.monotonic()
        members.append(Member(bootstrap, group, topic, protocol))
        wait_settled(members)
        join = time.monotonic() - start
        time.sleep(1)
        leaving = members.pop(0)
        start = time.monotonic()
        leaving.close()
        wait_settled(members)
        leave = time.monotonic() - start
        return join, leave
    finally:
        for member in members:
            member.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--sizes", default="3,4,5,6")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = [
        ("classic", "classic", []),
        ("consumer, heartbeat 5000 ms (Kafka's default)", "consumer", []),
        ("consumer, heartbeat 500 ms", "consumer", ["--group-consumer-heartbeat-interval-ms", "500"]),
    ]
    results = []
    for label, protocol, broker_args in settings:
        broker = Broker(args.binary, broker_args)
        try:
            topic = f"rebalance-{uuid.uuid4().hex[:8]}"
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
            producer = Producer({"bootstrap.servers": broker.bootstrap})
            for p in range(PARTITIONS):
                producer.produce(topic, b"x", partition=p)
            producer.flush(30)
            for size in sizes:
                rounds = [one_round(broker.bootstrap, topic, protocol, size) for _ in range(args.rounds)]
                joins = [r[0] for r in rounds]
                leaves = [r[1] for r in rounds]
                row = {"setting": label, "members": size,
                       "join_median_s": statistics.median(joins), "join_max_s": max(joins),
                       "leave_median_s": statistics.median(leaves), "leave_max_s": max(leaves)}
                results.append(row)
                print(f"{label:48} N={size}  join median {row['join_median_s']:.2f} s max {row['join_max_s']:.2f} s"
                      f"  leave median {row['leave_median_s']:.2f} s max {row['leave_max_s']:.2f} s", flush=True)
        finally:
            broker.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
