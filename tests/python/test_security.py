"""Security: TLS, SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), mutual TLS,
ACLs and SCRAM credential administration, driven by confluent-kafka,
kafka-python, kcat and raw sockets.

Brokers, each with its own data directory:

- `sasl_broker` (one per module): a single SASL_SSL listener with every
  mechanism and the bootstrap super-user `admin`. Most SASL, ACL and SCRAM
  tests share it; each uses its own topics, groups and users.
- `mtls_broker` (one per module): a single SSL listener that requires client
  certificates; `User:CN=client1` is a super-user.
- per test: a broker that enables only SCRAM-SHA-512, one whose certificate
  is reloaded on SIGHUP, and one with a PLAINTEXT and a SASL_SSL listener.

With an authenticated listener, a resource without ACLs is closed to all but
super-users (allow.everyone.if.no.acl.found defaults to false).
"""

import logging
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType
from kafka.admin import KafkaAdminClient, ResourcePatternFilter
from kafka.admin import NewTopic as KpNewTopic
from kafka.admin import ResourceType as KpResourceType
from kafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

import certs
from clients import RDKAFKA_LOG, TIMEOUT, create_topic, kafka_error
from conftest import Broker, finish_broker, run_failed, wait_until

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
SHA_256, SHA_512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
# librdkafka turns a SaslAuthenticate error (SASL_AUTHENTICATION_FAILED, 58)
# and a refused SaslHandshake into its local _AUTHENTICATION.
AUTH_REFUSED = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
# How librdkafka reports a TLS connection the broker refused.
TLS_REFUSED = {KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
KP_TIMEOUT_MS = 15000
# A kafka-python client that cannot authenticate retries until this passes.
KP_FAILING_BOOTSTRAP_MS = 3000
KCAT = shutil.which("kcat")

# Kafka API keys and error codes used on raw sockets.
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------
# brokers
# --------------------------------------------------------------------------

# Module-scoped brokers: a failing test prints their log tails.
_shared_brokers = []


def launch(base_dir, args):
    base_dir = Path(base_dir)
    (base_dir / "data").mkdir(parents=True)
    return Broker(base_dir / "data", base_dir / "broker.log", args).start()


def _shared(tmp_path_factory, name, args):
    b = launch(tmp_path_factory.mktemp(name), args)
    _shared_brokers.append(b)
    try:
        yield b
    finally:
        _shared_brokers.remove(b)
        finish_broker(b, failed=False)


@pytest.fixture(autouse=True)
def _shared_broker_logs_on_failure(request):
    yield
    if run_failed(request):
        for b in _shared_brokers:
            print(b.log_tail())


@pytest.fixture
def start_broker(request, tmp_path):
    """Starts brokers for one test; all are stopped and checked after it."""
    started = []

    def start(args, name="broker", check_errors=True):
        b = launch(tmp_path / name, args)
        started.append((b, check_errors))
        return b

    yield start
    failed = run_failed(request)
    problems = []
    for b, check_errors in started:
        try:
            finish_broker(b, failed, check_errors)
        except AssertionError as e:
            problems.append(e)
    if problems:
        raise problems[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return certs.make_certs(tmp_path_factory.mktemp("pki"), clients=("client1", "client2"))


def tls_args(cert, key):
    return ["--tls-cert", str(cert), "--tls-key", str(key)]


def sasl_broker_args(pki, *extra):
    return ["--listeners", "SASL_SSL://127.0.0.1:0", *tls_args(pki.server_cert, pki.server_key),
            "--bootstrap-user", f"{ADMIN}:{ADMIN_PASSWORD}", "--auto-create-topics", "false",
            "--group-initial-rebalance-delay-ms", "0", *extra]


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory, pki):
    yield from _shared(tmp_path_factory, "sasl", sasl_broker_args(pki))


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory, pki):
    yield from _shared(tmp_path_factory, "mtls", [
        "--listeners", "SSL://127.0.0.1:0", *tls_args(pki.server_cert, pki.server_key),
        "--tls-client-ca", str(pki.ca), "--tls-client-auth", "required",
        "--super-users", "User:CN=client1", "--auto-create-topics", "false",
    ])


# --------------------------------------------------------------------------
# client configurations
# --------------------------------------------------------------------------


def sasl_conf(bootstrap, pki, user=ADMIN, password=ADMIN_PASSWORD, mechanism="SCRAM-SHA-256"):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(pki.ca),
        "socket.timeout.ms": 10000,
        "logger": RDKAFKA_LOG,
    }


def mtls_conf(bootstrap, pki, client="client1"):
    cert, key = pki.client(client)
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "socket.timeout.ms": 10000,
        "logger": RDKAFKA_LOG,
    }


def kp_sasl(bootstrap, pki, user=ADMIN, password=ADMIN_PASSWORD, mechanism="SCRAM-SHA-256"):
    return dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", sasl_mechanism=mechanism,
                sasl_plain_username=user, sasl_plain_password=password, ssl_cafile=str(pki.ca),
                request_timeout_ms=KP_TIMEOUT_MS, bootstrap_timeout_ms=10000)


def kp_mtls(bootstrap, pki, client="client1"):
    cert, key = pki.client(client)
    return dict(bootstrap_servers=bootstrap, security_protocol="SSL", ssl_cafile=str(pki.ca),
                ssl_certfile=str(cert), ssl_keyfile=str(key),
                request_timeout_ms=KP_TIMEOUT_MS, bootstrap_timeout_ms=10000)


def kcat_sasl(bootstrap, pki, mechanism, user=ADMIN, password=ADMIN_PASSWORD):
    return ["-b", bootstrap, "-X", "security.protocol=SASL_SSL", "-X", f"sasl.mechanism={mechanism}",
            "-X", f"sasl.username={user}", "-X", f"sasl.password={password}",
            "-X", f"ssl.ca.location={pki.ca}"]


def kcat_mtls(bootstrap, pki, client="client1"):
    cert, key = pki.client(client)
    return ["-b", bootstrap, "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.ca}",
            "-X", f"ssl.certificate.location={cert}", "-X", f"ssl.key.location={key}"]


# --------------------------------------------------------------------------
# confluent-kafka helpers
# --------------------------------------------------------------------------


def produce(conf, topic, values, partition=0, timeout=30):
    """Produce `values` to one partition with a fresh producer; the delivery
    reports, in order, as (error or None, offset)."""
    p = Producer({**conf, "acks": "all", "linger.ms": 5, "message.timeout.ms": 20000})
    reports = []
    for v in values:
        p.produce(topic, value=v, partition=partition,
                  on_delivery=lambda err, msg: reports.append((err, msg.offset())))
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} records still undelivered after {timeout}s"
    assert len(reports) == len(values)
    return reports


