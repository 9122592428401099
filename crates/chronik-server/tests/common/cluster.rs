//! A cluster of real `chronik-server` processes on 127.0.0.1. Every node
//! reaches each peer's Raft port through a proxy of its own, so a test can
//! cut a node off from the others in both directions.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset};
use serde_json::Value;

use super::Broker;
use super::certs::Ca;
use super::proxy::Proxy;

/// The tests share two cores: one cluster at a time in a test binary.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-tests")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer")
}

/// Every record of `topic`/`partition` as (offset, key), read from its leader.
pub fn read_partition(bootstrap: &str, topic: &str, partition: i32) -> Vec<(i64, u64)> {
    let consumer = consumer(bootstrap);
    // Leadership may move under load (a new leader answers NOT_LEADER until
    // it is ready); clients retry that, and so does this, for a bounded time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (low, high) = loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(watermarks) => break watermarks,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{topic}-{partition}: watermarks not yet available ({e}); retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{topic}-{partition}: no watermarks within 30 s: {e}"),
        }
    };
    let mut records = Vec::new();
    super::consume_partition(
        &consumer,
        topic,
        partition,
        Offset::Beginning,
        (high - low) as usize,
        Duration::from_secs(60),
        |m| {
            let key = std::str::from_utf8(m.key().unwrap()).unwrap().parse().unwrap();
            records.push((m.offset(), key));
        },
    );
    assert_eq!(
        records.len() as i64,
        high - low,
        "{topic}-{partition}: read fewer records than its watermarks say"
    );
    records
}

/// Checks that every acknowledged record of `topic` is stored exactly once,
/// at its acknowledged offset, in key order per partition, and that nothing
/// else is: `sent` records were sent, with keys `0..sent`.
pub fn verify_acknowledged(bootstrap: &str, topic: &str, partitions: i32, acked: &[super::delivery::Ack], sent: u64) {
    let mut seen = std::collections::HashSet::new();
    for partition in 0..partitions {
        let records: std::collections::BTreeMap<i64, u64> =
            read_partition(bootstrap, topic, partition).into_iter().collect();
        let keys: Vec<u64> = records.values().copied().collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "{topic}-{partition} is out of order"
        );
        for key in keys {
            assert!(seen.insert(key), "key {key} stored twice");
        }
        for ack in acked.iter().filter(|a| a.partition == partition) {
            assert_eq!(
                records.get(&ack.offset),
                Some(&ack.key),
                "acknowledged record {} is not at {partition}/{}",
                ack.key,
                ack.offset
            );
        }
    }
    assert_eq!(seen.len() as u64, sent, "no record beyond the acknowledged ones");
}

pub struct Cluster {
    /// Node `id` is `nodes[id - 1]`.
    pub nodes: Vec<Broker>,
    /// The Raft port each node listens on.
    pub raft_addrs: Vec<String>,
    /// `links[from][to]`: the proxy `from` reaches `to` through; none for
    /// nodes that joined later.
    links: Vec<Vec<Option<Proxy>>>,
    dir: std::path::PathBuf,
    /// The mutual-TLS flags every node and CLI call uses: the nodes of test
    /// clusters authenticate to each other with certificates of one CA.
    peer_tls: Vec<String>,
}

