#!/usr/bin/env python3
"""Seeded fault injection on a real three-node Chronik cluster.

For one seed the suite

1. starts three `chronik-server` processes on 127.0.0.1 (fresh data
   directories, fixed ports so a restarted node keeps its addresses, and a
   random CHRONIK_CLUSTER_SECRET shared by the nodes and the `cluster ...`
   CLI calls, since cluster nodes require peer security). Every
   node reaches each peer's Raft port through a TCP proxy owned by this
   script, one proxy per directed link: `links[(1, 2)]` is what node 1 dials
   to reach node 2. The Raft transport sends each node's messages over the
   connections it dialled itself, so cutting (1, 2) silences 1 -> 2 while
   2 -> 1 still flows.
2. creates a topic (3 partitions, replication factor 3);
3. runs, for `--seconds`, an idempotent producer (values `p1-<seq>`), a plain
   producer with retries (`p2-<seq>`), both acks=all, and a group consumer,
   recording every send, delivery report and consumed record;
4. meanwhile a nemesis driven by `random.Random(seed)` injects one fault at a
   time, every few seconds: kill -9 a node and restart it, SIGSTOP/SIGCONT a
   node, cut one Raft link both ways or one way, or isolate a node. A cut
   either drops connections and refuses new ones ("drop"), or freezes the
   bytes in flight until the heal ("stall", like a partition TCP rides out).
5. heals everything, flushes the producers, lets the consumer catch up, reads
   every partition from offset 0 with a fresh consumer bootstrapped at each
   node, asks each replica for its end offset and log checksum, and checks
   the history (`check_history`):

   - every acknowledged write is at its acknowledged partition and offset,
     with its value (lost-ack, wrong-value-at-acked-offset);
   - no offset ever shows two values, in any read (offset-two-values);
   - no value of the idempotent producer is stored twice (idempotent-duplicate);
   - within one assignment the live consumer reads each partition's offsets
     one after the other, never backwards nor skipping (live-backwards,
     live-skip); the first record after an assignment may start anywhere;
   - every record the live consumer saw is still in the final log
     (consumed-record-lost); nothing read was never sent (phantom-value);
     the final log has no holes (final-gap) and does not shrink between
     final reads (log-shrank);
   - replicas with the same high watermark have the same checksum
     (replica-divergence); no node exits or panics on its own (crash);
     librdkafka reports each delivery once (double-ack).

   The plain producer may store a value twice (a retry after a lost answer);
   those are counted, not violations. Liveness problems (replicas that do not
   converge, a node slow to name partition leaders after the heal, a consumer
   that does not catch up) are reported as anomalies and fail nothing. A seed
   whose checks cannot run (a node that does not come back, a partition never
   read to its end, the wall-clock cap) ends as "error".

Run:

    target/venv/bin/python tests/faults/fault_suite.py --seed 7 --seconds 30
    target/venv/bin/python tests/faults/fault_suite.py --seeds 1..50 --seconds 30 \
        --bin target/debug/chronik-server --out /tmp/faults

The binary defaults to $CHRONIK_BIN, else <repo>/target/debug/chronik-server.
Each seed writes <out>/seed-<N>/history.jsonl (every event, one JSON object a
line), verdict.json, the node logs (nodeK.log) and librdkafka's log
(rdkafka.log; `--rdkafka-debug fetch,metadata,eos,msg` makes it verbose, and
its "offset reset" lines are copied into the history). Data directories are
deleted for passing seeds unless --keep-data. One line
is printed per seed and a summary at the end; the exit status is 1 if any
seed had a violation or an error. Every wait is bounded, each seed has a
wall-clock cap, and every process started is killed on exit.
"""

import argparse
import atexit
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = os.environ.get("CHRONIK_BIN", str(REPO / "target" / "debug" / "chronik-server"))

NODES = (1, 2, 3)
PARTITIONS = 3
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# Each producer sends at most one record per PRODUCE_INTERVAL_S and keeps at
# most MAX_OUTSTANDING unanswered, so a long fault does not pile up a backlog.
PRODUCE_INTERVAL_S = 0.01
MAX_OUTSTANDING = 300
MESSAGE_TIMEOUT_MS = 30000
FLUSH_TIMEOUT_S = 45.0
CATCH_UP_TIMEOUT_S = 30.0
FINAL_READ_TIMEOUT_S = 45.0
CONVERGE_TIMEOUT_S = 60.0
LEADERS_KNOWN_TIMEOUT_S = 60.0
# A node that still names no leader this long after the heal is reported.
LEADERS_KNOWN_SLOW_S = 10.0
# Per seed: the fault phase plus this much for setup, healing and checking.
SEED_OVERHEAD_CAP_S = 420.0
# Fault timing (seconds), all drawn from the seed's generator.
FAULT_GAP_S = (0.5, 3.0)
FAULT_LENGTH_S = (1.0, 6.0)
FAULT_KINDS = ("kill", "pause", "cut-both", "cut-one", "isolate")
MAX_PROXY_CONNECTIONS = 16
# librdkafka debug contexts for the producers and the live consumer
# (--rdkafka-debug), to see why a client stalls or jumps; see rdkafka.log.
RDKAFKA_DEBUG = None
MAX_ERROR_EVENTS = 200

# Every broker process ever started, so exit paths can kill the survivors.
_PROCESSES = set()
_PROCESSES_LOCK = threading.Lock()


def _kill_all_processes():
    with _PROCESSES_LOCK:
        procs = list(_PROCESSES)
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            except OSError:
                pass
    for proc in procs:
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass


atexit.register(_kill_all_processes)


# Ports free_port has returned: a probed port stays free until its node
# binds it, so a later call would otherwise return it again.
_handed_out = set()
_handed_out_lock = threading.Lock()


def free_port():
    """A free port below Linux's ephemeral range (32768-60999), never one
    this process was given before: a stopped node's port must stay free
    while its peers keep connecting to it, and a TCP connection to a local
    port nothing listens on can connect to itself when the kernel picks that
    same port as its source."""
    start = random.SystemRandom().randrange(20000, 32000)
    with _handed_out_lock:
        for i in range(12000):
            port = 20000 + (start - 20000 + i) % 12000
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port in 20000-31999")


