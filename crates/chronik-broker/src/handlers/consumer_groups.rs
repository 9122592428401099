//! ConsumerGroupHeartbeat and ConsumerGroupDescribe: the consumer group
//! protocol (KIP-848), answered by the coordinator of each group. Classic
//! groups and consumer-protocol groups live side by side; one group id is
//! one or the other.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{self as describe_response, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as heartbeat_response};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, GroupId,
};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, topic_name};
use crate::Broker;
use crate::groups::assignor::Partitions;
use crate::groups::consumer_group::{self, Heartbeat, Topics};
use crate::groups::coordinator::{offsets_partition, update_consumer_group};
use crate::groups::registry::now_ms;
use crate::security::session::Session;
use chronik_state::acl::Operation;

/// Member type of a consumer-protocol member (ConsumerGroupDescribe v1).
const MEMBER_TYPE_CONSUMER: i8 = 1;

fn refused(error: ResponseError, message: String) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_member_epoch(-1)
}

/// Whether `group` is a classic group with members (loaded from its saved
/// membership if need be), which a consumer-protocol member may not join.
fn classic_in_use(broker: &Broker, group: &str) -> bool {
    broker.with_group(group, |g| !g.is_empty())
}

/// The topics a group may be assigned, by name.
fn assignable_topics(broker: &Broker) -> Topics {
    broker
        .state
        .metadata()
        .topics
        .iter()
        .filter(|(name, _)| !chronik_state::is_internal_topic(name))
        .map(|(name, topic)| (name.clone(), (topic.id, topic.partitions.len() as i32)))
        .collect()
}

pub async fn heartbeat(
    broker: &Broker,
    session: &Session,
    request: ConsumerGroupHeartbeatRequest,
    client_id: &str,
) -> ConsumerGroupHeartbeatResponse {
    let group = request.group_id.0.to_string();
    if !broker.allows_group(session, Operation::Read, &group) {
        return refused(
            ResponseError::GroupAuthorizationFailed,
            format!("not authorized to READ group {group}"),
        );
    }
    if group.is_empty() {
        return refused(ResponseError::InvalidRequest, "the group id is empty".into());
    }
    if let Err(error) = offsets_partition(broker, &group) {
        return refused(error, format!("this node does not coordinate group {group}"));
    }
    if classic_in_use(broker, &group) {
        return refused(
            ResponseError::GroupIdNotFound,
            format!("group {group} is a classic group with members, not a consumer group"),
        );
    }
    if let Some(regex) = request.subscribed_topic_regex.as_ref().filter(|r| !r.is_empty())
        && consumer_group::full_match(regex).is_none()
    {
        return refused(
            ResponseError::InvalidRegularExpression,
            format!("'{}' is not a valid regular expression", regex.as_str()),
        );
    }
    let heartbeat = Heartbeat {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: String::new(),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        regex: request.subscribed_topic_regex.as_ref().map(|r| r.to_string()),
        assignor: request.server_assignor.as_ref().map(|a| a.to_string()),
        owned: request.topic_partitions.as_ref().map(|topics| {
            topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
                .collect()
        }),
    };
    let topics = assignable_topics(broker);
    let outcome = match update_consumer_group(broker, &group, |g| g.heartbeat(heartbeat, &topics, now_ms())).await {
        Ok(outcome) => outcome,
        Err(error) => return refused(error, format!("cannot save group {group}: {error:?}")),
    };
    match outcome {
        Err((error, message)) => {
            tracing::info!(group, "refused a consumer group heartbeat: {message} ({error:?})");
            refused(error, message)
        }
        Ok(reply) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(broker.config.group_consumer_heartbeat_interval_ms)
            .with_assignment(reply.assignment.map(|assigned| {
                heartbeat_response::Assignment::default().with_topic_partitions(
                    by_topic(&assigned)
                        .into_iter()
                        .map(|(topic_id, partitions)| {
                            heartbeat_response::TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
            })),
    }
}

fn by_topic(partitions: &Partitions) -> BTreeMap<uuid::Uuid, Vec<i32>> {
    let mut topics: BTreeMap<uuid::Uuid, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(*topic).or_default().push(*partition);
    }
    topics
}

pub fn describe(
    broker: &Broker,
    session: &Session,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let names: BTreeMap<uuid::Uuid, String> = broker
        .state
        .metadata()
        .topics
        .iter()
        .map(|(name, topic)| (topic.id, name.clone()))
        .collect();
    let assignment = |partitions: &Partitions| {
        describe_response::Assignment::default().with_topic_partitions(
            by_topic(partitions)
                .into_iter()
                .map(|(topic_id, partitions)| {
                    describe_response::TopicPartitions::default()
                        .with_topic_id(topic_id)
                        .with_topic_name(topic_name(names.get(&topic_id).map_or("", String::as_str)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
    };
    let groups = request
        .group_ids
        .into_iter()
        .map(|id| {
            let name = id.0.to_string();
            let described = DescribedGroup::default().with_group_id(GroupId(id.0.clone()));
            if !broker.allows_group(session, Operation::Describe, &name) {
                return described.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            if let Err(error) = offsets_partition(broker, &name) {
                return described.with_error_code(error.code());
            }
            let found = broker.consumer_group(&name, |g| {
                let members = g
                    .members()
                    .map(|m| {
                        describe_response::Member::default()
                            .with_member_id(StrBytes::from_string(m.id.clone()))
                            .with_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                            .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                            .with_member_epoch(m.epoch)
                            .with_client_id(StrBytes::from_string(m.client_id.clone()))
                            .with_client_host(StrBytes::from_string(m.client_host.clone()))
                            .with_subscribed_topic_names(m.subscribed.iter().map(|t| topic_name(t)).collect())
                            .with_subscribed_topic_regex(m.regex.clone().map(StrBytes::from_string))
                            .with_assignment(assignment(&m.assigned))
                            .with_target_assignment(assignment(&g.target_of(&m.id)))
                            .with_member_type(MEMBER_TYPE_CONSUMER)
                    })
                    .collect();
                described
                    .clone()
                    .with_group_state(str_bytes(g.state_name()))
                    .with_group_epoch(g.epoch())
                    .with_assignment_epoch(g.assignment_epoch())
                    .with_assignor_name(str_bytes(g.assignor()))
                    .with_members(members)
            });
            found.unwrap_or_else(|| {
                described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "group {name} is not a consumer group"
                    ))))
            })
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
