//! Leaders and in-sync replicas of the partitions this node does not lead.
//! Metadata must name them, and only their leaders know (a follower knows the
//! leader, but not which replicas are in sync); every node asks its peers
//! once a second. The same probe tells which peers are reachable, so that
//! Metadata offers clients only live brokers, and keeps the transport's
//! peer addresses up to date with the members.

use chronik_raft::grpc::PeerSecurity;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chronik_raft::{GroupId, NodeId};

use super::admin_client;
use super::proto::DescribeRequest;
use super::report::NodeReport;
use crate::Broker;

const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLeader {
    pub leader: NodeId,
    pub term: u64,
    pub isr: Vec<NodeId>,
}

#[derive(Default)]
pub struct PeerView {
    leaders: RwLock<HashMap<GroupId, RemoteLeader>>,
    /// Peers that did not answer the last probe.
    unreachable: RwLock<HashSet<NodeId>>,
}

impl PeerView {
    pub fn get(&self, group: GroupId) -> Option<RemoteLeader> {
        self.leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .cloned()
    }

    /// Whether `node` failed the last probe; a peer not probed yet counts
    /// as reachable.
    pub fn unreachable(&self, node: NodeId) -> bool {
        self.unreachable
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&node)
    }

    fn replace(&self, leaders: HashMap<GroupId, RemoteLeader>, unreachable: HashSet<NodeId>) {
        *self.leaders.write().unwrap_or_else(|e| e.into_inner()) = leaders;
        *self.unreachable.write().unwrap_or_else(|e| e.into_inner()) = unreachable;
    }
}

async fn describe_peer(addr: &str, security: &PeerSecurity) -> Result<NodeReport, String> {
    let mut client = admin_client(addr, PEER_TIMEOUT, security).await?;
    let report = client
        .describe(DescribeRequest {
            leading_only: true,
            ..Default::default()
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner()
        .report;
    serde_json::from_slice(&report).map_err(|e| e.to_string())
}

/// Refreshes the view from every peer, forever.
pub async fn run_peer_view(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(REFRESH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        learn_member_addresses(&broker);
        let mut leaders: HashMap<GroupId, RemoteLeader> = HashMap::new();
        let mut unreachable = HashSet::new();
        for (id, addr) in broker.peers.all() {
            let Ok(report) = describe_peer(&addr, &broker.peer_security).await else {
                tracing::debug!(peer = id, "peer did not answer a describe");
                unreachable.insert(id);
                continue;
            };
            for replica in report.replicas {
                let raft = replica.raft;
                if raft.leader != Some(report.node_id) {
                    continue;
                }
                let newer = leaders.get(&raft.group).is_none_or(|known| known.term < raft.term);
                if newer {
                    leaders.insert(
                        raft.group,
                        RemoteLeader {
                            leader: report.node_id,
                            term: raft.term,
                            isr: raft.isr,
                        },
                    );
                }
            }
        }
        broker.peer_view.replace(leaders, unreachable);
    }
}

/// Members added since the node started get their Raft addresses known to
/// the transport. Addresses already known (from --peers) are kept: they are
/// how the operator told this node to reach its peers.
fn learn_member_addresses(broker: &Broker) {
    let own = broker.config.node_id;
    let members: Vec<(NodeId, String)> = broker
        .state
        .metadata()
        .nodes
        .iter()
        .filter(|(id, node)| **id != own && !node.raft_addr.is_empty())
        .map(|(id, node)| (*id, node.raft_addr.clone()))
        .collect();
    for (id, addr) in members {
        if broker.peers.get(id).is_none() {
            broker.peers.set(id, addr);
        }
    }
}
