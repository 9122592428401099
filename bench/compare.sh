#!/usr/bin/env bash
# Side-by-side: Chronik single node, Chronik as a 3-node cluster with
# replication factor 3, and the peer broker tansu (its durable sqlite engine
# and its in-memory engine), the same load on each, plus the disk's fsync'd
# write bandwidth (with an fsync per MiB, and dd's conv=fdatasync), all
# measured in one run. Each broker also takes the load on 12 partitions
# from 4 producers; chronik (single node and cluster) and tansu's memory
# engine produce three times each and the table takes the medians, since one
# produce run lasts about a second. Prints one table with ratios, then the end-to-end latency tails of
# a single node measured with confluent-kafka next to the disk's fdatasync
# p99, the idle CPU and memory of a 3-node cluster holding 10,000
# partitions, the produce pause over 10 leader kills, and a single node's
# memory over 10 GiB produced and consumed with its restart times.
# Usage: bench/compare.sh [records]
#
# tansu 0.6.0 is installed from crates.io into a cache directory the first
# time (about 20 minutes on 2 cores); set TANSU to use another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}
cache=${CHRONIK_BENCH_CACHE:-$HOME/.cache/chronik-bench}
tansu=${TANSU:-$cache/tansu/bin/tansu}
if [ ! -x "$tansu" ]; then
  echo "installing tansu 0.6.0 into $cache/tansu (first run only)" >&2
  cargo install tansu@0.6.0 --locked --features dynostore,libsql --root "$cache/tansu" -j 2 >&2
fi
cargo build --release -j 2 --workspace --bins >&2
bench=target/release/chronik-bench
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT

. bench/lib.sh

start_chronik() { # name -> sets addr and pid
  local dir=$work/$1 port
  mkdir -p "$dir"
  port=$(free_port)
  target/release/chronik-server --data-dir "$dir/data" --kafka-port "$port" >"$dir/out" 2>"$dir/log" &
  pid=$!; pids+=("$pid"); addr=127.0.0.1:$port
  wait_port "$port"
}

start_chronik_cluster() { # name -> sets addr (all three nodes) and pid (node 1)
  start_cluster "$work/$1"
  pid=${cluster_pids[0]}
  addr=127.0.0.1:${cluster_kafka[0]},127.0.0.1:${cluster_kafka[1]},127.0.0.1:${cluster_kafka[2]}
}

start_peer() { # name storage-url (relative to its own directory) -> sets addr and pid
  start_tansu "$work/$1" "$2"
  pid=$tansu_pid; pids+=("$pid"); addr=$tansu_addr
}

# Latency is measured in a steady state, not while a broker may still be
# writing out the produce phase (flushing files, a follower catching up):
# without this pause the cluster's first latency run measured p99 of 23-58 ms
# in runs where the next one measured 7 ms.
settle() { sync; sleep 5; }

produce() { # topic replication [flags...] -> one produce report (JSON)
  local topic=$1 replication=$2
  shift 2
  $bench --bootstrap "$addr" --topic "$topic" --broker-pid "$pid" --json produce \
    --records "$records" --record-size 1024 --acks all --linger-ms 5 --create-topic --replication "$replication" "$@"
}

run_load() { # name [replication] [produce runs] -> writes $work/name.json
  local name=$1 replication=${2:-1} runs=${3:-1} topic=bench e2e_topic=latency i
  {
    echo "{\"name\": \"$name\","
    # The first run is the one consumed below; with more runs, each writes
    # a topic of its own and the table takes the median.
    echo "\"produce_runs\": [$(produce $topic "$replication")"
    for i in $(seq 2 "$runs"); do echo ", $(produce $topic-$i "$replication")"; done
    echo "],"
    # 12 partitions, 4 producers: records spread by key over the partitions.
    echo "\"produce_12p\": $(produce $topic-12p "$replication" --partitions 12 --producers 4),"
    echo "\"consume_500\": $($bench --bootstrap "$addr" --topic $topic --json consume --records "$records" --fetch-wait-max-ms 500),"
    echo "\"consume_10\": $($bench --bootstrap "$addr" --topic $topic --json consume --records "$records" --fetch-wait-max-ms 10),"
    $bench --bootstrap "$addr" --topic $e2e_topic produce --records 1 --create-topic --replication "$replication" >/dev/null
    settle
    echo "\"e2e_500\": $($bench --bootstrap "$addr" --topic $e2e_topic --json e2e --rate 5000 --seconds 10 --fetch-wait-max-ms 500),"
    echo "\"e2e_10\": $($bench --bootstrap "$addr" --topic $e2e_topic --json e2e --rate 5000 --seconds 10 --fetch-wait-max-ms 10)}"
  } >"$work/$name.json"
}

python3 bench/fsync_probe.py "$work" 3 >"$work/disk.json"
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
start_chronik chronik; run_load chronik 1 3; stop
start_chronik_cluster chronik-3node; run_load chronik-3node 3 3; stop_cluster
start_peer tansu-sqlite "sqlite://tansu.db"; run_load tansu-sqlite; stop
start_peer tansu-memory "memory://tansu/"; run_load tansu-memory 1 3; stop

python3 bench/compare_table.py "$work/disk.json" "$work/chronik.json" "$work/chronik-3node.json" \
  "$work/tansu-sqlite.json" "$work/tansu-memory.json"
echo
python=${PYTHON:-target/venv/bin/python}
"$python" bench/tail_latency.py target/release/chronik-server --runs 5 --seconds 20
echo
bench/idle-cpu.sh 10000
echo
"$python" bench/failover.py target/release/chronik-server --kills 10
echo
"$python" bench/big_data.py target/release/chronik-server "$bench" --gib 10
