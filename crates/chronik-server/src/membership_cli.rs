//! `cluster add-node`, `remove-node` and `rebalance`: the commands that
//! change where replicas live. Each records what it wants in the replicated
//! metadata (through any member); the leaders of the groups concerned carry
//! it out, and the command follows their progress until it is done.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chronik_broker::cluster::admin_client;
use chronik_broker::cluster::proto::{DescribeRequest, RetireRequest, SubmitRequest, TransferLeaderRequest};
use chronik_broker::cluster::report::NodeReport;
use chronik_raft::METADATA_GROUP;
use chronik_raft::grpc::PeerSecurity;
use chronik_state::metadata::{MetadataCommand, Reassignment};
use chronik_state::placement::{self, Assignment, Move, Plan};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cluster_view::{ClusterView, describe, ids, print};

/// Exit code of a refusal because the replication factor cannot be kept.
pub const EXIT_TOO_FEW_NODES: u8 = 3;
/// Exit code of a refusal because the metadata group would lose its quorum.
pub const EXIT_QUORUM: u8 = 4;

const POLL: Duration = Duration::from_millis(500);

/// The member to ask, and how to print.
#[derive(Debug, Args)]
pub struct Via {
    /// The Raft/admin address of any member of the cluster.
    #[arg(long, env = "CHRONIK_ADMIN_ADDR", default_value = "127.0.0.1:5001")]
    pub via: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each node, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct AddNode {
    /// The new node's id (its --node-id).
    #[arg(long)]
    pub id: u64,
    /// The new node's Kafka address, HOST:PORT.
    #[arg(long)]
    pub addr: String,
    /// The port of the new node's Raft service (its --raft-addr).
    #[arg(long)]
    pub raft_port: u16,
    /// The host of the new node's Raft service, if not the host of --addr.
    #[arg(long)]
    pub raft_host: Option<String>,
    /// How long to wait for the node to catch up and become a voter, in
    /// milliseconds. It is promoted later if it takes longer.
    #[arg(long, default_value_t = 60_000)]
    pub wait_ms: u64,
    #[command(flatten)]
    pub via: Via,
}

#[derive(Debug, Args)]
pub struct RemoveNode {
    /// The node to remove.
    #[arg(long)]
    pub id: u64,
    /// Remove it even though it does not answer (it is dead).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub moves: MoveArgs,
    #[command(flatten)]
    pub via: Via,
}

#[derive(Debug, Args)]
pub struct Rebalance {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub moves: MoveArgs,
    #[command(flatten)]
    pub via: Via,
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Partitions moved at once. Each move copies a partition to a new
    /// replica; fewer at once keep produce latency lower.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_concurrent_moves: u64,
    /// How long all the moves may take, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub max_seconds: u64,
}

/// A connection to the cluster through one member.
pub(crate) struct Cluster {
    via: String,
    timeout: Duration,
    security: PeerSecurity,
    cluster_id: String,
}

impl Cluster {
    pub(crate) async fn connect(via: &Via, security: PeerSecurity) -> anyhow::Result<(Cluster, NodeReport)> {
        let timeout = Duration::from_millis(via.timeout_ms.max(1));
        let cluster = Cluster {
            via: via.via.clone(),
            timeout,
            security,
            cluster_id: String::new(),
        };
        let entry = cluster.entry().await?;
        Ok((
            Cluster {
                cluster_id: entry.cluster_id.clone(),
                ..cluster
            },
            entry,
        ))
    }