# --------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------


class History:
    """Every event of a run, in memory for the checker and on disk as JSON lines."""

    def __init__(self, path):
        self.t0 = time.monotonic()
        self.events = []
        self.lock = threading.Lock()
        self.file = open(path, "w")

    def now(self):
        return round(time.monotonic() - self.t0, 3)

    def record(self, type_, **fields):
        event = {"t": self.now(), "type": type_, **fields}
        with self.lock:
            self.events.append(event)
            if self.file:
                self.file.write(json.dumps(event) + "\n")
        return event

    def close(self):
        with self.lock:
            if self.file:
                self.file.close()
                self.file = None


# --------------------------------------------------------------------------
# link proxies
# --------------------------------------------------------------------------


class LinkProxy:
    """Forwards one directed Raft link; can drop it, stall it, and heal it."""

    def __init__(self, src, dst, upstream_port):
        self.src, self.dst = src, dst
        self.upstream_port = upstream_port
        self.mode = "open"  # open | drop | stall
        self.gate = threading.Event()  # set while bytes may flow
        self.gate.set()
        self.pairs = set()
        self.lock = threading.Lock()
        self.closed = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True,
                         name=f"proxy-{src}-{dst}").start()

    def cut(self, mode):
        self.mode = mode
        if mode == "drop":
            self._drop_all()
        else:
            self.gate.clear()

    def heal(self):
        self.mode = "open"
        self.gate.set()

    def close(self):
        self.closed = True
        self.gate.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self._drop_all()

    def _accept_loop(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                full = len(self.pairs) >= MAX_PROXY_CONNECTIONS
            if self.mode == "drop" or full or self.closed:
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        # A stalled link holds a new connection before it reaches the peer.
        while not self.gate.wait(0.2):
            if self.closed or self.mode == "drop":
                client.close()
                return
        try:
            server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        client.settimeout(None)
        pair = (client, server)
        with self.lock:
            self.pairs.add(pair)
        threading.Thread(target=self._pump, args=(client, server, pair), daemon=True).start()
        self._pump(server, client, pair)

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while not self.gate.wait(0.2):
                    if self.closed or pair not in self.pairs:
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(pair)

    def _drop(self, pair):
        with self.lock:
            self.pairs.discard(pair)
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _drop_all(self):
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            self._drop(pair)


# --------------------------------------------------------------------------
# nodes and the cluster
# --------------------------------------------------------------------------


def node_env(secret):
    """The environment of a chronik-server process of the cluster (a node or
    a `cluster ...` CLI call): nodes require peer security, here the shared
    cluster secret."""
    return dict(os.environ, NO_COLOR="1", CHRONIK_CLUSTER_SECRET=secret, CHRONIK_HTTP_ADDR="127.0.0.1:0")


class Node:
    """One chronik-server process; restarts keep its data dir and ports."""

    def __init__(self, binary, node_id, kafka_port, raft_port, peers, data_dir, log_path, secret):
        self.binary = binary
        self.secret = secret
        self.id = node_id
        self.kafka_port = kafka_port
        self.raft_port = raft_port
        self.peers = peers
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.proc = None
        self.ready = threading.Event()
        # host:port of the HTTP endpoint (metrics, probes), from the ready line.
        self.http = None
        self.paused = False
        self.starts = 0

    @property
    def kafka_addr(self):
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def raft_addr(self):
        return f"127.0.0.1:{self.raft_port}"

    def start(self, bootstrap):
        # Only the main thread starts processes, so none is tied to a thread
        # that has finished.
        self.starts += 1
        args = [
            self.binary,
            "--node-id", str(self.id),
            "--kafka-port", str(self.kafka_port),
            "--data-dir", str(self.data_dir),
            "--offsets-topic-partitions", "1",
            "--group-initial-rebalance-delay-ms", "500",
            "raft-cluster",
            "--raft-addr", self.raft_addr,
            "--peers", self.peers,
        ]
        if bootstrap:
            args.append("--bootstrap")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(args)} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log,
                                         stdin=subprocess.DEVNULL, env=node_env(self.secret))
        with _PROCESSES_LOCK:
            _PROCESSES.add(self.proc)
        self.paused = False
        self.ready = threading.Event()
        threading.Thread(target=self._read_stdout, args=(self.proc, self.ready),
                         daemon=True).start()

    def _read_stdout(self, proc, ready):
        for line in proc.stdout:
            if line.startswith(b"chronik-server ready:"):
                for field in line.decode().split():
                    if field.startswith("http="):
                        self.http = field[len("http="):]
                ready.set()
        proc.stdout.close()

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.wait(0.2):
                return True
            if not self.running():
                return False
        return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.kill()
        self.paused = False
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self):
        """SIGTERM, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        self.resume()
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                return proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
                return "killed after SIGTERM timeout"
        return proc.returncode


class Cluster:
    def __init__(self, binary, workdir, secret=None):
        # The peer-authentication secret every node and CLI call shares;
        # a fresh random one unless given.
        self.secret = secret or secrets.token_hex(16)
        kafka_ports = {n: free_port() for n in NODES}
        raft_ports = {n: free_port() for n in NODES}
        self.links = {(a, b): LinkProxy(a, b, raft_ports[b])
                      for a in NODES for b in NODES if a != b}
        self.nodes = {}
        for n in NODES:
            peers = ",".join(f"{m}@127.0.0.1:{self.links[(n, m)].port}" for m in NODES if m != n)
            self.nodes[n] = Node(binary, n, kafka_ports[n], raft_ports[n], peers,
                                 Path(workdir) / f"node{n}", Path(workdir) / f"node{n}.log",
                                 self.secret)

    def start(self):
        for node in self.nodes.values():
            node.start(bootstrap=True)
        return all(node.wait_ready() for node in self.nodes.values())

    def bootstrap(self):
        return ",".join(node.kafka_addr for node in self.nodes.values())

    def heal_links(self):
        for proxy in self.links.values():
            proxy.heal()

    def close(self):
        codes = {}
        for n, node in self.nodes.items():
            codes[n] = node.stop()
        for proxy in self.links.values():
            proxy.close()
        return codes

    def partition_info(self, topic, partition, via):
        """`cluster partition-info --json` asked of node `via`, or None."""
        args = [self.nodes[via].binary, "cluster", "partition-info", "--topic", topic,
                "--partition", str(partition), "--addr", self.nodes[via].raft_addr,
                "--timeout-ms", "3000", "--json"]
        try:
            out = subprocess.run(args, capture_output=True, timeout=20, text=True,
                                 env=node_env(self.secret))
        except subprocess.TimeoutExpired:
            return None
        try:
            return json.loads(out.stdout)
        except ValueError:
            return None


# --------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------


class OffsetResetHandler(logging.Handler):
    """Copies librdkafka's "offset reset" lines into the history: they say
    why a consumer jumped (e.g. a broker answered OFFSET_OUT_OF_RANGE)."""

    def __init__(self, history):
        super().__init__(logging.INFO)
        self.history = history

    def emit(self, record):
        message = record.getMessage()
        if "offset reset" in message:
            self.history.record("client_log", message=message[:500])


def rdkafka_logger(path, history):
    logger = logging.getLogger(f"rdkafka-{path}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG if RDKAFKA_DEBUG else logging.INFO)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.addHandler(OffsetResetHandler(history))
    return logger


def close_logger(logger):
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


class ProducerWorker(threading.Thread):
    """Sends unique values round-robin over the partitions until stopped,
    then flushes; records every send and delivery report."""

    def __init__(self, name, prefix, idempotent, bootstrap, topic, history, logger):
        super().__init__(daemon=True, name=name)
        self.producer_name = name
        self.prefix = prefix
        self.idempotent = idempotent
        self.bootstrap = bootstrap
        self.topic = topic
        self.history = history
        self.logger = logger
        self.stop_event = threading.Event()
        self.seq = 0
        self.outstanding = 0
        self.fatal = False
        self.errors = 0
        self.unflushed = None

    def _make(self):
        from confluent_kafka import Producer

        self.fatal = False
        conf = {
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "enable.idempotence": self.idempotent,
            "linger.ms": 5,
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "topic.metadata.refresh.interval.ms": 2000,
            "error_cb": self._on_error,
            "logger": self.logger,
        }
        if RDKAFKA_DEBUG:
            conf["debug"] = RDKAFKA_DEBUG
        if not self.idempotent:
            conf["retries"] = 1000000
            conf["max.in.flight.requests.per.connection"] = 5
        return Producer(conf)

    def _on_error(self, err):
        if err.fatal():
            self.fatal = True
        self.errors += 1
        if self.errors <= MAX_ERROR_EVENTS or err.fatal():
            self.history.record("client_error", client=self.producer_name, code=err.name(),
                                fatal=err.fatal(), error=err.str())

    def _on_delivery(self, err, msg):
        self.outstanding -= 1
        value = msg.value().decode()
        if err is None:
            self.history.record("ack", producer=self.producer_name, value=value,
                                partition=msg.partition(), offset=msg.offset())
        else:
            self.history.record("fail", producer=self.producer_name, value=value,
                                partition=msg.partition(), error=err.name())

    def run(self):
        from confluent_kafka import KafkaException

        producer = self._make()
        while not self.stop_event.is_set():
            if self.fatal:
                # A fatal idempotence error ends this producer instance; its
                # queued records fail. Continue with a new one (new producer id).
                self.history.record("producer_restart", producer=self.producer_name)
                producer.purge()
                producer.flush(5)
                producer = self._make()
                continue
            if self.outstanding >= MAX_OUTSTANDING:
                producer.poll(0.05)
                continue
            value = f"{self.prefix}-{self.seq}"
            partition = self.seq % PARTITIONS
            try:
                producer.produce(self.topic, value=value.encode(), partition=partition,
                                 on_delivery=self._on_delivery)
            except BufferError:
                producer.poll(0.05)
                continue
            except KafkaException as e:
                self.history.record("client_error", client=self.producer_name,
                                    code="produce", error=str(e))
                self.fatal = True
                continue
            self.history.record("send", producer=self.producer_name, value=value,
                                partition=partition)
            self.seq += 1
            self.outstanding += 1
            producer.poll(PRODUCE_INTERVAL_S)
        self.unflushed = producer.flush(FLUSH_TIMEOUT_S)
        if self.unflushed:
            # Whatever is still unanswered fails as purged: its outcome is unknown.
            producer.purge()
            producer.flush(5)
        self.history.record("producer_done", producer=self.producer_name, sent=self.seq,
                            unflushed=self.unflushed)


class ConsumerWorker(threading.Thread):
    """A group member that records each record with the assignment (session)
    it arrived in."""

    def __init__(self, bootstrap, topic, group, history, logger):
        super().__init__(daemon=True, name="consumer")
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.history = history
        self.logger = logger
        self.stop_event = threading.Event()
        self.session = 0
        self.positions = {}  # partition -> next offset, from records read
        self.errors = 0
        self.closed = threading.Event()

    def _on_assign(self, consumer, partitions):
        self.session += 1
        self.history.record("assign", reader="live", session=self.session,
                            partitions=[p.partition for p in partitions])

    def _on_revoke(self, consumer, partitions):
        self.history.record("revoke", reader="live", session=self.session,
                            partitions=[p.partition for p in partitions])

    def _on_lost(self, consumer, partitions):
        self.history.record("lost", reader="live", session=self.session,
                            partitions=[p.partition for p in partitions])

    def run(self):
        from confluent_kafka import Consumer

        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "topic.metadata.refresh.interval.ms": 2000,
            "logger": self.logger,
            **({"debug": RDKAFKA_DEBUG} if RDKAFKA_DEBUG else {}),
        })
        consumer.subscribe([self.topic], on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        try:
            while not self.stop_event.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    self.errors += 1
                    if self.errors <= MAX_ERROR_EVENTS:
                        self.history.record("client_error", client="consumer",
                                            code=msg.error().name(), error=msg.error().str())
                    continue
                self.history.record("read", reader="live", session=self.session,
                                    partition=msg.partition(), offset=msg.offset(),
                                    value=msg.value().decode(errors="replace"))
                self.positions[msg.partition()] = msg.offset() + 1
        finally:
            consumer.close()
            self.closed.set()


def watermarks(consumer, topic, partition, deadline, errors=None):
    """(low, high) of a partition, retried until `deadline`; None if never.
    Errors met on the way are appended to `errors`."""
    from confluent_kafka import KafkaException, TopicPartition

    while time.monotonic() < deadline:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                  timeout=5, cached=False)
        except KafkaException as e:
            if errors is not None:
                errors.append(str(e))
            time.sleep(0.5)
    return None


def metadata_view(client, topic):
    """Brokers and partition leaders as `client` learns them, for the history."""
    try:
        meta = client.list_topics(topic, timeout=5)
    except Exception as e:  # noqa: BLE001 - any failure is worth recording
        return {"error": str(e)}
    t = meta.topics.get(topic)
    return {
        "answered_by": meta.orig_broker_id,
        "brokers": sorted(meta.brokers),
        "leaders": {p: m.leader for p, m in t.partitions.items()} if t else None,
        "topic_error": str(t.error) if t and t.error else None,
    }


class LeaderMonitor(threading.Thread):
    """Records the partition leaders whenever they change, so the history
    shows that the faults moved leadership."""

    def __init__(self, bootstrap, topic, history, logger):
        super().__init__(daemon=True, name="leaders")
        self.bootstrap, self.topic, self.history, self.logger = bootstrap, topic, history, logger
        self.stop_event = threading.Event()

    def run(self):
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "logger": self.logger})
        last = None
        while not self.stop_event.wait(1.0):
            try:
                t = admin.list_topics(self.topic, timeout=2).topics.get(self.topic)
            except Exception:  # noqa: BLE001 - an unreachable cluster is expected here
                continue
            if t is None or t.error:
                continue
            leaders = {p: m.leader for p, m in sorted(t.partitions.items())}
            if leaders != last:
                self.history.record("leaders", leaders=leaders)
                last = leaders


def final_read(bootstrap, topic, history, reader, logger, timeout=FINAL_READ_TIMEOUT_S):
    """Reads every partition from offset 0 to its high watermark."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    deadline = time.monotonic() + timeout
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"final-{reader}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "logger": logger,
    })
    try:
        history.record("final_metadata", reader=reader, view=metadata_view(consumer, topic))
        errors = []
        marks = {p: watermarks(consumer, topic, p, deadline, errors) for p in range(PARTITIONS)}
        last = {p: -1 for p in range(PARTITIONS)}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])

        def done(p):
            return marks[p] is not None and last[p] >= marks[p][1] - 1

        while not all(done(p) for p in range(PARTITIONS)) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            p = msg.partition()
            history.record("read", reader=reader, session=0, partition=p, offset=msg.offset(),
                           value=msg.value().decode(errors="replace"))
            last[p] = max(last[p], msg.offset())
        for p in range(PARTITIONS):
            low, high = marks[p] if marks[p] else (None, None)
            history.record("final_end", reader=reader, partition=p, low=low, high=high,
                           complete=done(p))
        if errors or not all(done(p) for p in range(PARTITIONS)):
            history.record("final_errors", reader=reader, errors=sorted(set(errors))[:10],
                           view=metadata_view(consumer, topic))
    finally:
        consumer.close()


