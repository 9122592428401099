//! The Kafka APIs tools call: every advertised API answers at its lowest and
//! highest version; leader epochs (KIP-320) are real and checked; and
//! DescribeLogDirs, DescribeProducers and DescribeTopicPartitions report the
//! node's state.

mod common;

use bytes::{Buf, Bytes};
use common::Broker;
use common::raw::Connection;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest as ProducersTopic;
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest as PartitionsTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A request of `key` with every field at its default; Produce asks for
/// acks=1, since acks=0 gets no response.
fn default_request(key: ApiKey) -> RequestKind {
    macro_rules! defaults {
        ($($api:ident),* $(,)?) => {
            match key {
                ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(1)),
                $(ApiKey::$api => RequestKind::$api(Default::default()),)*
                other => panic!("{other:?} is advertised: add it to this test"),
            }
        };
    }
    defaults!(
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        DeleteGroups,
        SaslHandshake,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        SaslAuthenticate,
        CreatePartitions,
        ElectLeaders,
        IncrementalAlterConfigs,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        OffsetDelete,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeCluster,
        UpdateFeatures,
        DescribeProducers,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        DescribeTopicPartitions,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        WriteTxnMarkers,
        DescribeTransactions,
        ListTransactions,
    )
}

/// Sends `request` and decodes the response as `key` at `version`.
fn call(connection: &mut Connection, key: ApiKey, version: i16, request: &RequestKind) -> ResponseKind {
    let mut frame = connection.header(key, version);
    request.encode(&mut frame, version).unwrap();
    connection.send_raw(&frame);
    let mut body = connection
        .receive()
        .unwrap_or_else(|| panic!("{key:?} v{version}: the broker closed the connection"));
    let header_version = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    let header = ResponseHeader::decode(&mut body, header_version).unwrap();
    assert_eq!(header.correlation_id, connection.correlation, "{key:?} v{version}");
    let response = ResponseKind::decode(key, &mut body, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: undecodable response: {e}"));
    assert!(
        !body.has_remaining(),
        "{key:?} v{version}: bytes left after the response"
    );
    response
}

#[test]
fn every_advertised_api_answers_at_its_lowest_and_highest_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    let mut connection = Connection::open(&broker.addr);
    let ResponseKind::ApiVersions(versions) = call(
        &mut connection,
        ApiKey::ApiVersions,
        3,
        &RequestKind::ApiVersions(ApiVersionsRequest::default()),
    ) else {
        unreachable!()
    };
    assert_eq!(versions.error_code, 0);
    assert!(
        versions.api_keys.len() >= 40,
        "{} APIs advertised",
        versions.api_keys.len()
    );
    let mut walked = 0;
    for api in &versions.api_keys {
        let key = ApiKey::try_from(api.api_key).unwrap();
        assert!(api.min_version <= api.max_version, "{key:?}");
        assert!(key.valid_versions().min <= api.min_version && api.max_version <= key.valid_versions().max);
        for version in [api.min_version, api.max_version] {
            call(&mut connection, key, version, &default_request(key));
            walked += 1;
        }
    }
    assert_eq!(walked, versions.api_keys.len() * 2);

    // The reads that name a partition, at every version: their answers carry
    // fields (leader epochs, records) that older versions lack.
    produce(&mut connection, "walked", 3);
    let version_range = |key: ApiKey| {
        let api = versions.api_keys.iter().find(|a| a.api_key == key as i16).unwrap();
        api.min_version..=api.max_version
    };
    for version in version_range(ApiKey::ListOffsets) {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("walked"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
                    ]),
            ]);
        let ResponseKind::ListOffsets(response) = call(
            &mut connection,
            ApiKey::ListOffsets,
            version,
            &RequestKind::ListOffsets(request),
        ) else {
            unreachable!()
        };
        let partition = &response.topics[0].partitions[0];
        assert_eq!(
            (partition.error_code, partition.offset),
            (0, 3),
            "ListOffsets v{version}"
        );
    }
    for version in version_range(ApiKey::Metadata) {
        let topics = vec![MetadataRequestTopic::default().with_name(Some(name("walked")))];
        let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(topics)));
        let ResponseKind::Metadata(response) = call(&mut connection, ApiKey::Metadata, version, &request) else {
            unreachable!()
        };
        assert_eq!(
            response.topics[0].partitions[0].leader_id,
            BrokerId(1),
            "Metadata v{version}"
        );
    }
    for version in version_range(ApiKey::Fetch) {
        let request = FetchRequest::default().with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default()
                .with_topic(name("walked"))
                .with_partitions(vec![FetchPartition::default().with_partition_max_bytes(1 << 20)]),
        ]);
        let ResponseKind::Fetch(response) = call(&mut connection, ApiKey::Fetch, version, &RequestKind::Fetch(request))
        else {
            unreachable!()
        };
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "Fetch v{version}");
        assert!(
            partition.records.as_ref().is_some_and(|r| !r.is_empty()),
            "Fetch v{version}"
        );
    }
    for version in version_range(ApiKey::OffsetForLeaderEpoch) {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(name("walked"))
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_current_leader_epoch(-1)
                            .with_leader_epoch(1),
                    ]),
            ]);
        let ResponseKind::OffsetForLeaderEpoch(response) = call(
            &mut connection,
            ApiKey::OffsetForLeaderEpoch,
            version,
            &RequestKind::OffsetForLeaderEpoch(request),
        ) else {
            unreachable!()
        };
        assert_eq!(
            response.topics[0].partitions[0].error_code, 0,
            "OffsetForLeaderEpoch v{version}"
        );
    }
    // And the broker still serves.
    let ResponseKind::Metadata(metadata) = call(
        &mut connection,
        ApiKey::Metadata,
        12,
        &RequestKind::Metadata(MetadataRequest::default()),
    ) else {
        unreachable!()
    };
    assert_eq!(metadata.brokers.len(), 1);
}

