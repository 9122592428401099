//! Membership of one consumer group under Kafka's classic rebalance protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), after Kafka's
//! `GroupCoordinator.scala` and `GroupMetadata.scala`.
//!
//! A [`Group`] is a sans-IO state machine: it never reads a clock (callers pass
//! `now_ms`), spawns nothing and does no I/O. A request that Kafka answers
//! later (a JoinGroup waiting for the other members, a SyncGroup waiting for
//! the leader's assignment) hands in a `oneshot::Sender`, which the group keeps
//! until it has the answer. Every sender is answered exactly once, unless the
//! `Group` itself is dropped. The owner calls [`Group::tick`] about every
//! 100 ms to expire sessions and to end rebalances whose time is up.
//!
//! The states: `Empty` → `PreparingRebalance` (members join or rejoin) →
//! `CompletingRebalance` (members wait for the leader's assignment) →
//! `Stable`. Any change of membership goes back to `PreparingRebalance`;
//! [`Group::shut_down`] makes the group `Dead`.
//!
//! After a rebalance completes, the owner persists the [`GroupSnapshot`] that
//! [`Group::sync`] returns, so that another coordinator can resume the same
//! generation with [`Group::restore`].

use std::collections::{HashMap, HashSet};

use crate::ops::telemetry;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

/// Kafka's group.min.session.timeout.ms.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
/// Kafka's group.max.session.timeout.ms.
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;
/// Members, plus member ids handed out and not yet used, one group may hold;
/// beyond it JoinGroup fails with GROUP_MAX_SIZE_REACHED.
pub const MAX_MEMBERS: usize = 1_000;