def create_topic(bootstrap, topic, logger, timeout=60):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": logger})
    deadline = time.monotonic() + timeout
    created = False
    while time.monotonic() < deadline:
        try:
            if not created:
                fs = admin.create_topics([NewTopic(topic, PARTITIONS, 3)], request_timeout=10)
                fs[topic].result(timeout=15)
                created = True
            meta = admin.list_topics(topic, timeout=5).topics.get(topic)
            if meta and len(meta.partitions) == PARTITIONS and \
                    all(p.leader >= 0 for p in meta.partitions.values()):
                return True
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" in str(e):
                created = True
        time.sleep(0.5)
    return False


def node_leaders(addr, topic, timeout=3.0):
    """The leader of each partition of `topic` as the node at `addr` itself
    answers (a raw Metadata v1 request, so no client picks another node);
    None if it does not answer."""
    import struct

    name = topic.encode()
    client = b"fault-suite"
    body = struct.pack(">hhih", 3, 1, 1, len(client)) + client
    body += struct.pack(">ih", 1, len(name)) + name
    try:
        with socket.create_connection(_split(addr), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _recv_exact(s, 4))[0]
            data = _recv_exact(s, size)
    except (OSError, struct.error):
        return None
    pos = 4  # correlation id

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    def string():
        nonlocal pos
        (n,) = take(">h")
        text = data[pos:pos + max(n, 0)].decode()
        pos += max(n, 0)
        return text

    for _ in range(take(">i")[0]):  # brokers: id, host, port, rack
        take(">i"), string(), take(">i"), string()
    take(">i")  # controller
    leaders = {}
    for _ in range(take(">i")[0]):
        take(">h"), string(), take(">?")
        for _ in range(take(">i")[0]):
            _, partition, leader = take(">hii")
            take(">" + "i" * take(">i")[0])  # replicas
            take(">" + "i" * take(">i")[0])  # isr
            leaders[partition] = leader
    return leaders


