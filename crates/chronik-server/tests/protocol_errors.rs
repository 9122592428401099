//! Bad input gets the Kafka error a Kafka broker would send, and the broker
//! keeps serving: unsupported versions, malformed and oversized frames, CRC
//! mismatches, bad topic names, oversized batches, unknown topics.

mod common;

use std::io::Write;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::Broker;
use common::raw::Connection;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

fn error_only(mut body: Bytes, correlation: i32) -> i16 {
    assert_eq!(body.get_i32(), correlation);
    body.get_i16()
}

fn produce_request(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

fn produce_error(connection: &mut Connection, request: &ProduceRequest) -> i16 {
    let mut body = connection.call(ApiKey::Produce, 9, request);
    let response = ProduceResponse::decode(&mut body, 9).unwrap();
    response.responses[0].partition_responses[0].error_code
}

fn batch(records: u32, payload: usize) -> Bytes {
    Bytes::from(chronik_log::testing::build_batch(records, 1_700_000_000_000, payload))
}

#[test]
fn versions_and_frames() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &["--max-request-bytes", "1048576"]);
    let mut connection = Connection::open(&broker.addr);

    // An ApiVersions version from the future gets the v0 answer with UNSUPPORTED_VERSION.
    let mut frame = connection.header(ApiKey::ApiVersions, 0);
    frame[2..4].copy_from_slice(&9i16.to_be_bytes());
    connection.send_raw(&frame);
    let mut body = connection.receive().unwrap();
    assert_eq!(body.get_i32(), connection.correlation);
    let versions = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(versions.error_code, ResponseError::UnsupportedVersion.code());
    assert!(versions.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));

    // ApiVersions v3 lists exactly what is implemented.
    let mut body = connection.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let versions = ApiVersionsResponse::decode(&mut body, 3).unwrap();
    assert_eq!(versions.error_code, 0);
    let produce = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 11));
    assert!(
        !versions
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::DescribeDelegationToken as i16)
    );

    // An API Chronik does not implement, and an unknown API key.
    let frame = connection.header(ApiKey::DescribeDelegationToken, 1);
    connection.send_raw(&frame);
    let correlation = connection.correlation;
    assert_eq!(
        error_only(connection.receive().unwrap(), correlation),
        ResponseError::UnsupportedVersion.code()
    );
    let mut frame = connection.header(ApiKey::Metadata, 1);
    frame[0..2].copy_from_slice(&999i16.to_be_bytes());
    connection.send_raw(&frame);
    let correlation = connection.correlation;
    assert_eq!(
        error_only(connection.receive().unwrap(), correlation),
        ResponseError::UnsupportedVersion.code()
    );
    // A version above the supported range.
    let frame = connection.header(ApiKey::Produce, 13);
    connection.send_raw(&frame);
    let correlation = connection.correlation;
    assert_eq!(
        error_only(connection.receive().unwrap(), correlation),
        ResponseError::UnsupportedVersion.code()
    );

    // A malformed body: INVALID_REQUEST, and the connection still works.
    let mut frame = connection.header(ApiKey::Metadata, 9);
    frame.put_slice(&[0xff, 0xff, 0xff, 0x7f, 0x01]);
    connection.send_raw(&frame);
    let correlation = connection.correlation;
    assert_eq!(
        error_only(connection.receive().unwrap(), correlation),
        ResponseError::InvalidRequest.code()
    );
    let mut body = connection.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(Some(vec![])),
    );
    MetadataResponse::decode(&mut body, 9).unwrap();

    // A frame over --max-request-bytes: MESSAGE_TOO_LARGE, then the connection closes.
    let header = connection.header(ApiKey::Produce, 9);
    let mut out = Vec::new();
    out.extend_from_slice(&(2 * 1024 * 1024i32).to_be_bytes());
    out.extend_from_slice(&header);
    connection.stream.write_all(&out).unwrap();
    let correlation = connection.correlation;
    assert_eq!(
        error_only(connection.receive().unwrap(), correlation),
        ResponseError::MessageTooLarge.code()
    );
    assert!(
        connection.receive().is_none(),
        "connection stays open after an oversized frame"
    );

    // The broker itself is unharmed.
    let mut connection = Connection::open(&broker.addr);
    let mut body = connection.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(ApiVersionsResponse::decode(&mut body, 0).unwrap().error_code, 0);
}