const NO_ERROR: i16 = 0;
/// The generation Kafka puts in error responses.
const NO_GENERATION: i32 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// Set for a static member (KIP-345).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// For example "consumer".
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    /// v0 requests have none: the caller passes `session_timeout_ms`.
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4+ (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinResponse {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Non-empty only for the leader.
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// For the chosen protocol.
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// For the chosen protocol; empty if none is chosen yet.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// What must be persisted after a rebalance completes (the caller writes it to the
/// replicated log and can rebuild a Stable group from it with `Group::restore`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupSnapshot {
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<SnapshotMember>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The chosen protocol's.
    pub protocol_metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    /// (name, metadata), in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// The last heartbeat, join or sync.
    last_seen_ms: i64,
    /// Joined during this rebalance and waits for its outcome.
    join_reply: Option<oneshot::Sender<JoinResponse>>,
    /// Synced and waits for the leader's assignment.
    sync_reply: Option<oneshot::Sender<SyncResponse>>,
    /// Got the outcome of a rebalance and has not synced since.
    sync_due: bool,
}

impl Member {
    fn new(id: String, request: JoinRequest, now_ms: i64) -> Member {
        Member {
            id,
            instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols,
            assignment: Bytes::new(),
            last_seen_ms: now_ms,
            join_reply: None,
            sync_reply: None,
            sync_due: false,
        }
    }

    /// Takes what a (re)join says about the member; the id stays.
    fn update(&mut self, request: JoinRequest, now_ms: i64) {
        self.client_id = request.client_id;
        self.client_host = request.client_host;
        self.session_timeout_ms = request.session_timeout_ms;
        self.rebalance_timeout_ms = request.rebalance_timeout_ms;
        self.protocols = request.protocols;
        self.last_seen_ms = now_ms;
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        let found = self.protocols.iter().find(|(name, _)| name == protocol);
        found.map(|(_, metadata)| metadata.clone()).unwrap_or_default()
    }

    /// Whether the session lapsed. As in Kafka, a member with a request parked
    /// here is kept: the rebalance and sync deadlines decide about it instead.
    fn expired(&self, now_ms: i64) -> bool {
        let lapses_ms = self.last_seen_ms + i64::from(self.session_timeout_ms);
        self.join_reply.is_none() && self.sync_reply.is_none() && now_ms >= lapses_ms
    }

    /// A repeated request supersedes the parked one (its client most likely
    /// timed out); the old one still gets an answer, one clients retry on.
    fn park_join(&mut self, reply: oneshot::Sender<JoinResponse>) {
        if let Some(old) = self.join_reply.replace(reply) {
            send(old, join_error(&self.id, ResponseError::RebalanceInProgress.code()));
        }
    }

    fn park_sync(&mut self, reply: oneshot::Sender<SyncResponse>) {
        if let Some(old) = self.sync_reply.replace(reply) {
            send(old, sync_error(ResponseError::RebalanceInProgress.code()));
        }
    }

    fn answer_join(&mut self, response: JoinResponse) {
        if let Some(reply) = self.join_reply.take() {
            send(reply, response);
        }
    }

    fn answer_sync(&mut self, response: SyncResponse) {
        if let Some(reply) = self.sync_reply.take() {
            send(reply, response);
        }
    }
}

/// When a PreparingRebalance ends.
enum JoinWait {
    /// As soon as every member has rejoined, or at this time, without the
    /// members that have not.
    Deadline(i64),
    /// Kafka's group.initial.rebalance.delay.ms, for a group that was empty:
    /// not before `ends_ms` even if everyone joined, and one delay later (up to
    /// `limit_ms`) each time new members arrived meanwhile, so that consumers
    /// starting together share the first generation.
    InitialDelay {
        ends_ms: i64,
        limit_ms: i64,
        new_member: bool,
    },
}

pub struct Group {
    /// For logs.
    id: String,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// In the order they joined.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, to the time they lapse.
    pending: HashMap<String, i64>,
    initial_rebalance_delay_ms: i64,
    /// Only meaningful in PreparingRebalance; every rebalance sets it anew.
    join_wait: JoinWait,
    /// Members still due to sync at this time are dropped (Kafka's pending
    /// sync timeout), so a leader that never sends its assignment cannot hold
    /// the group in CompletingRebalance.
    sync_deadline_ms: Option<i64>,
    /// A change worth persisting that no `sync` returned a snapshot for.
    unsaved: bool,
}

impl Group {
    pub fn new(group_id: &str, initial_rebalance_delay_ms: i64) -> Group {
        Group {
            id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            initial_rebalance_delay_ms,
            join_wait: JoinWait::Deadline(0),
            sync_deadline_ms: None,
            unsaved: false,
        }
    }

    /// A Stable group as persisted; every member's session starts at now_ms.
    /// A snapshot without members (or without a protocol) gives an Empty group
    /// at that generation.
    pub fn restore(group_id: &str, snapshot: GroupSnapshot, initial_rebalance_delay_ms: i64, now_ms: i64) -> Group {
        let mut group = Group::new(group_id, initial_rebalance_delay_ms);
        group.generation_id = snapshot.generation_id;
        group.protocol_type = snapshot.protocol_type;
        let Some(protocol) = snapshot.protocol_name.filter(|_| !snapshot.members.is_empty()) else {
            return group;
        };
        group.members = snapshot
            .members
            .into_iter()
            .map(|m| restored_member(m, &protocol, now_ms))
            .collect();
        group.leader = snapshot.leader.filter(|leader| group.index_of(leader).is_some());
        if group.leader.is_none() {
            group.leader = group.members.first().map(|m| m.id.clone());
        }
        group.protocol_name = Some(protocol);
        group.state = GroupState::Stable;
        group
    }

    pub fn join(&mut self, request: JoinRequest, now_ms: i64, reply: oneshot::Sender<JoinResponse>) {
        if let Err(error) = self.check_join(&request) {
            return send(reply, join_error(&request.member_id, error.code()));
        }
        if request.member_id.is_empty() {
            self.join_new(request, now_ms, reply);
        } else if request.group_instance_id.is_none() && self.pending.remove(&request.member_id).is_some() {
            let id = request.member_id.clone();
            self.add_member(id, request, now_ms, reply);
        } else {
            self.join_existing(request, now_ms, reply);
        }
    }

    /// Returns Some(snapshot) when this call completed the rebalance (the leader's assignment arrived) — the caller persists it.
    #[allow(clippy::too_many_arguments)] // one per SyncGroup field
    pub fn sync(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
        reply: oneshot::Sender<SyncResponse>,
    ) -> Option<GroupSnapshot> {
        let checked = self.check_sync(
            member_id,
            group_instance_id,
            generation_id,
            protocol_type,
            protocol_name,
        );
        let index = match checked {
            Ok(index) => index,
            Err(error) => {
                send(reply, sync_error(error.code()));
                return None;
            }
        };
        let member = &mut self.members[index];
        member.last_seen_ms = now_ms;
        member.sync_due = false;
        if self.state == GroupState::Stable {
            let assignment = member.assignment.clone();
            send(reply, sync_ok(&self.protocol_type, &self.protocol_name, assignment));
            return None;
        }
        member.park_sync(reply);
        self.is_leader(member_id)
            .then(|| self.complete_sync(assignments, now_ms))
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> i16 {
        match self.check_heartbeat(member_id, group_instance_id, generation_id, now_ms) {
            Ok(()) => NO_ERROR,
            Err(error) => error.code(),
        }
    }

    /// One error code per (member_id, group_instance_id) given (LeaveGroup v3+ batches; v0-2 pass one with instance None).
    pub fn leave(&mut self, members: &[(String, Option<String>)], now_ms: i64) -> Vec<i16> {
        let codes = members.iter().map(|(member_id, instance_id)| {
            match self.leave_one(member_id, instance_id.as_deref(), now_ms) {
                Ok(()) => NO_ERROR,
                Err(error) => error.code(),
            }
        });
        codes.collect()
    }

    /// Expires sessions, ends the initial-rebalance delay, completes a rebalance whose deadline passed.
    pub fn tick(&mut self, now_ms: i64) {
        if self.state == GroupState::Dead {
            return;
        }
        self.expire_pending(now_ms);
        self.expire_sessions(now_ms);
        self.expire_sync(now_ms);
        self.end_join_wait(now_ms);
    }

    /// For OffsetCommit: generation -1 with empty member id is a "simple" commit, allowed only when the group has
    /// no members; otherwise UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS as
    /// Kafka decides (and COORDINATOR_NOT_AVAILABLE once Dead).
    pub fn validate_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        self.check_commit(member_id, group_instance_id, generation_id)
            .map_err(|error| error.code())
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn members(&self) -> Vec<MemberDescription> {
        let describe = |m: &Member| MemberDescription {
            member_id: m.id.clone(),
            group_instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            metadata: self.protocol_name.as_deref().map(|p| m.metadata(p)).unwrap_or_default(),
            assignment: m.assignment.clone(),
        };
        self.members.iter().map(describe).collect()
    }

    /// No members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Fails every parked join/sync with the given error (the coordinator lost leadership or the group is deleted) and marks it Dead.
    pub fn shut_down(&mut self, error: i16) {
        for member in &mut self.members {
            member.answer_join(join_error(&member.id, error));
            member.answer_sync(sync_error(error));
        }
        self.members.clear();
        self.pending.clear();
        self.leader = None;
        self.sync_deadline_ms = None;
        self.state = GroupState::Dead;
    }

    /// A snapshot to persist for a change no `sync` returned one for: the group
    /// became Empty (so that a restored group does not wait on members that
    /// left), or a static member rejoined under a new id without a rebalance.
    /// None if there is nothing new since the last snapshot.
    pub fn take_unsaved_snapshot(&mut self) -> Option<GroupSnapshot> {
        std::mem::take(&mut self.unsaved).then(|| self.snapshot())
    }

    // JoinGroup.

    /// The checks Kafka makes before looking at who is joining.
    fn check_join(&self, request: &JoinRequest) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&request.session_timeout_ms) {
            return Err(ResponseError::InvalidSessionTimeout);
        }
        if self.is_new_identity(request) && self.members.len() + self.pending.len() >= MAX_MEMBERS {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        if !self.supports(request) {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    /// Whether the request would take a new place in the group (rather than
    /// one it holds, or an id it was handed).
    fn is_new_identity(&self, request: &JoinRequest) -> bool {
        let instance = request.group_instance_id.as_deref();
        request.member_id.is_empty() && instance.and_then(|i| self.static_member(i)).is_none()
    }

    /// Kafka's supportsProtocols: the first member sets the protocol type;
    /// later ones must have it, and a protocol every other member supports.
    fn supports(&self, request: &JoinRequest) -> bool {
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        let own_id = self.own_id(request);
        let others: Vec<&Member> = self.members.iter().filter(|m| m.id != own_id).collect();
        self.protocol_type.as_deref() == Some(request.protocol_type.as_str())
            && request
                .protocols
                .iter()
                .any(|(name, _)| others.iter().all(|m| m.supports(name)))
    }

    /// The member id a join speaks for ("" if none yet): its own, or that of
    /// the static member it replaces.
    fn own_id<'a>(&'a self, request: &'a JoinRequest) -> &'a str {
        if !request.member_id.is_empty() {
            return &request.member_id;
        }
        let instance = request.group_instance_id.as_deref();
        instance
            .and_then(|i| self.static_member(i))
            .map_or("", |index| &self.members[index].id)
    }

    fn join_new(&mut self, request: JoinRequest, now_ms: i64, reply: oneshot::Sender<JoinResponse>) {
        let member_id = new_member_id(&request);
        let known = request.group_instance_id.as_deref().and_then(|i| self.static_member(i));
        if let Some(index) = known {
            self.replace_static_member(index, member_id, request, now_ms, reply);
        } else if request.group_instance_id.is_none() && request.require_known_member_id {
            // KIP-394: the id comes first, so that a client whose JoinGroup
            // times out and is retried leaves no orphan member behind.
            let lapses_ms = now_ms + i64::from(request.session_timeout_ms);
            self.pending.insert(member_id.clone(), lapses_ms);
            send(reply, join_error(&member_id, ResponseError::MemberIdRequired.code()));
        } else {
            self.add_member(member_id, request, now_ms, reply);
        }
    }

    fn add_member(&mut self, id: String, request: JoinRequest, now_ms: i64, reply: oneshot::Sender<JoinResponse>) {
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if self.state == GroupState::PreparingRebalance
            && let JoinWait::InitialDelay { new_member, .. } = &mut self.join_wait
        {
            *new_member = true;
        }
        tracing::info!(group = %self.id, member = %id, "member joins");
        let mut member = Member::new(id, request, now_ms);
        member.join_reply = Some(reply);
        self.members.push(member);
        self.rebalance(now_ms);
    }

    /// A join from a member id the group knows.
    fn join_existing(&mut self, request: JoinRequest, now_ms: i64, reply: oneshot::Sender<JoinResponse>) {
        let index = match self.find_member(&request.member_id, request.group_instance_id.as_deref()) {
            Ok(index) => index,
            Err(error) => return send(reply, join_error(&request.member_id, error.code())),
        };
        let unchanged = self.members[index].protocols == request.protocols;
        // Kafka answers a rejoin that changes nothing from the current
        // generation; but the leader rejoining a Stable group asks for a new
        // assignment (say, for topics that changed), so it rebalances.
        let answer_now = match self.state {
            GroupState::CompletingRebalance => unchanged,
            GroupState::Stable => unchanged && !self.is_leader(&request.member_id),
            _ => false,
        };
        self.members[index].update(request, now_ms);
        if answer_now {
            send(reply, self.current_join_response(index));
        } else {
            self.members[index].park_join(reply);
            self.rebalance(now_ms);
        }
    }

    /// A static member came back without its member id (it restarted): it
    /// takes its instance's place under a new id, and the old id is fenced.
    fn replace_static_member(
        &mut self,
        index: usize,
        new_id: String,
        request: JoinRequest,
        now_ms: i64,
        reply: oneshot::Sender<JoinResponse>,
    ) {
        let member = &mut self.members[index];
        let old_id = std::mem::replace(&mut member.id, new_id.clone());
        member.answer_join(join_error(&old_id, ResponseError::FencedInstanceId.code()));
        member.answer_sync(sync_error(ResponseError::FencedInstanceId.code()));
        member.update(request, now_ms);
        tracing::info!(group = %self.id, old = %old_id, new = %new_id, "static member rejoins");
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id);
        }
        // Kafka skips the rebalance when the group would pick the same
        // protocol: the instance keeps its assignment, under its new id.
        if self.state == GroupState::Stable && self.select_protocol() == self.protocol_name {
            self.unsaved = true;
            send(reply, self.current_join_response(index));
        } else {
            self.members[index].park_join(reply);
            self.rebalance(now_ms);
        }
    }

    /// Reacts to a change of membership: starts a rebalance, or sees whether
    /// the one under way can end.
    fn rebalance(&mut self, now_ms: i64) {
        match self.state {
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now_ms),
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Dead => {}
        }
    }

    fn prepare_rebalance(&mut self, now_ms: i64) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment under way is for a membership that no longer holds.
            for member in &mut self.members {
                member.assignment = Bytes::new();
                member.answer_sync(sync_error(ResponseError::RebalanceInProgress.code()));
            }
        }
        self.sync_deadline_ms = None;
        let timeout_ms = self.rebalance_timeout_ms();
        let delay_ms = self.initial_rebalance_delay_ms;
        self.join_wait = if self.state == GroupState::Empty && delay_ms > 0 {
            let (ends_ms, limit_ms) = (now_ms + delay_ms, now_ms + delay_ms.max(timeout_ms));
            JoinWait::InitialDelay {
                ends_ms,
                limit_ms,
                new_member: false,
            }
        } else {
            JoinWait::Deadline(now_ms + timeout_ms)
        };
        tracing::info!(group = %self.id, generation = self.generation_id, "preparing to rebalance");
        self.state = GroupState::PreparingRebalance;
        self.try_complete_join(now_ms);
    }

    /// Ends PreparingRebalance early once every member and every handed-out
    /// member id has joined (never during the initial delay).
    fn try_complete_join(&mut self, now_ms: i64) {
        let waiting = self.state == GroupState::PreparingRebalance && matches!(self.join_wait, JoinWait::Deadline(_));
        if waiting && self.pending.is_empty() && self.members.iter().all(|m| m.join_reply.is_some()) {
            self.complete_join(now_ms);
        }
    }

    /// Kafka's onCompleteJoin: dynamic members that did not rejoin are dropped
    /// (static ones stay; their sessions decide), then the next generation
    /// starts and every joined member learns it.
    fn complete_join(&mut self, now_ms: i64) {
        while let Some(index) = self
            .members
            .iter()
            .position(|m| m.instance_id.is_none() && m.join_reply.is_none())
        {
            self.remove_member(index);
        }
        if !self.members.is_empty() && self.members.iter().all(|m| m.join_reply.is_none()) {
            // Only static members that did not rejoin remain: none can lead.
            // Kafka waits another round, while their sessions run out.
            self.join_wait = JoinWait::Deadline(now_ms + self.rebalance_timeout_ms());
            return;
        }
        self.elect_leader();
        self.generation_id += 1;
        telemetry::rebalanced(&self.id);
        if self.members.is_empty() {
            return self.become_empty();
        }
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        self.sync_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
        tracing::info!(group = %self.id, generation = self.generation_id, members = self.members.len(), "rebalanced");
        for index in 0..self.members.len() {
            let response = self.current_join_response(index);
            let member = &mut self.members[index];
            member.answer_join(response);
            member.last_seen_ms = now_ms;
            member.sync_due = true;
        }
    }

    /// Keeps the leader if it rejoined, else the first member that did: the
    /// leader must get the member list.
    fn elect_leader(&mut self) {
        let rejoined = |id: &str| self.members.iter().any(|m| m.id == id && m.join_reply.is_some());
        if self.leader.as_deref().is_some_and(rejoined) {
            return;
        }
        self.leader = self
            .members
            .iter()
            .find(|m| m.join_reply.is_some())
            .map(|m| m.id.clone());
    }

    fn become_empty(&mut self) {
        tracing::info!(group = %self.id, generation = self.generation_id, "group is empty");
        self.state = GroupState::Empty;
        self.protocol_name = None;
        self.leader = None;
        self.sync_deadline_ms = None;
        self.unsaved = true;
    }

    /// Kafka's vote: each member votes for the first protocol of its own that
    /// every member supports; the most votes win, and of equals the one voted
    /// for first.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: HashSet<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for member in &self.members {
            let choice = member
                .protocols
                .iter()
                .map(|(name, _)| name.as_str())
                .find(|n| candidates.contains(n));
            let Some(choice) = choice else { continue };
            match votes.iter_mut().find(|(name, _)| *name == choice) {
                Some((_, count)) => *count += 1,
                None => votes.push((choice, 1)),
            }
        }
        // max_by_key keeps the last of equals: reversed, the first voted for.
        let winner = votes.into_iter().rev().max_by_key(|&(_, count)| count);
        winner.map(|(name, _)| name.to_string())
    }

    /// The current generation as `index` sees it; the leader also gets the members.
    fn current_join_response(&self, index: usize) -> JoinResponse {
        let member = &self.members[index];
        let members = if self.is_leader(&member.id) {
            self.joined_members()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: NO_ERROR,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member.id.clone(),
            members,
        }
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let describe = |m: &Member| JoinedMember {
            member_id: m.id.clone(),
            group_instance_id: m.instance_id.clone(),
            metadata: m.metadata(protocol),
        };
        self.members.iter().map(describe).collect()
    }

    // SyncGroup.

    /// Kafka's validateSyncGroup, then the state: SyncGroup is for a
    /// generation whose members are known.
    fn check_sync(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
    ) -> Result<usize, ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let index = self.find_member(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        let type_differs = protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t));
        let name_differs = protocol_name.is_some_and(|n| self.protocol_name.as_deref() != Some(n));
        if type_differs || name_differs {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        if self.state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(index)
    }

    /// The leader's assignment arrived: every member gets its share (an empty
    /// one if the leader left it out, as in Kafka) and the group is Stable.
    fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>, now_ms: i64) -> GroupSnapshot {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        self.state = GroupState::Stable;
        for member in &mut self.members {
            member.assignment = assignments.remove(&member.id).unwrap_or_default();
            if member.sync_reply.is_some() {
                member.last_seen_ms = now_ms;
            }
            member.answer_sync(sync_ok(
                &self.protocol_type,
                &self.protocol_name,
                member.assignment.clone(),
            ));
        }
        tracing::info!(group = %self.id, generation = self.generation_id, "group is stable");
        self.unsaved = false;
        self.snapshot()
    }

    fn snapshot(&self) -> GroupSnapshot {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let persist = |m: &Member| SnapshotMember {
            member_id: m.id.clone(),
            group_instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocol_metadata: m.metadata(protocol).to_vec(),
            assignment: m.assignment.to_vec(),
        };
        GroupSnapshot {
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members: self.members.iter().map(persist).collect(),
        }
    }

    // Heartbeat, LeaveGroup, OffsetCommit.

    fn check_heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let index = self.find_member(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        self.members[index].last_seen_ms = now_ms;
        // The member stays alive, and learns it must rejoin.
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    fn leave_one(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let index = if member_id.is_empty() {
            // An administrator removes a static member by its instance id.
            group_instance_id
                .and_then(|i| self.static_member(i))
                .ok_or(ResponseError::UnknownMemberId)?
        } else if self.pending.remove(member_id).is_some() {
            self.try_complete_join(now_ms);
            return Ok(());
        } else {
            self.find_member(member_id, group_instance_id)?
        };
        tracing::info!(group = %self.id, member = %self.members[index].id, "member leaves");
        self.remove_member(index);
        self.rebalance(now_ms);
        Ok(())
    }

    fn check_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && member_id.is_empty() && group_instance_id.is_none() {
            // A client managing its own partitions: it may commit only while
            // no member could own them.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.find_member(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        // The member knows its generation but not yet its assignment.
        match self.state {
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    // Timers.

    fn expire_pending(&mut self, now_ms: i64) {
        let before = self.pending.len();
        self.pending.retain(|_, lapses_ms| *lapses_ms > now_ms);
        if self.pending.len() < before {
            self.try_complete_join(now_ms);
        }
    }

    fn expire_sessions(&mut self, now_ms: i64) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.expired(now_ms))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            // An earlier removal may have ended a rebalance, renewing sessions.
            if let Some(index) = self.index_of(&id)
                && self.members[index].expired(now_ms)
            {
                tracing::info!(group = %self.id, member = %id, "session expired");
                self.remove_member(index);
                self.rebalance(now_ms);
            }
        }
    }

    fn expire_sync(&mut self, now_ms: i64) {
        if self.sync_deadline_ms.is_none_or(|deadline| now_ms < deadline) {
            return;
        }
        self.sync_deadline_ms = None;
        let late: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.sync_due)
            .map(|m| m.id.clone())
            .collect();
        for id in late {
            if let Some(index) = self.index_of(&id) {
                tracing::info!(group = %self.id, member = %id, "member did not sync in time");
                self.remove_member(index);
                self.rebalance(now_ms);
            }
        }
    }

    fn end_join_wait(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let delay_ms = self.initial_rebalance_delay_ms;
        let over = match &mut self.join_wait {
            JoinWait::Deadline(deadline_ms) => now_ms >= *deadline_ms,
            JoinWait::InitialDelay {
                ends_ms,
                limit_ms,
                new_member,
            } => {
                if now_ms >= *ends_ms && *new_member && *ends_ms < *limit_ms {
                    *ends_ms = (*ends_ms + delay_ms).min(*limit_ms);
                    *new_member = false;
                }
                now_ms >= *ends_ms
            }
        };
        if over {
            self.complete_join(now_ms);
        }
    }

    // Members.

    fn index_of(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == member_id)
    }

    fn static_member(&self, instance_id: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Kafka's validateCurrentMember: a static member must come with its
    /// instance's current id (else it is fenced); anyone else must be a member.
    fn find_member(&self, member_id: &str, group_instance_id: Option<&str>) -> Result<usize, ResponseError> {
        let Some(instance_id) = group_instance_id else {
            return self.index_of(member_id).ok_or(ResponseError::UnknownMemberId);
        };
        let index = self.static_member(instance_id).ok_or(ResponseError::UnknownMemberId)?;
        if self.members[index].id == member_id {
            Ok(index)
        } else {
            Err(ResponseError::FencedInstanceId)
        }
    }

    /// Removes a member, failing its parked requests so that its client
    /// starts over; the caller decides what happens to the group.
    fn remove_member(&mut self, index: usize) {
        let mut member = self.members.remove(index);
        member.answer_join(join_error("", ResponseError::UnknownMemberId.code()));
        member.answer_sync(sync_error(ResponseError::UnknownMemberId.code()));
        if self.is_leader(&member.id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
    }

    /// The largest rebalance timeout of the members: how long the slowest may
    /// take to rejoin.
    fn rebalance_timeout_ms(&self) -> i64 {
        let longest = self.members.iter().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        i64::from(longest.max(0))
    }
}

fn restored_member(m: SnapshotMember, protocol: &str, now_ms: i64) -> Member {
    Member {
        id: m.member_id,
        instance_id: m.group_instance_id,
        client_id: m.client_id,
        client_host: m.client_host,
        session_timeout_ms: m.session_timeout_ms,
        rebalance_timeout_ms: m.rebalance_timeout_ms,
        protocols: vec![(protocol.to_string(), Bytes::from(m.protocol_metadata))],
        assignment: Bytes::from(m.assignment),
        last_seen_ms: now_ms,
        join_reply: None,
        sync_reply: None,
        sync_due: false,
    }
}

/// Kafka's format: the instance id (static members) or the client id, a dash
/// and a random UUID.
fn new_member_id(request: &JoinRequest) -> String {
    let prefix = request.group_instance_id.as_deref().unwrap_or(&request.client_id);
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// The requester may have gone away; then there is no one to tell.
fn send<T>(reply: oneshot::Sender<T>, value: T) {
    let _ = reply.send(value);
}

fn join_error(member_id: &str, error: i16) -> JoinResponse {
    JoinResponse {
        error,
        generation_id: NO_GENERATION,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_string(),
        members: Vec::new(),
    }
}

fn sync_error(error: i16) -> SyncResponse {
    SyncResponse {
        error,
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    }
}

fn sync_ok(protocol_type: &Option<String>, protocol_name: &Option<String>, assignment: Bytes) -> SyncResponse {
    SyncResponse {
        error: NO_ERROR,
        protocol_type: protocol_type.clone(),
        protocol_name: protocol_name.clone(),
        assignment,
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot::Receiver;
    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;

    const DELAY: i64 = 3_000;
    const SESSION: i32 = 10_000;
    const REBALANCE: i32 = 30_000;

    fn request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
            protocol_type: "consumer".to_string(),
            protocols: vec![("range".to_string(), Bytes::from_static(b"range-meta"))],
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            require_known_member_id: false,
        }
    }

    fn static_request(member_id: &str, instance: &str) -> JoinRequest {
        JoinRequest {
            group_instance_id: Some(instance.to_string()),
            ..request(member_id)
        }
    }

    fn with_protocols(mut request: JoinRequest, names: &[&str]) -> JoinRequest {
        let meta = |name: &str| Bytes::from(format!("{name}-meta"));
        request.protocols = names.iter().map(|n| (n.to_string(), meta(n))).collect();
        request
    }

    fn join(group: &mut Group, request: JoinRequest, now: i64) -> Receiver<JoinResponse> {
        let (reply, answer) = oneshot::channel();
        group.join(request, now, reply);
        answer
    }

    fn sync(
        group: &mut Group,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> (Receiver<SyncResponse>, Option<GroupSnapshot>) {
        let (reply, answer) = oneshot::channel();
        let snapshot = group.sync(member, None, generation, None, None, assignments, now, reply);
        (answer, snapshot)
    }

    fn answered<T>(answer: &mut Receiver<T>) -> T {
        answer.try_recv().expect("answered")
    }

    fn assert_parked<T>(answer: &mut Receiver<T>) {
        assert!(matches!(answer.try_recv(), Err(TryRecvError::Empty)), "parked");
    }

    fn code(error: ResponseError) -> i16 {
        error.code()
    }

    /// Two dynamic members after their first rebalance and sync, at time 6000.
    fn stable_pair() -> (Group, String, String) {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, request(""), 0);
        let mut b = join(&mut group, request(""), 100);
        group.tick(3_000);
        group.tick(6_000);
        let (a, b) = (answered(&mut a).member_id, answered(&mut b).member_id);
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"to-a")),
            (b.clone(), Bytes::from_static(b"to-b")),
        ];
        sync(&mut group, &a, 1, assignments, 6_000)
            .1
            .expect("leader's sync completes the rebalance");
        sync(&mut group, &b, 1, Vec::new(), 6_000);
        assert_eq!(group.state(), GroupState::Stable);
        (group, a, b)
    }

    /// Two static members ("i1" leads, "i2") after their first rebalance, at time 6000.
    fn stable_static_pair() -> (Group, String, String) {
        let mut group = Group::new("g", 0);
        let mut a = join(&mut group, static_request("", "i1"), 0);
        let a = answered(&mut a).member_id;
        sync(&mut group, &a, 1, Vec::new(), 0);
        let mut b = join(&mut group, static_request("", "i2"), 0);
        let mut a_again = join(&mut group, static_request(&a, "i1"), 0);
        let b = answered(&mut b).member_id;
        assert_eq!(answered(&mut a_again).generation_id, 2);
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"to-a")),
            (b.clone(), Bytes::from_static(b"to-b")),
        ];
        sync(&mut group, &a, 2, assignments, 6_000).1.expect("complete");
        sync(&mut group, &b, 2, Vec::new(), 6_000);
        (group, a, b)
    }

    #[test]
    fn state_names_are_kafkas() {
        let states = [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ];
        let names: Vec<&str> = states.iter().map(GroupState::name).collect();
        assert_eq!(
            names,
            ["Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"]
        );
    }

    #[test]
    fn two_members_join_and_sync() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, request(""), 0);
        let mut b = join(&mut group, request(""), 100);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        group.tick(6_000);
        let (a, b) = (answered(&mut a), answered(&mut b));
        assert_eq!((a.error, a.generation_id, b.generation_id), (0, 1, 1));
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
        assert_eq!(a.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(
            (a.leader.as_str(), b.leader.as_str()),
            (a.member_id.as_str(), a.member_id.as_str())
        );
        let listed: Vec<&str> = a.members.iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(listed, [a.member_id.as_str(), b.member_id.as_str()]);
        assert_eq!(a.members[1].metadata, Bytes::from_static(b"range-meta"));
        assert!(b.members.is_empty());
        assert_eq!(group.state(), GroupState::CompletingRebalance);

        let (mut b_sync, none) = sync(&mut group, &b.member_id, 1, Vec::new(), 6_100);
        assert!(none.is_none());
        assert_parked(&mut b_sync);
        let assignments = vec![
            (a.member_id.clone(), Bytes::from_static(b"A")),
            (b.member_id.clone(), Bytes::from_static(b"B")),
        ];
        let (mut a_sync, snapshot) = sync(&mut group, &a.member_id, 1, assignments, 6_200);
        assert_eq!(answered(&mut a_sync).assignment, Bytes::from_static(b"A"));
        let b_sync = answered(&mut b_sync);
        assert_eq!((b_sync.error, b_sync.assignment), (0, Bytes::from_static(b"B")));
        assert_eq!(b_sync.protocol_name.as_deref(), Some("range"));
        assert_eq!(group.state(), GroupState::Stable);
        assert_eq!(group.generation_id(), 1);

        let snapshot = snapshot.expect("snapshot");
        assert_eq!(snapshot.generation_id, 1);
        assert_eq!(snapshot.leader.as_deref(), Some(a.member_id.as_str()));
        assert_eq!(snapshot.members[1].assignment, b"B".to_vec());
        assert_eq!(snapshot.members[1].protocol_metadata, b"range-meta".to_vec());
    }

    #[test]
    fn member_ids_are_client_id_and_uuid() {
        let mut group = Group::new("g", 0);
        let id = answered(&mut join(&mut group, request(""), 0)).member_id;
        let uuid = id.strip_prefix("client-").expect("client id prefix");
        assert!(uuid::Uuid::parse_str(uuid).is_ok());
    }

    #[test]
    fn leader_missing_assignments_are_empty() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, request(""), 0);
        let mut b = join(&mut group, request(""), 0);
        group.tick(6_000);
        let (a, b) = (answered(&mut a).member_id, answered(&mut b).member_id);
        sync(&mut group, &a, 1, vec![(a.clone(), Bytes::from_static(b"A"))], 6_000)
            .1
            .expect("complete");
        let mut b_sync = sync(&mut group, &b, 1, Vec::new(), 6_000).0;
        assert_eq!(
            answered(&mut b_sync),
            sync_ok(&Some("consumer".into()), &Some("range".into()), Bytes::new())
        );
    }

    #[test]
    fn sync_in_stable_returns_stored_assignment() {
        let (mut group, _, b) = stable_pair();
        let (mut answer, snapshot) = sync(&mut group, &b, 1, Vec::new(), 7_000);
        assert!(snapshot.is_none());
        assert_eq!(answered(&mut answer).assignment, Bytes::from_static(b"to-b"));
    }

    #[test]
    fn first_rebalance_waits_for_initial_delay() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, request(""), 0);
        group.tick(2_999);
        assert_parked(&mut a);
        group.tick(3_000);
        assert_eq!(answered(&mut a).generation_id, 1);
    }

    #[test]
    fn initial_delay_grows_while_members_arrive() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, request(""), 0);
        let _b = join(&mut group, request(""), 2_000);
        group.tick(3_000);
        assert_parked(&mut a);
        group.tick(5_999);
        assert_parked(&mut a);
        group.tick(6_000);
        assert_eq!(answered(&mut a).members.len(), 2);
    }

    #[test]
    fn initial_delay_bounded_by_rebalance_timeout() {
        let mut group = Group::new("g", DELAY);
        let short = |id| JoinRequest {
            rebalance_timeout_ms: 7_000,
            ..request(id)
        };
        let mut a = join(&mut group, short(""), 0);
        for (at, tick) in [(2_500, 3_000), (5_000, 6_000), (6_500, 6_999)] {
            drop(join(&mut group, short(""), at));
            group.tick(tick);
            assert_parked(&mut a);
        }
        group.tick(7_000);
        assert_eq!(answered(&mut a).members.len(), 4);
    }

    #[test]
    fn without_initial_delay_a_lone_member_joins_at_once() {
        let mut group = Group::new("g", 0);
        let joined = answered(&mut join(&mut group, request(""), 0));
        assert_eq!((joined.error, joined.generation_id), (0, 1));
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(group.state(), GroupState::CompletingRebalance);
    }

    #[test]
    fn member_id_required_then_join_with_it() {
        let mut group = Group::new("g", 0);
        let first = JoinRequest {
            require_known_member_id: true,
            ..request("")
        };
        let required = answered(&mut join(&mut group, first, 0));
        assert_eq!(required.error, code(ResponseError::MemberIdRequired));
        assert_eq!(required.generation_id, -1);
        assert!(required.member_id.starts_with("client-"));
        assert!(group.is_empty());
        assert_eq!(group.state(), GroupState::Empty);

        let second = JoinRequest {
            require_known_member_id: true,
            ..request(&required.member_id)
        };
        let joined = answered(&mut join(&mut group, second, 100));
        assert_eq!((joined.error, joined.generation_id), (0, 1));
        assert_eq!(joined.member_id, required.member_id);
    }

    #[test]
    fn unused_member_id_lapses_after_session_timeout() {
        let mut group = Group::new("g", 0);
        let first = JoinRequest {
            require_known_member_id: true,
            ..request("")
        };
        let id = answered(&mut join(&mut group, first, 0)).member_id;
        group.tick(i64::from(SESSION));
        let late = answered(&mut join(&mut group, request(&id), i64::from(SESSION)));
        assert_eq!(late.error, code(ResponseError::UnknownMemberId));
        assert_eq!(late.member_id, id);
    }

    #[test]
    fn rebalance_waits_for_handed_out_member_ids() {
        let (mut group, a, b) = stable_pair();
        let c_first = JoinRequest {
            require_known_member_id: true,
            ..request("")
        };
        let c = answered(&mut join(&mut group, c_first, 7_000)).member_id;
        assert_eq!(group.state(), GroupState::Stable);
        let mut a_join = join(&mut group, request(&a), 7_000);
        let mut b_join = join(&mut group, request(&b), 7_000);
        assert_parked(&mut a_join);
        let mut c_join = join(&mut group, request(&c), 7_100);
        assert_eq!(answered(&mut c_join).generation_id, 2);
        assert_eq!(answered(&mut a_join).members.len(), 3);
        assert_eq!(answered(&mut b_join).generation_id, 2);
    }

    #[test]
    fn third_member_triggers_rebalance() {
        let (mut group, a, b) = stable_pair();
        let mut c = join(&mut group, request(""), 7_000);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        assert_parked(&mut c);
        assert_eq!(
            group.heartbeat(&a, None, 1, 7_100),
            code(ResponseError::RebalanceInProgress)
        );
        assert_eq!(
            group.heartbeat(&b, None, 1, 7_100),
            code(ResponseError::RebalanceInProgress)
        );
        let mut a_join = join(&mut group, request(&a), 7_200);
        assert_parked(&mut a_join);
        let mut b_join = join(&mut group, request(&b), 7_300);
        let (a_join, b_join, c) = (answered(&mut a_join), answered(&mut b_join), answered(&mut c));
        assert_eq!((a_join.generation_id, b_join.generation_id, c.generation_id), (2, 2, 2));
        assert_eq!(a_join.leader, a);
        assert_eq!(a_join.members.len(), 3);
        assert!(c.members.is_empty());
        assert_eq!(group.generation_id(), 2);
    }

    #[test]
    fn member_not_rejoining_is_dropped_at_deadline() {
        let (mut group, a, b) = stable_pair();
        let mut c = join(&mut group, request(""), 7_000);
        let mut a_join = join(&mut group, request(&a), 7_000);
        for now in (8_000..37_000).step_by(5_000) {
            assert_eq!(
                group.heartbeat(&b, None, 1, now),
                code(ResponseError::RebalanceInProgress)
            );
            group.tick(now);
        }
        assert_parked(&mut a_join);
        group.tick(7_000 + i64::from(REBALANCE));
        let a_join = answered(&mut a_join);
        assert_eq!(a_join.generation_id, 2);
        assert_eq!(a_join.members.len(), 2);
        assert_eq!(answered(&mut c).generation_id, 2);
        assert_eq!(
            group.heartbeat(&b, None, 1, 37_000),
            code(ResponseError::UnknownMemberId)
        );
        assert_eq!(group.members().len(), 2);
    }

    #[test]
    fn parked_join_outlives_its_session() {
        let (mut group, a, _) = stable_pair();
        let _c = join(&mut group, request(""), 7_000);
        let _a_join = join(&mut group, request(&a), 7_000);
        group.tick(7_000 + i64::from(SESSION) + 1);
        assert_eq!(group.members().len(), 2, "a and c wait for b; b's session expired");
        assert_eq!(group.state(), GroupState::CompletingRebalance);
    }

    #[test]
    fn session_expiry_removes_member_and_rebalances() {
        let (mut group, a, b) = stable_pair();
        assert_eq!(group.heartbeat(&a, None, 1, 15_000), 0);
        group.tick(15_999);
        assert_eq!(group.state(), GroupState::Stable);
        group.tick(16_000);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        assert_eq!(
            group.heartbeat(&b, None, 1, 16_000),
            code(ResponseError::UnknownMemberId)
        );
        let rejoined = answered(&mut join(&mut group, request(&a), 16_100));
        assert_eq!((rejoined.generation_id, rejoined.members.len()), (2, 1));
    }

    #[test]
    fn all_sessions_expiring_empties_the_group() {
        let (mut group, _, _) = stable_pair();
        group.tick(16_000);
        assert_eq!(group.state(), GroupState::Empty);
        assert_eq!(group.generation_id(), 2);
        assert!(group.is_empty());
    }

    #[test]
    fn leave_rebalances() {
        let (mut group, a, b) = stable_pair();
        assert_eq!(group.leave(&[(b.clone(), None)], 7_000), vec![0]);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        let rejoined = answered(&mut join(&mut group, request(&a), 7_100));
        assert_eq!((rejoined.generation_id, rejoined.members.len()), (2, 1));
    }

    #[test]
    fn leader_leaving_passes_leadership() {
        let (mut group, a, b) = stable_pair();
        group.leave(&[(a, None)], 7_000);
        let rejoined = answered(&mut join(&mut group, request(&b), 7_100));
        assert_eq!(rejoined.leader, b);
        assert_eq!(rejoined.members.len(), 1);
    }

    #[test]
    fn batch_leave_of_everyone_empties_the_group() {
        let (mut group, a, b) = stable_pair();
        let codes = group.leave(&[(a, None), (b, None), ("nobody".to_string(), None)], 7_000);
        assert_eq!(codes, vec![0, 0, code(ResponseError::UnknownMemberId)]);
        assert_eq!(group.state(), GroupState::Empty);
        assert_eq!(group.generation_id(), 2);
        assert_eq!(group.protocol_name(), None);
        let snapshot = group
            .take_unsaved_snapshot()
            .expect("the emptied group is to be persisted");
        assert!(snapshot.members.is_empty());
        assert_eq!(snapshot.generation_id, 2);
        assert!(group.take_unsaved_snapshot().is_none());
    }

    #[test]
    fn leaving_fails_the_parked_join() {
        let (mut group, _, _) = stable_pair();
        let mut c = join(&mut group, request(""), 7_000);
        let id = group.members()[2].member_id.clone();
        assert_eq!(group.leave(&[(id, None)], 7_100), vec![0]);
        assert_eq!(answered(&mut c).error, code(ResponseError::UnknownMemberId));
    }

    #[test]
    fn static_member_leaves_by_instance_id() {
        let (mut group, a, _) = stable_static_pair();
        let codes = group.leave(
            &[(String::new(), Some("i2".into())), (String::new(), Some("i9".into()))],
            7_000,
        );
        assert_eq!(codes, vec![0, code(ResponseError::UnknownMemberId)]);
        assert_eq!(group.members().len(), 1);
        assert_eq!(
            group.leave(&[("stale".into(), Some("i1".into()))], 7_000),
            vec![code(ResponseError::FencedInstanceId)]
        );
        assert_eq!(group.leave(&[(a, Some("i1".into()))], 7_000), vec![0]);
        assert_eq!(group.state(), GroupState::Empty);
    }

    #[test]
    fn heartbeat_errors() {
        let (mut group, a, _) = stable_pair();
        assert_eq!(group.heartbeat(&a, None, 1, 7_000), 0);
        assert_eq!(
            group.heartbeat(&a, None, 2, 7_000),
            code(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            group.heartbeat("nobody", None, 1, 7_000),
            code(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            Group::new("g", 0).heartbeat("", None, 0, 0),
            code(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn heartbeat_is_fine_while_completing() {
        let mut group = Group::new("g", 0);
        let a = answered(&mut join(&mut group, request(""), 0)).member_id;
        assert_eq!(group.state(), GroupState::CompletingRebalance);
        assert_eq!(group.heartbeat(&a, None, 1, 100), 0);
    }

    #[test]
    fn sync_errors() {
        let (mut group, a, b) = stable_pair();
        let error = |group: &mut Group, member: &str, generation, kind: Option<&str>, name: Option<&str>| {
            let (reply, mut answer) = oneshot::channel();
            group.sync(member, None, generation, kind, name, Vec::new(), 7_000, reply);
            answered(&mut answer)
        };
        let unknown = error(&mut group, "nobody", 1, None, None);
        assert_eq!(unknown, sync_error(code(ResponseError::UnknownMemberId)));
        assert_eq!(
            error(&mut group, &a, 0, None, None).error,
            code(ResponseError::IllegalGeneration)
        );
        let inconsistent = code(ResponseError::InconsistentGroupProtocol);
        assert_eq!(error(&mut group, &a, 1, Some("connect"), None).error, inconsistent);
        assert_eq!(
            error(&mut group, &a, 1, Some("consumer"), Some("roundrobin")).error,
            inconsistent
        );
        assert_eq!(error(&mut group, &a, 1, Some("consumer"), Some("range")).error, 0);
        let _c = join(&mut group, request(""), 7_000);
        assert_eq!(
            error(&mut group, &b, 1, None, None).error,
            code(ResponseError::RebalanceInProgress)
        );
    }

    #[test]
    fn rebalance_fails_parked_syncs() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, request(""), 0);
        let mut b = join(&mut group, request(""), 0);
        group.tick(6_000);
        let (a, b) = (answered(&mut a).member_id, answered(&mut b).member_id);
        let mut b_sync = sync(&mut group, &b, 1, Vec::new(), 6_000).0;
        let _c = join(&mut group, request(""), 6_100);
        assert_eq!(answered(&mut b_sync).error, code(ResponseError::RebalanceInProgress));
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        let mut a_sync = sync(&mut group, &a, 1, Vec::new(), 6_200).0;
        assert_eq!(answered(&mut a_sync).error, code(ResponseError::RebalanceInProgress));
    }

    #[test]
    fn leader_that_never_syncs_is_dropped() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, request(""), 0);
        let mut b = join(&mut group, request(""), 0);
        group.tick(6_000);
        let (a, b) = (answered(&mut a).member_id, answered(&mut b).member_id);
        let mut b_sync = sync(&mut group, &b, 1, Vec::new(), 6_000).0;
        for now in (8_000..36_000).step_by(4_000) {
            assert_eq!(group.heartbeat(&a, None, 1, now), 0);
            group.tick(now);
        }
        assert_parked(&mut b_sync);
        group.tick(6_000 + i64::from(REBALANCE));
        assert_eq!(answered(&mut b_sync).error, code(ResponseError::RebalanceInProgress));
        assert_eq!(
            group.heartbeat(&a, None, 1, 36_000),
            code(ResponseError::UnknownMemberId)
        );
        let rejoined = answered(&mut join(&mut group, request(&b), 36_100));
        assert_eq!((rejoined.generation_id, rejoined.leader), (2, b));
    }

    #[test]
    fn follower_rejoining_unchanged_gets_current_generation() {
        let (mut group, a, b) = stable_pair();
        let same = answered(&mut join(&mut group, request(&b), 7_000));
        assert_eq!((same.error, same.generation_id, same.leader), (0, 1, a));
        assert!(same.members.is_empty());
        assert_eq!(group.state(), GroupState::Stable);
    }

    #[test]
    fn follower_rejoining_changed_rebalances() {
        let (mut group, _, b) = stable_pair();
        let mut changed = join(&mut group, with_protocols(request(&b), &["range", "roundrobin"]), 7_000);
        assert_parked(&mut changed);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
    }

    #[test]
    fn leader_rejoining_rebalances() {
        let (mut group, a, _) = stable_pair();
        let mut rejoin = join(&mut group, request(&a), 7_000);
        assert_parked(&mut rejoin);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
    }

    #[test]
    fn rejoin_while_completing_gets_the_same_generation() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, request(""), 0);
        let mut b = join(&mut group, request(""), 0);
        group.tick(6_000);
        let (a, b) = (answered(&mut a), answered(&mut b));
        let again = answered(&mut join(&mut group, request(&a.member_id), 6_100));
        assert_eq!(again, a);
        assert_eq!(answered(&mut join(&mut group, request(&b.member_id), 6_100)), b);
        assert_eq!(group.state(), GroupState::CompletingRebalance);
    }

    #[test]
    fn join_errors() {
        let (mut group, _, _) = stable_pair();
        let unknown = answered(&mut join(&mut group, request("ghost"), 7_000));
        assert_eq!(unknown, join_error("ghost", code(ResponseError::UnknownMemberId)));
        for session_timeout_ms in [MIN_SESSION_TIMEOUT_MS - 1, MAX_SESSION_TIMEOUT_MS + 1] {
            let bad = JoinRequest {
                session_timeout_ms,
                ..request("")
            };
            assert_eq!(
                answered(&mut join(&mut group, bad, 7_000)).error,
                code(ResponseError::InvalidSessionTimeout)
            );
        }
        assert_eq!(group.state(), GroupState::Stable);
    }

    #[test]
    fn inconsistent_protocols() {
        let inconsistent = code(ResponseError::InconsistentGroupProtocol);
        let mut empty = Group::new("g", 0);
        let no_type = JoinRequest {
            protocol_type: String::new(),
            ..request("")
        };
        assert_eq!(answered(&mut join(&mut empty, no_type, 0)).error, inconsistent);
        assert_eq!(
            answered(&mut join(&mut empty, with_protocols(request(""), &[]), 0)).error,
            inconsistent
        );

        let (mut group, _, _) = stable_pair();
        let connect = JoinRequest {
            protocol_type: "connect".to_string(),
            ..request("")
        };
        assert_eq!(answered(&mut join(&mut group, connect, 7_000)).error, inconsistent);
        let disjoint = with_protocols(request(""), &["roundrobin", "sticky"]);
        assert_eq!(answered(&mut join(&mut group, disjoint, 7_000)).error, inconsistent);
        let overlapping = with_protocols(request(""), &["sticky", "range"]);
        assert_parked(&mut join(&mut group, overlapping, 7_000));
    }

    #[test]
    fn protocol_vote() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(
            &mut group,
            with_protocols(request(""), &["roundrobin", "range", "sticky"]),
            0,
        );
        let _b = join(
            &mut group,
            with_protocols(request(""), &["sticky", "roundrobin", "range"]),
            0,
        );
        let _c = join(&mut group, with_protocols(request(""), &["roundrobin", "range"]), 0);
        group.tick(6_000);
        let a = answered(&mut a);
        assert_eq!(
            a.protocol_name.as_deref(),
            Some("roundrobin"),
            "sticky is not supported by c"
        );
        assert!(
            a.members
                .iter()
                .all(|m| m.metadata == Bytes::from_static(b"roundrobin-meta"))
        );
    }

    #[test]
    fn protocol_vote_majority_wins() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, with_protocols(request(""), &["range", "sticky"]), 0);
        let _b = join(&mut group, with_protocols(request(""), &["sticky", "range"]), 0);
        let _c = join(&mut group, with_protocols(request(""), &["sticky", "range"]), 0);
        group.tick(6_000);
        assert_eq!(answered(&mut a).protocol_name.as_deref(), Some("sticky"));
    }

    #[test]
    fn protocol_vote_tie_goes_to_the_first_voted_for() {
        let mut group = Group::new("g", DELAY);
        let mut a = join(&mut group, with_protocols(request(""), &["range", "sticky"]), 0);
        let _b = join(&mut group, with_protocols(request(""), &["sticky", "range"]), 0);
        group.tick(6_000);
        assert_eq!(answered(&mut a).protocol_name.as_deref(), Some("range"));
    }

    #[test]
    fn validate_commit_of_members() {
        let (mut group, a, _) = stable_pair();
        assert_eq!(group.validate_commit(&a, None, 1), Ok(()));
        assert_eq!(
            group.validate_commit(&a, None, 0),
            Err(code(ResponseError::IllegalGeneration))
        );
        assert_eq!(
            group.validate_commit("nobody", None, 1),
            Err(code(ResponseError::UnknownMemberId))
        );
        let _c = join(&mut group, request(""), 7_000);
        assert_eq!(
            group.validate_commit(&a, None, 1),
            Ok(()),
            "allowed while preparing, as in Kafka"
        );
    }

    #[test]
    fn validate_commit_while_completing() {
        let mut group = Group::new("g", 0);
        let a = answered(&mut join(&mut group, request(""), 0)).member_id;
        assert_eq!(
            group.validate_commit(&a, None, 1),
            Err(code(ResponseError::RebalanceInProgress))
        );
    }

    #[test]
    fn simple_commit_only_without_members() {
        let mut group = Group::new("g", 0);
        assert_eq!(group.validate_commit("", None, -1), Ok(()));
        let _a = join(&mut group, request(""), 0);
        assert_eq!(
            group.validate_commit("", None, -1),
            Err(code(ResponseError::UnknownMemberId))
        );
    }

    #[test]
    fn static_rejoin_while_stable_skips_rebalance() {
        let (mut group, _, old) = stable_static_pair();
        let rejoined = answered(&mut join(&mut group, static_request("", "i2"), 7_000));
        assert_eq!((rejoined.error, rejoined.generation_id), (0, 2));
        assert_ne!(rejoined.member_id, old);
        assert!(rejoined.member_id.starts_with("i2-"));
        assert!(rejoined.members.is_empty());
        assert_eq!(group.state(), GroupState::Stable);

        let new = rejoined.member_id;
        assert_eq!(
            group.heartbeat(&old, Some("i2"), 2, 7_100),
            code(ResponseError::FencedInstanceId)
        );
        assert_eq!(group.heartbeat(&new, Some("i2"), 2, 7_100), 0);
        let (reply, mut answer) = oneshot::channel();
        group.sync(&new, Some("i2"), 2, None, None, Vec::new(), 7_100, reply);
        assert_eq!(answered(&mut answer).assignment, Bytes::from_static(b"to-b"));
        assert_eq!(
            group.validate_commit(&old, Some("i2"), 2),
            Err(code(ResponseError::FencedInstanceId))
        );
        let snapshot = group.take_unsaved_snapshot().expect("the new id is to be persisted");
        assert_eq!(snapshot.members[1].member_id, new);
    }

    #[test]
    fn static_leader_rejoin_stays_leader() {
        let (mut group, old, _) = stable_static_pair();
        let rejoined = answered(&mut join(&mut group, static_request("", "i1"), 7_000));
        assert_eq!(rejoined.leader, rejoined.member_id);
        assert_eq!(rejoined.members.len(), 2);
        assert_ne!(rejoined.member_id, old);
        assert_eq!(group.state(), GroupState::Stable);
    }

    #[test]
    fn static_rejoin_keeping_the_protocol_skips_rebalance() {
        let (mut group, _, _) = stable_static_pair();
        let rejoin = with_protocols(static_request("", "i2"), &["sticky", "range"]);
        let rejoined = answered(&mut join(&mut group, rejoin, 7_000));
        assert_eq!(
            (rejoined.generation_id, rejoined.protocol_name.as_deref()),
            (2, Some("range"))
        );
        assert_eq!(
            group.state(),
            GroupState::Stable,
            "range stays the only common protocol"
        );
    }

    #[test]
    fn static_rejoin_changing_the_protocol_rebalances() {
        let mut group = Group::new("g", 0);
        let a = answered(&mut join(&mut group, static_request("", "i1"), 0)).member_id;
        sync(&mut group, &a, 1, Vec::new(), 0).1.expect("complete");
        let rejoined = answered(&mut join(
            &mut group,
            with_protocols(static_request("", "i1"), &["sticky"]),
            100,
        ));
        assert_eq!(
            (rejoined.generation_id, rejoined.protocol_name.as_deref()),
            (2, Some("sticky"))
        );
        assert_eq!(group.state(), GroupState::CompletingRebalance);
    }

    #[test]
    fn static_member_with_wrong_id_is_fenced() {
        let (mut group, _, _) = stable_static_pair();
        let fenced = answered(&mut join(&mut group, static_request("stale", "i1"), 7_000));
        assert_eq!(fenced, join_error("stale", code(ResponseError::FencedInstanceId)));
        let unknown = answered(&mut join(&mut group, static_request("stale", "i9"), 7_000));
        assert_eq!(unknown.error, code(ResponseError::UnknownMemberId));
    }

    #[test]
    fn static_replacement_fences_the_parked_join() {
        let (mut group, a, b) = stable_static_pair();
        let _c = join(&mut group, request(""), 7_000);
        let mut old = join(&mut group, static_request(&b, "i2"), 7_000);
        assert_parked(&mut old);
        let mut new = join(&mut group, static_request("", "i2"), 7_100);
        let fenced = join_error(&b, code(ResponseError::FencedInstanceId));
        assert_eq!(answered(&mut old), fenced);
        assert_parked(&mut new);
        let _a = join(&mut group, static_request(&a, "i1"), 7_200);
        assert_eq!(answered(&mut new).generation_id, 3);
    }

    #[test]
    fn static_member_that_does_not_rejoin_stays() {
        let (mut group, a, b) = stable_static_pair();
        let _c = join(&mut group, request(""), 7_000);
        let mut a_join = join(&mut group, static_request(&a, "i1"), 7_000);
        for now in (8_000..37_000).step_by(5_000) {
            assert_eq!(
                group.heartbeat(&b, Some("i2"), 2, now),
                code(ResponseError::RebalanceInProgress)
            );
            group.tick(now);
        }
        assert_parked(&mut a_join);
        group.tick(7_000 + i64::from(REBALANCE));
        assert_eq!(answered(&mut a_join).members.len(), 3);
        assert_eq!(
            group.heartbeat(&b, Some("i2"), 2, 37_000),
            code(ResponseError::IllegalGeneration)
        );
    }

    #[test]
    fn static_member_session_expires() {
        let (mut group, a, _) = stable_static_pair();
        assert_eq!(group.heartbeat(&a, Some("i1"), 2, 15_000), 0);
        group.tick(16_000);
        assert_eq!(group.members().len(), 1);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        let mut back = join(&mut group, static_request("", "i2"), 16_100);
        assert_parked(&mut back);
        let _a = join(&mut group, static_request(&a, "i1"), 16_100);
        assert_eq!(answered(&mut back).generation_id, 3);
    }

    #[test]
    fn restore_gives_a_stable_group() {
        let (group, a, b) = stable_pair();
        let bytes = serde_json::to_vec(&group.snapshot()).expect("serialize");
        let snapshot: GroupSnapshot = serde_json::from_slice(&bytes).expect("deserialize");
        let mut restored = Group::restore("g", snapshot, DELAY, 100_000);
        assert_eq!(restored.state(), GroupState::Stable);
        assert_eq!(restored.generation_id(), 1);
        assert_eq!(restored.protocol_type(), Some("consumer"));
        assert_eq!(restored.protocol_name(), Some("range"));
        assert_eq!(restored.members(), group.members());
        assert_eq!(restored.heartbeat(&a, None, 1, 105_000), 0);
        restored.tick(110_000);
        assert_eq!(
            restored.heartbeat(&b, None, 1, 110_000),
            code(ResponseError::UnknownMemberId)
        );
        assert_eq!(restored.state(), GroupState::PreparingRebalance);
        let rejoined = answered(&mut join(&mut restored, request(&a), 110_100));
        assert_eq!((rejoined.generation_id, rejoined.leader), (2, a));
    }

    #[test]
    fn restore_of_an_empty_group() {
        let snapshot = GroupSnapshot {
            generation_id: 4,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            leader: None,
            members: Vec::new(),
        };
        let mut group = Group::restore("g", snapshot, 0, 0);
        assert_eq!((group.state(), group.generation_id()), (GroupState::Empty, 4));
        assert_eq!(answered(&mut join(&mut group, request(""), 0)).generation_id, 5);
    }

    #[test]
    fn shut_down_fails_parked_requests() {
        let not_coordinator = code(ResponseError::NotCoordinator);
        let mut group = Group::new("g", DELAY);
        let _a = join(&mut group, request(""), 0);
        let mut b = join(&mut group, request(""), 0);
        group.tick(6_000);
        let b = answered(&mut b).member_id;
        let mut b_sync = sync(&mut group, &b, 1, Vec::new(), 6_000).0;
        group.shut_down(not_coordinator);
        assert_eq!(answered(&mut b_sync), sync_error(not_coordinator));
        assert!(group.is_empty());

        let mut preparing = Group::new("g", DELAY);
        let mut parked = join(&mut preparing, request(""), 0);
        preparing.shut_down(not_coordinator);
        assert_eq!(answered(&mut parked).error, not_coordinator);
        assert_eq!(preparing.state(), GroupState::Dead);
        let unavailable = code(ResponseError::CoordinatorNotAvailable);
        assert_eq!(preparing.heartbeat(&b, None, 1, 0), unavailable);
        assert_eq!(answered(&mut join(&mut preparing, request(""), 0)).error, unavailable);
        preparing.tick(100_000);
    }

    #[test]
    fn duplicate_join_supersedes_the_parked_one() {
        let (mut group, a, _) = stable_pair();
        let mut first = join(&mut group, request(&a), 7_000);
        let _second = join(&mut group, request(&a), 7_100);
        assert_eq!(answered(&mut first).error, code(ResponseError::RebalanceInProgress));
    }

    #[test]
    fn max_members() {
        let mut group = Group::new("g", DELAY);
        let mut first = join(&mut group, request(""), 0);
        for _ in 1..MAX_MEMBERS {
            drop(join(&mut group, request(""), 0));
        }
        let full = answered(&mut join(&mut group, request(""), 0));
        assert_eq!(full.error, code(ResponseError::GroupMaxSizeReached));
        let id_first = JoinRequest {
            require_known_member_id: true,
            ..request("")
        };
        assert_eq!(
            answered(&mut join(&mut group, id_first, 0)).error,
            code(ResponseError::GroupMaxSizeReached)
        );
        assert_parked(&mut first);
        group.tick(6_000);
        assert_eq!(answered(&mut first).members.len(), MAX_MEMBERS);
    }
}
