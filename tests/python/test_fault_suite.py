"""The seeded fault-injection suite (tests/faults/fault_suite.py), short form.

Two fixed seeds of about 25 s of faults each on a real three-node cluster,
plus checks that the history checker itself reports each kind of bad
history, so a run cannot pass because the checker looks at nothing.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import CHRONIK_BIN, REPO

sys.path.insert(0, str(REPO / "tests" / "faults"))
import fault_suite  # noqa: E402

# Between them these two seeds draw every kind of fault in their first few.
SEEDS = (51, 54)
FAULT_SECONDS = 25


# --------------------------------------------------------------------------
# the checker, on hand-made histories
# --------------------------------------------------------------------------


def ev(type_, t=0.0, **fields):
    return {"t": t, "type": type_, **fields}


def sends():
    return [ev("send", producer="idempotent", value=f"p1-{i}", partition=0) for i in range(3)] + \
        [ev("send", producer="plain", value=f"p2-{i}", partition=0) for i in range(2)]


def final(reader, records, high, t=10.0):
    """A complete final read of partition 0 holding `records` (offset order)."""
    out = [ev("read", t, reader=reader, session=0, partition=0, offset=o, value=v)
           for o, v in enumerate(records)]
    return out + [ev("final_end", t, reader=reader, partition=0, low=0, high=high, complete=True)]


def kinds(result):
    return {v["kind"] for v in result["violations"]}


def test_free_ports_are_never_handed_out_twice():
    """Found in CI: two calls returned the same port (a node's Kafka port and
    another's Raft port), since the port stays free once probed, and the
    second node could not start. 500 draws from the 12,000 ports collide
    almost surely when nothing remembers what was handed out."""
    ports = [fault_suite.free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_checker_passes_a_clean_history():
    log = ["p1-0", "p2-0", "p1-1", "p2-1", "p2-1", "p1-2"]  # p2-1 twice: a plain retry
    events = sends() + [
        ev("ack", producer="idempotent", value="p1-0", partition=0, offset=0),
        ev("ack", producer="plain", value="p2-0", partition=0, offset=1),
        ev("ack", producer="idempotent", value="p1-1", partition=0, offset=2),
        ev("ack", producer="plain", value="p2-1", partition=0, offset=4),
        ev("fail", producer="idempotent", value="p1-2", partition=0, error="_MSG_TIMED_OUT"),
        ev("assign", reader="live", session=1, partitions=[0]),
        ev("read", reader="live", session=1, partition=0, offset=0, value="p1-0"),
        ev("read", reader="live", session=1, partition=0, offset=1, value="p2-0"),
        # A new assignment may restart from the committed position.
        ev("assign", reader="live", session=2, partitions=[0]),
        ev("read", reader="live", session=2, partition=0, offset=1, value="p2-0"),
        ev("read", reader="live", session=2, partition=0, offset=2, value="p1-1"),
        ev("fault", kind="kill", node=2),
    ] + final("final-n1", log, 6) + final("final-n2", log, 6, t=11.0)
    result = fault_suite.check_history(events)
    assert result["violations"] == []
    # A timed-out delivery is allowed (its outcome is unknown), and noted.
    assert [a["kind"] for a in result["anomalies"]] == ["deliveries-failed"]
    assert result["stats"]["acked"] == 4
    assert result["stats"]["plain_duplicates"] == 1
    assert result["stats"]["faults_total"] == 1


def test_checker_reports_each_kind_of_bad_history():
    # Final log of partition 0; p1-2 (idempotent) is stored twice.
    log = ["p1-0", "p2-0", "p1-2", "p1-2", "p2-1"]
    events = sends() + [
        ev("ack", producer="idempotent", value="p1-0", partition=0, offset=0),
        ev("ack", producer="plain", value="p2-0", partition=0, offset=1),
        ev("ack", producer="idempotent", value="p1-1", partition=0, offset=7),  # lost
        ev("ack", producer="plain", value="p2-1", partition=0, offset=2),  # p1-2 there
        ev("assign", reader="live", session=1, partitions=[0]),
        ev("read", reader="live", session=1, partition=0, offset=0, value="p1-0"),
        ev("read", reader="live", session=1, partition=0, offset=1, value="p9-9"),  # 2 values
        ev("read", reader="live", session=1, partition=0, offset=3, value="p1-2"),  # skip
        ev("read", reader="live", session=1, partition=0, offset=2, value="p1-2"),  # back
        ev("crash", node=3, exit_code=70),
    ] + final("final-n1", log, 5)
    result = fault_suite.check_history(events)
    assert kinds(result) >= {
        "lost-ack",
        "wrong-value-at-acked-offset",
        "idempotent-duplicate",
        "offset-two-values",
        "phantom-value",
        "live-skip",
        "live-backwards",
        "crash",
    }, result["violations"]
    lost = [v for v in result["violations"] if v["kind"] == "lost-ack"]
    assert [(v["value"], v["offset"]) for v in lost] == [("p1-1", 7)]


def test_checker_reports_a_shrinking_or_holed_log_and_consumed_records_lost():
    events = sends() + [
        ev("assign", reader="live", session=1, partitions=[0]),
        ev("read", reader="live", session=1, partition=0, offset=0, value="p1-0"),
        ev("read", reader="live", session=1, partition=0, offset=1, value="p2-0"),
        ev("read", reader="live", session=1, partition=0, offset=2, value="p1-1"),
    ]
    events += final("final-n1", ["p1-0", "p2-0", "p1-1"], 3)
    events += final("final-n2", ["p1-0", "p2-0"], 2, t=11.0)
    # A third read that says offset 1 exists but never returns it.
    events += [ev("read", 12.0, reader="final-n3", session=0, partition=0, offset=0, value="p1-0"),
               ev("final_end", 12.0, reader="final-n3", partition=0, low=0, high=2, complete=True)]
    result = fault_suite.check_history(events)
    assert {"log-shrank", "final-gap"} <= kinds(result), result["violations"]
    # Offset 2 is in the first final read, so the consumed record is not
    # lost; drop that read and it is.
    without_first = [e for e in events if e.get("reader") != "final-n1"]
    assert "consumed-record-lost" in kinds(fault_suite.check_history(without_first))


def test_checker_reports_diverging_replicas():
    states = [
        {"node": 1, "high_watermark": 5, "log_end_offset": 5, "checksum": "aa"},
        {"node": 2, "high_watermark": 5, "log_end_offset": 5, "checksum": "bb"},
        {"node": 3, "high_watermark": 4, "log_end_offset": 4, "checksum": "cc"},
    ]
    result = fault_suite.check_history([ev("replicas", partition=0, converged=False,
                                           states=states)])
    assert kinds(result) == {"replica-divergence"}
    assert [a["kind"] for a in result["anomalies"]] == ["replicas-not-converged"]


# --------------------------------------------------------------------------
# the suite, on real processes
# --------------------------------------------------------------------------


def test_two_seeds_of_faults_keep_every_acknowledged_write(tmp_path):
    if not os.path.exists(CHRONIK_BIN):
        pytest.fail(f"chronik-server binary not found at {CHRONIK_BIN}; "
                    "build it with `cargo build --workspace` or set CHRONIK_BIN")
    summary_path = tmp_path / "summary.json"
    args = [sys.executable, str(REPO / "tests" / "faults" / "fault_suite.py"),
            "--seeds", ",".join(map(str, SEEDS)), "--seconds", str(FAULT_SECONDS),
            "--bin", CHRONIK_BIN, "--out", str(tmp_path / "out"),
            "--json-summary", str(summary_path)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=420)
    print(proc.stdout)
    print(proc.stderr[-5000:])
    assert summary_path.exists(), f"the suite wrote no summary (exit {proc.returncode})"
    summary = json.loads(summary_path.read_text())
    assert summary["violations"] == 0, proc.stdout
    assert summary["error_seeds"] == [], proc.stdout
    assert proc.returncode == 0, proc.stdout
    # Not vacuous: every seed acknowledged writes and injected faults, of
    # several kinds, and leadership moved.
    for seed in summary["per_seed"]:
        assert seed["acked"] >= 500, seed
        assert sum(seed["faults"].values()) >= 2, seed
    assert len(summary["faults"]) >= 4, summary["faults"]
    assert summary["leader_changes"] >= 1, proc.stdout
