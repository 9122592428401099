//! Growing and shrinking a live cluster under load: a node joins and gets
//! its share by `cluster rebalance`, a node is drained and removed by
//! `cluster remove-node`, nodes are killed in the middle of moves, and the
//! commands refuse what would lose data or the quorum.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, consumer, serial, verify_acknowledged};
use common::delivery::{Deliveries, new_producer, send};
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use serde_json::Value;

const TOPIC: &str = "moving";
const PARTITIONS: i32 = 4;

/// An idempotent acks=all producer writing increasing keys until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
    deliveries: Deliveries,
}

impl Load {
    fn start(bootstrap: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (producer, deliveries) = new_producer(&bootstrap, &[("enable.idempotence", "true")]);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut next = 0u64;
            while !flag.load(Ordering::Relaxed) {
                send(&producer, TOPIC, None, next..next + 50);
                next += 50;
                std::thread::sleep(Duration::from_millis(25));
            }
            producer.flush(Duration::from_secs(120)).expect("flush");
            next
        });
        Load {
            stop,
            thread,
            deliveries,
        }
    }

    /// Stops, waits for every acknowledgement, and checks that each
    /// acknowledged record is stored once, at its offset, in order.
    fn stop_and_verify(self, bootstrap: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.thread.join().expect("the producer thread");
        let failed = self.deliveries.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "deliveries failed: {failed:?}");
        let acked = self.deliveries.acked.lock().unwrap().clone();
        assert_eq!(acked.len() as u64, sent, "every record was acknowledged");
        verify_acknowledged(bootstrap, TOPIC, PARTITIONS, &acked, sent);
        println!("{sent} records acknowledged and read back exactly once, in order");
    }
}

fn run_cli(cluster: &Cluster, via: u64, args: &[String]) -> (i32, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.cli(via, &args)
}

/// Replicas and leaders per node over every partition, from `list-partitions`.
fn counts(cluster: &Cluster, via: u64, nodes: &[u64]) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let listed = cluster.cli_json(via, &["list-partitions"]);
    let mut replicas: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    let mut leaders = replicas.clone();
    for p in listed.as_array().unwrap() {
        assert!(p["moving_to"].is_null(), "a move is still under way: {p}");
        for r in p["replicas"].as_array().unwrap() {
            *replicas.entry(r.as_u64().unwrap()).or_default() += 1;
        }
        if let Some(leader) = p["leader"].as_u64() {
            *leaders.entry(leader).or_default() += 1;
        }
    }
    (replicas, leaders)
}

fn assert_even(what: &str, counts: &BTreeMap<u64, usize>) {
    let (min, max) = (counts.values().min().unwrap(), counts.values().max().unwrap());
    assert!(max - min <= 1, "{what} per node are not within one of even: {counts:?}");
}

/// Waits (bounded) until the partitions' leaders are the preferred ones
/// the rebalance chose, then checks leaders per node.
fn wait_for_even_leaders(cluster: &Cluster, via: u64, nodes: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, leaders) = counts(cluster, via, nodes);
        let (min, max) = (leaders.values().min().unwrap(), leaders.values().max().unwrap());
        if max - min <= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "leaders per node stay uneven: {leaders:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits (bounded) until each partition's replicas, wherever they are now,
