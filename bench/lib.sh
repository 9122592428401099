# Shared by the bench scripts (sourced, not run): free ports, and a local
# 3-node cluster. Scripts keep every process they start in the array `pids`.

# Brokers side by side: each its own free port for the HTTP endpoint.
export CHRONIK_HTTP_ADDR="${CHRONIK_HTTP_ADDR:-127.0.0.1:0}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_cluster DIR [server flags...]: starts nodes 1-3 of a new cluster with
# their data under DIR and waits until each serves. Sets the arrays
# cluster_kafka and cluster_raft (ports) and cluster_pids. The nodes (and the
# cluster CLI run from this shell) share a random cluster secret.
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
    target/release/chronik-server --node-id "$i" --data-dir "$dir/n$i/data" --kafka-port "${cluster_kafka[$((i-1))]}" \
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
