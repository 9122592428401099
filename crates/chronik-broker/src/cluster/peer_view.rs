//! Leaders and in-sync replicas of the partitions this node does not lead.
//! Metadata must name them, and only their leaders know (a follower knows the
//! leader, but not which replicas are in sync); every node asks its peers
//! once a second.

use std::collections::HashMap;
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
}

impl PeerView {
    pub fn get(&self, group: GroupId) -> Option<RemoteLeader> {
        self.leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .cloned()
    }

    fn replace(&self, leaders: HashMap<GroupId, RemoteLeader>) {
        *self.leaders.write().unwrap_or_else(|e| e.into_inner()) = leaders;
    }
}

async fn describe_peer(addr: &str) -> Result<NodeReport, String> {
    let mut client = admin_client(addr, PEER_TIMEOUT).await?;
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
        let mut leaders: HashMap<GroupId, RemoteLeader> = HashMap::new();
        for (id, addr) in broker.peers.all() {
            let Ok(report) = describe_peer(&addr).await else {
                tracing::debug!(peer = id, "peer did not answer a describe");
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
        broker.peer_view.replace(leaders);
    }
}