/// hold identical logs.
fn wait_for_identical_replicas(cluster: &Cluster) {
    for partition in 0..PARTITIONS {
        let arg = partition.to_string();
        let info = cluster.cli_json(1, &["partition-info", "--topic", TOPIC, "--partition", &arg]);
        let replicas: Vec<u64> = info["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_u64().unwrap())
            .collect();
        cluster.wait_for_identical_replicas(1, TOPIC, partition, &replicas);
    }
}

fn broker_ids(bootstrap: &str) -> Vec<i32> {
    let metadata = consumer(bootstrap)
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut ids: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    ids.sort_unstable();
    ids
}

fn bootstrap_of(cluster: &Cluster, nodes: &[u64]) -> String {
    nodes
        .iter()
        .map(|n| cluster.nodes[*n as usize - 1].addr.clone())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_cluster_grows_to_four_nodes_and_shrinks_back_under_load() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--offsets-topic-partitions", "2"]);
    common::create_replicated_topic(&cluster.nodes[0].addr, TOPIC, PARTITIONS, 3, &[]);
    cluster.wait_for_leaders(1, TOPIC, PARTITIONS as usize);
    let load = Load::start(cluster.bootstrap());
    std::thread::sleep(Duration::from_secs(2));

    // Node 4 starts first and waits; add-node makes it a member.
    let new = cluster.spawn_joining_node(&["--offsets-topic-partitions", "2"]);
    let (code, out) = run_cli(&cluster, 2, &cluster.add_node_args(new));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is a voter"), "{out}");
    cluster.node(new).wait_ready();
    assert_eq!(
        broker_ids(&cluster.bootstrap()),
        vec![1, 2, 3, 4],
        "node 4 is in Metadata"
    );

    let (code, out) = cluster.cli(3, &["rebalance", "--max-concurrent-moves", "3"]);
    assert_eq!(code, 0, "{out}");
    let nodes = [1, 2, 3, 4];
    let (replicas, _) = counts(&cluster, 1, &nodes);
    assert_even("replicas", &replicas);
    wait_for_even_leaders(&cluster, 1, &nodes);
    let (code, out) = cluster.cli(1, &["rebalance", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("balanced already"),
        "a second plan has nothing to do: {out}"
    );

    // Node 2 is drained and removed; its process stops.
    let (code, out) = cluster.cli(1, &["remove-node", "--id", "2", "--max-concurrent-moves", "3"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        cluster.node(2).wait_exit(Duration::from_secs(30)),
        Some(0),
        "the removed node stops by itself"
    );
    let nodes = [1, 3, 4];
    let (replicas, _) = counts(&cluster, 1, &nodes);
    assert_eq!(replicas.get(&2), None, "node 2 holds nothing: {replicas:?}");
    assert_even("replicas", &replicas);
    let listed = cluster.cli_json(3, &["list-nodes"]);
    let ids: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 3, 4]);
    let bootstrap = bootstrap_of(&cluster, &nodes);
    assert_eq!(
        broker_ids(&bootstrap),
        vec![1, 3, 4],
        "Metadata no longer offers node 2"
    );

    load.stop_and_verify(&bootstrap);
    wait_for_identical_replicas(&cluster);
    // A removed node refuses to start again on its old data.
    cluster.node(2).respawn();
    assert_eq!(cluster.node(2).wait_exit(Duration::from_secs(30)), Some(2));
    assert!(
        std::fs::read_to_string(cluster.node(2).log_path())
            .unwrap()
            .contains("was removed from cluster"),
        "{}",
        cluster.node(2).log_tail()
    );
}

#[test]
fn moves_survive_kill_9_of_the_joining_node_and_of_a_leader() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--offsets-topic-partitions", "1"]);
    common::create_replicated_topic(&cluster.nodes[0].addr, TOPIC, PARTITIONS, 3, &[]);
    cluster.wait_for_leaders(1, TOPIC, PARTITIONS as usize);
    let load = Load::start(cluster.bootstrap());
    std::thread::sleep(Duration::from_secs(3));
    let new = cluster.spawn_joining_node(&["--offsets-topic-partitions", "1"]);
    let (code, out) = run_cli(&cluster, 1, &cluster.add_node_args(new));
    assert_eq!(code, 0, "{out}");
    cluster.node(new).wait_ready();

    // The rebalance runs one move at a time while nodes die under it.
    let via = cluster.raft_addrs[0].clone();
    let mut rebalance = cluster
        .command()
        .args([
            "cluster",
            "rebalance",
            "--max-concurrent-moves",
            "1",
            "--max-seconds",
            "240",
        ])
        .args(["--via", &via])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the rebalance");
    std::thread::sleep(Duration::from_millis(1500));
    cluster.node(new).kill9();
    std::thread::sleep(Duration::from_secs(2));
    cluster.node(new).restart();

    // Then the leader of a partition on the move (not node 1, which the
    // command talks to).
    let listed = cluster.cli_json(1, &["list-partitions"]);
    let leaders: Vec<(u64, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["leader"].as_u64().map(|l| (l, !p["moving_to"].is_null())))
        .filter(|(leader, _)| *leader == 2 || *leader == 3)
        .collect();
    let victim = leaders
        .iter()
        .find(|(_, moving)| *moving)
        .or(leaders.first())
        .map(|(leader, _)| *leader)
        .unwrap_or(2);
    cluster.node(victim).kill9();
    std::thread::sleep(Duration::from_secs(3));
    cluster.restart(victim);

    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = rebalance.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the rebalance did not finish");
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = rebalance.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(status.success(), "{printed}");
    let nodes = [1, 2, 3, 4];
    let (replicas, _) = counts(&cluster, 1, &nodes);
    assert_even("replicas", &replicas);

    // A dead node is removed with --force: its replicas move to the others.
    cluster.node(new).kill9();
    let (code, out) = cluster.cli(1, &["remove-node", "--id", &new.to_string()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--force"), "{out}");
    let (code, out) = cluster.cli(1, &["remove-node", "--id", &new.to_string(), "--force"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("not reachable"), "{out}");
    let (replicas, _) = counts(&cluster, 1, &[1, 2, 3]);
    assert_eq!(replicas.get(&new), None, "{replicas:?}");

    load.stop_and_verify(&cluster.bootstrap());
    wait_for_identical_replicas(&cluster);
}

#[test]
fn a_node_added_before_it_starts_joins_once_it_does() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--offsets-topic-partitions", "1"]);
    let new = cluster.spawn_joining_node(&["--offsets-topic-partitions", "1"]);
    cluster.node(new).kill9();
    let mut add = cluster.add_node_args(new);
    add.extend(["--wait-ms".to_string(), "2000".to_string()]);
    let (code, out) = run_cli(&cluster, 1, &add);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("has not caught up yet"), "{out}");
    // Not started: new topics place no replica on it, and clients are not
    // offered it.
    common::create_replicated_topic(&cluster.nodes[0].addr, TOPIC, 3, 3, &[]);
    let (replicas, _) = counts(&cluster, 1, &[1, 2, 3]);
    assert_eq!(replicas.get(&new), None, "{replicas:?}");
    assert_eq!(broker_ids(&cluster.bootstrap()), vec![1, 2, 3]);

    cluster.node(new).respawn();
    cluster.node(new).wait_ready();
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker_ids(&cluster.bootstrap()) != vec![1, 2, 3, 4] {
        assert!(Instant::now() < deadline, "node 4 never appeared in Metadata");
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = cluster.cli_json(2, &["status"]);
    let up = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["reachable"] == true)
        .count();
    assert_eq!(up, 4, "{status}");
}

#[test]
fn removals_that_would_lose_data_or_the_quorum_are_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--offsets-topic-partitions", "1"]);
    common::create_replicated_topic(&cluster.nodes[0].addr, TOPIC, 1, 3, &[]);

    let (code, out) = cluster.cli(1, &["remove-node", "--id", "2"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("replication factor cannot be kept"), "{out}");
    let (code, out) = cluster.cli(1, &["remove-node", "--id", "9"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("node 9 is not a member"), "{out}");

    cluster.node(3).kill9();
    let (code, out) = cluster.cli(1, &["remove-node", "--id", "2"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("lose its quorum"), "{out}");
    let (code, out) = cluster.cli(1, &["remove-node", "--id", "3"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("use --force") || out.contains("with --force"), "{out}");

    // Nothing changed: the members and the replicas are as they were.
    let listed: Value = cluster.cli_json(1, &["list-nodes"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let (replicas, _) = counts(&cluster, 1, &[1, 2, 3]);
    assert_eq!(replicas.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
}