#[test]
fn bad_produce_requests() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    common::create_topic(&broker.addr, "small", 1, &[("max.message.bytes", "2000")]);
    let mut connection = Connection::open(&broker.addr);

    assert_eq!(
        produce_error(&mut connection, &produce_request("small", batch(3, 100), -1)),
        0
    );

    let mut corrupt = BytesMut::from(&batch(3, 100)[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let code = produce_error(&mut connection, &produce_request("small", corrupt.freeze(), -1));
    assert_eq!(code, ResponseError::CorruptMessage.code());

    let mut truncated = batch(3, 100);
    truncated.truncate(truncated.len() - 10);
    let code = produce_error(&mut connection, &produce_request("small", truncated, -1));
    assert_eq!(code, ResponseError::CorruptMessage.code());

    let code = produce_error(&mut connection, &produce_request("small", batch(2, 3000), -1));
    assert_eq!(code, ResponseError::MessageTooLarge.code());

    let code = produce_error(&mut connection, &produce_request("bad name!", batch(1, 10), -1));
    assert_eq!(code, ResponseError::InvalidTopicException.code());

    let code = produce_error(&mut connection, &produce_request("small", batch(1, 10), 2));
    assert_eq!(code, ResponseError::InvalidRequiredAcks.code());

    let mut body = connection.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("no/slashes")))),
            ])),
    );
    let metadata = MetadataResponse::decode(&mut body, 9).unwrap();
    assert_eq!(
        metadata.topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );

    // Rejected batches left nothing behind: only the first, good batch is in the log.
    let consumer = broker.consumer();
    assert_eq!(common::watermarks(&consumer, "small", 0), (0, 3));
}

#[test]
fn unknown_topics_without_auto_creation() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &["--auto-create-topics", "false"]);
    let mut connection = Connection::open(&broker.addr);
    let code = produce_error(&mut connection, &produce_request("missing", batch(1, 10), -1));
    assert_eq!(code, ResponseError::UnknownTopicOrPartition.code());
    let mut body = connection.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("missing")))),
            ])),
    );
    let metadata = MetadataResponse::decode(&mut body, 9).unwrap();
    assert_eq!(
        metadata.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(metadata.topics.len() == 1 && metadata.brokers.len() == 1);
}

#[test]
fn impossible_array_lengths_are_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    let mut connection = Connection::open(&broker.addr);
    // Metadata v0 whose topic array claims 0x7fff_ffff entries in a few bytes:
    // decoding must fail cleanly instead of reserving hundreds of GiB.
    let mut frame = connection.header(ApiKey::Metadata, 0);
    frame.put_i32(i32::MAX);
    frame.put_slice(b"abc");
    connection.send_raw(&frame);
    let correlation = connection.correlation;
    assert_eq!(
        error_only(connection.receive().unwrap(), correlation),
        ResponseError::InvalidRequest.code()
    );
    // The same for a flexible (compact) array: Metadata v9.
    let mut frame = connection.header(ApiKey::Metadata, 9);
    frame.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    connection.send_raw(&frame);
    let correlation = connection.correlation;
    assert_eq!(
        error_only(connection.receive().unwrap(), correlation),
        ResponseError::InvalidRequest.code()
    );
    let mut body = connection.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(ApiVersionsResponse::decode(&mut body, 0).unwrap().error_code, 0);
}

fn join_request(member_id: &str, protocol_type: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("strict")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_protocol_type(StrBytes::from_string(protocol_type.to_string()))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"\x00\x00")),
        ])
}

fn commit_error(connection: &mut Connection, group: &str, generation: i32, member: &str) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("events")))
                .with_partitions(vec![OffsetCommitRequestPartition::default().with_committed_offset(1)]),
        ]);
    let mut body = connection.call(ApiKey::OffsetCommit, 8, &request);
    OffsetCommitResponse::decode(&mut body, 8).unwrap().topics[0].partitions[0].error_code
}

