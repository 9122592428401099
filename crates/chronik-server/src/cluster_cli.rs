//! `chronik-server cluster …`: operator commands. Each asks the node at
//! `--via` for its view over the admin gRPC service, and the other nodes it
//! names for the state of their replicas. Nothing is cached or made up: a
//! node that does not answer is reported as unreachable. The commands that
//! change the members are in `membership_cli`.

use std::time::Duration;

use anyhow::Context;
use chronik_broker::cluster::proto::DescribeRequest;
use chronik_raft::grpc::PeerSecurity;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::cluster_view::{ClusterView, describe, ids, print};
use crate::{membership_cli, version_cli};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The nodes, the metadata leader, the cluster id, and partitions without a leader or under-replicated.
    Status(Target),
    /// The nodes and whether they answer.
    ListNodes(Target),
    /// Every partition with its leader, replicas and in-sync replicas.
    ListPartitions(Target),
    /// One partition in detail: each replica's Raft indexes, log offsets and log checksum.
    PartitionInfo {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
    },
    /// The in-sync replicas of every partition, and which are under-replicated.
    IsrStatus(Target),
    /// Exits 0 when every node answers and every partition has a leader and all its replicas in sync; 1 otherwise.
    Health(Target),
    /// Make a node a member: it joins the metadata group as a learner, catches up and becomes a voter.
    AddNode(membership_cli::AddNode),
    /// Move every replica and leadership off a node, then remove it from the cluster and stop it.
    RemoveNode(membership_cli::RemoveNode),
    /// Even out replicas, then preferred leaders, across the nodes.
    Rebalance(membership_cli::Rebalance),
    /// The chronik.version level the cluster runs at and the levels each node reads; --set moves it up.
    Version(version_cli::Version),
}

#[derive(Debug, Args)]
pub struct Target {
    /// The Raft/admin address of any node of the cluster (also --addr).
    #[arg(
        long = "via",
        visible_alias = "addr",
        env = "CHRONIK_ADMIN_ADDR",
        default_value = "127.0.0.1:5001"
    )]
    pub via: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each node, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

/// Runs a command; the exit code is 0 on success, 1 when `health` finds the
/// cluster unhealthy, and `membership_cli`'s codes for its refusals.
pub async fn run(command: ClusterCommand, security: PeerSecurity) -> anyhow::Result<u8> {
    match command {
        ClusterCommand::AddNode(args) => membership_cli::add_node(args, security).await,
        ClusterCommand::RemoveNode(args) => membership_cli::remove_node(args, security).await,
        ClusterCommand::Rebalance(args) => membership_cli::rebalance(args, security).await,
        ClusterCommand::Version(args) => version_cli::version(args, security).await,
        command => report(command, &security).await,
    }
}