def assert_delivered(reports, first_offset=0):
    errors = [err for err, _ in reports if err is not None]
    assert not errors, f"deliveries failed: {errors[:3]}"
    assert [o for _, o in reports] == list(range(first_offset, first_offset + len(reports)))


def consumer(conf, group="security-tests", **extra):
    return Consumer({**conf, "group.id": group, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 10000, **extra})


def read_partition(conf, topic, n, partition=0, group="security-tests", timeout=30):
    """The first `n` records of a partition, by assignment: [(offset, value)]."""
    c = consumer(conf, group)
    out = []
    try:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error: {msg.error()}")
            out.append((msg.offset(), msg.value()))
    finally:
        c.close()
    assert len(out) == n, f"read {len(out)} of {n} records of {topic} within {timeout}s"
    return out


def watermarks(conf, topic, partition=0):
    c = consumer(conf)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT)
    finally:
        c.close()


def committed_offset(conf, group, topic, partition=0):
    c = consumer(conf, group)
    try:
        [tp] = c.committed([TopicPartition(topic, partition)], timeout=TIMEOUT)
    finally:
        c.close()
    assert tp.error is None, tp.error
    return tp.offset


class Refused:
    """A connection the broker refused; `error` is how the client reported it."""

    def __init__(self, error):
        self.error = error

    def __repr__(self):
        return f"Refused({self.error})"


def connect_outcome(conf, refused_codes, timeout=15):
    """Returns "ok" once a Metadata request over `conf` succeeds, or
    Refused(error) with the first error the client's error callback reports
    whose code is in `refused_codes`."""
    reported = []
    p = Producer({**conf, "error_cb": reported.append})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            p.list_topics(timeout=0.5)
            return "ok"
        except KafkaException:
            # No usable broker yet; what went wrong comes through error_cb.
            pass
        p.poll(0.1)
        for err in reported:
            if err.code() in refused_codes:
                return Refused(err)
    raise AssertionError(f"neither connected nor refused within {timeout}s; errors: {reported[-5:]}")


def sasl_login(bootstrap, pki, user, password, mechanism):
    return connect_outcome(sasl_conf(bootstrap, pki, user, password, mechanism), AUTH_REFUSED)


def assert_refused(outcome, codes=AUTH_REFUSED):
    assert isinstance(outcome, Refused), "the broker accepted a client it should have refused"
    assert outcome.error.code() in codes, f"refused with an unexpected error: {outcome}"


def kafka_error_code(excinfo):
    return kafka_error(excinfo.value).code()


# ACLs -------------------------------------------------------------------


def acl(restype, name, principal, operation, permission=AclPermissionType.ALLOW,
        pattern=ResourcePatternType.LITERAL):
    return AclBinding(restype, name, pattern, principal, "*", operation, permission)


def acl_filter(principal=None, restype=ResourceType.ANY, name=None, pattern=ResourcePatternType.ANY,
               operation=AclOperation.ANY, permission=AclPermissionType.ANY):
    return AclBindingFilter(restype, name, pattern, principal, None, operation, permission)


def exact_filter(binding):
    """A filter matching exactly `binding`."""
    return AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                            binding.principal, binding.host, binding.operation,
                            binding.permission_type)


def describe_acls(admin, flt):
    return admin.describe_acls(flt, request_timeout=TIMEOUT).result(timeout=TIMEOUT)


def create_acls(admin, bindings):
    for binding, future in admin.create_acls(bindings, request_timeout=TIMEOUT).items():
        assert future.result(timeout=TIMEOUT) is None, binding
    wanted = set(bindings)
    wait_until(lambda: wanted <= set(describe_acls(admin, acl_filter())),
               timeout=TIMEOUT, what="the new ACLs in DescribeAcls")


def delete_acls(admin, flt):
    deleted = admin.delete_acls([flt], request_timeout=TIMEOUT)[flt].result(timeout=TIMEOUT)
    wait_until(lambda: not describe_acls(admin, flt), timeout=TIMEOUT, what="the ACLs gone")
    return deleted


def topic_rw(topic, principal):
    """WRITE, READ and DESCRIBE on one topic."""
    return [acl(ResourceType.TOPIC, topic, principal, op)
            for op in (AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE)]


# SCRAM users ------------------------------------------------------------


def scram_credentials(admin, user):
    """{ScramMechanism: iterations} of a user; None if the broker answers
    RESOURCE_NOT_FOUND (the user has no credentials)."""
    future = admin.describe_user_scram_credentials([user], request_timeout=TIMEOUT)[user]
    try:
        description = future.result(timeout=TIMEOUT)
    except KafkaException as e:
        if kafka_error(e).code() == KafkaError.RESOURCE_NOT_FOUND:
            return None
        raise
    assert description.user == user

    def mechanism(info):
        m = info.mechanism
        return m if isinstance(m, ScramMechanism) else ScramMechanism(m)

    return {mechanism(i): i.iterations for i in description.scram_credential_infos}


def alter_users(admin, alterations):
    for user, future in admin.alter_user_scram_credentials(alterations, request_timeout=TIMEOUT).items():
        assert future.result(timeout=TIMEOUT) is None, user


def create_user(admin, user, password, mechanisms=(SHA_256,), iterations=4096):
    alter_users(admin, [UserScramCredentialUpsertion(user, ScramCredentialInfo(m, iterations),
                                                     password.encode())
                        for m in mechanisms])
    wait_until(lambda: set(mechanisms) <= set(scram_credentials(admin, user) or ()),
               timeout=TIMEOUT, what=f"user {user} in DescribeUserScramCredentials")
    return f"User:{user}"


# --------------------------------------------------------------------------
# kafka-python and kcat helpers
# --------------------------------------------------------------------------


