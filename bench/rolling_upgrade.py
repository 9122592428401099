#!/usr/bin/env python3
"""A rolling upgrade from one build to another, under load.

Three nodes of the OLD build form a cluster; a confluent-kafka producer
(acks=all, idempotent) writes to a three-partition topic with replication
factor 3 throughout. Each node in turn is stopped (SIGTERM) and started with
the NEW build on its data directory, and `cluster rebalance` hands it back
the leaderships it prefers, so that new leaders write to old followers. While an old node is left, raising
chronik.version must be refused; once all run NEW, `cluster version --set`
moves the cluster to NEW's newest level, and then rolling the last node
back to OLD must fail to start. Then every acknowledged record must
be read back once at its acknowledged offset, and the replicas of every
partition must hold the same bytes (the log checksums of `cluster
partition-info`).

With --no-raise (for a NEW build without chronik.version) the version
steps are skipped and only the records and replicas are checked.

usage: rolling_upgrade.py OLD_BIN NEW_BIN [--level N] [--rate R] [--no-raise]
"""

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))
from fault_suite import NODES, Node, free_port, node_env  # noqa: E402

TOPIC = "rolling"
PARTITIONS = 3
CATCH_UP_S = 3.0
CONVERGE_TIMEOUT_S = 60.0


class LoadProducer(threading.Thread):
    """Sends keys 0, 1, 2, ... at a fixed rate; keeps every acknowledgement."""

    def __init__(self, bootstrap, rate):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                  "enable.idempotence": True, "message.timeout.ms": 120000})
        self.rate = rate
        self.acked = {}
        self.failures = []
        self.sent = 0
        self.done = threading.Event()

    def _on_delivery(self, err, msg):
        if err is not None:
            self.failures.append(str(err))
        else:
            self.acked[(msg.partition(), msg.offset())] = int(msg.key())

    def run(self):
        started = time.monotonic()
        while not self.done.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                key = str(self.sent).encode()
                self.producer.produce(TOPIC, key=key, value=b"v" * 512, on_delivery=self._on_delivery)
                self.sent += 1
            self.producer.poll(0.01)
        self.producer.flush(120)


def cli(new_bin, secret, via, *args):
    command = [new_bin, "cluster", *args, "--via", via]
    done = subprocess.run(command, capture_output=True, text=True, env=node_env(secret), timeout=120)
    return done.returncode, done.stdout + done.stderr


def replicas_agree(new_bin, secret, via, partition):
    code, out = cli(new_bin, secret, via, "partition-info", "--topic", TOPIC, "--partition", str(partition), "--json")
    if code != 0:
        return None
    states = json.loads(out)["replica_states"]
    seen = {(r["log_end_offset"], r["checksum"]) for r in states}
    if len(states) == 3 and len(seen) == 1 and all(r["checksum"] for r in states):
        return states[0]["log_end_offset"]
    return None


def read_back(bootstrap):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rolling-check",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    stored = {}
    for partition in range(PARTITIONS):
        _, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, partition), timeout=30)
        consumer.assign([TopicPartition(TOPIC, partition, 0)])
        deadline = time.monotonic() + 120
        while high > 0 and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            stored[(partition, msg.offset())] = int(msg.key())
            if msg.offset() + 1 >= high:
                break
    consumer.close()
    return stored


