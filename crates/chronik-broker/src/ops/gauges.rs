//! Gauges read from the node's state when Prometheus scrapes, rather than
//! kept up to date on every change: Raft roles, replication health, log
//! sizes, and consumer groups with their lag.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use metrics::{Unit, describe_gauge, gauge};

use crate::Broker;
use crate::groups::coordinator::offsets_partition;
use crate::ops::telemetry::CONNECTIONS;
use chronik_raft::METADATA_GROUP;

pub const RAFT_LEADERS: &str = "chronik_raft_leaders";
pub const RAFT_FOLLOWERS: &str = "chronik_raft_followers";
pub const RAFT_LEARNERS: &str = "chronik_raft_learners";
pub const UNDER_REPLICATED: &str = "chronik_partitions_under_replicated";
pub const OFFLINE: &str = "chronik_partitions_offline";
pub const LOG_SIZE: &str = "chronik_partition_log_size_bytes";
pub const HIGH_WATERMARK: &str = "chronik_partition_high_watermark";
pub const GROUP_MEMBERS: &str = "chronik_group_members";
pub const CONSUMER_LAG: &str = "chronik_consumer_lag";

/// Partitions, and group partitions, that get series of their own.
const MAX_SERIES: usize = 10_000;

pub fn describe() {
    describe_gauge!(RAFT_LEADERS, "Raft groups this node leads");
    describe_gauge!(RAFT_FOLLOWERS, "Raft groups this node follows as a voter");
    describe_gauge!(RAFT_LEARNERS, "Raft groups this node is catching up in as a learner");
    describe_gauge!(
        UNDER_REPLICATED,
        "Partitions led here with fewer in-sync replicas than voters"
    );
    describe_gauge!(
        OFFLINE,
        "Partitions without a leader (reported by the metadata leader only, as Kafka's controller does)"
    );
    describe_gauge!(LOG_SIZE, Unit::Bytes, "Bytes of a partition replica's log on this node");
    describe_gauge!(HIGH_WATERMARK, "A partition replica's high watermark on this node");
    describe_gauge!(GROUP_MEMBERS, "Members of a consumer group this node coordinates");
    describe_gauge!(
        CONSUMER_LAG,
        "High watermark less committed offset, per group and partition (by the group's coordinator)"
    );
}

/// Sets every scrape-time gauge from the node's state now.
pub async fn collect(broker: &Broker) {
    gauge!(CONNECTIONS).set(broker.telemetry.traffic.connections.load(Ordering::Relaxed) as f64);
    collect_raft(broker).await;
    for partition in broker.state.all_partitions().iter().take(MAX_SERIES) {
        let labels = [
            ("topic", partition.topic.clone()),
            ("partition", partition.index.to_string()),
        ];
        gauge!(LOG_SIZE, &labels).set(partition.log().size_bytes() as f64);
        gauge!(HIGH_WATERMARK, &labels).set(partition.high_watermark() as f64);
    }
    collect_groups(broker);
}

async fn collect_raft(broker: &Broker) {
    let me = broker.config.node_id;
    let (mut leaders, mut followers, mut learners, mut under_replicated) = (0u32, 0u32, 0u32, 0u32);
    for report in broker.describe_groups().await {
        if report.learners.contains(&me) {
            learners += 1;
        } else if report.role == "Leader" {
            leaders += 1;
            if report.group != METADATA_GROUP && report.isr.len() < report.voters.len() {
                under_replicated += 1;
            }
        } else {
            followers += 1;
        }
    }
    gauge!(RAFT_LEADERS).set(leaders);
    gauge!(RAFT_FOLLOWERS).set(followers);
    gauge!(RAFT_LEARNERS).set(learners);
    gauge!(UNDER_REPLICATED).set(under_replicated);
    let offline = if broker.leader_of(METADATA_GROUP) == Some(me) {
        let groups: Vec<u64> = broker
            .state
            .metadata()
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| p.group))
            .collect();
        groups.into_iter().filter(|g| broker.leader_of(*g).is_none()).count()
    } else {
        0
    };
    gauge!(OFFLINE).set(offline as f64);
}

/// The groups this node coordinates, by id, with their members (of either
/// protocol).
pub(crate) fn coordinated_groups(broker: &Broker) -> Vec<(String, usize)> {
    let mut ids: BTreeSet<String> = broker.groups.group_ids().into_iter().collect();
    ids.extend(broker.groups.consumer_group_ids());
    ids.extend(broker.state.offsets.groups());
    ids.into_iter()
        .filter(|id| offsets_partition(broker, id).is_ok())
        .map(|group| {
            let members = broker
                .consumer_group(&group, |g| g.members().count())
                .filter(|n| *n > 0)
                .or_else(|| broker.groups.existing(&group, |g| g.members().len()))
                .unwrap_or(0);
            (group, members)
        })
        .collect()
}

/// Members and lag of the groups this node coordinates. The lag of a
/// partition is known where its log is: on a replica of it.
fn collect_groups(broker: &Broker) {
    let mut series = 0;
    for (group, members) in coordinated_groups(broker) {
        gauge!(GROUP_MEMBERS, "group" => group.clone()).set(members as f64);
        for ((topic, index), committed) in broker.state.offsets.offsets(&group) {
            if series >= MAX_SERIES {
                return;
            }
            let Ok(partition) = broker.state.local_partition(&topic, index) else {
                continue;
            };
            series += 1;
            let lag = (partition.high_watermark() - committed.offset).max(0);
            gauge!(CONSUMER_LAG, "group" => group.clone(), "topic" => topic, "partition" => index.to_string())
                .set(lag as f64);
        }
    }
}
