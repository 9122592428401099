//! Health and readiness, for Kubernetes probes and load balancers.
//!
//! Healthy: the process runs and its Raft loop finishes iterations; a hung
//! loop (an fsync that never returns) fails it. Ready: this node has joined,
//! has applied the metadata up to the metadata leader's commit, and every
//! Raft group it replicates has a leader.

use std::collections::HashMap;
use std::time::Duration;

use crate::Broker;
use chronik_raft::METADATA_GROUP;

/// A loop that finished no iteration for this long is hung. It iterates at
/// least every tick (100 ms); a slow fsync alone rarely takes seconds.
pub const LOOP_STALL_BOUND: Duration = Duration::from_secs(10);
/// How long readiness waits to catch up with the metadata leader.
const METADATA_SYNC_BOUND: Duration = Duration::from_secs(3);

pub fn health(broker: &Broker) -> Result<(), String> {
    let since = broker.raft_pulse().since_last();
    if since > LOOP_STALL_BOUND {
        return Err(format!(
            "the Raft loop has not finished an iteration for {since:?} (bound {LOOP_STALL_BOUND:?})"
        ));
    }
    Ok(())
}

/// `Ok` when ready, else each reason it is not.
pub async fn readiness(broker: &Broker) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = health(broker) {
        problems.push(e);
    }
    if !broker.is_joined() {
        problems.push("this node has not joined its cluster yet".to_string());
        return Err(problems);
    }
    match tokio::time::timeout(METADATA_SYNC_BOUND, broker.sync_metadata()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("metadata is not caught up with its leader: {e}")),
        Err(_) => problems.push(format!(
            "metadata did not catch up with its leader within {METADATA_SYNC_BOUND:?}"
        )),
    }
    let names: HashMap<u64, String> = broker
        .state
        .metadata()
        .topics
        .iter()
        .flat_map(|(name, topic)| {
            topic
                .partitions
                .iter()
                .enumerate()
                .map(move |(index, p)| (p.group, format!("{name}-{index}")))
        })
        .collect();
    for report in broker.describe_groups().await {
        if report.leader.is_some() || report.group == METADATA_GROUP {
            continue;
        }
        let name = names.get(&report.group).map_or("a retired partition", String::as_str);
        problems.push(format!("partition {name} (Raft group {}) has no leader", report.group));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}