def _split(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def wait_leaders_known(cluster, topic, history, timeout=LEADERS_KNOWN_TIMEOUT_S):
    """How long after the heal each node's own Metadata names a leader for
    every partition. A node that answers "no leader" leaves clients that ask
    it without one."""
    start = time.monotonic()
    pending = set(cluster.nodes)
    last = {}
    while pending and time.monotonic() - start < timeout:
        for n in sorted(pending):
            leaders = node_leaders(cluster.nodes[n].kafka_addr, topic)
            last[n] = leaders
            if leaders and len(leaders) == PARTITIONS and all(v >= 0 for v in leaders.values()):
                history.record("leaders_known", node=n, after=round(time.monotonic() - start, 2),
                               leaders=leaders)
                pending.discard(n)
        time.sleep(0.25)
    for n in sorted(pending):
        history.record("leaders_known", node=n, after=None, leaders=last.get(n))


# --------------------------------------------------------------------------
# the nemesis
# --------------------------------------------------------------------------


class Nemesis:
    """Injects one fault at a time, chosen by the seed's generator. Runs on
    the main thread (it restarts processes)."""

    def __init__(self, rng, cluster, history):
        self.rng = rng
        self.cluster = cluster
        self.history = history
        self.schedule = []

    def run(self, seconds, abort):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not abort.is_set():
            self._sleep(self.rng.uniform(*FAULT_GAP_S), end, abort)
            if time.monotonic() >= end or abort.is_set():
                break
            self._one_fault(end, abort)

    def _sleep(self, seconds, end, abort):
        """Sleeps, restarting any node that died on its own meanwhile."""
        until = min(time.monotonic() + seconds, end)
        while time.monotonic() < until and not abort.is_set():
            self.restart_crashed(abort)
            time.sleep(0.1)

    def restart_crashed(self, abort=None):
        if abort is not None and abort.is_set():
            return  # the wall-clock cap killed the nodes, not a crash
        for node in self.cluster.nodes.values():
            if node.proc is not None and node.proc.poll() is not None:
                self.history.record("crash", node=node.id, exit_code=node.proc.returncode)
                node.proc = None
                node.start(bootstrap=False)
                self.history.record("restarted", node=node.id, after="crash",
                                    ready=node.wait_ready())

    def _one_fault(self, end, abort):
        kind = self.rng.choice(FAULT_KINDS)
        length = round(self.rng.uniform(*FAULT_LENGTH_S), 2)
        node = self.rng.choice(NODES)
        other = self.rng.choice([n for n in NODES if n != node])
        mode = self.rng.choice(("drop", "stall"))
        fault = {"kind": kind, "length": length, "start": self.history.now()}
        if kind == "kill":
            fault["node"] = node
            code = self.cluster.nodes[node].kill()
            self.history.record("fault", **fault, exit_code=code)
            self._sleep(length, float("inf"), abort)
            self.cluster.nodes[node].start(bootstrap=False)
            ready = self.cluster.nodes[node].wait_ready()
            self.history.record("heal", kind=kind, node=node, ready=ready)
        elif kind == "pause":
            fault["node"] = node
            self.cluster.nodes[node].pause()
            self.history.record("fault", **fault)
            self._sleep(length, float("inf"), abort)
            self.cluster.nodes[node].resume()
            self.history.record("heal", kind=kind, node=node)
        else:
            links = self._links(kind, node, other)
            fault.update(node=node, links=[list(link) for link in links], mode=mode)
            for link in links:
                self.cluster.links[link].cut(mode)
            self.history.record("fault", **fault)
            self._sleep(length, float("inf"), abort)
            for link in links:
                self.cluster.links[link].heal()
            self.history.record("heal", kind=kind, node=node)
        self.schedule.append(fault)

    @staticmethod
    def _links(kind, node, other):
        if kind == "cut-one":
            return [(node, other)]
        if kind == "cut-both":
            return [(node, other), (other, node)]
        others = [m for m in NODES if m != node]  # isolate
        return [(node, m) for m in others] + [(m, node) for m in others]

    def heal_all(self):
        """Resumes paused nodes, restarts dead ones, heals every link."""
        self.cluster.heal_links()
        for node in self.cluster.nodes.values():
            if node.paused:
                node.resume()
        self.restart_crashed()
        for node in self.cluster.nodes.values():
            if node.proc is None:
                node.start(bootstrap=False)
        ready = {n: node.wait_ready() for n, node in self.cluster.nodes.items()}
        self.history.record("healed_all", ready=ready)
        return all(ready.values())


# --------------------------------------------------------------------------
# the checker
# --------------------------------------------------------------------------


def check_history(events):
    """Checks a run's events; returns {"violations": [...], "anomalies": [...],
    "stats": {...}}. A pure function of the events, so it can be tested on a
    hand-made history."""
    violations, anomalies = [], []
    sent = {}  # value -> producer
    sent_at = {}  # value -> t
    slowest = defaultdict(float)  # producer -> longest send-to-ack, seconds
    failures = defaultdict(list)  # (producer, partition, error) -> [t]
    acks = {}  # value -> (partition, offset)
    failed = set()
    reads = defaultdict(set)  # (partition, offset) -> values, over every read
    final = {}  # (partition, offset) -> value, from complete final reads
    final_by_reader = defaultdict(lambda: defaultdict(dict))  # reader -> p -> {offset: value}
    final_ends = defaultdict(list)  # partition -> [(t, reader, low, high, complete)]
    live = []
    replicas = []
    faults = Counter()
    log_errors = []
    leader_views = []
    for e in events:
        kind = e["type"]
        if kind == "send":
            sent[e["value"]] = e["producer"]
            sent_at[e["value"]] = e["t"]
        elif kind == "ack":
            if e["value"] in acks:
                violations.append({"kind": "double-ack", "value": e["value"]})
            acks[e["value"]] = (e["partition"], e["offset"])
            latency = e["t"] - sent_at.get(e["value"], e["t"])
            slowest[e["producer"]] = max(slowest[e["producer"]], round(latency, 2))
        elif kind == "fail":
            failed.add(e["value"])
            failures[(e["producer"], e["partition"], e.get("error"))].append(e["t"])
        elif kind == "read":
            reads[(e["partition"], e["offset"])].add(e["value"])
            if e["reader"] == "live":
                live.append(e)
            else:
                final_by_reader[e["reader"]][e["partition"]][e["offset"]] = e["value"]
        elif kind == "final_end":
            final_ends[e["partition"]].append(
                (e["t"], e["reader"], e.get("low"), e.get("high"), e.get("complete")))
        elif kind == "replicas":
            replicas.append(e)
        elif kind == "crash":
            violations.append({"kind": "crash", "node": e["node"], "exit_code": e.get("exit_code"),
                               "t": e["t"]})
        elif kind == "panic":
            violations.append({"kind": "crash", "node": e["node"], "line": e.get("line")})
        elif kind == "fault":
            faults[e["kind"]] += 1
        elif kind == "anomaly":
            anomalies.append({k: v for k, v in e.items() if k != "type"})
        elif kind == "leaders":
            leader_views.append(e["leaders"])
        elif kind == "leaders_known":
            if e["after"] is None or e["after"] > LEADERS_KNOWN_SLOW_S:
                anomalies.append({"kind": "node-slow-to-name-leaders", "node": e["node"],
                                  "after": e["after"], "leaders": e["leaders"]})
        elif kind == "log_error":
            log_errors.append(e)
        elif kind == "stopped":
            for node, code in e["exit_codes"].items():
                if code not in (0, None):
                    anomalies.append({"kind": "unclean-stop", "node": node, "exit_code": code})

    # The final log of each partition: what the complete final reads hold.
    final_high = {}
    for p, ends in sorted(final_ends.items()):
        complete = [(t, r, low, high) for (t, r, low, high, ok) in ends if ok]
        for (_, r, _, _, ok) in ends:
            if not ok:
                anomalies.append({"kind": "final-read-incomplete", "partition": p, "reader": r})
        if not complete:
            anomalies.append({"kind": "no-complete-final-read", "partition": p})
            continue
        highs = [high for (_, _, _, high) in sorted(complete)]
        for before, after in zip(highs, highs[1:]):
            if after < before:
                violations.append({"kind": "log-shrank", "partition": p, "high_before": before,
                                   "high_after": after})
        if len(set(highs)) > 1:
            anomalies.append({"kind": "final-highs-differ", "partition": p, "highs": highs})
        final_high[p] = max(highs)
        for (_, reader, low, high) in complete:
            if low not in (0, None):
                anomalies.append({"kind": "log-start-moved", "partition": p, "reader": reader,
                                  "low": low})
            got = final_by_reader[reader][p]
            missing = [o for o in range(low or 0, high) if o not in got]
            if missing:
                violations.append({"kind": "final-gap", "partition": p, "reader": reader,
                                   "first_missing": missing[0], "missing": len(missing)})
            for o, v in got.items():
                final.setdefault((p, o), v)

    # Acknowledged writes.
    for value, (p, o) in acks.items():
        if p not in final_high:
            continue
        if o is None or o < 0:
            anomalies.append({"kind": "ack-without-offset", "value": value, "partition": p})
            continue
        if (p, o) not in final:
            violations.append({"kind": "lost-ack", "value": value, "partition": p, "offset": o,
                               "final_high": final_high[p]})
        elif final[(p, o)] != value:
            violations.append({"kind": "wrong-value-at-acked-offset", "value": value,
                               "partition": p, "offset": o, "found": final[(p, o)]})
    for value in set(acks) & failed:
        anomalies.append({"kind": "acked-and-failed", "value": value})
    # Faults last seconds and records may wait 30 s: a failed delivery means
    # a partition took no writes from that producer for that long.
    for (producer, p, error), times in sorted(failures.items()):
        anomalies.append({"kind": "deliveries-failed", "producer": producer, "partition": p,
                          "error": error, "count": len(times), "from_t": min(times),
                          "to_t": max(times)})

    # One value per offset, across every read.
    for (p, o), values in sorted(reads.items()):
        if len(values) > 1:
            violations.append({"kind": "offset-two-values", "partition": p, "offset": o,
                               "values": sorted(values)})

    # Where each value is stored, and values nobody sent.
    places = defaultdict(set)
    for (p, o), values in reads.items():
        for v in values:
            places[v].add((p, o))
    for value, where in sorted(places.items()):
        producer = sent.get(value)
        if producer is None:
            violations.append({"kind": "phantom-value", "value": value,
                               "at": sorted(where)[:5]})
        elif producer == "idempotent" and len(where) > 1:
            violations.append({"kind": "idempotent-duplicate", "value": value,
                               "at": sorted(where)})
    plain_duplicates = sum(1 for v, where in places.items()
                           if sent.get(v) == "plain" and len(where) > 1)

    # The live consumer, per assignment and partition.
    last = {}
    for e in live:
        key = (e["session"], e["partition"])
        o = e["offset"]
        if key in last:
            if o <= last[key]:
                violations.append({"kind": "live-backwards", "session": e["session"],
                                   "partition": e["partition"], "offset": o,
                                   "previous": last[key], "t": e["t"]})
            elif o > last[key] + 1:
                violations.append({"kind": "live-skip", "session": e["session"],
                                   "partition": e["partition"], "offset": o,
                                   "previous": last[key], "t": e["t"]})
        last[key] = o
        p = e["partition"]
        if p in final_high and (p, o) not in final:
            violations.append({"kind": "consumed-record-lost", "partition": p, "offset": o,
                               "value": e["value"], "final_high": final_high[p]})

    # Replicas: same high watermark must mean the same bytes.
    for e in replicas:
        states = [s for s in e["states"] if s.get("high_watermark") is not None]
        by_high = defaultdict(set)
        for s in states:
            by_high[s["high_watermark"]].add(s.get("checksum"))
        for high, sums in by_high.items():
            if len(sums) > 1:
                violations.append({"kind": "replica-divergence", "partition": e["partition"],
                                   "high_watermark": high, "states": e["states"]})
        if not e.get("converged"):
            anomalies.append({"kind": "replicas-not-converged", "partition": e["partition"],
                              "states": e["states"]})

    by_producer = Counter(sent.get(v) for v in acks)
    stats = {
        "sent": len(sent),
        "acked": len(acks),
        "acked_idempotent": by_producer.get("idempotent", 0),
        "acked_plain": by_producer.get("plain", 0),
        "failed": len(failed),
        "slowest_ack_s": dict(slowest),
        "plain_duplicates": plain_duplicates,
        "live_reads": len(live),
        "live_sessions": len({e["session"] for e in live}),
        "final_records": len(final),
        "faults": dict(faults),
        "faults_total": sum(faults.values()),
        "leader_changes": sum(1 for a, b in zip(leader_views, leader_views[1:])
                              for p in b if a.get(p) != b[p]),
        "log_errors": [(e["node"], e["count"], e["message"]) for e in log_errors],
    }
    return {"violations": violations, "anomalies": anomalies, "stats": stats}


# --------------------------------------------------------------------------
# one seed
# --------------------------------------------------------------------------


def wait_converged(cluster, topic, history, timeout=CONVERGE_TIMEOUT_S):
    """Polls each partition's replicas until they agree; records the last view."""
    deadline = time.monotonic() + timeout
    for p in range(PARTITIONS):
        states, converged = [], False
        while True:
            info = cluster.partition_info(topic, p, via=NODES[p % len(NODES)])
            if info and info.get("replica_states"):
                states = [{k: s.get(k) for k in ("node", "reachable", "role", "log_end_offset",
                                                  "high_watermark", "checksum")}
                          for s in info["replica_states"]]
                keys = {(s["log_end_offset"], s["high_watermark"], s["checksum"]) for s in states}
                converged = (len(states) == len(NODES) and len(keys) == 1
                             and None not in next(iter(keys)))
            if converged or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        history.record("replicas", partition=p, converged=converged, states=states)


def wait_caught_up(consumer, bootstrap, topic, history, logger, timeout=CATCH_UP_TIMEOUT_S):
    """Waits until the live consumer has read up to every high watermark."""
    from confluent_kafka import Consumer

    deadline = time.monotonic() + timeout
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "logger": logger})
    errors = []
    try:
        while time.monotonic() < deadline:
            marks = [watermarks(probe, topic, p, deadline, errors) for p in range(PARTITIONS)]
            if all(m is not None and consumer.positions.get(p, 0) >= m[1]
                   for p, m in enumerate(marks)):
                return True
            time.sleep(0.5)
        return False
    finally:
        if errors:
            history.record("probe_errors", errors=sorted(set(errors))[:10], count=len(errors))
        probe.close()