/// Produces one batch of `records` to partition 0, retrying while the
/// partition has no ready leader (as a client would); returns its offset.
fn produce(connection: &mut Connection, topic: &str, records: u32) -> i64 {
    // Stamped now: retention at a restart would delete older records.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let batch = Bytes::from(chronik_log::testing::build_batch(records, now_ms, 20));
    let request = RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default().with_index(0).with_records(Some(batch)),
                    ]),
            ]),
    );
    let retriable = [ResponseError::NotLeaderOrFollower, ResponseError::LeaderNotAvailable].map(|e| e.code());
    common::retry_until(std::time::Duration::from_secs(20), || {
        let ResponseKind::Produce(response) = call(connection, ApiKey::Produce, 9, &request) else {
            unreachable!()
        };
        let partition = &response.responses[0].partition_responses[0];
        if retriable.contains(&partition.error_code) {
            return None;
        }
        assert_eq!(partition.error_code, 0);
        Some(partition.base_offset)
    })
}

fn leader_epoch(connection: &mut Connection, topic: &str) -> i32 {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name(topic)))]));
    let ResponseKind::Metadata(metadata) = call(connection, ApiKey::Metadata, 12, &RequestKind::Metadata(request))
    else {
        unreachable!()
    };
    metadata.topics[0].partitions[0].leader_epoch
}

/// (error, epoch, end offset) of OffsetForLeaderEpoch for partition 0.
fn epoch_end(connection: &mut Connection, topic: &str, current: i32, epoch: i32) -> (i16, i32, i64) {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch),
                ]),
        ]);
    let ResponseKind::OffsetForLeaderEpoch(response) = call(
        connection,
        ApiKey::OffsetForLeaderEpoch,
        4,
        &RequestKind::OffsetForLeaderEpoch(request),
    ) else {
        unreachable!()
    };
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// (error, records) of a Fetch of partition 0 from offset 0.
fn fetch(connection: &mut Connection, topic: &str, current: i32) -> (i16, Option<Bytes>) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default().with_topic(name(topic)).with_partitions(
            vec![
            FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_partition_max_bytes(1 << 20),
        ],
        )]);
    let ResponseKind::Fetch(response) = call(connection, ApiKey::Fetch, 12, &RequestKind::Fetch(request)) else {
        unreachable!()
    };
    let p = &response.responses[0].partitions[0];
    (p.error_code, p.records.clone())
}

/// The partitionLeaderEpoch of every batch in `records`.
fn batch_epochs(records: &Bytes) -> Vec<i32> {
    chronik_log::split_batches(records)
        .unwrap()
        .into_iter()
        .map(|range| {
            chronik_log::parse_header(&records[range])
                .unwrap()
                .partition_leader_epoch
        })
        .collect()
}

#[test]
fn leader_epochs_are_raft_terms_that_clients_can_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"), &[]);
    let mut connection = Connection::open(&broker.addr);
    assert_eq!(produce(&mut connection, "epochs", 5), 0);
    let first = leader_epoch(&mut connection, "epochs");
    assert!(first >= 1, "Metadata reports a real epoch, not {first}");

    // The current epoch ends at the log end; a stale one is fenced, a future one unknown.
    assert_eq!(epoch_end(&mut connection, "epochs", first, first), (0, first, 5));
    assert_eq!(epoch_end(&mut connection, "epochs", -1, first), (0, first, 5));
    let fenced = ResponseError::FencedLeaderEpoch.code();
    let unknown = ResponseError::UnknownLeaderEpoch.code();
    assert_eq!(epoch_end(&mut connection, "epochs", first + 1, first).0, unknown);
    assert_eq!(fetch(&mut connection, "epochs", first + 1).0, unknown);
    let (error, records) = fetch(&mut connection, "epochs", first);
    assert_eq!(error, 0);
    assert_eq!(batch_epochs(&records.unwrap()), vec![first]);

    // A restart elects the node again, in a later term: a new epoch.
    broker.restart();
    let mut connection = Connection::open(&broker.addr);
    let second = common::retry_until(std::time::Duration::from_secs(20), || {
        let epoch = leader_epoch(&mut connection, "epochs");
        (epoch > first).then_some(epoch)
    });
    // Reads wait for the new leader to be ready; retried like a client would.
    common::retry_until(std::time::Duration::from_secs(20), || {
        (fetch(&mut connection, "epochs", second).0 == 0).then_some(())
    });
    assert_eq!(fetch(&mut connection, "epochs", first).0, fenced);
    assert_eq!(epoch_end(&mut connection, "epochs", first, first).0, fenced);
    assert_eq!(produce(&mut connection, "epochs", 3), 5);
    // The old epoch ends where the new one's first batch starts.
    assert_eq!(epoch_end(&mut connection, "epochs", second, first), (0, first, 5));
    assert_eq!(epoch_end(&mut connection, "epochs", second, second), (0, second, 8));
    assert_eq!(epoch_end(&mut connection, "epochs", second, second + 1).1, -1);
    let (_, records) = fetch(&mut connection, "epochs", second);
    assert_eq!(batch_epochs(&records.unwrap()), vec![first, second]);
}