#[test]
fn group_protocol_violations() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("broker"),
        &[
            "--offsets-topic-partitions",
            "3",
            "--group-initial-rebalance-delay-ms",
            "0",
        ],
    );
    common::create_topic(&broker.addr, "events", 1, &[]);
    let mut connection = Connection::open(&broker.addr);

    // A group nobody joined: a commit claiming a generation is stale.
    assert_eq!(
        commit_error(&mut connection, "ghost", 3, "someone"),
        ResponseError::IllegalGeneration.code()
    );
    // A commit outside group management is fine for a group without members.
    assert_eq!(commit_error(&mut connection, "ghost", -1, ""), 0);

    // JoinGroup v5 first hands out a member id (KIP-394), then admits it.
    let mut body = connection.call(ApiKey::JoinGroup, 5, &join_request("", "consumer"));
    let first = JoinGroupResponse::decode(&mut body, 5).unwrap();
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.to_string();
    let mut body = connection.call(ApiKey::JoinGroup, 5, &join_request(&member, "consumer"));
    let joined = JoinGroupResponse::decode(&mut body, 5).unwrap();
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member);
    let generation = joined.generation_id;
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("strict")))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.clone()))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_assignment(Bytes::from_static(b"assigned")),
        ]);
    let mut body = connection.call(ApiKey::SyncGroup, 3, &sync);
    let synced = SyncGroupResponse::decode(&mut body, 3).unwrap();
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"assigned"[..]));

    assert_eq!(commit_error(&mut connection, "strict", generation, &member), 0);
    assert_eq!(
        commit_error(&mut connection, "strict", generation - 1, &member),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        commit_error(&mut connection, "strict", generation, "stranger"),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        commit_error(&mut connection, "strict", -1, ""),
        ResponseError::UnknownMemberId.code()
    );

    let heartbeat = |member: &str, generation: i32| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("strict")))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member.to_string()))
    };
    let mut body = connection.call(ApiKey::Heartbeat, 3, &heartbeat(&member, generation));
    assert_eq!(HeartbeatResponse::decode(&mut body, 3).unwrap().error_code, 0);
    let mut body = connection.call(ApiKey::Heartbeat, 3, &heartbeat(&member, generation + 1));
    assert_eq!(
        HeartbeatResponse::decode(&mut body, 3).unwrap().error_code,
        ResponseError::IllegalGeneration.code()
    );
    let mut body = connection.call(ApiKey::Heartbeat, 3, &heartbeat("stranger", generation));
    assert_eq!(
        HeartbeatResponse::decode(&mut body, 3).unwrap().error_code,
        ResponseError::UnknownMemberId.code()
    );

    // A member of another protocol type cannot join.
    let mut body = connection.call(ApiKey::JoinGroup, 3, &join_request("", "connect"));
    let refused = JoinGroupResponse::decode(&mut body, 3).unwrap();
    assert_eq!(refused.error_code, ResponseError::InconsistentGroupProtocol.code());

    // The committed offset is there to fetch.
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("strict")))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("events")))
                .with_partition_indexes(vec![0]),
        ]));
    let mut body = connection.call(ApiKey::OffsetFetch, 5, &fetch);
    let fetched = OffsetFetchResponse::decode(&mut body, 5).unwrap();
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 1);
}

