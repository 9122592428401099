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

/// The groups one peer leads, as of a version of its leadership.
struct PeerLeaders {
    version: u64,
    leaders: Vec<(GroupId, RemoteLeader)>,
}

/// What the peer at `addr` leads, or `None` when it is still `known`.
async fn describe_peer(addr: &str, security: &PeerSecurity, known: Option<u64>) -> Result<Option<PeerLeaders>, String> {
    let mut client = admin_client(addr, PEER_TIMEOUT, security).await?;
    let response = client
        .describe(DescribeRequest {
            leading_only: true,
            unless_version: known.unwrap_or(0),
            ..Default::default()
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    if response.unchanged {
        return Ok(None);
    }
    let report: NodeReport = serde_json::from_slice(&response.report).map_err(|e| e.to_string())?;
    let leaders = report
        .replicas
        .into_iter()
        .filter(|replica| replica.raft.leader == Some(report.node_id))
        .map(|replica| {
            let raft = replica.raft;
            let leader = RemoteLeader {
                leader: report.node_id,
                term: raft.term,
                isr: raft.isr,
            };
            (raft.group, leader)
        })
        .collect();
    Ok(Some(PeerLeaders {
        version: response.version,
        leaders,
    }))
}

/// Refreshes the view from every peer, forever.
pub async fn run_peer_view(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(REFRESH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Each peer's last answer: a peer whose leadership did not change
    // since answers in a few bytes, however many groups it leads.
    let mut answers: HashMap<NodeId, PeerLeaders> = HashMap::new();
    loop {
        interval.tick().await;
        learn_member_addresses(&broker);
        let mut unreachable = HashSet::new();
        let peers = broker.peers.all();
        answers.retain(|id, _| peers.iter().any(|(peer, _)| peer == id));
        for (id, addr) in peers {
            let known = answers.get(&id).map(|a| a.version);
            match describe_peer(&addr, &broker.peer_security, known).await {
                Ok(Some(fresh)) => {
                    answers.insert(id, fresh);
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::debug!(peer = id, "peer did not answer a describe");
                    answers.remove(&id);
                    unreachable.insert(id);
                }
            }
        }
        let mut leaders: HashMap<GroupId, RemoteLeader> = HashMap::new();
        for (group, leader) in answers.values().flat_map(|a| &a.leaders) {
            if leaders.get(group).is_none_or(|known| known.term < leader.term) {
                leaders.insert(*group, leader.clone());
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