    /// The member's view, caught up with the metadata leader.
    async fn entry(&self) -> anyhow::Result<NodeReport> {
        let request = DescribeRequest {
            linearizable: true,
            ..Default::default()
        };
        describe(&self.via, self.timeout, &self.security, request)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the member at {}; give the --raft-addr of a running member with --via",
                    self.via
                )
            })
    }

    async fn view(&self) -> anyhow::Result<ClusterView> {
        let entry = self.entry().await?;
        Ok(ClusterView::gather(entry, &self.via, self.timeout, &self.security, Vec::new(), false).await)
    }

    /// Applies a metadata command through the metadata leader.
    pub(crate) async fn submit(&self, command: &MetadataCommand) -> anyhow::Result<()> {
        let mut client = admin_client(&self.via, self.timeout, &self.security)
            .await
            .map_err(anyhow::Error::msg)?;
        let response = client
            .submit(SubmitRequest {
                cluster_id: self.cluster_id.clone(),
                command: serde_json::to_vec(command).expect("metadata commands serialize"),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        if response.error_code != 0 {
            return Err(Refused {
                code: response.error_code,
                message: response.message,
            }
            .into());
        }
        Ok(())
    }
}

/// A metadata command the cluster refused, with Kafka's error code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Refused {
    code: i32,
    message: String,
}

/// Kafka's REASSIGNMENT_IN_PROGRESS: here, a node is still deleting the
/// replica it had before; the move can start a moment later.
const REASSIGNMENT_IN_PROGRESS: i32 = 60;

/// The Raft state of the metadata group on its leader.
fn metadata_members(view: &ClusterView) -> Option<(Vec<u64>, Vec<u64>, bool)> {
    view.leader_replica(METADATA_GROUP)
        .map(|(_, r)| (r.raft.voters.clone(), r.raft.learners.clone(), r.raft.joint))
}