/// A CA for the cluster in `dir` and one certificate for its nodes and CLI;
/// the flags that use them.
fn peer_tls_flags(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let ca = Ca::new(dir, "cluster");
    let node = ca.issue(dir, "chronik-node");
    [
        ("--peer-tls-cert", node.cert),
        ("--peer-tls-key", node.key),
        ("--peer-tls-ca", ca.cert_path),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
    .collect()
}

/// A free port below Linux's ephemeral range (32768-60999), never one this
/// process was given before (a probed port stays free until its node binds
/// it, so a later call could otherwise return it again). A node's port must
/// stay free while the node is stopped: its peers keep connecting to it,
/// and a TCP connection to a local port nothing listens on can connect to
/// itself, taking that port as its own, when the kernel picks the same port
/// as its source. Ports outside the ephemeral range are never picked.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for i in 0..SPAN {
        let port = LOW + (seed.wrapping_add(i) % SPAN);
        let port = u16::try_from(port).expect("below 32768");
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

impl Cluster {
    /// Starts `size` nodes that bootstrap one cluster, each with `extra`
    /// server flags, and waits until all of them serve.
    pub fn start(dir: &Path, size: usize, extra: &[&str]) -> Cluster {
        let peer_tls = peer_tls_flags(dir);
        let raft_addrs: Vec<String> = (0..size).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let links: Vec<Vec<Option<Proxy>>> = (0..size)
            .map(|from| {
                (0..size)
                    .map(|to| {
                        (from != to).then(|| {
                            let proxy = Proxy::listen();
                            proxy.forward_to(&raft_addrs[to]);
                            proxy
                        })
                    })
                    .collect()
            })
            .collect();
        let mut nodes: Vec<Broker> = (0..size)
            .map(|i| {
                let peers: Vec<String> = (0..size)
                    .filter(|j| *j != i)
                    .map(|j| format!("{}@127.0.0.1:{}", j + 1, links[i][j].as_ref().unwrap().port))
                    .collect();
                let id = (i + 1).to_string();
                let peers = peers.join(",");
                let mut args: Vec<&str> = vec!["--node-id", &id];
                args.extend(peer_tls.iter().map(String::as_str));
                args.extend_from_slice(extra);
                args.extend([
                    "raft-cluster",
                    "--raft-addr",
                    &raft_addrs[i],
                    "--peers",
                    &peers,
                    "--bootstrap",
                ]);
                Broker::spawn(&dir.join(format!("node{}", i + 1)), &args)
            })
            .collect();
        for node in &mut nodes {
            node.wait_ready();
        }
        Cluster {
            nodes,
            raft_addrs,
            links,
            dir: dir.to_path_buf(),
            peer_tls,
        }
    }

    /// Starts node `nodes.len() + 1` with `--join` through node 1, on a
    /// Kafka port chosen here (an operator names it to `cluster add-node`).
    /// It serves only once it is added. Returns its id.
    pub fn spawn_joining_node(&mut self, extra: &[&str]) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let raft_addr = format!("127.0.0.1:{}", free_port());
        let id_arg = id.to_string();
        let peer_tls = self.peer_tls.clone();
        let mut args: Vec<&str> = vec!["--node-id", &id_arg];
        args.extend(peer_tls.iter().map(String::as_str));
        args.extend_from_slice(extra);
        args.extend(["raft-cluster", "--raft-addr", &raft_addr, "--join", &self.raft_addrs[0]]);
        let node = Broker::spawn_on_port(&self.dir.join(format!("node{id}")), free_port(), &args);
        self.nodes.push(node);
        self.raft_addrs.push(raft_addr);
        for row in &mut self.links {
            row.push(None);
        }
        self.links.push((0..id).map(|_| None).collect());
        id
    }

    /// The `cluster add-node` arguments that make node `id` a member.
    pub fn add_node_args(&self, id: u64) -> Vec<String> {
        let raft_port = self.raft_addrs[id as usize - 1].rsplit(':').next().unwrap().to_string();
        vec![
            "add-node".into(),
            "--id".into(),
            id.to_string(),
            "--addr".into(),
            format!("127.0.0.1:{}", self.nodes[id as usize - 1].kafka_port),
            "--raft-port".into(),
            raft_port,
        ]
    }

    pub fn node(&mut self, id: u64) -> &mut Broker {
        &mut self.nodes[id as usize - 1]
    }

    /// Restarts node `id` as an operator would: same data directory and
    /// peers, without --bootstrap (the node rejoins its cluster).
    pub fn restart(&mut self, id: u64) {
        let node = self.node(id);
        node.extra_args.retain(|arg| arg != "--bootstrap");
        node.restart();
    }

    /// Every running node's Kafka address, for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts node `id` off from every other node, both ways.
    pub fn isolate(&self, id: u64) {
        self.set_links(id, true);
    }

    pub fn heal(&self, id: u64) {
        self.set_links(id, false);
    }

    fn set_links(&self, id: u64, blocked: bool) {
        let n = id as usize - 1;
        for (from, row) in self.links.iter().enumerate() {
            for (to, link) in row.iter().enumerate() {
                if let Some(proxy) = link
                    && (from == n || to == n)
                {
                    if blocked { proxy.block() } else { proxy.unblock() }
                }
            }
        }
    }

    /// Runs `chronik-server cluster <args> --via <node id's Raft address>`;
    /// returns the exit code and stdout.
    pub fn cli(&self, via: u64, args: &[&str]) -> (i32, String) {
        let output = self
            .command()
            .arg("cluster")
            .args(args)
            .args(["--via", &self.raft_addrs[via as usize - 1], "--timeout-ms", "3000"])
            .output()
            .expect("run the cluster CLI");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        (output.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
    }

    /// `chronik-server` with the flags that let it talk to this cluster's nodes.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chronik-server"));
        command.args(&self.peer_tls);
        command
    }

    /// A CLI command's `--json` output.
    pub fn cli_json(&self, via: u64, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let (code, out) = self.cli(via, &args);
        assert!(
            code == 0 || args[0] == "health",
            "cluster {args:?} failed ({code}): {out}"
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("cluster {args:?} printed no JSON ({e}): {out}"))
    }

    /// `(leader, replicas)` of every partition of `topic`, as `via` sees it.
    pub fn partitions(&self, via: u64, topic: &str) -> Vec<(Option<u64>, Vec<u64>)> {
        let listed = self.cli_json(via, &["list-partitions"]);
        let mut found: Vec<(i64, Option<u64>, Vec<u64>)> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["topic"] == topic)
            .map(|p| {
                let replicas = p["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_u64().unwrap())
                    .collect();
                (p["partition"].as_i64().unwrap(), p["leader"].as_u64(), replicas)
            })
            .collect();
        found.sort_by_key(|p| p.0);
        found
            .into_iter()
            .map(|(_, leader, replicas)| (leader, replicas))
            .collect()
    }

    /// Waits (bounded) until every partition of `topic` has a leader in the
    /// view of `via`; returns the leaders.
    pub fn wait_for_leaders(&self, via: u64, topic: &str, partitions: usize) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.partitions(via, topic);
            if found.len() == partitions && found.iter().all(|(leader, _)| leader.is_some()) {
                return found.into_iter().map(|(leader, _)| leader.unwrap()).collect();
            }
            assert!(
                Instant::now() < deadline,
                "{topic} has partitions without leader: {found:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (bounded) until the replicas of `topic`/`partition` on `nodes`
    /// hold identical logs: same end offset, same checksum. Returns the end offset.
    pub fn wait_for_identical_replicas(&self, via: u64, topic: &str, partition: i32, nodes: &[u64]) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let partition_arg = partition.to_string();
            let info = self.cli_json(
                via,
                &["partition-info", "--topic", topic, "--partition", &partition_arg],
            );
            let states: Vec<(u64, Option<i64>, Option<String>)> = info["replica_states"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| nodes.contains(&r["node"].as_u64().unwrap()))
                .map(|r| {
                    (
                        r["node"].as_u64().unwrap(),
                        r["log_end_offset"].as_i64(),
                        r["checksum"].as_str().map(str::to_string),
                    )
                })
                .collect();
            let first = &states[0];
            let identical = states.len() == nodes.len()
                && first.1.is_some()
                && first.2.is_some()
                && states.iter().all(|s| s.1 == first.1 && s.2 == first.2);
            if identical {
                return first.1.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "replicas of {topic}-{partition} on {nodes:?} did not converge: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}
