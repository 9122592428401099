//! Brings the Raft members of every group this node leads to what the
//! metadata wants: the metadata group's members are the cluster's nodes, a
//! partition group's are its replicas, or the target of its reassignment.
//!
//! The steps come from `chronik_state::reconfigure`; this task only looks
//! at the groups a few times a second and carries the steps out. The state
//! it works towards lives in the replicated metadata, so a new leader picks
//! up where a failed one stopped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_raft::GroupId;
use chronik_state::metadata::MetadataCommand;
use chronik_state::reconfigure::{Step, deleted_replicas, plan};

use crate::Broker;

const INTERVAL: Duration = Duration::from_millis(250);
/// A leadership transfer is given this long before it is asked for again.
const TRANSFER_GRACE: Duration = Duration::from_secs(3);

/// Runs until the process ends.
pub async fn run_reconciler(broker: Arc<Broker>) {
    let busy: Arc<Mutex<HashSet<GroupId>>> = Arc::default();
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = broker.config.node_id;
    // The leadership version and metadata index of the last pass that found
    // nothing to do: until either moves, no pass would find anything, and
    // skipping it keeps an idle node from describing every group 4 times a
    // second.
    let mut settled_at = None;
    loop {
        interval.tick().await;
        let seen = (broker.leadership_version(), broker.state.metadata().applied_index);
        if settled_at == Some(seen) {
            continue;
        }
        let reports = broker.describe_groups().await;
        let held: HashSet<GroupId> = reports.iter().map(|r| r.group).collect();
        let owed = deleted_replicas(me, &broker.state.metadata(), |group| held.contains(&group));
        let mut settled = owed.is_empty();
        for command in owed {
            if let Err(e) = broker.propose_metadata(command).await {
                tracing::debug!("cannot confirm a deleted replica yet: {e}");
            }
        }
        for report in reports.into_iter().filter(|r| r.leader == Some(me)) {
            let step = plan(me, &broker.state.metadata(), &report);
            if matches!(step, Step::Idle) {
                continue;
            }
            settled = false;
            if matches!(step, Step::Wait) {
                continue;
            }
            if !busy.lock().unwrap_or_else(|e| e.into_inner()).insert(report.group) {
                continue;
            }
            let (broker, busy) = (broker.clone(), busy.clone());
            tokio::spawn(async move {
                carry_out(&broker, report.group, step).await;
                busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&report.group);
            });
        }
        settled_at = settled.then_some(seen);
    }
}

async fn carry_out(broker: &Broker, group: GroupId, step: Step) {
    match step {
        Step::Change(change) => {
            if let Err(e) = broker.change_membership(group, change.clone()).await {
                tracing::debug!(group, ?change, "membership change not applied: {e}");
            }
        }
        Step::TransferLeader(to) => {
            tracing::info!(
                group,
                to,
                "handing the leadership over: this node is not to keep a replica"
            );
            if let Err(e) = broker.transfer_leader(group, to).await {
                tracing::debug!(group, to, "leadership transfer not started: {e}");
            }
            tokio::time::sleep(TRANSFER_GRACE).await;
        }
        Step::Complete(replicas) => {
            let command = MetadataCommand::CompleteReassignment { group, replicas };
            match broker.propose_metadata(command).await {
                Ok(()) => tracing::info!(group, "reassignment complete"),
                Err(e) => tracing::debug!(group, "reassignment not recorded as complete: {e}"),
            }
        }
        Step::Wait | Step::Idle => {}
    }
}