/// A batch that passes the CRC check but claims no offset (no records) once
/// reached apply and panicked the Raft loop on every replica, for good: a
/// restart replayed it. It is refused at the edge now, and the partition,
/// and the broker after a restart, keep serving.
#[test]
fn a_batch_without_records_cannot_stop_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"), &[]);
    // The test batches are dated 2023: keep them from retention.
    common::create_topic(&broker.addr, "poison", 1, &[("retention.ms", "-1")]);
    let mut connection = Connection::open(&broker.addr);

    let empty = batch(0, 0);
    assert_eq!(empty.len(), 61, "the 61-byte batch of the report");
    let mut body = connection.call(ApiKey::Produce, 3, &produce_request("poison", empty, -1));
    let response = ProduceResponse::decode(&mut body, 3).unwrap();
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRecord.code()
    );
    // Kafka takes exactly one batch per partition (Produce v3 and later).
    let two = Bytes::from([batch(1, 10), batch(1, 10)].concat());
    let code = produce_error(&mut connection, &produce_request("poison", two, -1));
    assert_eq!(code, ResponseError::InvalidRecord.code());

    assert_eq!(
        produce_error(&mut connection, &produce_request("poison", batch(2, 10), -1)),
        0
    );
    broker.restart();
    let mut connection = Connection::open(&broker.addr);
    assert_eq!(
        produce_error(&mut connection, &produce_request("poison", batch(3, 10), -1)),
        0,
        "the partition still takes writes after a restart"
    );
    let consumer = broker.consumer();
    assert_eq!(common::watermarks(&consumer, "poison", 0), (0, 5));
}

/// Fetch's max_bytes is capped by --fetch-max-bytes, as Kafka caps it by
/// fetch.max.bytes; at least one batch still comes back.
#[test]
fn fetch_size_is_capped_by_the_broker() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &["--fetch-max-bytes", "3000"]);
    common::create_topic(&broker.addr, "capped", 1, &[]);
    let mut connection = Connection::open(&broker.addr);
    for _ in 0..10 {
        assert_eq!(
            produce_error(&mut connection, &produce_request("capped", batch(1, 1000), -1)),
            0
        );
    }
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(i32::MAX)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("capped")))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(i32::MAX),
                ]),
        ]);
    let mut body = connection.call(ApiKey::Fetch, 11, &request);
    let response = FetchResponse::decode(&mut body, 11).unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 10);
    let records = partition.records.as_ref().expect("records").len();
    assert!(
        (1000..=3000).contains(&records),
        "{records} bytes: between one batch and the cap"
    );
}

/// Fetch keeps within max_bytes over all partitions and within each
/// partition_max_bytes; only the first batch of the response may be larger.
#[test]
fn fetch_keeps_within_max_bytes_across_partitions() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    common::create_topic(&broker.addr, "limits", 4, &[]);
    let mut connection = Connection::open(&broker.addr);
    let one_batch = batch(1, 10_000).len();
    for partition in 0..4 {
        for _ in 0..20 {
            let mut request = produce_request("limits", batch(1, 10_000), -1);
            request.topic_data[0].partition_data[0].index = partition;
            assert_eq!(produce_error(&mut connection, &request), 0);
        }
    }
    let mut fetch = |max_bytes: i32, partition_max_bytes: i32| -> Vec<usize> {
        let partitions = (0..4)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(partition_max_bytes)
            })
            .collect();
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(max_bytes)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("limits")))
                    .with_partitions(partitions),
            ]);
        let mut body = connection.call(ApiKey::Fetch, 11, &request);
        let response = FetchResponse::decode(&mut body, 11).unwrap();
        response.responses[0]
            .partitions
            .iter()
            .map(|p| {
                assert_eq!(p.error_code, 0);
                p.records.as_ref().map_or(0, |r| r.len())
            })
            .collect()
    };
    let sizes = fetch(50_000, 30_000);
    assert!(sizes.iter().sum::<usize>() <= 50_000, "{sizes:?} exceeds max_bytes");
    assert!(
        sizes.iter().all(|&s| s <= 30_000),
        "{sizes:?} exceeds partition_max_bytes"
    );
    assert!(
        sizes[0] >= 2 * one_batch,
        "{sizes:?}: the first partition fills its share"
    );
    assert!(
        sizes[1] > 0,
        "{sizes:?}: the rest of the budget goes to the next partition"
    );
    // Smaller limits than one batch: that batch alone, from the first partition.
    assert_eq!(fetch(100, 30_000), vec![one_batch, 0, 0, 0]);
    assert_eq!(fetch(1 << 20, 100), vec![one_batch, 0, 0, 0]);
}

