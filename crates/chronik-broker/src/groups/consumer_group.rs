//! A group of the consumer group protocol (KIP-848): members heartbeat, the
//! coordinator computes the target assignment with a server-side assignor,
//! and reconciles each member towards it. A partition moves only after its
//! previous owner has confirmed it gave it up (or was fenced), so no two
//! members own a partition at once.
//!
//! Pure state: time comes in as arguments, and the caller persists
//! `snapshot()` whenever `take_unsaved()` says it changed.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assignor::{self, ASSIGNORS, MemberSpec, Partitions};
use crate::ops::telemetry;

/// One heartbeat, as the member sent it.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed: Option<Vec<String>>,
    /// A regular expression topic names must match in full; `None`:
    /// unchanged, empty: none.
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// The partitions the member owns, if it said.
    pub owned: Option<Partitions>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub member_id: String,
    pub member_epoch: i32,
    /// `None` when the member already has it.
    pub assignment: Option<Partitions>,
}

pub type Refusal = (ResponseError, String);

/// The topics the group may be assigned: name to id and partition count.
pub type Topics = BTreeMap<String, (Uuid, i32)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Owns its target.
    Stable,
    /// Must give up `revoking` before it moves on.
    UnrevokedPartitions,
    /// Waits for partitions that other members have not yet given up.
    UnreleasedPartitions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub subscribed: BTreeSet<String>,
    #[serde(default)]
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// A static member that left with epoch -2: it keeps its partitions for
    /// its session, for the same `instance_id` to take over.
    #[serde(default)]
    pub away: bool,
    /// What the member owns, as the coordinator granted it.
    pub assigned: Partitions,
    /// What it was asked to give up and has not yet confirmed.
    pub revoking: Partitions,
    /// What it was last sent; not persisted, so a new coordinator resends.
    #[serde(skip)]
    sent: Option<Partitions>,
    /// `regex`, compiled.
    #[serde(skip)]
    compiled: Option<regex::Regex>,
    #[serde(skip)]
    session_deadline: i64,
    #[serde(skip)]
    revoke_deadline: Option<i64>,
}

impl Member {
    /// The existing topics the member subscribes to, by name or regex: id
    /// and partition count.
    fn topics(&self, topics: &Topics) -> Vec<(Uuid, i32)> {
        topics
            .iter()
            .filter(|(name, _)| {
                self.subscribed.contains(*name) || self.compiled.as_ref().is_some_and(|r| r.is_match(name))
            })
            .map(|(_, topic)| *topic)
            .collect()
    }
}

impl Member {
    fn set_regex(&mut self, regex: Option<String>) {
        self.compiled = regex.as_deref().and_then(full_match);
        self.regex = regex;
    }
}

/// Kafka matches a subscription regex against whole topic names.
pub fn full_match(regex: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{regex})$")).ok()
}

/// What is persisted; a new coordinator carries on from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerGroupSnapshot {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: Vec<Member>,
    pub target: BTreeMap<String, Partitions>,
    /// The subscribed topics' ids and sizes the target was computed for.
    pub topics: BTreeMap<Uuid, i32>,
}

/// How the snapshot is stored, so it cannot be read as a classic group's.
#[derive(Serialize, Deserialize)]
struct Stored {
    consumer_group: ConsumerGroupSnapshot,
}

pub fn encode(snapshot: &ConsumerGroupSnapshot) -> Vec<u8> {
    serde_json::to_vec(&Stored {
        consumer_group: snapshot.clone(),
    })
    .expect("snapshots serialize")
}

/// The snapshot in `bytes`, if they hold a consumer-protocol group's.
pub fn decode(bytes: &[u8]) -> Option<ConsumerGroupSnapshot> {
    serde_json::from_slice::<Stored>(bytes).ok().map(|s| s.consumer_group)
}

pub struct ConsumerGroup {
    id: String,
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, Partitions>,
    topics: BTreeMap<Uuid, i32>,
    session_timeout_ms: i64,
    unsaved: bool,
}

