"""confluent-kafka clients and helpers shared by the Python test modules."""

import logging

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until

TIMEOUT = 15  # seconds, for any single admin / metadata operation

# librdkafka's own log lines go through Python logging, so pytest shows them
# with a failing test instead of printing them to stderr as they happen.
RDKAFKA_LOG = logging.getLogger("rdkafka")


def admin_for(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10000,
                        "logger": RDKAFKA_LOG})


def producer_for(broker, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
        "logger": RDKAFKA_LOG,
    }
    conf.update(extra)
    return Producer(conf)


def produce_retrying(producer, *args, **kwargs):
    """produce(), waiting for room while the local queue is full."""
    while True:
        try:
            producer.produce(*args, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)


def create_topic(admin, name, partitions=1, config=None):
    fs = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=TIMEOUT,
    )
    fs[name].result(timeout=TIMEOUT)
    wait_until(
        lambda: name in admin.list_topics(timeout=TIMEOUT).topics,
        timeout=TIMEOUT,
        what=f"topic {name} in metadata",
    )


def kafka_error(exc):
    """The KafkaError carried by a KafkaException raised from a future."""
    assert isinstance(exc, KafkaException), f"expected KafkaException, got {exc!r}"
    err = exc.args[0]
    assert isinstance(err, KafkaError), f"expected KafkaError, got {err!r}"
    return err