pub async fn add_node(args: AddNode, security: PeerSecurity) -> anyhow::Result<u8> {
    let (cluster, _) = Cluster::connect(&args.via, security).await?;
    let host = args
        .addr
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map(|(host, _)| host.to_string())
        .with_context(|| format!("--addr '{}' is not the node's Kafka HOST:PORT", args.addr))?;
    let raft_addr = format!("{}:{}", args.raft_host.as_deref().unwrap_or(&host), args.raft_port);
    let command = MetadataCommand::AddNode {
        node: args.id,
        raft_addr: raft_addr.clone(),
    };
    cluster
        .submit(&command)
        .await
        .with_context(|| format!("node {} was not added", args.id))?;
    if !args.via.json {
        println!(
            "node {} is a member (Raft {raft_addr}); waiting for it to catch up and become a voter",
            args.id
        );
    }
    // A voter, and started: it registers its Kafka listener once a member.
    let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
    let (voter, registered) = loop {
        let view = cluster.view().await?;
        let voter = metadata_members(&view).is_some_and(|(voters, learners, joint)| {
            voters.contains(&args.id) && !learners.contains(&args.id) && !joint
        });
        let registered = view
            .entry
            .nodes
            .iter()
            .find(|n| n.id == args.id)
            .and_then(|n| n.kafka_addr.clone());
        if (voter && registered.is_some()) || Instant::now() >= deadline {
            break (voter, registered);
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(registered) = registered.as_ref().filter(|r| **r != args.addr)
        && !args.via.json
    {
        eprintln!(
            "note: node {} registered the Kafka address {registered}, not {}; clients are told {registered}",
            args.id, args.addr
        );
    }
    #[derive(Serialize)]
    struct Added {
        node: u64,
        raft_addr: String,
        kafka_addr: Option<String>,
        voter: bool,
    }
    let added = Added {
        node: args.id,
        raft_addr,
        kafka_addr: registered,
        voter,
    };
    print(args.via.json, &added, |a: &Added| {
        if a.voter {
            println!(
                "node {} is a voter of the metadata group; run `cluster rebalance` to give it replicas",
                a.node
            );
        } else {
            println!(
                "node {} has not caught up yet: start it with `raft-cluster --raft-addr {} --join <member>`; \
                 it becomes a voter once it has",
                a.node, a.raft_addr
            );
        }
    });
    Ok(0)
}

pub async fn remove_node(args: RemoveNode, security: PeerSecurity) -> anyhow::Result<u8> {
    let (cluster, _) = Cluster::connect(&args.via, security).await?;
    let view = cluster.view().await?;
    let members: Vec<u64> = view.entry.nodes.iter().map(|n| n.id).collect();
    let leaving = args.id;
    if !members.contains(&leaving) {
        bail!(
            "node {leaving} is not a member of the cluster (members: {})",
            ids(&members)
        );
    }
    let staying: Vec<u64> = members.iter().copied().filter(|n| *n != leaving).collect();
    let answering = staying.iter().filter(|n| view.reports.contains_key(n)).count();
    if answering * 2 <= staying.len() {
        eprintln!(
            "error: refused: without node {leaving} the metadata group would have {} voter(s), of which only \
             {answering} answer: it would lose its quorum. Bring the other nodes back first",
            staying.len()
        );
        return Ok(EXIT_QUORUM);
    }
    let reachable = view.reports.contains_key(&leaving);
    if !reachable && !args.force {
        bail!("node {leaving} does not answer; if it is gone for good, remove it with --force");
    }
    // Replicas go only to nodes that answer: a move to a dead node would
    // never finish.
    let mut targets = answering_nodes(&view, args.via.json);
    if !targets.contains(&leaving) {
        targets.push(leaving);
    }
    let plan = match placement::drain(&assignments(&view.entry), &targets, leaving) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: refused: {e}. Add a node first (`cluster add-node`)");
            return Ok(EXIT_TOO_FEW_NODES);
        }
    };
    if !args.via.json {
        println!(
            "moving {} partition(s) off node {leaving}, {} at a time",
            plan.moves.len(),
            args.moves.max_concurrent_moves
        );
    }
    let outcome = run_moves(&cluster, &plan.moves, &args.moves, args.via.json).await?;
    cluster
        .submit(&MetadataCommand::RemoveNode { node: leaving })
        .await
        .with_context(|| format!("node {leaving} was not removed"))?;
    // The metadata group's leader removes it from the group next.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = cluster.view().await?;
        if metadata_members(&view)
            .is_some_and(|(voters, learners, _)| !voters.contains(&leaving) && !learners.contains(&leaving))
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!("node {leaving} is no longer a member, but the metadata group did not remove it within 60 s");
        }
        tokio::time::sleep(POLL).await;
    }
    let stopped = match retire(&cluster, &view, leaving).await {
        Ok(()) => true,
        Err(e) if args.force => {
            tracing_free_note(args.via.json, &format!("node {leaving} was not told to stop: {e}"));
            false
        }
        Err(e) => return Err(e.context(format!("node {leaving} was removed but not told to stop"))),
    };
    #[derive(Serialize)]
    struct Removed {
        node: u64,
        plan: Plan,
        moved: usize,
        seconds: f64,
        stopped: bool,
    }
    let removed = Removed {
        node: leaving,
        plan,
        moved: outcome.moved,
        seconds: outcome.seconds,
        stopped,
    };
    print(args.via.json, &removed, |r: &Removed| {
        println!(
            "node {} removed: {} partition(s) moved in {:.1} s; {}",
            r.node,
            r.moved,
            r.seconds,
            if r.stopped {
                "it has stopped"
            } else {
                "it was not reachable"
            }
        );
    });
    Ok(0)
}

fn tracing_free_note(json: bool, note: &str) {
    if !json {
        eprintln!("note: {note}");
    }
}