def roll_back(node, old, new, work):
    """Starts `node` with the OLD build after the raise: it must refuse to
    start rather than serve replicas it cannot keep. Returns its last log
    line, then starts it with NEW again."""
    node.stop()
    node.binary = old
    node.start(bootstrap=False)
    if node.wait_ready(timeout=30):
        sys.exit(f"node {node.id} started with the old build after the raise; see {work}")
    node.stop()
    lines = [line for line in node.log_path.read_text(errors="replace").splitlines() if line.strip()]
    node.binary = new
    node.start(bootstrap=False)
    if not node.wait_ready():
        sys.exit(f"node {node.id} did not start with the new build again; see {work}")
    return lines[-1] if lines else ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--level", type=int, default=2, help="the chronik.version to raise the cluster to")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--no-raise", action="store_true", help="NEW has no chronik.version: skip raising it")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rolling-upgrade-"))
    print(f"logs in {work}", flush=True)
    secret = secrets.token_hex(16)
    kafka = {n: free_port() for n in NODES}
    raft = {n: free_port() for n in NODES}
    nodes = {}
    for n in NODES:
        peers = ",".join(f"{m}@127.0.0.1:{raft[m]}" for m in NODES if m != n)
        nodes[n] = Node(args.old, n, kafka[n], raft[n], peers, work / f"node{n}", work / f"node{n}.log", secret)
    for node in nodes.values():
        node.start(bootstrap=True)
    if not all(node.wait_ready() for node in nodes.values()):
        sys.exit(f"an old node did not start; see {work}")
    bootstrap = ",".join(node.kafka_addr for node in nodes.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)], operation_timeout=30).values():
        future.result(timeout=60)

    load = LoadProducer(bootstrap, args.rate)
    load.start()
    refusal = None
    rollback = None
    try:
        time.sleep(CATCH_UP_S)
        for n in NODES:
            print(f"node {n}: {nodes[n].stop()!r} after SIGTERM, starting the new build", flush=True)
            nodes[n].binary = args.new
            nodes[n].start(bootstrap=False)
            if not nodes[n].wait_ready():
                sys.exit(f"node {n} did not start with the new build; see {work}")
            time.sleep(CATCH_UP_S)
            code, out = cli(args.new, secret, nodes[n].raft_addr, "rebalance", "--max-seconds", "30")
            print(f"node {n}: rebalance exit {code}: {out.strip().splitlines()[-1] if out.strip() else ''}", flush=True)
            if n == NODES[-2] and not args.no_raise:
                code, out = cli(args.new, secret, nodes[n].raft_addr, "version", "--set", str(args.level))
                if code == 0:
                    sys.exit(f"the version was raised while node {NODES[-1]} ran the old build: {out}")
                refusal = out.strip().splitlines()[-1]
                print(f"raising it with node {NODES[-1]} still old is refused: {refusal}", flush=True)
        if not args.no_raise:
            code, out = cli(args.new, secret, nodes[1].raft_addr, "version", "--set", str(args.level))
            if code != 0:
                sys.exit(f"raising chronik.version failed: {out}")
            print(out.strip(), flush=True)
            rollback = roll_back(nodes[NODES[-1]], args.old, args.new, work)
            print(f"rolling node {NODES[-1]} back to the old build: {rollback}", flush=True)
        time.sleep(CATCH_UP_S)
    finally:
        load.done.set()
        load.join(180)

    stored = read_back(bootstrap)
    wrong = [(at, key) for at, key in load.acked.items() if stored.get(at) != key]
    keys = list(stored.values())
    duplicates = len(keys) - len(set(keys))
    lengths = {}
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while len(lengths) < PARTITIONS and time.monotonic() < deadline:
        for p in range(PARTITIONS):
            if p not in lengths and (end := replicas_agree(args.new, secret, nodes[1].raft_addr, p)) is not None:
                lengths[p] = end
        time.sleep(0.5)
    for node in nodes.values():
        node.stop()
    result = {"sent": load.sent, "acked": len(load.acked), "failed_deliveries": len(load.failures),
              "stored": len(stored), "acked_not_at_its_offset": len(wrong), "keys_stored_twice": duplicates,
              "partitions_with_identical_replicas": len(lengths), "refusal_with_an_old_node": refusal, "rollback": rollback}
    print(json.dumps(result))
    ok = not wrong and duplicates == 0 and len(lengths) == PARTITIONS and not load.failures
    if not ok:
        sys.exit(f"the upgrade lost, moved or duplicated records, or replicas differ; see {work}")


if __name__ == "__main__":
    main()