/// The read-only commands: gather the nodes' views and print them.
async fn report(command: ClusterCommand, security: &PeerSecurity) -> anyhow::Result<u8> {
    let (target, name) = match &command {
        ClusterCommand::Status(t) => (t, "status"),
        ClusterCommand::ListNodes(t) => (t, "list-nodes"),
        ClusterCommand::ListPartitions(t) => (t, "list-partitions"),
        ClusterCommand::PartitionInfo { target, .. } => (target, "partition-info"),
        ClusterCommand::IsrStatus(t) => (t, "isr-status"),
        ClusterCommand::Health(t) => (t, "health"),
        ClusterCommand::AddNode(_)
        | ClusterCommand::RemoveNode(_)
        | ClusterCommand::Rebalance(_)
        | ClusterCommand::Version(_) => {
            unreachable!("`run` handles the membership commands")
        }
    };
    let timeout = Duration::from_millis(target.timeout_ms.max(1));
    let entry = describe(
        &target.via,
        timeout,
        security,
        DescribeRequest {
            linearizable: true,
            ..Default::default()
        },
    )
    .await
    .with_context(|| {
        format!(
            "`cluster {name}` cannot reach the node at {}; give the --raft-addr of a running node with --via",
            target.via
        )
    })?;
    let view = match &command {
        ClusterCommand::PartitionInfo { topic, partition, .. } => {
            let group = entry
                .partition(topic, *partition)
                .with_context(|| format!("the cluster has no partition {partition} of topic '{topic}'"))?
                .group;
            ClusterView::gather(entry, &target.via, timeout, security, vec![group], true).await
        }
        _ => ClusterView::gather(entry, &target.via, timeout, security, Vec::new(), false).await,
    };
    let json = target.json;
    match command {
        ClusterCommand::Status(_) => print(json, &view.status(), print_status),
        ClusterCommand::ListNodes(_) => print(json, &view.nodes(), print_nodes),
        ClusterCommand::ListPartitions(_) | ClusterCommand::IsrStatus(_) => {
            print(json, &view.partitions(), print_partitions)
        }
        ClusterCommand::PartitionInfo { topic, partition, .. } => {
            let info = view
                .partition_info(&topic, partition)
                .with_context(|| format!("the cluster has no partition {partition} of topic '{topic}'"))?;
            print(json, &info, print_partition_info)
        }
        ClusterCommand::Health(_) => {
            let health = view.health();
            print(json, &health, print_health);
            return Ok(if health.healthy { 0 } else { 1 });
        }
        ClusterCommand::AddNode(_)
        | ClusterCommand::RemoveNode(_)
        | ClusterCommand::Rebalance(_)
        | ClusterCommand::Version(_) => {
            unreachable!("`run` handles the membership commands")
        }
    }
    Ok(0)
}

#[derive(Serialize)]
struct NodeView {
    id: u64,
    raft_addr: String,
    kafka_addr: Option<String>,
    reachable: bool,
    error: Option<String>,
    /// Free bytes on its data volume, and whether that is below its
    /// --min-free-bytes (it then refuses writes); known if reachable.
    free_bytes: Option<u64>,
    low_on_disk: Option<bool>,
}

#[derive(Serialize)]
struct PartitionView {
    topic: String,
    partition: i32,
    group: u64,
    leader: Option<u64>,
    replicas: Vec<u64>,
    isr: Vec<u64>,
    under_replicated: bool,
    /// Where a reassignment under way moves it.
    moving_to: Option<Vec<u64>>,
}

#[derive(Serialize)]
struct StatusView {
    cluster_id: String,
    metadata_leader: Option<u64>,
    nodes: Vec<NodeView>,
    partitions: usize,
    offline_partitions: Vec<String>,
    under_replicated_partitions: Vec<String>,
    reassigning_partitions: Vec<String>,
}

#[derive(Serialize)]
struct ReplicaView {
    node: u64,
    reachable: bool,
    role: Option<String>,
    term: Option<u64>,
    commit_index: Option<u64>,
    applied_index: Option<u64>,
    /// The group sleeps on this replica: idle, it does not tick.
    asleep: Option<bool>,
    /// The first entry still in this replica's Raft log; older ones were compacted.
    first_index: Option<u64>,
    log_start_offset: Option<i64>,
    log_end_offset: Option<i64>,
    high_watermark: Option<i64>,
    checksum: Option<String>,
}

#[derive(Serialize)]
struct PartitionInfoView {
    #[serde(flatten)]
    partition: PartitionView,
    replica_states: Vec<ReplicaView>,
}

#[derive(Serialize)]
struct HealthView {
    healthy: bool,
    problems: Vec<String>,
}

/// The views the read-only commands print.
impl ClusterView {
    fn nodes(&self) -> Vec<NodeView> {
        self.entry
            .nodes
            .iter()
            .map(|n| NodeView {
                id: n.id,
                raft_addr: n.raft_addr.clone(),
                kafka_addr: n.kafka_addr.clone(),
                reachable: self.reports.contains_key(&n.id),
                error: self.unreachable.get(&n.id).cloned(),
                free_bytes: self.reports.get(&n.id).map(|r| r.disk.free_bytes),
                low_on_disk: self.reports.get(&n.id).map(|r| r.disk.low),
            })
            .collect()
    }