#[test]
fn log_dirs_producers_and_topic_partitions_describe_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    let mut connection = Connection::open(&broker.addr);
    produce(&mut connection, "described", 10);

    let request = DescribeLogDirsRequest::default().with_topics(Some(vec![
        DescribableLogDirTopic::default()
            .with_topic(name("described"))
            .with_partitions(vec![0]),
    ]));
    let ResponseKind::DescribeLogDirs(dirs) = call(
        &mut connection,
        ApiKey::DescribeLogDirs,
        4,
        &RequestKind::DescribeLogDirs(request),
    ) else {
        unreachable!()
    };
    assert_eq!(dirs.error_code, 0);
    assert_eq!(dirs.results.len(), 1);
    let result = &dirs.results[0];
    assert!(result.total_bytes > 0 && result.usable_bytes > 0 && result.usable_bytes <= result.total_bytes);
    assert_eq!(result.topics.len(), 1);
    let size = result.topics[0].partitions[0].partition_size;
    assert!(size > 10 * 20, "partition size {size}");

    // An idempotent producer's state, as the leader keeps it.
    let producer = broker.producer(&[("enable.idempotence", "true")]);
    for i in 0..3 {
        producer
            .send(
                rdkafka::producer::BaseRecord::to("described")
                    .key(&format!("k{i}"))
                    .payload("v"),
            )
            .unwrap();
    }
    common::flush(&producer, std::time::Duration::from_secs(10));
    let request = DescribeProducersRequest::default().with_topics(vec![
        ProducersTopic::default()
            .with_name(name("described"))
            .with_partition_indexes(vec![0, 7]),
    ]);
    let ResponseKind::DescribeProducers(producers) = call(
        &mut connection,
        ApiKey::DescribeProducers,
        0,
        &RequestKind::DescribeProducers(request),
    ) else {
        unreachable!()
    };
    let partitions = &producers.topics[0].partitions;
    assert_eq!(partitions[0].error_code, 0);
    assert_eq!(partitions[0].active_producers.len(), 1, "{:?}", partitions[0]);
    let state = &partitions[0].active_producers[0];
    assert!(state.producer_id.0 >= 0);
    assert_eq!(state.last_sequence, 2);
    assert!(state.last_timestamp > 0);
    assert_eq!(partitions[1].error_code, ResponseError::UnknownTopicOrPartition.code());

    // Topics with their partitions, paged by a cursor.
    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(name("paged"))
            .with_num_partitions(5)
            .with_replication_factor(1),
    ]);
    call(
        &mut connection,
        ApiKey::CreateTopics,
        7,
        &RequestKind::CreateTopics(create),
    );
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let request = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                PartitionsTopic::default().with_name(name("paged")),
                PartitionsTopic::default().with_name(name("missing")),
            ])
            .with_response_partition_limit(2)
            .with_cursor(cursor.take());
        let ResponseKind::DescribeTopicPartitions(response) = call(
            &mut connection,
            ApiKey::DescribeTopicPartitions,
            0,
            &RequestKind::DescribeTopicPartitions(request),
        ) else {
            unreachable!()
        };
        for topic in &response.topics {
            if topic.name.as_ref().is_some_and(|n| n.0.as_str() == "missing") {
                assert_eq!(topic.error_code, ResponseError::UnknownTopicOrPartition.code());
                continue;
            }
            for p in &topic.partitions {
                assert_eq!(p.leader_id.0, 1);
                assert!(p.leader_epoch >= 1);
                assert_eq!(p.isr_nodes, vec![BrokerId(1)]);
                seen.push(p.partition_index);
            }
        }
        match response.next_cursor {
            Some(next) => {
                cursor = Some(
                    kafka_protocol::messages::describe_topic_partitions_request::Cursor::default()
                        .with_topic_name(next.topic_name)
                        .with_partition_index(next.partition_index),
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}
