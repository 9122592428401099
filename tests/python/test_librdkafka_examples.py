"""librdkafka's own transactional examples against one broker.

examples/transactions.c (KIP-447: one transactional producer, the input
consumer's group metadata sent with each transaction) and
examples/transactions-older-broker.c (one transactional producer per input
partition) from librdkafka's source are consume-transform-produce loops:
`EXAMPLE <brokers> <input-topic> <output-topic>` reads the input topic in a
consumer group, adds up the decimal numbers in each record's value and
produces the sum, under the input record's key, to the output topic in a
transaction that also commits the group's input offsets. A record whose
value holds no number makes no output. They stop on SIGINT.

Neither librdkafka-dev nor the confluent-kafka wheel ships these sources:
they come from Debian's librdkafka source package. scripts/test.sh installs
gcc and librdkafka-dev and extracts the two files into
target/librdkafka-examples ($LIBRDKAFKA_EXAMPLES overrides the folder);
this module builds them with gcc against the system librdkafka. A missing
compiler, header or source fails the tests: nothing is skipped.

Plain confluent-kafka producers write the input; read_committed (and
read_uncommitted) confluent-kafka consumers check the output: every sum
exactly once, nothing from an aborted transaction, and the group's
committed input offsets matching the committed output.
"""

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from clients import RDKAFKA_LOG, TIMEOUT, admin_for, create_topic, produce_retrying, producer_for
from conftest import QUICK_GROUP_ARGS, REPO

EXAMPLES_DIR = Path(os.environ.get("LIBRDKAFKA_EXAMPLES", REPO / "target" / "librdkafka-examples"))
EXAMPLES = ("transactions", "transactions-older-broker")
# The examples include "rdkafka.h", as inside librdkafka's tree.
RDKAFKA_INCLUDE = Path("/usr/include/librdkafka")

# The group and transactional ids are fixed in the examples' sources.
KIP447_GROUP = "librdkafka_transactions_example_group"
OLDER_GROUP = "librdkafka_transactions_older_example_group"
# transactions-older-broker.c commits a partition's transaction after
# processing a record once the transaction is this many seconds old (or
# holds more than 100 records); transactions.c checks the same age once a
# second, record or not.
COMMIT_AGE_S = 5

PARTITIONS = 2
RUN_TIMEOUT = 60  # seconds for a running example to reach a checked state
STOP_TIMEOUT = 30  # seconds for an example to exit after SIGINT
SENTINEL = "sentinel"


@pytest.fixture
def broker_args():
    return list(QUICK_GROUP_ARGS)