/// Tells the removed node to stop serving.
async fn retire(cluster: &Cluster, view: &ClusterView, node: u64) -> anyhow::Result<()> {
    let addr = view
        .entry
        .nodes
        .iter()
        .find(|n| n.id == node)
        .map(|n| n.raft_addr.clone())
        .context("its address is unknown")?;
    let mut client = admin_client(&addr, cluster.timeout, &cluster.security)
        .await
        .map_err(anyhow::Error::msg)?;
    client
        .retire(RetireRequest {
            cluster_id: cluster.cluster_id.clone(),
            node,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(())
}

pub async fn rebalance(args: Rebalance, security: PeerSecurity) -> anyhow::Result<u8> {
    let (cluster, _) = Cluster::connect(&args.via, security).await?;
    let view = cluster.view().await?;
    let members = answering_nodes(&view, args.via.json);
    let plan = placement::rebalance(&assignments(&view.entry), &members);
    if args.dry_run {
        print(args.via.json, &plan, print_plan);
        return Ok(0);
    }
    if !args.via.json {
        print_plan(&plan);
    }
    let outcome = run_moves(&cluster, &plan.moves, &args.moves, args.via.json).await?;
    let elected = elect_preferred_leaders(&cluster).await?;
    let view = cluster.view().await?;
    let mut leaders: BTreeMap<u64, usize> = members.iter().map(|n| (*n, 0)).collect();
    for p in view.entry.topics.iter().flat_map(|t| &t.partitions) {
        if let Some((leader, _)) = view.leader_replica(p.group) {
            *leaders.entry(leader).or_default() += 1;
        }
    }
    #[derive(Serialize)]
    struct Rebalanced {
        plan: Plan,
        moved: usize,
        seconds: f64,
        leaders_moved: usize,
        leaders_after: BTreeMap<u64, usize>,
    }
    let result = Rebalanced {
        plan,
        moved: outcome.moved,
        seconds: outcome.seconds,
        leaders_moved: elected,
        leaders_after: leaders,
    };
    print(args.via.json, &result, |r: &Rebalanced| {
        println!(
            "rebalanced: {} partition(s) moved in {:.1} s, {} leadership(s) handed to the preferred replica",
            r.moved, r.seconds, r.leaders_moved
        );
        println!("leaders now: {}", counts(&r.leaders_after));
    });
    Ok(0)
}

/// The members that answer, in id order; the others are named on stderr.
fn answering_nodes(view: &ClusterView, quiet: bool) -> Vec<u64> {
    for (id, error) in &view.unreachable {
        if !quiet {
            eprintln!("note: node {id} does not answer ({error}); no replica is moved to it");
        }
    }
    view.entry
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| view.reports.contains_key(id))
        .collect()
}

/// Every partition as it will be once the moves under way end.
fn assignments(entry: &NodeReport) -> Vec<Assignment> {
    entry
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Assignment {
                topic: t.name.clone(),
                partition: p.partition,
                group: p.group,
                replicas: p.target.clone().unwrap_or_else(|| p.replicas.clone()),
            })
        })
        .collect()
}

