//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups
//! and DeleteGroups: the classic consumer-group protocol, answered by the
//! coordinator of each group.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use super::str_bytes;
use crate::Broker;
use crate::groups::coordinator::{offsets_partition, persist, save_membership, save_unsaved_membership};
use crate::groups::membership::{GroupState, JoinRequest, JoinResponse, SyncResponse};
use crate::groups::registry::now_ms;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::consumer_offsets::Change;

/// Added to a member's rebalance timeout when waiting for its join to
/// complete, so the coordinator's own deadline always fires first.
const JOIN_WAIT_SLACK: Duration = Duration::from_secs(5);

fn opt(s: Option<String>) -> Option<StrBytes> {
    s.map(StrBytes::from_string)
}

fn join_error(member_id: &str, error: ResponseError) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
}

pub async fn join(
    broker: &Broker,
    session: &Session,
    request: JoinGroupRequest,
    client_id: &str,
    version: i16,
) -> JoinGroupResponse {
    let group = request.group_id.0.to_string();
    if !broker.allows_group(session, Operation::Read, &group) {
        return join_error(request.member_id.as_str(), ResponseError::GroupAuthorizationFailed);
    }
    if group.is_empty() {
        return join_error(request.member_id.as_str(), ResponseError::InvalidGroupId);
    }
    if let Err(error) = offsets_partition(broker, &group) {
        return join_error(request.member_id.as_str(), error);
    }
    match broker.consumer_group(&group, |g| g.is_empty()) {
        // A consumer-protocol group (KIP-848) of this id has members.
        Some(false) => return join_error(request.member_id.as_str(), ResponseError::InconsistentGroupProtocol),
        // An empty one gives the id up to the classic group.
        Some(true) => broker.groups.forget_consumer_group(&group),
        None => {}
    }
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance_timeout_ms = if version == 0 {
        request.session_timeout_ms
    } else {
        request.rebalance_timeout_ms
    };
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: String::new(),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        require_known_member_id: version >= 4,
    };
    let (reply, answer) = oneshot::channel();
    broker.with_group(&group, |g| g.join(join, now_ms(), reply));
    save_unsaved_membership(broker, &group).await;
    let wait = Duration::from_millis(rebalance_timeout_ms.max(0) as u64) + JOIN_WAIT_SLACK;
    let outcome: JoinResponse = match tokio::time::timeout(wait, answer).await {
        Ok(Ok(response)) => response,
        _ => return join_error(request.member_id.as_str(), ResponseError::RebalanceInProgress),
    };
    let members = outcome
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(if version >= 5 { opt(m.group_instance_id) } else { None })
                .with_metadata(m.metadata)
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(outcome.error)
        .with_generation_id(outcome.generation_id)
        .with_protocol_name(Some(StrBytes::from_string(outcome.protocol_name.unwrap_or_default())))
        .with_leader(StrBytes::from_string(outcome.leader))
        .with_member_id(StrBytes::from_string(outcome.member_id))
        .with_members(members);
    if version >= 7 {
        response.with_protocol_type(opt(outcome.protocol_type))
    } else {
        response
    }
}

pub async fn sync(broker: &Broker, session: &Session, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group = request.group_id.0.to_string();
    let error = |e: ResponseError| SyncGroupResponse::default().with_error_code(e.code());
    if !broker.allows_group(session, Operation::Read, &group) {
        return error(ResponseError::GroupAuthorizationFailed);
    }
    if let Err(e) = offsets_partition(broker, &group) {
        return error(e);
    }
    let (reply, answer) = oneshot::channel();
    let assignments = request
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let snapshot = broker.with_group(&group, |g| {
        g.sync(
            request.member_id.as_str(),
            request.group_instance_id.as_ref().map(|s| s.as_str()),
            request.generation_id,
            request.protocol_type.as_ref().map(|s| s.as_str()),
            request.protocol_name.as_ref().map(|s| s.as_str()),
            assignments,
            now_ms(),
            reply,
        )
    });
    if let Some(snapshot) = snapshot {
        // The rebalance is complete: record its membership so that a new
        // coordinator can carry on with the same generation.
        save_membership(broker, &group, snapshot).await;
    }
    let outcome: SyncResponse = match tokio::time::timeout(Duration::from_secs(300), answer).await {
        Ok(Ok(response)) => response,
        _ => return error(ResponseError::RebalanceInProgress),
    };
    let response = SyncGroupResponse::default()
        .with_error_code(outcome.error)
        .with_assignment(outcome.assignment);
    if version >= 5 {
        response
            .with_protocol_type(opt(outcome.protocol_type))
            .with_protocol_name(opt(outcome.protocol_name))
    } else {
        response
    }
}