def scan_logs(cluster, history):
    """Records panics, and the distinct ERROR lines, from the node logs."""
    errors = Counter()
    for node in cluster.nodes.values():
        try:
            text = node.log_path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if "panicked" in line:
                history.record("panic", node=node.id, line=line[:500])
            if " ERROR " in line:
                message = line.split(" ERROR ", 1)[1][:160]
                errors[(node.id, message)] += 1
    for (node, message), count in errors.most_common(20):
        history.record("log_error", node=node, count=count, message=message)


def run_seed(seed, seconds, binary, out_dir, keep_data=False):
    """Runs one seed; returns its verdict (also written to verdict.json)."""
    seed_dir = Path(out_dir) / f"seed-{seed}"
    if seed_dir.exists():
        shutil.rmtree(seed_dir)
    seed_dir.mkdir(parents=True)
    history = History(seed_dir / "history.jsonl")
    logger = rdkafka_logger(seed_dir / "rdkafka.log", history)
    rng = random.Random(seed)
    topic = f"faults-{seed}"
    started = time.monotonic()
    abort = threading.Event()
    errors = []
    cluster = Cluster(binary, seed_dir)
    nemesis = Nemesis(rng, cluster, history)
    workers = []

    def on_cap():
        # The backstop: kill everything so every remaining wait ends soon.
        errors.append(f"seed exceeded its wall-clock cap of {seconds + SEED_OVERHEAD_CAP_S:.0f}s")
        history.record("error", error=errors[-1])
        abort.set()
        for node in cluster.nodes.values():
            if node.proc is not None:
                node.proc.send_signal(signal.SIGCONT)
                node.proc.kill()

    cap = threading.Timer(seconds + SEED_OVERHEAD_CAP_S, on_cap)
    cap.daemon = True
    cap.start()
    history.record("start", seed=seed, seconds=seconds, topic=topic, binary=binary,
                   wall=time.strftime("%Y-%m-%dT%H:%M:%S"))
    try:
        if not cluster.start():
            errors.append("cluster did not start")
            return _finish(seed, seed_dir, history, nemesis, errors, started, cluster, logger,
                           keep_data)
        history.record("cluster_ready",
                       nodes={n: node.kafka_addr for n, node in cluster.nodes.items()})
        bootstrap = cluster.bootstrap()
        if not create_topic(bootstrap, topic, logger):
            errors.append("topic was not created")
            return _finish(seed, seed_dir, history, nemesis, errors, started, cluster, logger,
                           keep_data)
        history.record("topic_ready", topic=topic, partitions=PARTITIONS)
        consumer = ConsumerWorker(bootstrap, topic, f"group-{seed}", history, logger)
        producers = [
            ProducerWorker("idempotent", "p1", True, bootstrap, topic, history, logger),
            ProducerWorker("plain", "p2", False, bootstrap, topic, history, logger),
        ]
        monitor = LeaderMonitor(bootstrap, topic, history, logger)
        workers = [consumer, *producers, monitor]
        for w in workers:
            w.start()

        nemesis.run(seconds, abort)
        history.record("faults_over")
        if not nemesis.heal_all():
            errors.append("a node did not come back after healing")
        for p in producers:
            p.stop_event.set()
        for p in producers:
            p.join(FLUSH_TIMEOUT_S + 15)
            if p.is_alive():
                errors.append(f"producer {p.producer_name} did not finish")
        wait_leaders_known(cluster, topic, history)
        if not wait_caught_up(consumer, bootstrap, topic, history, logger):
            history.record("anomaly", kind="live-consumer-behind", positions=consumer.positions)
        consumer.stop_event.set()
        monitor.stop_event.set()
        consumer.closed.wait(20)
        nemesis.restart_crashed(abort)

        # Read from each node in turn; reads go to the leaders, so also look
        # at each replica's checksum.
        for n, node in cluster.nodes.items():
            final_read(node.kafka_addr, topic, history, f"final-n{n}", logger)
        wait_converged(cluster, topic, history)
        nemesis.restart_crashed(abort)
    except Exception as e:  # a harness failure: report it with the seed
        errors.append(f"harness error: {e!r}")
        history.record("error", error=repr(e))
    finally:
        cap.cancel()
    return _finish(seed, seed_dir, history, nemesis, errors, started, cluster, logger,
                           keep_data)


