"""kafkajs, a pure-JavaScript implementation of the Kafka protocol (unlike
librdkafka and the Python clients), against Chronik. The client side is
tests/js/kafkajs_check.js; scripts/test.sh installs kafkajs into target/js."""

import json
import os
import subprocess

import pytest

from conftest import REPO


SCRIPT = REPO / "tests" / "js" / "kafkajs_check.js"
MODULES = REPO / "target" / "js" / "node_modules"
TIMEOUT = 180


def node(*args):
    if not (MODULES / "kafkajs").is_dir():
        pytest.fail(f"kafkajs is not installed in {MODULES}; scripts/test.sh installs it")
    env = dict(os.environ, NODE_PATH=str(MODULES))
    return subprocess.Popen(["node", str(SCRIPT), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def outcome(proc, timeout=TIMEOUT):
    out, _ = proc.communicate(timeout=timeout)
    result = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0 and result["ok"], out
    return result


def test_kafkajs_produce_group_commit_resume_and_admin(broker):
    result = outcome(node("basic", broker.bootstrap, "kafkajs-basic"))
    assert result == {"ok": True, "committed": 60, "read": 60, "resumed": 20}



def test_kafkajs_through_a_leader_failover(cluster):
    topic = "kafkajs-failover"
    proc = node("failover", cluster.bootstrap(), topic)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "PHASE1_DONE", line
        info = next(filter(None, (cluster.partition_info(topic, 0, via) for via in cluster.nodes)), None)
        assert info and info.get("leader"), info
        cluster.nodes[info["leader"]].kill()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert outcome(proc) == {"ok": True, "read": 200}
    finally:
        if proc.poll() is None:
            proc.kill()
