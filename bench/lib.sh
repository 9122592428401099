# Shared by the bench scripts (sourced, not run): free ports, and a local
# 3-node cluster. Scripts keep every process they start in the array `pids`.

# Brokers side by side: each its own free port for the HTTP endpoint.
export CHRONIK_HTTP_ADDR="${CHRONIK_HTTP_ADDR:-127.0.0.1:0}"

# stop_pids: SIGTERM every process in the array `pids`, and SIGKILL those
# still running 10 s later.
stop_pids() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

# create_topics BOOTSTRAP REPLICAS TOPIC...: one-partition topics, made with
# confluent-kafka's admin client ($python) so that no run pays for a creation.
create_topics() {
  timeout 90 "$python" - "$@" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
topics = [NewTopic(t, 1, int(sys.argv[2])) for t in sys.argv[3:]]
for future in admin.create_topics(topics, request_timeout=30).values():
    future.result(timeout=60)
PY
}

# delete_topics BOOTSTRAP TOPIC...: frees a run's disk space.
delete_topics() {
  timeout 90 "$python" - "$@" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for future in admin.delete_topics(sys.argv[2:], operation_timeout=30).values():
    future.result(timeout=60)
PY
}

# start_single BINARY DIR: starts a single-node broker with its data under
# DIR on a free Kafka port and waits until it serves. Sets single_pid and
# single_addr.
start_single() {
  local binary=$1 dir=$2
  "$binary" --data-dir "$dir/data" --kafka-port 0 >"$dir/ready" 2>"$dir/broker.log" &
  single_pid=$!
  for _ in $(seq 1 100); do grep -q ready "$dir/ready" && break; sleep 0.1; done
  single_addr=$(sed -n 's/.*kafka=\([^ ]*\).*/\1/p' "$dir/ready")
}

# ab_tools: the A/B scripts' clients, $python (the virtualenv with
# confluent-kafka) and $bench (chronik-bench, built if missing).
ab_tools() {
  python=${PYTHON:-target/venv/bin/python}
  bench=target/release/chronik-bench
  [ -x "$bench" ] || cargo build --release -j 2 -p chronik-bench >&2
}

# alternate OLD NEW PAIRS: the A/B scripts' order, `run OLD` then `run NEW`,
# PAIRS times, with a pause for the disk after each run.
alternate() {
  local _pair binary
  for _pair in $(seq 1 "$3"); do
    for binary in "$1" "$2"; do
      run "$binary"
      sync
      sleep 3
    done
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: waits up to 20 s until something listens on PORT.
wait_port() {
  for _ in $(seq 1 200); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# start_tansu DIR STORAGE_URL: starts the peer broker tansu ($tansu) on a
# free port, in DIR (created empty), and waits until it listens. Sets
# tansu_pid and tansu_addr.
start_tansu() {
  local dir=$1 port
  mkdir -p "$dir"
  port=$(free_port)
  # A clean environment: tansu reads ./.env and STORAGE_ENGINE-style
  # variables. exec keeps $! the broker's own pid.
  (cd "$dir" && exec env -i PATH=/usr/bin:/bin HOME="$dir" "$tansu" broker \
      --kafka-listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$2" >"$dir/out" 2>"$dir/log") &
  tansu_pid=$!
  tansu_addr=127.0.0.1:$port
  wait_port "$port"
}

# start_cluster DIR [server flags...]: starts nodes 1-3 of a new cluster with
# their data under DIR and waits until each serves. Sets the arrays
# cluster_kafka and cluster_raft (ports) and cluster_pids. The nodes (and the
# cluster CLI run from this shell) share a random cluster secret. The
# binary is $cluster_binary, else target/release/chronik-server.
start_cluster() {
  local dir=$1 i j peers
  shift
  export CHRONIK_CLUSTER_SECRET="${CHRONIK_CLUSTER_SECRET:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  cluster_kafka=() cluster_raft=() cluster_pids=()
  for i in 1 2 3; do cluster_kafka+=("$(free_port)"); cluster_raft+=("$(free_port)"); done
  for i in 1 2 3; do
    peers=""
    for j in 1 2 3; do
      [ "$j" = "$i" ] || peers+="${peers:+,}$j@127.0.0.1:${cluster_raft[$((j-1))]}"
    done
    mkdir -p "$dir/n$i"
    "${cluster_binary:-target/release/chronik-server}" --node-id "$i" --data-dir "$dir/n$i/data" --kafka-port "${cluster_kafka[$((i-1))]}" \
      "$@" raft-cluster --raft-addr "127.0.0.1:${cluster_raft[$((i-1))]}" --peers "$peers" --bootstrap \
      >"$dir/n$i/out" 2>"$dir/n$i/log" &
    pids+=("$!")
    cluster_pids+=("$!")
  done
  for i in 1 2 3; do
    for _ in $(seq 1 300); do grep -q ready "$dir/n$i/out" && break; sleep 0.1; done
    grep -q ready "$dir/n$i/out" || { echo "node $i did not start; see $dir/n$i/log" >&2; return 1; }
  done
}

stop_cluster() {
  local p
  for p in "${cluster_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${cluster_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