fn counts(counts: &BTreeMap<u64, usize>) -> String {
    counts
        .iter()
        .map(|(node, n)| format!("node {node}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_plan(plan: &Plan) {
    if plan.moves.is_empty() {
        println!("balanced already: no moves");
    }
    for m in &plan.moves {
        let kind = if m.reorders_only() {
            "preferred leader"
        } else {
            "replicas"
        };
        println!(
            "  {}-{}: {} -> {} ({kind})",
            m.topic,
            m.partition,
            ids(&m.from),
            ids(&m.to)
        );
    }
    println!("replicas before: {}", counts(&plan.replicas_before));
    println!("replicas after:  {}", counts(&plan.replicas_after));
    println!("preferred leaders before: {}", counts(&plan.leaders_before));
    println!("preferred leaders after:  {}", counts(&plan.leaders_after));
}

struct MovesOutcome {
    moved: usize,
    seconds: f64,
}

/// Starts the moves a few at a time and follows them until all are done,
/// with a progress bar: partitions moved, bytes the new replicas caught up.
async fn run_moves(cluster: &Cluster, moves: &[Move], args: &MoveArgs, quiet: bool) -> anyhow::Result<MovesOutcome> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(moves.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} partitions moved, {msg}, ETA {eta}")
            .expect("a valid template"),
    );
    let mut pending: Vec<&Move> = moves.iter().rev().collect();
    let mut running: Vec<&Move> = Vec::new();
    let mut moved = 0;
    while !pending.is_empty() || !running.is_empty() {
        while running.len() < args.max_concurrent_moves as usize
            && let Some(next) = pending.pop()
        {
            let command = MetadataCommand::ReassignPartitions {
                moves: vec![Reassignment {
                    topic: next.topic.clone(),
                    partition: next.partition,
                    replicas: Some(next.to.clone()),
                }],
            };
            match cluster.submit(&command).await {
                Ok(()) => running.push(next),
                Err(e)
                    if e.downcast_ref::<Refused>()
                        .is_some_and(|r| r.code == REASSIGNMENT_IN_PROGRESS) =>
                {
                    pending.push(next);
                    break;
                }
                Err(e) => return Err(e.context(format!("cannot start moving {}-{}", next.topic, next.partition))),
            }
        }
        tokio::time::sleep(POLL).await;
        let view = match cluster.view().await {
            Ok(view) => view,
            // The member asked may be between metadata leaders: ask again.
            Err(e) if Instant::now() < deadline => {
                bar.set_message(format!("waiting for the cluster: {e:#}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let (mut copied, mut total) = (0u64, 0u64);
        running.retain(|m| {
            let Some(p) = view.entry.partition(&m.topic, m.partition) else {
                // Deleted meanwhile: nothing left to move.
                return false;
            };
            if p.target.is_none() && p.replicas == m.to {
                moved += 1;
                return false;
            }
            let leader_bytes = view.leader_replica(m.group).and_then(|(_, r)| r.log_bytes).unwrap_or(0);
            for node in m.to.iter().filter(|n| !m.from.contains(n)) {
                let have = view
                    .reports
                    .get(node)
                    .and_then(|r| r.replica(m.group))
                    .and_then(|r| r.log_bytes)
                    .unwrap_or(0);
                copied += have.min(leader_bytes);
                total += leader_bytes;
            }
            true
        });
        bar.set_position(moved as u64);
        bar.set_message(format!(
            "{:.1}/{:.1} MiB caught up",
            copied as f64 / 1048576.0,
            total as f64 / 1048576.0
        ));
        if Instant::now() >= deadline {
            bar.abandon();
            bail!(
                "{} move(s) did not finish within {} s; they go on in the background (`cluster list-partitions` \
                 shows them)",
                running.len() + pending.len(),
                args.max_seconds
            );
        }
    }
    bar.finish_and_clear();
    Ok(MovesOutcome {
        moved,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Hands each partition's leadership to its preferred replica (the first)
/// where it is in sync and does not lead; returns how many were asked.
async fn elect_preferred_leaders(cluster: &Cluster) -> anyhow::Result<usize> {
    let view = cluster.view().await?;
    let mut asked = 0;
    for p in view.entry.topics.iter().flat_map(|t| &t.partitions) {
        let Some((leader, report)) = view.leader_replica(p.group) else {
            continue;
        };
        let Some(&preferred) = p.replicas.first() else { continue };
        if leader == preferred || !report.raft.isr.contains(&preferred) {
            continue;
        }
        let Some(addr) = view
            .entry
            .nodes
            .iter()
            .find(|n| n.id == leader)
            .map(|n| n.raft_addr.clone())
        else {
            continue;
        };
        let mut client = admin_client(&addr, cluster.timeout, &cluster.security)
            .await
            .map_err(anyhow::Error::msg)?;
        let request = TransferLeaderRequest {
            cluster_id: cluster.cluster_id.clone(),
            group: p.group,
            to: preferred,
        };
        if client.transfer_leader(request).await.is_ok() {
            asked += 1;
        }
    }
    // Each transfer takes an election; give them time to finish.
    let deadline = Instant::now() + Duration::from_secs(10);
    while asked > 0 && Instant::now() < deadline {
        let view = cluster.view().await?;
        let settled = view.entry.topics.iter().flat_map(|t| &t.partitions).all(|p| {
            let preferred = p.replicas.first();
            view.leader_replica(p.group)
                .is_some_and(|(leader, r)| preferred.is_none_or(|p| leader == *p || !r.raft.isr.contains(p)))
        });
        if settled {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(asked)
}