def _finish(seed, seed_dir, history, nemesis, errors, started, cluster, logger, keep_data):
    codes = cluster.close()
    history.record("stopped", exit_codes={str(k): v for k, v in codes.items()})
    scan_logs(cluster, history)
    history.close()
    close_logger(logger)
    verdict = check_history(history.events)
    verdict.update(seed=seed, errors=errors, schedule=nemesis.schedule,
                   seconds=round(time.monotonic() - started, 1), out=str(seed_dir))
    if any(a["kind"] == "no-complete-final-read" for a in verdict["anomalies"]):
        errors.append("some partition was never read to its end: nothing to check it against")
    verdict["status"] = ("violation" if verdict["violations"]
                         else "error" if errors else "ok")
    with open(seed_dir / "verdict.json", "w") as f:
        json.dump(verdict, f, indent=1)
    if verdict["status"] == "ok" and not keep_data:
        for n in NODES:
            shutil.rmtree(seed_dir / f"node{n}", ignore_errors=True)
    return verdict


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def parse_seeds(args):
    if not args.seeds:
        return [args.seed]
    seeds = []
    for part in args.seeds.split(","):
        a, _, b = part.partition("..")
        seeds.extend(range(int(a), int(b or a) + 1))
    return seeds


def result_line(v):
    s = v["stats"]
    faults = ", ".join(f"{k} {c}" for k, c in sorted(s["faults"].items()))
    line = (f"seed {v['seed']}: {v['status']}  acked={s['acked']} "
            f"(idempotent {s['acked_idempotent']}, plain {s['acked_plain']}) "
            f"failed={s['failed']} plain-dups={s['plain_duplicates']} "
            f"live-reads={s['live_reads']} faults={s['faults_total']} ({faults}) "
            f"leader-changes={s['leader_changes']} "
            f"violations={len(v['violations'])} anomalies={len(v['anomalies'])} "
            f"{v['seconds']}s  {v['out']}")
    return line