pub fn heartbeat(broker: &Broker, session: &Session, request: HeartbeatRequest) -> HeartbeatResponse {
    let group = request.group_id.0.to_string();
    if !broker.allows_group(session, Operation::Read, &group) {
        return HeartbeatResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let code = match offsets_partition(broker, &group) {
        Err(e) => e.code(),
        Ok(_) => broker.with_group(&group, |g| {
            g.heartbeat(
                request.member_id.as_str(),
                request.group_instance_id.as_ref().map(|s| s.as_str()),
                request.generation_id,
                now_ms(),
            )
        }),
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub async fn leave(broker: &Broker, session: &Session, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    if !broker.allows_group(session, Operation::Read, &group) {
        return LeaveGroupResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if let Err(e) = offsets_partition(broker, &group) {
        return LeaveGroupResponse::default().with_error_code(e.code());
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let codes = broker.with_group(&group, |g| g.leave(&members, now_ms()));
    save_unsaved_membership(broker, &group).await;
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0));
    }
    let responses = members
        .into_iter()
        .zip(codes)
        .map(|((member_id, instance), code)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(opt(instance))
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}

/// (state, protocol type) of a group this node coordinates: from memory, or
/// "Empty" for a group known only by its committed offsets.
fn state_of(broker: &Broker, group: &str) -> Option<(GroupState, String)> {
    broker
        .groups
        .existing(group, |g| {
            (g.state(), g.protocol_type().unwrap_or_default().to_string())
        })
        .filter(|(state, _)| *state != GroupState::Dead)
        .or_else(|| (!broker.state.offsets.offsets(group).is_empty()).then(|| (GroupState::Empty, String::new())))
}

/// A group as ListGroups shows it: state, protocol type and group type.
struct Listed {
    state: &'static str,
    protocol_type: String,
    group_type: &'static str,
}

fn listed(broker: &Broker, id: &str) -> Option<Listed> {
    if let Some((state, empty)) = broker.consumer_group(id, |g| (g.state_name(), g.is_empty()))
        && (!empty || broker.groups.existing(id, |g| g.is_empty()).unwrap_or(true))
    {
        return Some(Listed {
            state,
            protocol_type: "consumer".into(),
            group_type: "consumer",
        });
    }
    state_of(broker, id).map(|(state, protocol_type)| Listed {
        state: state.name(),
        protocol_type,
        group_type: "classic",
    })
}

pub fn list(broker: &Broker, session: &Session, request: ListGroupsRequest) -> ListGroupsResponse {
    // Kafka: DESCRIBE on the cluster lists every group, else those the
    // principal may describe.
    let all = broker.allows_cluster(session, Operation::Describe);
    let mut ids = broker.groups.group_ids();
    ids.extend(broker.groups.consumer_group_ids());
    ids.extend(broker.state.offsets.groups());
    ids.sort();
    ids.dedup();
    let groups = ids
        .into_iter()
        .filter(|id| all || broker.allows_group(session, Operation::Describe, id))
        .filter(|id| offsets_partition(broker, id).is_ok())
        .filter_map(|id| listed(broker, &id).map(|group| (id, group)))
        .filter(|(_, group)| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.as_str().eq_ignore_ascii_case(group.state))
        })
        .filter(|(_, group)| {
            request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|t| t.as_str().eq_ignore_ascii_case(group.group_type))
        })
        .map(|(id, group)| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(group.protocol_type))
                .with_group_state(str_bytes(group.state))
                .with_group_type(str_bytes(group.group_type))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe(broker: &Broker, session: &Session, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let name = id.0.to_string();
            let described = DescribedGroup::default().with_group_id(id);
            if !broker.allows_group(session, Operation::Describe, &name) {
                return described.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            if let Err(e) = offsets_partition(broker, &name) {
                return described.with_error_code(e.code()).with_group_state(str_bytes("Dead"));
            }
            if broker.consumer_group_in_use(&name) {
                // Kafka: a consumer-protocol group is described with ConsumerGroupDescribe.
                return described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_group_state(str_bytes("Dead"));
            }
            let in_memory = broker.groups.existing(&name, |g| {
                let members = g
                    .members()
                    .into_iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(StrBytes::from_string(m.member_id))
                            .with_group_instance_id(opt(m.group_instance_id))
                            .with_client_id(StrBytes::from_string(m.client_id))
                            .with_client_host(StrBytes::from_string(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment)
                    })
                    .collect();
                (
                    g.state(),
                    g.protocol_type().unwrap_or_default().to_string(),
                    g.protocol_name().unwrap_or_default().to_string(),
                    members,
                )
            });
            let (state, protocol_type, protocol, members) = in_memory.unwrap_or_else(|| {
                let state = state_of(broker, &name).map_or(GroupState::Dead, |(s, _)| s);
                (state, String::new(), String::new(), Vec::new())
            });
            described
                .with_group_state(str_bytes(state.name()))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_protocol_data(StrBytes::from_string(protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn delete(broker: &Broker, session: &Session, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let name = id.0.to_string();
        let outcome = if broker.allows_group(session, Operation::Delete, &name) {
            delete_group(broker, &name).await
        } else {
            Err(ResponseError::GroupAuthorizationFailed)
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(outcome.err().map_or(0, |e| e.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

async fn delete_group(broker: &Broker, group: &str) -> Result<(), ResponseError> {
    let partition = offsets_partition(broker, group)?;
    if broker.consumer_group_in_use(group) {
        return Err(ResponseError::NonEmptyGroup);
    }
    match broker.groups.existing(group, |g| g.is_empty()) {
        Some(false) => return Err(ResponseError::NonEmptyGroup),
        None if broker.state.offsets.offsets(group).is_empty()
            && broker.state.offsets.group_metadata(group).is_none() =>
        {
            return Err(ResponseError::GroupIdNotFound);
        }
        _ => {}
    }
    let mut changes: Vec<Change> = broker
        .state
        .offsets
        .offsets(group)
        .into_iter()
        .map(|((topic, partition), _)| Change::DeleteOffset {
            group: group.to_string(),
            topic,
            partition,
        })
        .collect();
    changes.push(Change::DeleteGroup {
        group: group.to_string(),
    });
    persist(broker, &partition, &changes).await?;
    broker.groups.forget(group);
    Ok(())
}