    fn partitions(&self) -> Vec<PartitionView> {
        self.entry
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .map(|(topic, p)| {
                let leader = self.leader_replica(p.group);
                let isr = leader.map(|(_, r)| r.raft.isr.clone()).unwrap_or_default();
                PartitionView {
                    topic: topic.name.clone(),
                    partition: p.partition,
                    group: p.group,
                    leader: leader.map(|(id, _)| id),
                    replicas: p.replicas.clone(),
                    under_replicated: isr.len() < p.replicas.len(),
                    isr,
                    moving_to: p.target.clone(),
                }
            })
            .collect()
    }

    fn status(&self) -> StatusView {
        let partitions = self.partitions();
        let name = |p: &PartitionView| format!("{}-{}", p.topic, p.partition);
        StatusView {
            cluster_id: self.entry.cluster_id.clone(),
            metadata_leader: self.entry.metadata_leader,
            nodes: self.nodes(),
            partitions: partitions.len(),
            offline_partitions: partitions.iter().filter(|p| p.leader.is_none()).map(name).collect(),
            under_replicated_partitions: partitions.iter().filter(|p| p.under_replicated).map(name).collect(),
            reassigning_partitions: partitions.iter().filter(|p| p.moving_to.is_some()).map(name).collect(),
        }
    }

    fn partition_info(&self, topic: &str, partition: i32) -> Option<PartitionInfoView> {
        let view = self
            .partitions()
            .into_iter()
            .find(|p| p.topic == topic && p.partition == partition)?;
        let replica_states = view
            .replicas
            .iter()
            .map(|node| {
                let replica = self.reports.get(node).and_then(|r| r.replica(view.group));
                ReplicaView {
                    node: *node,
                    reachable: self.reports.contains_key(node),
                    role: replica.map(|r| r.raft.role.clone()),
                    term: replica.map(|r| r.raft.term),
                    commit_index: replica.map(|r| r.raft.commit),
                    applied_index: replica.map(|r| r.raft.applied),
                    asleep: replica.map(|r| r.raft.asleep),
                    first_index: replica.map(|r| r.raft.first_index),
                    log_start_offset: replica.and_then(|r| r.log_start_offset),
                    log_end_offset: replica.and_then(|r| r.log_end_offset),
                    high_watermark: replica.and_then(|r| r.high_watermark),
                    checksum: replica.and_then(|r| r.checksum.clone()),
                }
            })
            .collect();
        Some(PartitionInfoView {
            partition: view,
            replica_states,
        })
    }

    fn health(&self) -> HealthView {
        let status = self.status();
        let mut problems = Vec::new();
        for (id, error) in &self.unreachable {
            problems.push(format!("node {id} does not answer: {error}"));
        }
        if status.metadata_leader.is_none() {
            problems.push("the metadata group has no leader".to_string());
        }
        for (id, report) in self.reports.iter().filter(|(_, r)| r.disk.low) {
            problems.push(format!(
                "node {id} is low on disk space ({} bytes free, below its --min-free-bytes {}) and refuses writes; \
                 free space by deleting topics or records, or lowering retention",
                report.disk.free_bytes, report.disk.min_free_bytes
            ));
        }
        if !status.offline_partitions.is_empty() {
            problems.push(format!(
                "{} partition(s) without a leader: {}",
                status.offline_partitions.len(),
                summary(&status.offline_partitions)
            ));
        }
        if !status.under_replicated_partitions.is_empty() {
            problems.push(format!(
                "{} under-replicated partition(s): {}",
                status.under_replicated_partitions.len(),
                summary(&status.under_replicated_partitions)
            ));
        }
        HealthView {
            healthy: problems.is_empty(),
            problems,
        }
    }
}

