"""Operating a broker: Prometheus metrics under load, consumer lag from the
metrics, health and readiness probes (on one node and on a cluster losing
its quorum), and the web console rendered by headless Chromium."""

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def get(http, path, timeout=10):
    """(status, body) of GET http://{http}{path}."""
    try:
        with urllib.request.urlopen(f"http://{http}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(http):
    """Every sample of /metrics as {(name, ((label, value), ...)): value}."""
    status, body = get(http, "/metrics")
    assert status == 200, body
    samples = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def buckets(samples, name, **labels):
    """The cumulative buckets of a histogram, by upper bound."""
    found = {}
    for (sample, sample_labels), count in samples.items():
        rest = dict(sample_labels)
        le = rest.pop("le", None)
        if sample == f"{name}_bucket" and rest == labels:
            found[float("inf") if le == "+Inf" else float(le)] = count
    return dict(sorted(found.items()))


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"{what} within {timeout} s (last: {last!r})")


def test_metrics_move_under_a_produce_load(broker, topic_name):
    topic = topic_name("metrics")
    before = scrape(broker.http)
    records = 5000
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "acks": "all"})
    scraped_during = []

    def load():
        for i in range(records):
            producer.produce(topic, value=b"x" * 512, key=str(i).encode())
            if i % 500 == 0:
                producer.poll(0)
        assert producer.flush(30) == 0

    thread = threading.Thread(target=load)
    thread.start()
    while thread.is_alive():
        scraped_during.append(scrape(broker.http))
        time.sleep(0.2)
    thread.join()
    after = scrape(broker.http)

    assert value(after, "chronik_topic_records_in_total", topic=topic) == records
    assert value(after, "chronik_topic_bytes_in_total", topic=topic) > records * 512
    produced = value(after, "chronik_kafka_requests_total", api="Produce")
    assert produced > value(before, "chronik_kafka_requests_total", api="Produce")
    assert value(after, "chronik_kafka_request_errors_total", api="Produce") == 0
    # While the load ran, a client was connected.
    assert any(value(s, "chronik_kafka_connections") >= 1 for s in scraped_during + [after])

    # Histograms fill: cumulative buckets that end in the count.
    for name, labels in [("chronik_produce_commit_seconds", {}),
                         ("chronik_kafka_request_duration_seconds", {"api": "Produce"}),
                         ("chronik_raft_fsync_seconds", {}),
                         ("chronik_raft_fsync_bytes", {}),
                         ("chronik_raft_loop_iteration_seconds", {})]:
        count = value(after, f"{name}_count", **labels)
        assert count > value(before, f"{name}_count", **labels), name
        cumulative = list(buckets(after, name, **labels).values())
        assert cumulative == sorted(cumulative), f"{name} buckets are not cumulative"
        assert cumulative[-1] == count, name
        assert value(after, f"{name}_sum", **labels) > 0, name
    assert value(after, "chronik_raft_entries_applied_total") > value(before, "chronik_raft_entries_applied_total")
    assert value(after, "chronik_partition_log_size_bytes", topic=topic, partition="0") > records * 512
    assert value(after, "chronik_partition_high_watermark", topic=topic, partition="0") == records
    assert value(after, "chronik_raft_leaders") >= 2  # the metadata group and the topic's
    assert value(after, "process_resident_memory_bytes") > 0

    # The fetch side counts what consumers read.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = 0
        deadline = time.monotonic() + 30
        while seen < records and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(500, 1.0) if not m.error())
        assert seen == records
    finally:
        consumer.close()
    read = scrape(broker.http)
    assert value(read, "chronik_topic_records_out_total", topic=topic) >= records
    assert value(read, "chronik_kafka_requests_total", api="Fetch") > 0


def test_consumer_lag_is_read_from_the_metrics(broker, topic_name):
    topic, group = topic_name("lag"), topic_name("lag-group")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        producer.produce(topic, value=b"v", partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 40)], asynchronous=False)
        lag = value(scrape(broker.http), "chronik_consumer_lag", group=group, topic=topic, partition="0")
        assert lag == 60
        # Reading to the end and committing there leaves no lag.
        consumer.assign([TopicPartition(topic, 0, 40)])
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 60 and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(100, 1.0) if not m.error())
        assert seen == 60
        consumer.commit(asynchronous=False)
        after = scrape(broker.http)
        assert value(after, "chronik_consumer_lag", group=group, topic=topic, partition="0") == 0
        assert value(after, "chronik_group_rebalances_total", group=group) == 0
    finally:
        consumer.close()


def test_health_and_readiness_of_one_node(broker):
    assert get(broker.http, "/health") == (200, "ok\n")
    assert get(broker.http, "/ready") == (200, "ready\n")
    status, body = get(broker.http, "/no-such-page")
    assert status == 404


@pytest.mark.parametrize("broker_args", [["--metrics", "false"]])
def test_metrics_can_be_turned_off(broker):
    status, body = get(broker.http, "/metrics")
    assert status == 404 and "--metrics false" in body
    assert get(broker.http, "/health")[0] == 200


def test_ready_fails_while_partitions_have_no_leader(cluster, topic_name):
    topic = topic_name("ready")
    node = cluster.nodes[1]
    admin = AdminClient({"bootstrap.servers": node.kafka_addr})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)
    wait_for(lambda: get(node.http, "/ready")[0] == 200, 30, "node 1 ready with its peers up")

    # Without a quorum no group keeps a leader: node 1 is alive, not ready.
    cluster.nodes[2].kill()
    cluster.nodes[3].kill()
    assert get(node.http, "/health")[0] == 200
    body = wait_for(lambda: (lambda r: r[0] == 503 and r[1])(get(node.http, "/ready", timeout=15)),
                    40, "node 1 not ready without a quorum")
    assert "has no leader" in body or "metadata" in body, body

    cluster.nodes[2].start(bootstrap=False)
    cluster.nodes[3].start(bootstrap=False)
    assert cluster.nodes[2].wait_ready() and cluster.nodes[3].wait_ready()
    wait_for(lambda: get(node.http, "/ready")[0] == 200, 60, "node 1 ready again")
    for peer in (2, 3):
        wait_for(lambda: get(cluster.nodes[peer].http, "/ready")[0] == 200, 60, f"node {peer} ready")


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed for the console test; scripts/test.sh installs it (apt: chromium)")


def test_the_console_shows_the_cluster_in_a_browser(broker, topic_name, tmp_path):
    topic = topic_name("console")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(50):
        producer.produce(topic, value=b"v", partition=i % 2)
    assert producer.flush(30) == 0

    browser = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = f"http://{broker.http}/"
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert topic in page, page[:2000]
    assert "<h2>Nodes</h2>" in page and "<h2>Consumer groups</h2>" in page
    assert "<svg" in page and "produced" in page
    # Partition 0 and 1 with their high watermarks of 25 each.
    assert re.search(rf"<td>{re.escape(topic)}</td><td>1</td><td>1</td>.*?<td>25</td>", page), page[:3000]

    shot = tmp_path / "console.png"
    run = subprocess.run([browser, *flags, "--window-size=1200,900", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.parametrize("broker_args", [["--log-format", "json"]])
def test_logs_can_be_json_lines(broker):
    lines = [line for line in broker.log_path.read_text().splitlines()
             if line.strip() and not line.startswith("=====")]
    assert lines, "the broker logged nothing"
    events = [json.loads(line) for line in lines]
    assert all({"timestamp", "level", "target"} <= event.keys() for event in events), events[:3]
    assert any(event.get("message") == "Chronik is serving Kafka clients" for event in events), events[-5:]