def kp_roundtrip(common, topic, values, timeout=30):
    """Create `topic`, produce `values` to partition 0 and read them back,
    all with kafka-python; returns the read [(offset, value)]."""
    admin = KafkaAdminClient(**common)
    producer = consumer_ = None
    try:
        admin.create_topics([KpNewTopic(name=topic, num_partitions=1, replication_factor=1)],
                            timeout_ms=KP_TIMEOUT_MS)
        wait_until(lambda: topic in admin.list_topics(), timeout=TIMEOUT, what=f"topic {topic}")
        producer = KafkaProducer(acks="all", linger_ms=5, enable_idempotence=False, **common)
        futures = [producer.send(topic, value=v, partition=0) for v in values]
        producer.flush(timeout=timeout)
        assert [f.get(timeout=timeout).offset for f in futures] == list(range(len(values)))
        consumer_ = KafkaConsumer(group_id=None, enable_auto_commit=False, **common)
        tp = KpTopicPartition(topic, 0)
        consumer_.assign([tp])
        consumer_.seek_to_beginning(tp)
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < len(values) and time.monotonic() < deadline:
            for records in consumer_.poll(timeout_ms=500).values():
                out.extend((r.offset, r.value) for r in records)
        return out
    finally:
        for c in (consumer_, producer, admin):
            if c is None:
                continue
            try:
                if isinstance(c, KafkaProducer):
                    c.close(timeout=5)
                elif isinstance(c, KafkaConsumer):
                    c.close(autocommit=False, timeout_ms=5000)
                else:
                    c.close()
            except Exception as e:  # closing must not mask the test's own outcome
                print(f"closing {c!r} failed: {e!r}")