# --------------------------------------------------------------------------
# building and running the examples
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """{name: path} of the examples, built with gcc against librdkafka-dev."""
    cc = shutil.which("gcc")
    if cc is None:
        pytest.fail("gcc is not installed; scripts/test.sh installs gcc and libc6-dev")
    if not (RDKAFKA_INCLUDE / "rdkafka.h").is_file():
        pytest.fail(f"{RDKAFKA_INCLUDE / 'rdkafka.h'} is missing: librdkafka-dev is not installed "
                    "(scripts/test.sh installs it)")
    out = tmp_path_factory.mktemp("librdkafka-examples")
    built = {}
    for name in EXAMPLES:
        source = EXAMPLES_DIR / f"{name}.c"
        if not source.is_file():
            pytest.fail(f"{source} is missing: scripts/test.sh extracts librdkafka's examples into "
                        f"{EXAMPLES_DIR} from Debian's librdkafka source package")
        binary = out / name
        proc = subprocess.run([cc, "-O1", "-Wall", f"-I{RDKAFKA_INCLUDE}", str(source), "-o", str(binary),
                               "-lrdkafka"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"gcc could not build {source}:\n{proc.stderr}"
        built[name] = binary
    return built


class Example:
    """One run of a built example, its stdout and stderr in files."""

    def __init__(self, binary, bootstrap, input_topic, output_topic, log_dir):
        stem = f"{binary.name}-{uuid.uuid4().hex[:6]}"
        self.name = binary.name
        self.out_path = log_dir / f"{stem}.out"
        self.err_path = log_dir / f"{stem}.err"
        args = [str(binary), bootstrap, input_topic, output_topic]
        stdbuf = shutil.which("stdbuf")
        if stdbuf:  # line-buffered stdout, so a killed run still shows its progress
            args = [stdbuf, "-oL", *args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.returncode = None
        self.stop_problem = None

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def output(self, lines=60):
        def tail(path):
            text = path.read_text(errors="replace").splitlines()
            return "\n".join(text[-lines:])
        stdout = self.out_path.read_text(errors="replace")
        # Both examples print this once their producer(s) and consumer are
        # set up; transactions.c calls rd_kafka_init_transactions() first,
        # with no timeout.
        hint = "" if "Expecting integers" in stdout else (
            f"({self.name} never got past its setup: rd_kafka_init_transactions() "
            "or the consumer's creation did not return)\n")
        return (f"{hint}----- {self.name} stdout (tail) -----\n{tail(self.out_path)}\n"
                f"----- {self.name} stderr (tail) -----\n{tail(self.err_path)}")

    def check_running(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited early with {self.proc.returncode}\n{self.output()}")

    def stop(self):
        """SIGINT, the examples' clean shutdown; SIGKILL after STOP_TIMEOUT.
        Never raises: check_clean_exit() reports."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
                self.stop_problem = f"did not exit within {STOP_TIMEOUT}s of SIGINT"
        self.returncode = self.proc.returncode

    def check_clean_exit(self):
        """Exit 0 after SIGINT, and no fatal error, warning (a failed commit,
        abort, produce or consume) or failed delivery on stderr."""
        assert self.stop_problem is None, f"{self.name} {self.stop_problem}\n{self.output()}"
        assert self.returncode == 0, f"{self.name} exited with {self.returncode}\n{self.output()}"
        bad = [line for line in self.stderr().splitlines()
               if line.startswith(("FATAL ERROR", "WARNING", "% Message delivery failed"))]
        assert not bad, f"{self.name} reported errors:\n" + "\n".join(bad[:20]) + "\n" + self.output()


# --------------------------------------------------------------------------
# input and output
# --------------------------------------------------------------------------


def make_inputs(word, count):
    """(key, value, partition) input records, spread over the partitions.
    Each value holds two numbers, except every tenth, which holds none."""
    assert not re.search(r"[0-9]", word), "the examples would add up digits in the word"
    return [(f"{word}-{i}", f"{word}: no numbers" if i % 10 == 9 else f"{word}: {i + 1} plus {3 * i + 7}",
             i % PARTITIONS) for i in range(count)]


def produce_inputs(broker, topic, records):
    """Writes (key, value, partition) records with a plain producer; returns
    them as (key, value, partition, offset)."""
    producer = producer_for(broker)
    offsets, errors = {}, []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets[msg.key().decode()] = msg.offset()

    for key, value, partition in records:
        produce_retrying(producer, topic, key=key, value=value, partition=partition, on_delivery=delivered)
    assert producer.flush(TIMEOUT) == 0, "input records still undelivered"
    assert not errors, errors
    return [(key, value, partition, offsets[key]) for key, value, partition in records]


def expected_outputs(records):
    """The (key, value) output records the examples make from input records:
    the sum of the numbers in the value, under the same key."""
    out = []
    for key, value, *_ in records:
        total = sum(int(n) for n in re.findall(r"[0-9]+", value))
        if total:
            out.append((key, str(total)))
    return out


def end_offsets(records):
    """{partition: offset after the last of `records` in it}."""
    ends = {}
    for _, _, partition, offset in records:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


class OutputReader:
    """A consumer of every partition of a topic from the beginning, outside
    any group, keeping (key, value, partition, offset) of what it reads."""

    def __init__(self, bootstrap, topic, isolation):
        self.isolation = isolation
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:10]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "logger": RDKAFKA_LOG,
        })
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        self.records = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.consumer.close()

    def keys(self):
        return {key for key, *_ in self.records}

    def wait_for_keys(self, keys, what, example=None, timeout=RUN_TIMEOUT):
        """Reads until every key in `keys` has been read, while `example`
        (if given) keeps running."""
        deadline = time.monotonic() + timeout
        while not set(keys) <= self.keys():
            if example is not None:
                example.check_running()
            if time.monotonic() > deadline:
                missing = sorted(set(keys) - self.keys())
                raise AssertionError(
                    f"{self.isolation} reader: timed out after {timeout}s waiting for {what}: "
                    f"{len(missing)} of {len(set(keys))} keys missing, e.g. {missing[:5]}"
                    + (f"\n{example.output()}" if example is not None else ""))
            for msg in self.consumer.consume(500, 0.5):
                assert msg.error() is None, f"{self.isolation} reader: {msg.error()}"
                self.records.append((msg.key().decode() if msg.key() is not None else None,
                                     msg.value().decode() if msg.value() is not None else None,
                                     msg.partition(), msg.offset()))


def read_whole_output(broker, topic, isolation):
    """Every record of the (finished) output topic an `isolation` consumer
    reads: a plain sentinel record is appended to each partition first, and
    reading one means all before it in that partition were read."""
    producer = producer_for(broker)
    for p in range(PARTITIONS):
        produce_retrying(producer, topic, key=f"{SENTINEL}-{p}", value=SENTINEL, partition=p)
    assert producer.flush(TIMEOUT) == 0, "sentinel records still undelivered"
    with OutputReader(broker.bootstrap, topic, isolation) as reader:
        # An open transaction holds read_committed readers back at its first
        # record: the sentinels show none was left open.
        reader.wait_for_keys({f"{SENTINEL}-{p}" for p in range(PARTITIONS)},
                             "the sentinels after the examples' output", timeout=TIMEOUT * 2)
        return [r for r in reader.records if not (r[0] or "").startswith(SENTINEL)]


def assert_exactly_once(records, expected, what):
    got = Counter((key, value) for key, value, _, _ in records)
    want = Counter(expected)
    missing = sorted((want - got).elements())
    unexpected = sorted((got - want).elements())
    duplicated = sorted(kv for kv, n in got.items() if n > 1)
    assert not missing and not unexpected, (
        f"{what}: {len(missing)} expected records missing (e.g. {missing[:5]}), "
        f"{len(unexpected)} unexpected (e.g. {unexpected[:5]}), duplicated: {duplicated[:5]}")


def committed_offsets(bootstrap, group, topic):
    """{partition: offset} the group has committed for `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "logger": RDKAFKA_LOG})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=TIMEOUT)
    finally:
        consumer.close()
    for tp in tps:
        assert tp.error is None, f"committed offset of {group} for {topic} [{tp.partition}]: {tp.error}"
    return {tp.partition: tp.offset for tp in tps}


def create_topics(broker, topic_name, prefix):
    admin = admin_for(broker)
    names = topic_name(f"{prefix}-in"), topic_name(f"{prefix}-out")
    for name in names:
        create_topic(admin, name, partitions=PARTITIONS)
    return names


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_transactions_example_exactly_once_across_a_restart(broker, examples, topic_name, tmp_path):
    """transactions.c commits every 5 s or 100 records and, on SIGINT, once
    more as the cooperative-sticky consumer's partitions are revoked. A
    second run with the same transactional.id and group resumes from the
    offsets the first committed in its transactions."""
    input_topic, output_topic = create_topics(broker, topic_name, "kip447")

    inputs = []
    for run, (word, count) in enumerate((("first", 150), ("second", 60)), start=1):
        inputs += produce_inputs(broker, input_topic, make_inputs(word, count))
        example = Example(examples["transactions"], broker.bootstrap, input_topic, output_topic, tmp_path)
        try:
            with OutputReader(broker.bootstrap, output_topic, "read_committed") as reader:
                reader.wait_for_keys({key for key, _ in expected_outputs(inputs)},
                                     f"run {run}'s sums, committed", example)
        finally:
            example.stop()
        example.check_clean_exit()
        assert committed_offsets(broker.bootstrap, KIP447_GROUP, input_topic) == end_offsets(inputs), (
            f"after run {run} the group's committed offsets are not the input's end")

    committed = read_whole_output(broker, output_topic, "read_committed")
    assert_exactly_once(committed, expected_outputs(inputs), "read_committed output of both runs")


def test_transactions_older_broker_example_commits_and_aborts(broker, examples, topic_name, tmp_path):
    """transactions-older-broker.c runs a transactional producer per input
    partition, commits a partition's transaction after a record finds it
    5 s old, and aborts the open ones on SIGINT: records it produced since
    its last commit must never reach a read_committed reader, and their
    input offsets must stay uncommitted."""
    input_topic, output_topic = create_topics(broker, topic_name, "older")
    # The example's consumer starts at the end of the log where its group
    # has no offset (auto.offset.reset is left at latest): start it at 0.
    setter = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": OLDER_GROUP,
                       "enable.auto.commit": False, "logger": RDKAFKA_LOG})
    try:
        setter.commit(offsets=[TopicPartition(input_topic, p, 0) for p in range(PARTITIONS)], asynchronous=False)
    finally:
        setter.close()

    first = produce_inputs(broker, input_topic, make_inputs("first", 80))
    example = Example(examples["transactions-older-broker"], broker.bootstrap, input_topic, output_topic,
                      tmp_path)
    try:
        with OutputReader(broker.bootstrap, output_topic, "read_uncommitted") as reader:
            reader.wait_for_keys({key for key, _ in expected_outputs(first)}, "the first batch's sums", example)
        # Then one record per partition after the transactions are old
        # enough commits everything so far, the tick itself included; the
        # late records right behind it stay in the new open transactions.
        time.sleep(COMMIT_AGE_S + 2)
        ticks = produce_inputs(broker, input_topic, make_inputs("tick", PARTITIONS))
        late = produce_inputs(broker, input_topic, make_inputs("late", 10))
        with OutputReader(broker.bootstrap, output_topic, "read_committed") as reader:
            reader.wait_for_keys({key for key, _ in expected_outputs(first + ticks)},
                                 "the sums up to the ticks, committed", example)
        with OutputReader(broker.bootstrap, output_topic, "read_uncommitted") as reader:
            reader.wait_for_keys({key for key, _ in expected_outputs(late)}, "the late records' sums", example)
    finally:
        example.stop()
    example.check_clean_exit()

    assert committed_offsets(broker.bootstrap, OLDER_GROUP, input_topic) == end_offsets(first + ticks), (
        "the group's committed offsets are not just past the ticks: the aborted transactions' input "
        "offsets must stay uncommitted")
    committed = read_whole_output(broker, output_topic, "read_committed")
    assert_exactly_once(committed, expected_outputs(first + ticks), "read_committed output")
    uncommitted = read_whole_output(broker, output_topic, "read_uncommitted")
    written = {(key, value) for key, value, _, _ in uncommitted}
    assert set(expected_outputs(late)) <= written, "the aborted late sums are not in the log at all"
