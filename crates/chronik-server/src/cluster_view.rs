//! A cluster as the admin service shows it: one member's view, and the
//! reports of every node it names, gathered over gRPC. The `cluster`
//! commands read it; nothing is cached or made up.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use chronik_broker::cluster::admin_client;
use chronik_broker::cluster::proto::DescribeRequest;
use chronik_broker::cluster::report::{NodeReport, ReplicaReport};
use chronik_raft::grpc::PeerSecurity;
use serde::Serialize;

pub(crate) async fn describe(
    addr: &str,
    timeout: Duration,
    security: &PeerSecurity,
    request: DescribeRequest,
) -> anyhow::Result<NodeReport> {
    let mut client = admin_client(addr, timeout, security)
        .await
        .map_err(anyhow::Error::msg)?;
    let report = client
        .describe(request)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .report;
    serde_json::from_slice(&report).context("the node sent an undecodable report")
}

pub(crate) fn print<T: Serialize>(json: bool, value: &T, human: fn(&T)) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).expect("views serialize"));
    } else {
        human(value);
    }
}

/// The reports of every node that answered, keyed by node id.
pub(crate) struct ClusterView {
    pub(crate) entry: NodeReport,
    pub(crate) reports: BTreeMap<u64, NodeReport>,
    pub(crate) unreachable: BTreeMap<u64, String>,
}

impl ClusterView {
    pub(crate) async fn gather(
        entry: NodeReport,
        entry_addr: &str,
        timeout: Duration,
        security: &PeerSecurity,
        groups: Vec<u64>,
        checksums: bool,
    ) -> Self {
        let mut reports = BTreeMap::new();
        let mut unreachable = BTreeMap::new();
        for node in &entry.nodes {
            let addr = if node.id == entry.node_id {
                entry_addr.to_string()
            } else {
                node.raft_addr.clone()
            };
            let request = DescribeRequest {
                groups: groups.clone(),
                checksums,
                ..Default::default()
            };
            match describe(&addr, timeout, security, request).await {
                Ok(report) => {
                    reports.insert(node.id, report);
                }
                Err(e) => {
                    unreachable.insert(node.id, format!("{e:#}"));
                }
            }
        }
        ClusterView {
            entry,
            reports,
            unreachable,
        }
    }

    /// The leader's replica of `group`: the answering node that leads it in
    /// the highest term.
    pub(crate) fn leader_replica(&self, group: u64) -> Option<(u64, &ReplicaReport)> {
        self.reports
            .iter()
            .filter_map(|(id, report)| report.replica(group).map(|r| (*id, r)))
            .filter(|(id, r)| r.raft.leader == Some(*id))
            .max_by_key(|(_, r)| r.raft.term)
    }
}

/// Node ids as a comma-separated list.
pub(crate) fn ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}