/// The topic configs that change what a produce stores or whether it is
/// taken: compression.type, message.timestamp.type, min.insync.replicas.
#[test]
fn topic_configs_shape_what_is_stored() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};
    use kafka_protocol::records::RecordBatchDecoder;

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    common::create_topic(&broker.addr, "zstd", 1, &[("compression.type", "zstd")]);
    common::create_topic(
        &broker.addr,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    common::create_topic(&broker.addr, "two-insync", 1, &[("min.insync.replicas", "2")]);
    let mut connection = Connection::open(&broker.addr);
    let fetch_first = |connection: &mut Connection, topic: &str| -> Bytes {
        let request = FetchRequest::default().with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
        let mut body = connection.call(ApiKey::Fetch, 11, &request);
        let response = FetchResponse::decode(&mut body, 11).unwrap();
        response.responses[0].partitions[0].records.clone().expect("records")
    };

    let sent = batch(5, 300);
    assert_eq!(
        produce_error(&mut connection, &produce_request("zstd", sent.clone(), -1)),
        0
    );
    let mut stored = fetch_first(&mut connection, "zstd");
    let header = chronik_log::validate_batch(&stored).unwrap();
    assert_eq!(header.compression(), 4, "stored as zstd");
    assert!(stored.len() < sent.len());
    let records = RecordBatchDecoder::decode(&mut stored).unwrap().records;
    let sent_records = RecordBatchDecoder::decode(&mut sent.clone()).unwrap().records;
    assert_eq!(records.len(), 5);
    assert!(
        records
            .iter()
            .zip(&sent_records)
            .all(|(a, b)| a.value == b.value && a.key == b.key)
    );

    let mut body = connection.call(ApiKey::Produce, 9, &produce_request("stamped", batch(2, 10), -1));
    let response = ProduceResponse::decode(&mut body, 9).unwrap();
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0);
    assert!(partition.log_append_time_ms > 1_700_000_000_000, "{partition:?}");
    let stored = fetch_first(&mut connection, "stamped");
    let header = chronik_log::validate_batch(&stored).unwrap();
    assert_eq!(header.max_timestamp, partition.log_append_time_ms);
    assert_ne!(header.attributes & chronik_log::LOG_APPEND_TIME_FLAG, 0);

    // One node cannot make two in-sync replicas: acks=all is refused (once
    // the new partition's leader has published its ISR), acks=1 is not.
    let refused = (0..50).any(|_| {
        let code = produce_error(&mut connection, &produce_request("two-insync", batch(1, 10), -1));
        std::thread::sleep(std::time::Duration::from_millis(100));
        code == ResponseError::NotEnoughReplicas.code()
    });
    assert!(refused, "acks=all was taken with one in-sync replica of two required");
    assert_eq!(
        produce_error(&mut connection, &produce_request("two-insync", batch(1, 10), 1)),
        0
    );
}

/// A batch the leader would refuse at apply is refused before it is
/// proposed: the producer gets the same error, and the Raft log never
/// holds it.
#[test]
fn a_refused_batch_never_enters_the_raft_log() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    common::create_topic(&broker.addr, "seq", 1, &[]);
    let mut connection = Connection::open(&broker.addr);
    let idempotent = |sequence: i32, records: u32| {
        let mut batch = chronik_log::testing::build_batch(records, 1_700_000_000_000, 10);
        chronik_log::testing::set_producer(&mut batch, 4242, 0, sequence);
        Bytes::from(batch)
    };
    assert_eq!(
        produce_error(&mut connection, &produce_request("seq", idempotent(0, 2), -1)),
        0
    );
    let refused_before = broker.metric("chronik_raft_proposals_refused_total");
    for _ in 0..3 {
        // Sequence 5 after 0..=1: a gap.
        let code = produce_error(&mut connection, &produce_request("seq", idempotent(5, 1), -1));
        assert_eq!(code, ResponseError::OutOfOrderSequenceNumber.code());
    }
    assert_eq!(
        broker.metric("chronik_raft_proposals_refused_total") - refused_before,
        3.0
    );
    // The producer goes on where it was; nothing was written in between.
    assert_eq!(
        produce_error(&mut connection, &produce_request("seq", idempotent(2, 1), -1)),
        0
    );
    let consumer = broker.consumer();
    assert_eq!(common::watermarks(&consumer, "seq", 0), (0, 3));
}