impl ConsumerGroup {
    pub fn new(id: &str, session_timeout_ms: i64) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: BTreeMap::new(),
            session_timeout_ms,
            unsaved: false,
        }
    }

    /// The group as persisted; every member gets a fresh session.
    pub fn restore(id: &str, snapshot: ConsumerGroupSnapshot, session_timeout_ms: i64, now_ms: i64) -> ConsumerGroup {
        let members = snapshot
            .members
            .into_iter()
            .map(|mut m| {
                m.session_deadline = now_ms + session_timeout_ms;
                let regex = m.regex.take();
                m.set_regex(regex);
                if m.state == MemberState::UnrevokedPartitions {
                    m.revoke_deadline = Some(now_ms + i64::from(m.rebalance_timeout_ms.max(0)));
                }
                (m.id.clone(), m)
            })
            .collect();
        ConsumerGroup {
            id: id.to_string(),
            epoch: snapshot.epoch,
            assignment_epoch: snapshot.assignment_epoch,
            members,
            target: snapshot.target,
            topics: snapshot.topics,
            session_timeout_ms,
            unsaved: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn target_of(&self, member: &str) -> Partitions {
        self.target.get(member).cloned().unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's names: empty, assigning (a new target is being computed),
    /// reconciling (members move towards it), stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor the group uses: the one most members ask for, else uniform.
    pub fn assignor(&self) -> &'static str {
        let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for wanted in self.members.values().filter_map(|m| m.assignor.as_deref()) {
            if let Some(name) = ASSIGNORS.iter().find(|a| **a == wanted) {
                *votes.entry(name).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, count)| (*count, std::cmp::Reverse(*name)))
            .map_or(assignor::UNIFORM, |(name, _)| name)
    }

    /// After a failed write: the state must still be saved.
    pub fn mark_unsaved(&mut self) {
        self.unsaved = true;
    }

    pub fn has_unsaved(&self) -> bool {
        self.unsaved
    }

    pub fn take_unsaved(&mut self) -> Option<ConsumerGroupSnapshot> {
        std::mem::take(&mut self.unsaved).then(|| self.snapshot())
    }

    pub fn snapshot(&self) -> ConsumerGroupSnapshot {
        ConsumerGroupSnapshot {
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            members: self.members.values().cloned().collect(),
            target: self.target.clone(),
            topics: self.topics.clone(),
        }
    }

    fn bump(&mut self) {
        self.epoch += 1;
        telemetry::rebalanced(&self.id);
        self.unsaved = true;
    }

    /// Whether a commit from `member` at `epoch` may be taken. Kafka: a
    /// negative epoch is an admin (or simple consumer) commit, allowed only
    /// while the group has no members.
    pub fn validate_commit(&self, member: &str, epoch: i32) -> Result<(), ResponseError> {
        if epoch < 0 {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        let Some(known) = self.members.get(member) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if epoch != known.epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    pub fn heartbeat(&mut self, request: Heartbeat, topics: &Topics, now_ms: i64) -> Result<Reply, Refusal> {
        if let Some(wanted) = request.assignor.as_deref()
            && !ASSIGNORS.contains(&wanted)
        {
            return Err((
                ResponseError::UnsupportedAssignor,
                format!(
                    "assignor '{wanted}' is not supported; use one of {}",
                    ASSIGNORS.join(", ")
                ),
            ));
        }
        match request.member_epoch {
            -1 | -2 => Ok(self.leave(request)),
            0 => self.join(request, topics, now_ms),
            _ => self.continue_member(request, topics, now_ms),
        }
    }

    fn leave(&mut self, request: Heartbeat) -> Reply {
        let temporary = request.member_epoch == -2;
        match self.members.get_mut(&request.member_id) {
            // A static member restarting: its partitions wait for it.
            Some(member) if temporary && member.instance_id.is_some() => {
                member.away = true;
                self.unsaved = true;
            }
            Some(_) => {
                self.members.remove(&request.member_id);
                self.target.remove(&request.member_id);
                self.bump();
            }
            None => {}
        }
        Reply {
            member_id: request.member_id,
            member_epoch: request.member_epoch,
            assignment: None,
        }
    }

    fn join(&mut self, request: Heartbeat, topics: &Topics, now_ms: i64) -> Result<Reply, Refusal> {
        if request.subscribed.is_none() && request.regex.is_none() {
            return Err((
                ResponseError::InvalidRequest,
                "a joining member must send its subscribed topic names or regex".into(),
            ));
        }
        let subscribed = request.subscribed.clone().unwrap_or_default();
        if request.rebalance_timeout_ms < 0 {
            return Err((
                ResponseError::InvalidRequest,
                "a joining member must send its rebalance timeout".into(),
            ));
        }
        let member_id = if request.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            request.member_id.clone()
        };
        // A static member that restarts takes the place of its old self,
        // with its epoch and partitions, once that one has left with -2.
        let previous = request.instance_id.as_ref().and_then(|instance| {
            self.members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance) && m.id != member_id)
                .map(|m| (m.id.clone(), m.away))
        });
        if let Some((old, away)) = previous {
            if !away {
                return Err((
                    ResponseError::UnreleasedInstanceId,
                    format!(
                        "instance id {} is still used by member {old}, which must leave first",
                        request.instance_id.as_deref().unwrap_or_default()
                    ),
                ));
            }
            let mut member = self.members.remove(&old).expect("found above");
            member.id = member_id.clone();
            member.away = false;
            member.sent = None;
            member.session_deadline = now_ms + self.session_timeout_ms;
            member.client_id = request.client_id.clone();
            member.client_host = request.client_host.clone();
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
            if let Some(target) = self.target.remove(&old) {
                self.target.insert(member_id.clone(), target);
            }
            self.members.insert(member_id.clone(), member);
            self.unsaved = true;
            return Ok(self.advance(&member_id, topics, now_ms));
        }
        // Joining again (epoch 0) starts over: the member owns nothing.
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id.clone(),
                instance_id: request.instance_id.clone(),
                rack_id: request.rack_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                epoch: 0,
                previous_epoch: 0,
                state: MemberState::Stable,
                subscribed: subscribed.into_iter().collect(),
                regex: None,
                assignor: request.assignor.clone(),
                rebalance_timeout_ms: request.rebalance_timeout_ms,
                away: false,
                assigned: Partitions::new(),
                revoking: Partitions::new(),
                sent: None,
                compiled: None,
                session_deadline: now_ms + self.session_timeout_ms,
                revoke_deadline: None,
            },
        );
        let member = self.members.get_mut(&member_id).expect("inserted above");
        member.set_regex(request.regex.clone().filter(|r| !r.is_empty()));
        self.bump();
        Ok(self.advance(&member_id, topics, now_ms))
    }

    fn continue_member(&mut self, request: Heartbeat, topics: &Topics, now_ms: i64) -> Result<Reply, Refusal> {
        let id = request.member_id.clone();
        let Some(member) = self.members.get_mut(&id) else {
            return Err((
                ResponseError::UnknownMemberId,
                format!("member {id} is not in group {}", self.id),
            ));
        };
        let owned_within = request
            .owned
            .as_ref()
            .is_some_and(|owned| owned.is_subset(&member.assigned));
        let epoch_ok = request.member_epoch == member.epoch
            // The reply that carried the new epoch was lost.
            || (request.member_epoch == member.previous_epoch && owned_within);
        if !epoch_ok {
            return Err((
                ResponseError::FencedMemberEpoch,
                format!(
                    "member {id} sent epoch {}, the coordinator has {}",
                    request.member_epoch, member.epoch
                ),
            ));
        }
        member.session_deadline = now_ms + self.session_timeout_ms;
        if request.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        let mut changed = false;
        if let Some(subscribed) = request.subscribed {
            let subscribed: BTreeSet<String> = subscribed.into_iter().collect();
            if subscribed != member.subscribed {
                member.subscribed = subscribed;
                changed = true;
            }
        }
        if let Some(regex) = request.regex {
            let regex = Some(regex).filter(|r| !r.is_empty());
            if regex != member.regex {
                member.set_regex(regex);
                changed = true;
            }
        }
        if request.assignor.is_some() && request.assignor != member.assignor {
            member.assignor = request.assignor;
            changed = true;
        }
        if let Some(owned) = &request.owned {
            if member.state == MemberState::UnrevokedPartitions && owned.is_disjoint(&member.revoking) {
                member.revoking.clear();
                member.revoke_deadline = None;
                member.state = MemberState::UnreleasedPartitions;
                self.unsaved = true;
            }
            if *owned != member.assigned {
                // Whatever it believes, resend what it owns.
                member.sent = None;
            }
        }
        if changed {
            self.bump();
        }
        Ok(self.advance(&id, topics, now_ms))
    }

    /// Recomputes the target if the group changed, then moves `id` towards it.
    fn advance(&mut self, id: &str, topics: &Topics, now_ms: i64) -> Reply {
        let sizes = self.subscribed_sizes(topics);
        if sizes != self.topics {
            self.topics = sizes;
            self.bump();
        }
        if self.assignment_epoch < self.epoch {
            self.compute_target(topics);
        }
        self.reconcile(id, now_ms);
        let member = self.members.get_mut(id).expect("advanced members exist");
        let assignment = (member.sent.as_ref() != Some(&member.assigned)).then(|| member.assigned.clone());
        member.sent = Some(member.assigned.clone());
        Reply {
            member_id: id.to_string(),
            member_epoch: member.epoch,
            assignment,
        }
    }

    /// The id and size of every existing topic some member subscribes to.
    fn subscribed_sizes(&self, topics: &Topics) -> BTreeMap<Uuid, i32> {
        self.members.values().flat_map(|m| m.topics(topics)).collect()
    }

    fn compute_target(&mut self, topics: &Topics) {
        let specs: Vec<MemberSpec<'_>> = self
            .members
            .values()
            .map(|m| MemberSpec {
                id: &m.id,
                topics: m.topics(topics).into_iter().map(|(id, _)| id).collect(),
                current: self.target.get(&m.id).unwrap_or(&m.assigned),
            })
            .collect();
        self.target = assignor::assign(self.assignor(), &specs, &self.topics);
        self.assignment_epoch = self.epoch;
        self.unsaved = true;
    }

    /// One step of `id` towards its target: first give up what the target
    /// no longer has; then take the target's partitions no other member
    /// still holds.
    fn reconcile(&mut self, id: &str, now_ms: i64) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held_elsewhere: Partitions = self
            .members
            .values()
            .filter(|m| m.id != id)
            .flat_map(|m| m.assigned.iter().chain(&m.revoking))
            .copied()
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let member = self.members.get_mut(id).expect("reconciled members exist");
        if member.state == MemberState::UnrevokedPartitions {
            return;
        }
        let revoke: Partitions = member.assigned.difference(&target).copied().collect();
        if !revoke.is_empty() {
            member.assigned.retain(|tp| target.contains(tp));
            member.revoking = revoke;
            member.state = MemberState::UnrevokedPartitions;
            member.revoke_deadline = Some(now_ms + i64::from(member.rebalance_timeout_ms.max(0)));
            self.unsaved = true;
            return;
        }
        let grantable: Partitions = target.difference(&held_elsewhere).copied().collect();
        let state = if grantable == target {
            MemberState::Stable
        } else {
            MemberState::UnreleasedPartitions
        };
        if member.epoch != assignment_epoch || member.assigned != grantable || member.state != state {
            if member.epoch != assignment_epoch {
                member.previous_epoch = member.epoch;
                member.epoch = assignment_epoch;
            }
            member.assigned = grantable;
            member.state = state;
            self.unsaved = true;
        }
        debug_assert!(
            member.assigned.is_disjoint(&held_elsewhere),
            "a partition granted while another member holds it"
        );
    }

    /// Fences members whose session ran out or who did not give up their
    /// partitions within their rebalance timeout; their partitions are free.
    pub fn tick(&mut self, now_ms: i64) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| now_ms > m.session_deadline || m.revoke_deadline.is_some_and(|d| now_ms > d))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = self.id, member = id, "fenced a consumer group member");
            self.members.remove(&id);
            self.target.remove(&id);
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests;
