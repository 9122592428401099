"""Shared fixtures for Chronik's Python client integration tests.

The `broker` fixture starts a fresh chronik-server in a temporary directory
for each test.  The binary comes from $CHRONIK_BIN, defaulting to
<repo>/target/debug/chronik-server.
"""

import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHRONIK_BIN = os.environ.get(
    "CHRONIK_BIN", str(REPO / "target" / "debug" / "chronik-server")
)

# With more than one --listeners entry the line ends in
# ` listeners=NAME=HOST:PORT,NAME=HOST:PORT`; kafka= is the first listener.
READY_RE = re.compile(
    r"^chronik-server ready: kafka=(\S+):(\d+) node=(\d+)(?: listeners=(\S+))?(?: http=(\S+))?\s*$")
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class Broker:
    """A running chronik-server process."""

    def __init__(self, data_dir, log_path, extra_args=()):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.extra_args = list(extra_args)
        self.proc = None
        self.host = None
        self.port = None
        # {listener name: "host:port"}: every listener from the ready line,
        # or {first --listeners name: bootstrap} with a single listener, or
        # {} without --listeners.
        self.listeners = {}
        self.starts = 0

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def start(self, port=0):
        if not os.path.exists(CHRONIK_BIN):
            pytest.fail(
                f"chronik-server binary not found at {CHRONIK_BIN}; "
                "build it with `cargo build --workspace` or set CHRONIK_BIN"
            )
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts} (port {port}) =====\n".encode())
        log.flush()
        env = dict(os.environ)
        env.setdefault("NO_COLOR", "1")
        # Brokers side by side: each its own free port for the HTTP endpoint.
        env.setdefault("CHRONIK_HTTP_ADDR", "127.0.0.1:0")
        args = [
            CHRONIK_BIN,
            "--data-dir",
            str(self.data_dir),
            "--kafka-port",
            str(port),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        line = self._read_ready_line(READY_TIMEOUT_S)
        m = READY_RE.match(line or "")
        if not m:
            self._kill()
            raise RuntimeError(
                f"chronik-server did not become ready (stdout line {line!r});\n"
                + self.log_tail()
            )
        self.host, self.port = m.group(1), int(m.group(2))
        self.http = m.group(5)
        if m.group(4):
            self.listeners = parse_listeners(m.group(4))
        else:
            name = self._first_listener_name()
            self.listeners = {name: self.bootstrap} if name else {}
        return self

    def _first_listener_name(self):
        """The name of the first --listeners entry in the arguments, if any."""
        value = None
        for i, arg in enumerate(self.extra_args):
            if arg == "--listeners" and i + 1 < len(self.extra_args):
                value = self.extra_args[i + 1]
            elif arg.startswith("--listeners="):
                value = arg.split("=", 1)[1]
        if not value or "://" not in value:
            return None
        return value.split(",")[0].split("://", 1)[0].strip()

    def _read_ready_line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + timeout
        try:
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if not sel.select(remaining):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:  # EOF: process exited
                    break
                buf += chunk
        finally:
            sel.close()
        return buf.split(b"\n", 1)[0].decode(errors="replace")

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Graceful stop: SIGTERM, then SIGKILL after `timeout` seconds.

        Returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
                raise AssertionError(
                    f"chronik-server did not exit within {timeout}s of SIGTERM"
                )
        if proc.stdout:
            proc.stdout.close()
        return proc.returncode

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def kill(self):
        """Crash the broker: SIGKILL, no chance to flush or checkpoint."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
            if proc.stdout:
                proc.stdout.close()

    def restart(self, graceful=True):
        """Stop (gracefully, or by SIGKILL with graceful=False) and start again
        on the same data dir (and, if possible, the same port so existing
        bootstrap strings stay valid)."""
        old_port = self.port
        if graceful:
            rc = self.stop()
            assert rc == 0, f"chronik-server exited with {rc} after SIGTERM\n{self.log_tail()}"
        else:
            self.kill()
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.start(port=old_port)
            except RuntimeError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        # Fall back to any free port.
        return self.start(port=0)

    def log_tail(self, lines=80):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"<no broker log: {e}>"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"----- broker log tail ({self.log_path}) -----\n{tail}"

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def parse_listeners(text):
    """`NAME=HOST:PORT,NAME=HOST:PORT` -> {NAME: "HOST:PORT"}."""
    out = {}
    for item in text.split(","):
        name, sep, addr = item.partition("=")
        if not sep or not name or not addr:
            raise RuntimeError(f"cannot parse listeners={text!r} from the ready line")
        out[name] = addr
    return out


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def run_failed(request):
    """Whether the test owning `request` failed in setup or call so far."""
    return any(
        getattr(getattr(request.node, "rep_" + w, None), "failed", False)
        for w in ("setup", "call")
    )


def finish_broker(b, failed, check_errors=True):
    """Stop `b` (SIGTERM) and check it exited cleanly, printing its log tail
    if the test failed or the stop did. With `check_errors`, the broker must
    not have logged an ERROR line; it must never have panicked."""
    rc = None
    stop_error = None
    try:
        rc = b.stop()
    except AssertionError as e:
        stop_error = e
    if failed or stop_error:
        print(b.log_tail())
    if stop_error:
        raise stop_error
    assert rc == 0, f"chronik-server exited with {rc} after SIGTERM\n{b.log_tail()}"
    # The broker must not log errors (e.g. undecodable requests) or panic
    # while serving well-behaved clients.
    bad = [line for line in b.log_text().splitlines()
           if (check_errors and " ERROR " in line) or "panicked" in line]
    assert not bad, "broker logged errors:\n" + "\n".join(bad[:20])


def _start_broker(request, tmp_path, extra_args):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    b = Broker(data_dir, tmp_path / "broker.log", extra_args)
    b.start()
    try:
        yield b
    finally:
        finish_broker(b, run_failed(request))


# Broker arguments for modules whose groups should rebalance at once, with
# one __consumer_offsets partition.
QUICK_GROUP_ARGS = [
    "--retention-check-interval-ms", "200",
    "--group-initial-rebalance-delay-ms", "0",
    "--offsets-topic-partitions", "1",
]


@pytest.fixture
def broker_args():
    """Extra command-line arguments for the broker; override per module."""
    return ["--retention-check-interval-ms", "200"]


@pytest.fixture
def broker(request, tmp_path, broker_args):
    yield from _start_broker(request, tmp_path, broker_args)


@pytest.fixture
def cluster(tmp_path):
    """Three chronik-server nodes from the fault suite's harness
    (tests/faults/fault_suite.py), stopped after the test. Cluster nodes need
    peer security: every node (and every `cluster ...` CLI call the harness
    makes) gets the same random CHRONIK_CLUSTER_SECRET, new for each test."""
    sys.path.insert(0, str(REPO / "tests" / "faults"))
    import fault_suite

    three = fault_suite.Cluster(CHRONIK_BIN, tmp_path, secret=secrets.token_hex(16))
    try:
        assert three.start(), "the cluster did not start"
        yield three
    finally:
        three.close()


@pytest.fixture
def topic_name():
    """A unique topic name per call."""
    def make(prefix="t"):
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


def wait_until(pred, timeout=10.0, interval=0.1, what="condition"):
    """Poll `pred` until it returns a truthy value or `timeout` elapses."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")