fn summary(names: &[String]) -> String {
    let mut shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        shown.push_str(&format!(" and {} more", names.len() - 5));
    }
    shown
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn print_nodes(nodes: &Vec<NodeView>) {
    println!("{:<6} {:<24} {:<24} STATE", "ID", "RAFT ADDRESS", "KAFKA ADDRESS");
    for n in nodes {
        let state = match (n.reachable, n.low_on_disk) {
            (false, _) => "unreachable",
            (true, Some(true)) => "up, low on disk: refusing writes",
            (true, _) => "up",
        };
        println!(
            "{:<6} {:<24} {:<24} {state}",
            n.id,
            n.raft_addr,
            or_dash(n.kafka_addr.clone())
        );
    }
}

fn print_status(status: &StatusView) {
    println!("cluster id:      {}", status.cluster_id);
    println!(
        "metadata leader: {}",
        or_dash(status.metadata_leader.map(|id| format!("node {id}")))
    );
    println!("partitions:      {}", status.partitions);
    println!(
        "without leader:  {}{}",
        status.offline_partitions.len(),
        list_suffix(&status.offline_partitions)
    );
    println!(
        "under-replicated: {}{}",
        status.under_replicated_partitions.len(),
        list_suffix(&status.under_replicated_partitions)
    );
    println!(
        "reassigning:     {}{}",
        status.reassigning_partitions.len(),
        list_suffix(&status.reassigning_partitions)
    );
    println!();
    print_nodes(&status.nodes);
}

fn list_suffix(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", summary(names))
    }
}

fn print_partitions(partitions: &Vec<PartitionView>) {
    println!(
        "{:<32} {:>9} {:>6} {:>6} {:<12} {:<12} STATE",
        "TOPIC", "PARTITION", "GROUP", "LEADER", "REPLICAS", "ISR"
    );
    for p in partitions {
        let mut state = match (p.leader, p.under_replicated) {
            (None, _) => "offline",
            (Some(_), true) => "under-replicated",
            (Some(_), false) => "ok",
        }
        .to_string();
        if let Some(target) = &p.moving_to {
            state.push_str(&format!(", moving to {}", ids(target)));
        }
        println!(
            "{:<32} {:>9} {:>6} {:>6} {:<12} {:<12} {state}",
            p.topic,
            p.partition,
            p.group,
            or_dash(p.leader),
            ids(&p.replicas),
            ids(&p.isr)
        );
    }
}

fn print_partition_info(info: &PartitionInfoView) {
    let p = &info.partition;
    println!("topic:     {}", p.topic);
    println!("partition: {} (Raft group {})", p.partition, p.group);
    println!("leader:    {}", or_dash(p.leader));
    println!("replicas:  {}", ids(&p.replicas));
    println!("isr:       {}", ids(&p.isr));
    println!();
    println!(
        "{:<6} {:<12} {:<7} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12} CHECKSUM",
        "NODE", "ROLE", "STATE", "TERM", "COMMIT", "APPLIED", "LOG START", "LOG END", "HIGH WATER"
    );
    for r in &info.replica_states {
        let role = if r.reachable {
            r.role.clone().unwrap_or_else(|| "-".into())
        } else {
            "unreachable".into()
        };
        let state = match r.asleep {
            Some(true) => "asleep",
            Some(false) => "awake",
            None => "-",
        };
        println!(
            "{:<6} {:<12} {:<7} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12} {}",
            r.node,
            role,
            state,
            or_dash(r.term),
            or_dash(r.commit_index),
            or_dash(r.applied_index),
            or_dash(r.log_start_offset),
            or_dash(r.log_end_offset),
            or_dash(r.high_watermark),
            or_dash(r.checksum.clone())
        );
    }
}

fn print_health(health: &HealthView) {
    if health.healthy {
        println!("healthy");
    } else {
        println!("unhealthy");
        for problem in &health.problems {
            println!("  - {problem}");
        }
    }
}
