#!/usr/bin/env bash
# Moving partitions under load, on a local cluster (release build):
#   1. three nodes; topic "load" (6 partitions, RF 3) filled with PRELOAD_MB;
#      a fourth node joins and is added;
#   2. latency: a confluent-kafka produce load (1 KiB, acks=all, linger 5 ms)
#      at a fixed RATE for 30 s, then the same load while `cluster rebalance`
#      gives node 4 its share (the window is the rebalance);
#   3. a 1 GiB partition (topic "big", RF 3) moved off one of its nodes to
#      the node without a replica, through AlterPartitionReassignments, timed;
#   4. throughput: the same producer at full speed for 20 s, then while
#      `cluster remove-node` moves every replica off node 4.
# Prints both loads, their ratios, and the move time.
# Usage: bench/rebalance.sh [PRELOAD_MB] [BIG_MB] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
preload_mb=${1:-300}
big_mb=${2:-1024}
rate=${3:-8000}
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

# load_during OUT COMMAND...: the load (its flags in $load_flags) while
# COMMAND runs; the load's JSON goes to OUT.
load_during() {
  local out=$1 stop="$work/stop.$RANDOM"
  shift
  # shellcheck disable=SC2086
  $py bench/produce_load.py "$bootstrap" load --until "$stop" $load_flags >"$out" &
  local load_pid=$!
  sleep 4
  "$@"
  touch "$stop"
  wait "$load_pid"
}

echo "latency at $rate records/s: baseline, 30 s" >&2
latency_base=$($py bench/produce_load.py "$bootstrap" load --seconds 30 --rate "$rate")
echo "latency at $rate records/s: during the rebalance" >&2
load_flags="--rate $rate"
started=$(date +%s.%N)
load_during "$work/latency.json" target/release/chronik-server cluster rebalance --via "$via" \
  --max-concurrent-moves 2 --json >"$work/rebalance.json"
ended=$(date +%s.%N)
latency_during=$(cat "$work/latency.json")

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
spare = next(n for n in (1, 2, 3, 4) if n not in replicas)
target = replicas[:-1] + [spare]
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

echo "throughput at full speed: baseline, 20 s" >&2
throughput_base=$($py bench/produce_load.py "$bootstrap" load --seconds 20)
echo "throughput at full speed: during remove-node 4" >&2
load_flags=""
load_during "$work/throughput.json" target/release/chronik-server cluster remove-node --id 4 --via "$via" \
  --max-concurrent-moves 2 --json >"$work/remove.json"
throughput_during=$(cat "$work/throughput.json")

$py - "$latency_base" "$latency_during" "$throughput_base" "$throughput_during" "$started" "$ended" \
  "$work/rebalance.json" "$work/remove.json" "$move" "$rate" <<'EOF'
import json, sys
lat_base, lat_during, thr_base, thr_during = (json.loads(a) for a in sys.argv[1:5])
seconds = float(sys.argv[6]) - float(sys.argv[5])
rebalance, remove = json.load(open(sys.argv[7])), json.load(open(sys.argv[8]))
move, rate = json.loads(sys.argv[9]), sys.argv[10]
print(f"rebalance onto node 4: {rebalance['moved']} partitions moved in {seconds:.1f} s; "
      f"replicas after {rebalance['plan']['replicas_after']}")
print(f"remove-node 4: {remove['moved']} partitions moved in {remove['seconds']:.1f} s")
head = f"{'':34} {'rec/s':>8} {'MB/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7}"
def row(name, r):
    return (f"{name:34} {r['records_per_s']:>8} {r['mb_per_s']:>6} {r['p50_ms']:>7} {r['p99_ms']:>7} "
            f"{r['p999_ms']:>8} {r['max_ms']:>7}")
def ratio(d, b):
    return (f"{'ratio (during/without)':34} {d['records_per_s'] / b['records_per_s']:>8.2f} {'':>6} "
            f"{d['p50_ms'] / b['p50_ms']:>7.2f} {d['p99_ms'] / b['p99_ms']:>7.2f} "
            f"{d['p999_ms'] / b['p999_ms']:>8.2f} {d['max_ms'] / b['max_ms']:>7.2f}")
print(f"latency, {rate} records/s of 1 KiB (confluent-kafka, acks=all):")
print(head)
print(row("without a rebalance", lat_base))
print(row("during the rebalance", lat_during))
print(ratio(lat_during, lat_base))
print("throughput, full speed (latency here is mostly time queued in the client):")
print(head)
print(row("without moves", thr_base))
print(row("during remove-node", thr_during))
print(ratio(thr_during, thr_base))
print(f"moving a {move['mb']} MiB partition ({move['from']} -> {move['to']}): {move['seconds']} s, {move['mb_per_s']} MB/s")
EOF
