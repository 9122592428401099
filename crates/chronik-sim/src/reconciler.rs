//! The broker's reconciler, in simulated time: every node looks at the
//! groups it leads a few times a second and takes the next step towards the
//! members the metadata wants (the very steps of `reconfigure::plan`).

use std::time::Duration;

use chronik_state::metadata::MetadataCommand;
use chronik_state::reconfigure::{Step, deleted_replicas, plan};

use crate::admin::Admin;
use crate::history::History;
use crate::node::SimNode;

/// How often each node looks, as the broker's task does.
const INTERVAL: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Reconciler {
    next_at: Duration,
}

impl Reconciler {
    pub fn step(&mut self, now: Duration, nodes: &mut [SimNode], admin: &mut Admin, history: &mut History) {
        if now < self.next_at {
            return;
        }
        self.next_at = now + INTERVAL;
        for node in nodes.iter_mut().filter(|n| n.is_reachable(now)) {
            let me = node.id;
            let Some(metadata) = node.shared().map(|s| s.metadata().clone()) else {
                continue;
            };
            let reports = node.describe();
            let held: Vec<u64> = reports.iter().map(|r| r.group).collect();
            for command in deleted_replicas(me, &metadata, |group| held.contains(&group)) {
                if !admin.queued(&command) {
                    admin.push(command);
                }
            }
            for report in reports.into_iter().filter(|r| r.leader == Some(me)) {
                let group = report.group;
                match plan(me, &metadata, &report) {
                    Step::Change(change) => {
                        history.record(now, format!("node {me}: group {group}: {change:?}"));
                        node.change_membership(group, change);
                    }
                    Step::TransferLeader(to) => {
                        history.record(now, format!("node {me}: group {group}: hand the leadership to {to}"));
                        node.transfer_leader(group, to);
                    }
                    Step::Complete(replicas) => {
                        let command = MetadataCommand::CompleteReassignment { group, replicas };
                        if !admin.queued(&command) {
                            admin.push(command);
                        }
                    }
                    Step::Wait | Step::Idle => {}
                }
            }
        }
    }
}
