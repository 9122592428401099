#!/usr/bin/env bash
# Moving partitions under load, on a local cluster (release build):
#   1. three nodes; topic "load" (6 partitions, RF 3) filled with PRELOAD_MB;
#      a fourth node joins and is added;
#   2. a confluent-kafka produce load (1 KiB, acks=all, linger 5 ms, as fast
#      as acknowledged) for 30 s: the baseline;
#   3. the same load while `cluster rebalance` gives node 4 its share; the
#      window is the rebalance;
#   4. a 1 GiB partition (topic "big", RF 3, nodes 1-3) moved off one node to
#      node 4 through AlterPartitionReassignments, timed.
# Prints both loads, their ratios, and the move time.
# Usage: bench/rebalance.sh [PRELOAD_MB] [BIG_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
preload_mb=${1:-300}
big_mb=${2:-1024}
cargo build --release -j 2 --workspace --bins >&2
py=target/venv/bin/python
[ -x "$py" ] || { echo "needs the test virtualenv (scripts/test.sh makes target/venv)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT

. bench/lib.sh
start_cluster "$work" --offsets-topic-partitions 3
bootstrap="127.0.0.1:${cluster_kafka[0]},127.0.0.1:${cluster_kafka[1]},127.0.0.1:${cluster_kafka[2]}"
via="127.0.0.1:${cluster_raft[0]}"
bench() { target/release/chronik-bench --bootstrap "$bootstrap" "$@"; }

echo "filling topic load with $preload_mb MB" >&2
bench --topic load produce --records $((preload_mb * 1024)) --partitions 6 --replication 3 --create-topic \
  --producers 2 >/dev/null

kafka4=$(free_port) raft4=$(free_port)
mkdir -p "$work/n4"
target/release/chronik-server --node-id 4 --data-dir "$work/n4/data" --kafka-port "$kafka4" \
  --offsets-topic-partitions 3 raft-cluster --raft-addr "127.0.0.1:$raft4" --join "$via" \
  >"$work/n4/out" 2>"$work/n4/log" &
pids+=("$!")
target/release/chronik-server cluster add-node --id 4 --addr "127.0.0.1:$kafka4" --raft-port "$raft4" --via "$via" >&2

echo "baseline load, 30 s" >&2
baseline=$($py bench/produce_load.py "$bootstrap" load --seconds 30)

echo "load during the rebalance" >&2
stop="$work/stop"
$py bench/produce_load.py "$bootstrap" load --until "$stop" >"$work/during.json" &
load_pid=$!
sleep 4
started=$(date +%s.%N)
target/release/chronik-server cluster rebalance --via "$via" --max-concurrent-moves 2 --json >"$work/rebalance.json"
ended=$(date +%s.%N)
touch "$stop"
wait "$load_pid"
during=$(cat "$work/during.json")

echo "filling topic big with $big_mb MB" >&2
bench --topic big produce --records $((big_mb * 1024)) --partitions 1 --replication 3 --create-topic \
  --producers 2 >/dev/null
move=$($py - "$bootstrap" "$big_mb" <<'EOF'
import json, sys, time
from kafka import KafkaAdminClient, TopicPartition
from confluent_kafka.admin import AdminClient
bootstrap, size = sys.argv[1], int(sys.argv[2])
replicas = list(AdminClient({"bootstrap.servers": bootstrap}).list_topics("big", timeout=10)
                .topics["big"].partitions[0].replicas)
target = [n if n != replicas[-1] else 4 for n in replicas]
admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60000)
started = time.monotonic()
errors = admin.alter_partition_reassignments({TopicPartition("big", 0): target})
assert all(e is None for e in errors.values()), errors
while TopicPartition("big", 0) in admin.list_partition_reassignments():
    time.sleep(0.2)
seconds = time.monotonic() - started
print(json.dumps({"mb": size, "from": replicas, "to": target, "seconds": round(seconds, 1),
                  "mb_per_s": round(size * 1.048576 / seconds, 1)}))
EOF
)

$py - "$baseline" "$during" "$started" "$ended" "$work/rebalance.json" "$move" <<'EOF'
import json, sys
base, during = json.loads(sys.argv[1]), json.loads(sys.argv[2])
seconds = float(sys.argv[4]) - float(sys.argv[3])
plan = json.load(open(sys.argv[5]))
move = json.loads(sys.argv[6])
print(f"rebalance: {plan['moved']} partitions moved in {seconds:.1f} s; replicas after {plan['plan']['replicas_after']}")
print(f"{'':24} {'rec/s':>8} {'MB/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7}")
for name, r in (("without a rebalance", base), ("during the rebalance", during)):
    print(f"{name:24} {r['records_per_s']:>8} {r['mb_per_s']:>6} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['p999_ms']:>8} {r['max_ms']:>7}")
print(f"{'ratio (during/without)':24} {during['records_per_s'] / base['records_per_s']:>8.2f} {'':>6} "
      f"{during['p50_ms'] / base['p50_ms']:>7.2f} {during['p99_ms'] / base['p99_ms']:>7.2f} "
      f"{during['p999_ms'] / base['p999_ms']:>8.2f} {during['max_ms'] / base['max_ms']:>7.2f}")
print(f"moving a {move['mb']} MiB partition ({move['from']} -> {move['to']}): {move['seconds']} s, {move['mb_per_s']} MB/s")
EOF