def report_failure(v):
    print(f"  seed {v['seed']} fault schedule:")
    for f in v["schedule"]:
        print(f"    {json.dumps(f)}")
    for e in v["errors"]:
        print(f"  error: {e}")
    if v["violations"]:
        print(f"  first violation: {json.dumps(v['violations'][0])}")
    print(f"  history: {v['out']}/history.jsonl")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", help="a range A..B (inclusive), or a list such as 3,7,10..12")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the fault phase")
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--out", help="where histories go (default: a new temp dir)")
    ap.add_argument("--keep-data", action="store_true", help="keep data dirs of passing seeds")
    ap.add_argument("--json-summary", help="also write the summary as JSON here")
    ap.add_argument("--rdkafka-debug", help="librdkafka debug contexts for the producers and "
                    "the live consumer, e.g. eos,msg,fetch,metadata (written to rdkafka.log)")
    args = ap.parse_args(argv)
    global RDKAFKA_DEBUG
    RDKAFKA_DEBUG = args.rdkafka_debug
    if not os.path.exists(args.bin):
        sys.exit(f"chronik-server binary not found at {args.bin}")
    out = args.out or tempfile.mkdtemp(prefix="chronik-faults-")
    Path(out).mkdir(parents=True, exist_ok=True)
    # Turn SIGTERM into an exit that runs the cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"output: {out}", flush=True)
    started = time.monotonic()
    verdicts = []
    for seed in parse_seeds(args):
        v = run_seed(seed, args.seconds, os.path.abspath(args.bin), out, args.keep_data)
        verdicts.append(v)
        print(result_line(v), flush=True)
        if v["status"] != "ok":
            report_failure(v)
            for a in v["anomalies"][:3]:
                print(f"  anomaly: {json.dumps(a)[:400]}")
    summary = summarize(verdicts, time.monotonic() - started, out)
    print_summary(summary)
    if args.json_summary:
        with open(args.json_summary, "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if summary["violations"] == 0 and not summary["error_seeds"] else 1


def summarize(verdicts, wall, out):
    faults = Counter()
    for v in verdicts:
        faults.update(v["stats"]["faults"])
    return {
        "seeds": [v["seed"] for v in verdicts],
        "violations": sum(len(v["violations"]) for v in verdicts),
        "violation_seeds": [v["seed"] for v in verdicts if v["violations"]],
        "error_seeds": [v["seed"] for v in verdicts if v["status"] == "error"],
        "anomalies": sum(len(v["anomalies"]) for v in verdicts),
        "anomaly_kinds": dict(Counter(a["kind"] for v in verdicts for a in v["anomalies"])),
        "acked": sum(v["stats"]["acked"] for v in verdicts),
        "acked_idempotent": sum(v["stats"]["acked_idempotent"] for v in verdicts),
        "acked_plain": sum(v["stats"]["acked_plain"] for v in verdicts),
        "failed": sum(v["stats"]["failed"] for v in verdicts),
        "plain_duplicates": sum(v["stats"]["plain_duplicates"] for v in verdicts),
        "live_reads": sum(v["stats"]["live_reads"] for v in verdicts),
        "faults": dict(faults),
        "faults_total": sum(faults.values()),
        "leader_changes": sum(v["stats"]["leader_changes"] for v in verdicts),
        "wall_seconds": round(wall, 1),
        "out": out,
        "per_seed": [{"seed": v["seed"], "status": v["status"], "acked": v["stats"]["acked"],
                      "faults": v["stats"]["faults"],
                      "leader_changes": v["stats"]["leader_changes"],
                      "violations": v["violations"][:3], "errors": v["errors"]}
                     for v in verdicts],
    }


def print_summary(s):
    faults = ", ".join(f"{k} {c}" for k, c in sorted(s["faults"].items()))
    print(f"summary: seeds run {len(s['seeds'])}, violations {s['violations']} "
          f"(seeds {s['violation_seeds']}), errors in seeds {s['error_seeds']}, "
          f"acked records {s['acked']} (idempotent {s['acked_idempotent']}, "
          f"plain {s['acked_plain']}), failed deliveries {s['failed']}, "
          f"plain duplicates {s['plain_duplicates']}, faults injected {s['faults_total']} "
          f"({faults}), leader changes {s['leader_changes']}, "
          f"anomalies {s['anomalies']} {s['anomaly_kinds']}, "
          f"wall {s['wall_seconds']}s, output {s['out']}", flush=True)


if __name__ == "__main__":
    code = 2
    try:
        code = main()
    finally:
        _kill_all_processes()
    sys.stdout.flush()
    # librdkafka threads of a client that could not close must not hold the exit.
    os._exit(code)