def kp_cannot_bootstrap(caplog, config):
    """A kafka-python admin client that cannot connect: its constructor gives
    up with KafkaTimeoutError; returns what kafka-python logged meanwhile
    (why each attempt failed).

    kafka-python 3.0.12 drops bytes that arrive together with the end of the
    connection, so when the broker answers a SASL error and closes at once,
    it may log "socket disconnected" instead of the error it was sent."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kafka"):
        with pytest.raises(KafkaTimeoutError):
            KafkaAdminClient(**{**config, "bootstrap_timeout_ms": KP_FAILING_BOOTSTRAP_MS,
                                "request_timeout_ms": 5000})
    return caplog.text


def kcat(args, stdin=None, timeout=30):
    if KCAT is None:
        pytest.fail("kcat is not installed (scripts/test.sh installs it)")
    try:
        proc = subprocess.run([KCAT, *args], input=stdin, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"kcat did not finish within {timeout}s; stderr: {e.stderr!r}") from None
    assert proc.returncode == 0, f"kcat exited with {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def kcat_roundtrip(connection, topic, values):
    """Produce `values` to partition 0 with kcat, read them back with kcat:
    the lines "offset value" it printed."""
    kcat([*connection, "-P", "-t", topic, "-p", "0"], stdin="".join(v + "\n" for v in values))
    out = kcat([*connection, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
                "-f", "%o %s\\n"])
    return out.stdout.splitlines()


# --------------------------------------------------------------------------
# raw sockets
# --------------------------------------------------------------------------


def request_frame(api_key, version, correlation_id, body=b""):
    """A size-prefixed request with a v1 header (non-flexible)."""
    client_id = b"chronik-security-tests"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header) + len(body)) + header + body


def _read_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no complete response before the deadline (have {buf[:64]!r})")
        sock.settimeout(remaining)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(sock, deadline):
    """The payload of one size-prefixed frame, or None on EOF before it."""
    size = _read_exact(sock, 4, deadline)
    if size is None:
        return None
    return _read_exact(sock, struct.unpack(">i", size)[0], deadline)


def read_until_closed(sock, timeout=10):
    """Everything the peer sends until it closes (EOF or reset) the
    connection; fails if it is still open after `timeout` seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the broker kept the connection open for {timeout}s "
                                 f"(received {data[:64]!r})")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except (ConnectionError, ssl.SSLError):
            return data
        if not chunk:
            return data
        data += chunk


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def client_context(pki, cert_and_key=None):
    """A TLS client context trusting the test CA (and checking the broker's
    name), with an optional client certificate."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert_and_key:
        ctx.load_cert_chain(str(cert_and_key[0]), str(cert_and_key[1]))
    return ctx


def tls_api_versions(addr, ctx, timeout=10):
    """("ok", None) if the broker answers ApiVersions over TLS made with `ctx`;
    ("refused", why) if the handshake fails or the broker closes the
    connection (with TLS 1.3 a rejected client certificate shows after the
    client's side of the handshake, on the first read)."""
    host, port = split_addr(addr)
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(request_frame(API_VERSIONS, 0, 4242))
                payload = read_frame(s, deadline)
    except (ssl.SSLError, ConnectionError) as e:
        return "refused", repr(e)
    if payload is None:
        return "refused", "closed by the broker"
    correlation_id, error_code = struct.unpack(">ih", payload[:6])
    assert (correlation_id, error_code) == (4242, 0), (correlation_id, error_code)
    return "ok", None


def peer_certificate(addr, ctx, timeout=10):
    """The DER certificate a new TLS connection to `addr` is shown."""
    host, port = split_addr(addr)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            return s.getpeercert(binary_form=True)


def _string(payload, pos):
    """A nullable STRING at `pos`: (text or None, next position)."""
    (n,) = struct.unpack(">h", payload[pos:pos + 2])
    if n < 0:
        return None, pos + 2
    return payload[pos + 2:pos + 2 + n].decode(), pos + 2 + n


def sasl_exchange(addr, ctx, mechanism, token=None, timeout=10):
    """Over TLS: ApiVersions, SaslHandshake v1 for `mechanism`, then (if the
    handshake passed and `token` is given) one SaslAuthenticate v1 with it.
    Returns a dict: handshake_error, mechanisms, and, when sent,
    authenticate_error and authenticate_message; `closed_after` holds the
    bytes received until the broker closed the connection after an error
    (None if there was none). After a successful exchange the connection
    must still answer ApiVersions."""
    host, port = split_addr(addr)
    deadline = time.monotonic() + timeout
    out = {"closed_after": None}
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(request_frame(API_VERSIONS, 0, 1))
            assert read_frame(s, deadline) is not None, "no ApiVersions response"
            name = mechanism.encode()
            s.sendall(request_frame(SASL_HANDSHAKE, 1, 2, struct.pack(">h", len(name)) + name))
            payload = read_frame(s, deadline)
            assert payload is not None, "no SaslHandshake response"
            correlation_id, error, count = struct.unpack(">ihi", payload[:10])
            assert correlation_id == 2
            mechanisms, pos = [], 10
            for _ in range(count):
                m, pos = _string(payload, pos)
                mechanisms.append(m)
            out.update(handshake_error=error, mechanisms=mechanisms)
            if error == 0 and token is not None:
                s.sendall(request_frame(SASL_AUTHENTICATE, 1, 3, struct.pack(">i", len(token)) + token))
                payload = read_frame(s, deadline)
                assert payload is not None, "no SaslAuthenticate response"
                correlation_id, error = struct.unpack(">ih", payload[:6])
                assert correlation_id == 3
                out["authenticate_error"] = error
                out["authenticate_message"], _ = _string(payload, 6)
            if error:
                out["closed_after"] = read_until_closed(s, timeout=timeout)
            elif token is not None:
                s.sendall(request_frame(API_VERSIONS, 0, 4))
                payload = read_frame(s, deadline)
                assert payload is not None and struct.unpack(">ih", payload[:6]) == (4, 0), \
                    "no ApiVersions answer after a successful SASL exchange"
    return out


def replace_file(path, data):
    """Atomically give `path` the bytes `data` (the broker never reads half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# SASL_SSL: every mechanism, every client
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_confluent_kafka_produce_consume(sasl_broker, pki, mechanism):
    conf = sasl_conf(sasl_broker.bootstrap, pki, mechanism=mechanism)
    topic = unique("ck-sasl")
    create_topic(AdminClient(conf), topic)
    values = [b"%s-%d" % (mechanism.encode(), i) for i in range(20)]
    assert_delivered(produce(conf, topic, values))
    assert read_partition(conf, topic, 20) == list(enumerate(values))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_kafka_python_produce_consume(sasl_broker, pki, mechanism):
    values = [b"kp-%s-%d" % (mechanism.encode(), i) for i in range(20)]
    got = kp_roundtrip(kp_sasl(sasl_broker.bootstrap, pki, mechanism=mechanism),
                       unique("kp-sasl"), values)
    assert got == list(enumerate(values))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_kcat_produce_consume(sasl_broker, pki, mechanism):
    topic = unique("kcat-sasl")
    create_topic(AdminClient(sasl_conf(sasl_broker.bootstrap, pki)), topic)
    values = [f"kcat-{mechanism}-{i}" for i in range(20)]
    lines = kcat_roundtrip(kcat_sasl(sasl_broker.bootstrap, pki, mechanism), topic, values)
    assert lines == [f"{i} {v}" for i, v in enumerate(values)]


def test_non_super_user_with_acls_produces_and_consumes_in_a_group(sasl_broker, pki):
    admin_conf = sasl_conf(sasl_broker.bootstrap, pki)
    admin = AdminClient(admin_conf)
    user, password = unique("alice"), "alice-password"
    principal = create_user(admin, user, password)
    topic, group = unique("alice-t"), unique("alice-g")
    create_topic(admin, topic)
    create_acls(admin, topic_rw(topic, principal)
                + [acl(ResourceType.GROUP, group, principal, AclOperation.READ)])

    alice = sasl_conf(sasl_broker.bootstrap, pki, user, password)
    values = [b"alice-%d" % i for i in range(10)]
    assert_delivered(produce(alice, topic, values))

    c = consumer(alice, group)
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(got) < len(values) and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, f"consumer error: {msg.error()}"
            got.append((msg.offset(), msg.value()))
        assert got == list(enumerate(values))
        c.commit(asynchronous=False)
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)
        assert tp.offset == len(values)
    finally:
        c.close()
    assert committed_offset(admin_conf, group, topic) == len(values)


# --------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------


def test_wrong_credentials_are_refused_and_good_clients_still_work(sasl_broker, pki, caplog):
    b = sasl_broker.bootstrap
    topic = unique("creds")
    create_topic(AdminClient(sasl_conf(b, pki)), topic)
    for user, password, mechanism in [(ADMIN, "wrong-password", "SCRAM-SHA-256"),
                                      (ADMIN, "wrong-password", "SCRAM-SHA-512"),
                                      (ADMIN, "wrong-password", "PLAIN"),
                                      (unique("nobody"), ADMIN_PASSWORD, "SCRAM-SHA-256"),
                                      (unique("nobody"), ADMIN_PASSWORD, "PLAIN")]:
        outcome = sasl_login(b, pki, user, password, mechanism)
        assert isinstance(outcome, Refused), f"{user}/{mechanism} with a wrong password was let in"
        assert_refused(outcome)

    # On the wire (PLAIN): SASL_AUTHENTICATION_FAILED, then the broker
    # closes the connection; the right password passes.
    ctx = client_context(pki)
    refused = sasl_exchange(b, ctx, "PLAIN", f"\0{ADMIN}\0wrong-password".encode())
    assert refused["handshake_error"] == 0
    assert refused["authenticate_error"] == SASL_AUTHENTICATION_FAILED, refused
    assert refused["closed_after"] == b"", refused
    passed = sasl_exchange(b, ctx, "PLAIN", f"\0{ADMIN}\0{ADMIN_PASSWORD}".encode())
    assert passed["authenticate_error"] == 0, passed

    # kafka-python cannot bootstrap with a wrong password.
    text = kp_cannot_bootstrap(caplog, kp_sasl(b, pki, password="wrong-password"))
    assert "SaslAuthenticationFailedError" in text or "socket disconnected" in text, text[-3000:]

    # The broker refused those connections only: correct clients still work.
    for mechanism in MECHANISMS:
        assert sasl_login(b, pki, ADMIN, ADMIN_PASSWORD, mechanism) == "ok"
    kp_admin = KafkaAdminClient(**kp_sasl(b, pki))
    try:
        assert topic in kp_admin.list_topics()
    finally:
        kp_admin.close()


def test_unsupported_mechanism_is_refused(start_broker, pki, caplog):
    b = start_broker(sasl_broker_args(pki, "--sasl-mechanisms", "SCRAM-SHA-512"))
    ctx = client_context(pki)

    # On the wire: UNSUPPORTED_SASL_MECHANISM with the enabled mechanisms,
    # then the broker closes the connection.
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "GSSAPI"):
        refused = sasl_exchange(b.bootstrap, ctx, mechanism)
        assert refused["handshake_error"] == UNSUPPORTED_SASL_MECHANISM, (mechanism, refused)
        assert refused["mechanisms"] == ["SCRAM-SHA-512"], refused
        assert refused["closed_after"] == b"", refused
    assert sasl_exchange(b.bootstrap, ctx, "SCRAM-SHA-512")["handshake_error"] == 0

    # kafka-python cannot bootstrap with PLAIN (UnsupportedSaslMechanismError,
    # or the disconnect right after it; see kp_cannot_bootstrap).
    text = kp_cannot_bootstrap(caplog, kp_sasl(b.bootstrap, pki, mechanism="PLAIN"))
    assert "UnsupportedSaslMechanismError" in text or "socket disconnected" in text, text[-3000:]
    topic = unique("sha512-only")
    create_topic(AdminClient(sasl_conf(b.bootstrap, pki, mechanism="SCRAM-SHA-512")), topic)
    kp_admin = KafkaAdminClient(**kp_sasl(b.bootstrap, pki, mechanism="SCRAM-SHA-512"))
    try:
        assert topic in kp_admin.list_topics()
    finally:
        kp_admin.close()

    # librdkafka: _AUTHENTICATION, naming what the broker supports.
    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        outcome = sasl_login(b.bootstrap, pki, ADMIN, ADMIN_PASSWORD, mechanism)
        assert_refused(outcome, {KafkaError._AUTHENTICATION})
        assert "SCRAM-SHA-512" in outcome.error.str(), outcome

    # The enabled mechanism works.
    assert sasl_login(b.bootstrap, pki, ADMIN, ADMIN_PASSWORD, "SCRAM-SHA-512") == "ok"


def test_plaintext_client_on_the_tls_port_is_disconnected(sasl_broker, pki):
    correlation_id = 777
    with socket.create_connection(split_addr(sasl_broker.bootstrap), timeout=10) as s:
        s.sendall(request_frame(API_VERSIONS, 0, correlation_id))
        data = read_until_closed(s, timeout=10)
    # At most a TLS alert; never a Kafka response.
    assert not (len(data) >= 8 and data[4:8] == struct.pack(">i", correlation_id)), data[:64]
    assert sasl_broker.proc.poll() is None, "the broker exited"
    # TLS clients are still served.
    assert tls_api_versions(sasl_broker.bootstrap, client_context(pki))[0] == "ok"
    conf = sasl_conf(sasl_broker.bootstrap, pki)
    topic = unique("after-plaintext")
    create_topic(AdminClient(conf), topic)
    assert_delivered(produce(conf, topic, [b"still-served"]))


def test_a_huge_frame_before_authentication_is_refused_at_once(sasl_broker, pki):
    """Before SASL authentication a client may send frames of at most 512 KiB
    (Kafka's sasl.server.max.receive.size), which take nothing of the
    broker's request budget. Connections announcing 100 MiB frames and
    sending nothing are closed at once, and clients keep being served."""
    host, port = split_addr(sasl_broker.bootstrap)
    ctx = client_context(pki)
    for _ in range(4):
        with socket.create_connection((host, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(struct.pack(">i", 100 << 20))
                assert read_until_closed(s, timeout=10) == b"", "the broker answered a huge frame"
    assert tls_api_versions(sasl_broker.bootstrap, ctx)[0] == "ok"
    conf = sasl_conf(sasl_broker.bootstrap, pki)
    topic = unique("after-huge")
    create_topic(AdminClient(conf), topic)
    assert_delivered(produce(conf, topic, [b"still-served"]))


def test_produce_without_write_is_refused_and_writes_nothing(sasl_broker, pki):
    admin_conf = sasl_conf(sasl_broker.bootstrap, pki)
    admin = AdminClient(admin_conf)
    user, password = unique("bob"), "bob-password"
    principal = create_user(admin, user, password)
    topic = unique("bob-t")
    create_topic(admin, topic)
    # Bob may see the topic, not write to it.
    create_acls(admin, [acl(ResourceType.TOPIC, topic, principal, AclOperation.DESCRIBE)])

    bob = sasl_conf(sasl_broker.bootstrap, pki, user, password)
    [(err, _)] = produce(bob, topic, [b"forbidden"])
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    producer = KafkaProducer(acks="all", enable_idempotence=False,
                             **kp_sasl(sasl_broker.bootstrap, pki, user, password))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic, value=b"forbidden-too", partition=0).get(timeout=KP_TIMEOUT_MS / 1000)
    finally:
        producer.close(timeout=5)

    assert watermarks(admin_conf, topic) == (0, 0), "a refused produce wrote records"
    # The topic itself is writable: a super-user's record lands at offset 0.
    assert_delivered(produce(admin_conf, topic, [b"allowed"]))


def test_metadata_hides_topics_the_principal_may_not_describe(sasl_broker, pki):
    admin = AdminClient(sasl_conf(sasl_broker.bootstrap, pki))
    user, password = unique("carol"), "carol-password"
    principal = create_user(admin, user, password)
    visible, hidden = unique("carol-visible"), unique("carol-hidden")
    create_topic(admin, visible)
    create_topic(admin, hidden)
    create_acls(admin, [acl(ResourceType.TOPIC, visible, principal, AclOperation.DESCRIBE)])

    carol = AdminClient(sasl_conf(sasl_broker.bootstrap, pki, user, password))
    topics = carol.list_topics(timeout=TIMEOUT).topics
    assert visible in topics, sorted(topics)
    assert hidden not in topics, "a topic without DESCRIBE was listed"
    assert topics[visible].error is None and sorted(topics[visible].partitions) == [0]
    # Asked for by name, it is TOPIC_AUTHORIZATION_FAILED (as in Kafka).
    named = carol.list_topics(topic=hidden, timeout=TIMEOUT).topics[hidden]
    assert named.error is not None and named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert not named.partitions
    # A super-user sees both.
    assert {visible, hidden} <= set(admin.list_topics(timeout=TIMEOUT).topics)


def test_group_without_read_gives_group_authorization_failed(sasl_broker, pki):
    admin_conf = sasl_conf(sasl_broker.bootstrap, pki)
    admin = AdminClient(admin_conf)
    user, password = unique("dave"), "dave-password"
    principal = create_user(admin, user, password)
    topic, group = unique("dave-t"), unique("dave-g")
    create_topic(admin, topic)
    assert_delivered(produce(admin_conf, topic, [b"d0", b"d1", b"d2"]))
    # The topic is readable; the group is not.
    create_acls(admin, [acl(ResourceType.TOPIC, topic, principal, AclOperation.READ),
                        acl(ResourceType.TOPIC, topic, principal, AclOperation.DESCRIBE)])
    dave = sasl_conf(sasl_broker.bootstrap, pki, user, password)

    # confluent-kafka: subscribing reports GROUP_AUTHORIZATION_FAILED
    # (from FindCoordinator or JoinGroup) and delivers nothing.
    c = consumer(dave, group)
    errors, records = [], []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors):
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                errors.append(msg.error())
            else:
                records.append(msg.offset())
    finally:
        c.close()
    assert any(e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors), errors
    assert records == [], "records were delivered to a group member without READ on the group"

    # kafka-python: committing for the group is GROUP_AUTHORIZATION_FAILED.
    tp = KpTopicPartition(topic, 0)

    def commit():
        kc = KafkaConsumer(group_id=group, enable_auto_commit=False,
                           **kp_sasl(sasl_broker.bootstrap, pki, user, password))
        try:
            kc.assign([tp])
            kc.commit({tp: OffsetAndMetadata(2, "", -1)}, timeout_ms=10000)
        finally:
            kc.close(autocommit=False, timeout_ms=5000)

    with pytest.raises(GroupAuthorizationFailedError):
        commit()
    assert committed_offset(admin_conf, group, topic) < 0, "a refused commit was stored"

    # With READ on the group the same commit goes through.
    create_acls(admin, [acl(ResourceType.GROUP, group, principal, AclOperation.READ)])
    commit()
    assert committed_offset(admin_conf, group, topic) == 2


# --------------------------------------------------------------------------
# ACL administration
# --------------------------------------------------------------------------


def test_acl_admin_round_trip(sasl_broker, pki):
    admin = AdminClient(sasl_conf(sasl_broker.bootstrap, pki))
    principal = f"User:{unique('acl')}"
    topic, prefix, group = unique("acl-t"), unique("acl-p") + "-", unique("acl-g")
    lit_read = acl(ResourceType.TOPIC, topic, principal, AclOperation.READ)
    lit_deny = acl(ResourceType.TOPIC, topic, principal, AclOperation.WRITE, AclPermissionType.DENY)
    pfx_write = acl(ResourceType.TOPIC, prefix, principal, AclOperation.WRITE,
                    pattern=ResourcePatternType.PREFIXED)
    grp_read = acl(ResourceType.GROUP, group, principal, AclOperation.READ)
    cluster = acl(ResourceType.BROKER, "kafka-cluster", principal, AclOperation.DESCRIBE)
    everything = {lit_read, lit_deny, pfx_write, grp_read, cluster}

    create_acls(admin, list(everything))

    def described(**filter_args):
        return set(describe_acls(admin, acl_filter(principal, **filter_args)))

    assert described() == everything
    assert described(restype=ResourceType.TOPIC, name=topic,
                     pattern=ResourcePatternType.LITERAL) == {lit_read, lit_deny}
    assert described(restype=ResourceType.TOPIC, pattern=ResourcePatternType.PREFIXED) == {pfx_write}
    # MATCH: every binding that applies to the named resource.
    assert described(restype=ResourceType.TOPIC, name=prefix + "orders",
                     pattern=ResourcePatternType.MATCH) == {pfx_write}
    assert described(restype=ResourceType.TOPIC, name=topic,
                     pattern=ResourcePatternType.MATCH) == {lit_read, lit_deny}
    assert described(permission=AclPermissionType.DENY) == {lit_deny}
    assert described(operation=AclOperation.READ) == {lit_read, grp_read}
    assert described(restype=ResourceType.GROUP) == {grp_read}
    assert described(restype=ResourceType.BROKER) == {cluster}
    assert set(describe_acls(admin, acl_filter(f"{principal}-other"))) == set()

    # DeleteAcls returns the bindings it matched.
    deleted = delete_acls(admin, acl_filter(principal, restype=ResourceType.TOPIC,
                                            pattern=ResourcePatternType.PREFIXED))
    assert deleted == [pfx_write]
    assert described() == everything - {pfx_write}
    deleted = delete_acls(admin, acl_filter(principal))
    assert len(deleted) == 4 and set(deleted) == everything - {pfx_write}, deleted
    assert described() == set()


def test_deny_wins_over_allow_and_super_users_bypass_acls(sasl_broker, pki):
    admin_conf = sasl_conf(sasl_broker.bootstrap, pki)
    admin = AdminClient(admin_conf)
    user, password = unique("erin"), "erin-password"
    principal = create_user(admin, user, password)
    prefix = unique("erin")
    topic = prefix + "-orders"
    create_topic(admin, topic)
    deny = acl(ResourceType.TOPIC, prefix, principal, AclOperation.WRITE, AclPermissionType.DENY,
               pattern=ResourcePatternType.PREFIXED)
    create_acls(admin, [acl(ResourceType.TOPIC, topic, principal, AclOperation.WRITE),
                        acl(ResourceType.TOPIC, topic, principal, AclOperation.DESCRIBE), deny])
    erin = sasl_conf(sasl_broker.bootstrap, pki, user, password)

    [(err, _)] = produce(erin, topic, [b"denied"])
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    # Without the deny, the allow lets the same write through.
    assert delete_acls(admin, exact_filter(deny)) == [deny]
    assert_delivered(produce(erin, topic, [b"allowed"]), first_offset=0)

    # A deny naming a super-user changes nothing for it.
    admin_deny = acl(ResourceType.TOPIC, topic, f"User:{ADMIN}", AclOperation.ALL,
                     AclPermissionType.DENY)
    create_acls(admin, [admin_deny])
    assert_delivered(produce(admin_conf, topic, [b"super"]), first_offset=1)
    assert read_partition(admin_conf, topic, 2) == [(0, b"allowed"), (1, b"super")]
    assert delete_acls(admin, exact_filter(admin_deny)) == [admin_deny]


def test_non_super_user_cannot_administer_acls_or_users(sasl_broker, pki):
    admin = AdminClient(sasl_conf(sasl_broker.bootstrap, pki))
    user, password = unique("frank"), "frank-password"
    principal = create_user(admin, user, password)
    existing = acl(ResourceType.TOPIC, unique("frank-seen"), principal, AclOperation.DESCRIBE)
    create_acls(admin, [existing])
    frank = AdminClient(sasl_conf(sasl_broker.bootstrap, pki, user, password))
    binding = acl(ResourceType.TOPIC, unique("frank-t"), principal, AclOperation.ALL)
    flt = acl_filter(principal)
    victim = unique("frank-made")

    attempts = {
        "CreateAcls": lambda: frank.create_acls([binding], request_timeout=TIMEOUT)[binding],
        "DeleteAcls": lambda: frank.delete_acls([flt], request_timeout=TIMEOUT)[flt],
        "AlterUserScramCredentials": lambda: frank.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(victim, ScramCredentialInfo(SHA_256, 4096), b"pw")],
            request_timeout=TIMEOUT)[victim],
        "DescribeUserScramCredentials": lambda: frank.describe_user_scram_credentials(
            [user], request_timeout=TIMEOUT)[user],
    }
    for api, attempt in attempts.items():
        with pytest.raises(KafkaException) as ei:
            attempt().result(timeout=TIMEOUT)
        assert kafka_error_code(ei) == KafkaError.CLUSTER_AUTHORIZATION_FAILED, (api, ei.value)

    # DescribeAcls: kafka-python raises the response's error code. (librdkafka
    # drops DescribeAcls' top-level error and returns an empty list; it must
    # not show the existing binding either.)
    kp_frank = KafkaAdminClient(**kp_sasl(sasl_broker.bootstrap, pki, user, password))
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            kp_frank.describe_acls(ACLFilter(
                principal=None, host=None, operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None,
                                                       ACLResourcePatternType.ANY)))
    finally:
        kp_frank.close()
    try:
        seen = frank.describe_acls(flt, request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    except KafkaException as e:
        assert kafka_error(e).code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e
    else:
        assert seen == [], f"a non-super user could describe ACLs: {seen}"

    # Nothing was changed.
    assert describe_acls(admin, flt) == [existing]
    assert scram_credentials(admin, victim) is None


# --------------------------------------------------------------------------
# SCRAM credential administration
# --------------------------------------------------------------------------


def test_scram_credentials_create_describe_authenticate_delete(sasl_broker, pki):
    b = sasl_broker.bootstrap
    admin = AdminClient(sasl_conf(b, pki))
    # The bootstrap user has both SCRAM credentials, at 4096 iterations.
    assert scram_credentials(admin, ADMIN) == {SHA_256: 4096, SHA_512: 4096}

    user, password = unique("gina"), "gina-password"
    assert scram_credentials(admin, user) is None, "an unknown user is RESOURCE_NOT_FOUND"
    assert_refused(sasl_login(b, pki, user, password, "SCRAM-SHA-256"))

    def shows(expected):
        wait_until(lambda: scram_credentials(admin, user) == expected, timeout=TIMEOUT,
                   what=f"DescribeUserScramCredentials of {user} to be {expected}")

    alter_users(admin, [
        UserScramCredentialUpsertion(user, ScramCredentialInfo(SHA_256, 4096), password.encode()),
        UserScramCredentialUpsertion(user, ScramCredentialInfo(SHA_512, 8192), password.encode()),
    ])
    shows({SHA_256: 4096, SHA_512: 8192})
    everyone = admin.describe_user_scram_credentials(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert {ADMIN, user} <= set(everyone), sorted(everyone)

    for mechanism in MECHANISMS:  # PLAIN is checked against the SCRAM credentials
        assert sasl_login(b, pki, user, password, mechanism) == "ok", mechanism
    assert_refused(sasl_login(b, pki, user, "not-" + password, "SCRAM-SHA-512"))

    # Deleting one mechanism's credential leaves the other.
    alter_users(admin, [UserScramCredentialDeletion(user, SHA_256)])
    shows({SHA_512: 8192})
    assert_refused(sasl_login(b, pki, user, password, "SCRAM-SHA-256"))
    assert sasl_login(b, pki, user, password, "SCRAM-SHA-512") == "ok"
    assert sasl_login(b, pki, user, password, "PLAIN") == "ok"

    # Deleting the last one removes the user.
    alter_users(admin, [UserScramCredentialDeletion(user, SHA_512)])
    shows(None)  # RESOURCE_NOT_FOUND
    for mechanism in ("SCRAM-SHA-512", "PLAIN"):
        assert_refused(sasl_login(b, pki, user, password, mechanism))


# --------------------------------------------------------------------------
# SSL with client certificates
# --------------------------------------------------------------------------


def test_mtls_confluent_kafka_produce_consume(mtls_broker, pki):
    conf = mtls_conf(mtls_broker.bootstrap, pki)
    topic = unique("ck-mtls")
    create_topic(AdminClient(conf), topic)
    values = [b"mtls-%d" % i for i in range(20)]
    assert_delivered(produce(conf, topic, values))
    assert read_partition(conf, topic, 20) == list(enumerate(values))


def test_mtls_kafka_python_produce_consume(mtls_broker, pki):
    values = [b"kp-mtls-%d" % i for i in range(20)]
    got = kp_roundtrip(kp_mtls(mtls_broker.bootstrap, pki), unique("kp-mtls"), values)
    assert got == list(enumerate(values))


def test_mtls_kcat_produce_consume(mtls_broker, pki):
    topic = unique("kcat-mtls")
    create_topic(AdminClient(mtls_conf(mtls_broker.bootstrap, pki)), topic)
    values = [f"kcat-mtls-{i}" for i in range(20)]
    lines = kcat_roundtrip(kcat_mtls(mtls_broker.bootstrap, pki), topic, values)
    assert lines == [f"{i} {v}" for i, v in enumerate(values)]


def test_mtls_refuses_untrusted_and_missing_client_certificates(mtls_broker, pki):
    addr = mtls_broker.bootstrap
    # The trusted certificate gets an answer, so the refusals below are real.
    assert tls_api_versions(addr, client_context(pki, pki.client("client1"))) == ("ok", None)
    # Same subject (CN=client1, a super-user), signed by another CA.
    assert tls_api_versions(addr, client_context(pki, pki.rogue_client))[0] == "refused", \
        "a certificate from an unknown CA was accepted"
    assert tls_api_versions(addr, client_context(pki))[0] == "refused", \
        "a client without a certificate was accepted"

    # librdkafka with the rogue certificate never gets metadata. (It may not
    # even send it: the broker's CertificateRequest names the trusted CA.
    # The raw client above does send it.)
    rogue = {**mtls_conf(addr, pki), "ssl.certificate.location": str(pki.rogue_client[0]),
             "ssl.key.location": str(pki.rogue_client[1])}
    assert_refused(connect_outcome(rogue, TLS_REFUSED), TLS_REFUSED)
    # The broker still serves the trusted client.
    assert connect_outcome(mtls_conf(addr, pki), TLS_REFUSED) == "ok"


def test_mtls_principal_is_the_certificate_subject(mtls_broker, pki):
    addr = mtls_broker.bootstrap
    super_conf = mtls_conf(addr, pki, "client1")
    admin = AdminClient(super_conf)
    topic = unique("mtls-acl")
    create_topic(admin, topic)

    # CN=client2 is trusted but not a super-user: no ACL, no topic.
    client2 = mtls_conf(addr, pki, "client2")
    assert topic not in AdminClient(client2).list_topics(timeout=TIMEOUT).topics

    # ACLs name it by its RFC 2253 subject.
    create_acls(admin, [acl(ResourceType.TOPIC, topic, "User:CN=client2", op)
                        for op in (AclOperation.WRITE, AclOperation.DESCRIBE)])
    assert topic in AdminClient(client2).list_topics(timeout=TIMEOUT).topics
    assert_delivered(produce(client2, topic, [b"from-client2"]))
    assert read_partition(super_conf, topic, 1) == [(0, b"from-client2")]


# --------------------------------------------------------------------------
# certificate reload
# --------------------------------------------------------------------------


def test_sighup_reloads_the_certificate_and_keeps_it_on_a_bad_file(start_broker, pki, tmp_path):
    cert_b, key_b = certs.make_server_cert(pki.dir, pki.ca, pki.ca_key,
                                           name=unique("server-b"), cn="localhost-2")
    live = tmp_path / "live-tls"
    live.mkdir()
    live_cert, live_key = live / "server.pem", live / "server.key"
    shutil.copyfile(pki.server_cert, live_cert)
    shutil.copyfile(pki.server_key, live_key)
    # A failed reload may well be logged as an error.
    b = start_broker(["--listeners", "SSL://127.0.0.1:0", *tls_args(live_cert, live_key)],
                     check_errors=False)
    ctx = client_context(pki)
    der_a, der_b = certs.der_of(pki.server_cert), certs.der_of(cert_b)
    assert der_a != der_b
    assert peer_certificate(b.bootstrap, ctx) == der_a

    replace_file(live_cert, Path(cert_b).read_bytes())
    replace_file(live_key, Path(key_b).read_bytes())
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: peer_certificate(b.bootstrap, ctx) == der_b, timeout=10,
               what="new connections to see certificate B after SIGHUP")

    # A broken certificate file: the reload fails (and says so), B stays.
    log_before = len(b.log_text())
    replace_file(live_cert, b"-----BEGIN CERTIFICATE-----\nnot a certificate\n"
                            b"-----END CERTIFICATE-----\n")
    b.proc.send_signal(signal.SIGHUP)

    def reload_failure_logged():
        return [line for line in b.log_text()[log_before:].splitlines()
                if re.search(r"\b(WARN|ERROR)\b", line)]

    wait_until(reload_failure_logged, timeout=10,
               what="a WARN or ERROR line about the failed reload")
    assert b.proc.poll() is None, "the broker exited on a bad certificate file"
    for _ in range(3):
        assert peer_certificate(b.bootstrap, ctx) == der_b

    # Reloading still works after a failed attempt.
    replace_file(live_cert, Path(pki.server_cert).read_bytes())
    replace_file(live_key, Path(pki.server_key).read_bytes())
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: peer_certificate(b.bootstrap, ctx) == der_a, timeout=10,
               what="certificate A again after the next SIGHUP")


# --------------------------------------------------------------------------
# several listeners
# --------------------------------------------------------------------------


def test_each_listener_advertises_its_own_address(start_broker, pki):
    b = start_broker(["--listeners", "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
                      *tls_args(pki.server_cert, pki.server_key),
                      "--bootstrap-user", f"{ADMIN}:{ADMIN_PASSWORD}",
                      "--auto-create-topics", "false"])
    assert sorted(b.listeners) == ["PLAINTEXT", "SASL_SSL"], b.listeners
    plaintext, sasl_ssl = b.listeners["PLAINTEXT"], b.listeners["SASL_SSL"]
    assert plaintext == b.bootstrap, "kafka= names the first listener"
    assert sasl_ssl != plaintext

    def addresses(md):
        return sorted(f"{n.host}:{n.port}" for n in md.brokers.values())

    secure = AdminClient(sasl_conf(sasl_ssl, pki))
    assert addresses(secure.list_topics(timeout=TIMEOUT)) == [sasl_ssl]
    anonymous = AdminClient({"bootstrap.servers": plaintext, "logger": RDKAFKA_LOG})
    assert addresses(anonymous.list_topics(timeout=TIMEOUT)) == [plaintext]

    kp_admin = KafkaAdminClient(**kp_sasl(sasl_ssl, pki))
    try:
        brokers = kp_admin.describe_cluster()["brokers"]
    finally:
        kp_admin.close()
    assert [f"{x['host']}:{x['port']}" for x in brokers] == [sasl_ssl]

    # With an authenticated listener, ANONYMOUS (PLAINTEXT) gets nothing by
    # default: a topic the admin made is invisible to it.
    topic = unique("mixed")
    create_topic(secure, topic)
    assert topic not in anonymous.list_topics(timeout=TIMEOUT).topics


# --------------------------------------------------------------------------
# the cluster's gRPC port
# --------------------------------------------------------------------------


def run_cli(cluster, env, *args):
    node = cluster.nodes[1]
    return subprocess.run([node.binary, *args, "--via", node.raft_addr, "--timeout-ms", "3000"],
                          capture_output=True, text=True, timeout=30, env=env)


def test_the_cluster_port_refuses_a_wrong_or_missing_secret(cluster):
    """The `cluster` fixture's nodes share a secret. The CLI without it, or
    with another, is refused (read-only and mutating calls alike), the node
    logs each refusal, and the cluster keeps serving."""
    right = dict(os.environ, CHRONIK_CLUSTER_SECRET=cluster.secret)
    wrong = dict(os.environ, CHRONIK_CLUSTER_SECRET="not-the-cluster-secret")
    missing = {k: v for k, v in os.environ.items() if k != "CHRONIK_CLUSTER_SECRET"}
    for env, why in ((wrong, "a wrong cluster secret"), (missing, "no cluster secret")):
        for args in (("cluster", "status"),
                     ("cluster", "add-node", "--id", "9", "--addr", "127.0.0.1:1", "--raft-port", "1"),
                     ("user", "create", "--name", "mallory", "--password", "mallory-password")):
            out = run_cli(cluster, env, *args)
            assert out.returncode != 0, (args, out.stdout)
            assert why in out.stderr, (args, out.stderr)
    log = cluster.nodes[1].log_path.read_text()
    assert "refused a gRPC request with a wrong cluster secret" in log
    assert "refused a gRPC request with no cluster secret" in log

    listed = run_cli(cluster, right, "user", "list")
    assert listed.returncode == 0, listed.stderr
    assert "mallory" not in listed.stdout, "a refused call changed the users"
    health = run_cli(cluster, right, "cluster", "health")
    assert health.returncode == 0, health.stdout + health.stderr
