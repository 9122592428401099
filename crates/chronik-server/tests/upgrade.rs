//! The last step of a rolling upgrade: a cluster formed at an older
//! `chronik.version` moves up only once every member reads the new level,
//! through `chronik-server cluster version --set` or Kafka's UpdateFeatures,
//! and its records keep their offsets, the same on every replica, across it.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, serial, verify_acknowledged};
use common::create_replicated_topic;
use common::delivery::{new_producer, send};
use common::raw::Connection;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, UpdateFeaturesRequest, UpdateFeaturesResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::producer::Producer;
use serde_json::{Value, json};

const TOPIC: &str = "upgraded";
const FEATURE: &str = "chronik.version";

/// (finalized level, epoch, supported min and max) as ApiVersions v3 tells.
fn advertised(addr: &str) -> (i16, i64, i16, i16) {
    let mut connection = Connection::open(addr);
    let mut body = connection.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let response = ApiVersionsResponse::decode(&mut body, 3).unwrap();
    let supported = response
        .supported_features
        .iter()
        .find(|f| f.name.as_str() == FEATURE)
        .unwrap();
    let finalized = response
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == FEATURE)
        .unwrap();
    (
        finalized.max_version_level,
        response.finalized_features_epoch,
        supported.min_version,
        supported.max_version,
    )
}

/// UpdateFeatures at `version` with `(feature, level, upgrade type)` updates.
fn update_features(
    addr: &str,
    version: i16,
    updates: &[(&str, i16, i8)],
    validate_only: bool,
) -> UpdateFeaturesResponse {
    update_features_within(addr, version, updates, validate_only, 30_000)
}

fn update_features_within(
    addr: &str,
    version: i16,
    updates: &[(&str, i16, i8)],
    validate_only: bool,
    timeout_ms: i32,
) -> UpdateFeaturesResponse {
    let updates = updates
        .iter()
        .map(|(feature, level, upgrade_type)| {
            FeatureUpdateKey::default()
                .with_feature(StrBytes::from_string(feature.to_string()))
                .with_max_version_level(*level)
                .with_upgrade_type(*upgrade_type)
        })
        .collect();
    let request = UpdateFeaturesRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_feature_updates(updates)
        .with_validate_only(validate_only);
    let mut connection = Connection::open(addr);
    let mut body = connection.call(ApiKey::UpdateFeatures, version, &request);
    UpdateFeaturesResponse::decode(&mut body, version).unwrap()
}

/// Adds the records `keys` to `acked`, then checks that every record so far
/// is read back at a dense offset and that the replicas are identical.
fn produce_and_check(cluster: &Cluster, acked: &mut Vec<common::delivery::Ack>, keys: std::ops::Range<u64>) {
    acked.extend(produce(cluster, keys.clone()));
    verify_acknowledged(&cluster.bootstrap(), TOPIC, 1, acked, keys.end);
    let offsets: Vec<i64> = acked.iter().map(|a| a.offset).collect();
    assert_eq!(offsets, (0..keys.end as i64).collect::<Vec<i64>>());
    assert_eq!(
        cluster.wait_for_identical_replicas(1, TOPIC, 0, &[1, 2, 3]),
        keys.end as i64
    );
}

fn produce(cluster: &Cluster, keys: std::ops::Range<u64>) -> Vec<common::delivery::Ack> {
    let (producer, deliveries) = new_producer(&cluster.bootstrap(), &[("enable.idempotence", "true")]);
    send(&producer, TOPIC, Some(0), keys.clone());
    producer.flush(Duration::from_secs(60)).expect("flush");
    assert!(
        deliveries.failed.lock().unwrap().is_empty(),
        "{:?}",
        deliveries.failed.lock().unwrap()
    );
    let acked = deliveries.acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, keys.end - keys.start);
    acked
}

#[test]
fn a_cluster_moves_up_a_version_only_when_every_member_reads_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--initial-version", "1"]);
    let node1 = cluster.nodes[0].addr.clone();

    let shown = cluster.cli_json(1, &["version"]);
    assert_eq!(shown["level"], 1, "{shown}");
    let reads: Vec<&Value> = shown["nodes"].as_array().unwrap().iter().map(|n| &n["reads"]).collect();
    assert_eq!(reads, vec![&json!({"Ok": [1, 3]}); 3], "{shown}");
    let (level, epoch, min, max) = advertised(&node1);
    assert_eq!((level, min, max), (1, 1, 3));
    assert!(epoch > 0, "the level was set by the cluster's first entry: {epoch}");

    create_replicated_topic(&cluster.bootstrap(), TOPIC, 1, 3, &[]);
    let mut acked = produce(&cluster, 0..300);

    // Refused while a member does not answer: it might run an older build.
    cluster.node(3).stop();
    let (code, out) = cluster.cli(1, &["version", "--set", "2"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("node 3 does not answer"), "{out}");
    assert_eq!(advertised(&node1).0, 1);
    cluster.restart(3);
    cluster.node(3).wait_ready();

    // A member that hangs: the request answers when its timeout_ms has
    // passed, not when asking the member gives up (10 s).
    cluster.node(3).pause(true);
    let asked = Instant::now();
    let hung = update_features_within(&node1, 1, &[(FEATURE, 2, 1)], false, 500);
    let waited = asked.elapsed();
    cluster.node(3).pause(false);
    assert_eq!(
        hung.results[0].error_code,
        ResponseError::RequestTimedOut.code(),
        "{hung:?}"
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(advertised(&node1).0, 1);

    // Kafka's UpdateFeatures knows only this feature, and applies a request
    // whole or not at all.
    let mixed = update_features(&node1, 1, &[("metadata.version", 20, 1), (FEATURE, 2, 1)], false);
    let codes: Vec<i16> = mixed.results.iter().map(|r| r.error_code).collect();
    let expected = [
        ResponseError::InvalidUpdateVersion.code(),
        ResponseError::FeatureUpdateFailed.code(),
    ];
    assert_eq!(codes, expected, "{mixed:?}");
    let validated = update_features(&node1, 1, &[(FEATURE, 2, 1)], true);
    assert_eq!(validated.results[0].error_code, 0, "{validated:?}");
    assert_eq!(advertised(&node1).0, 1, "neither changed the level");

    let (code, out) = cluster.cli(2, &["version", "--set", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("chronik.version 2"), "{out}");
    for node in &cluster.nodes {
        common::retry_until(Duration::from_secs(10), || {
            (advertised(&node.addr).0 == 2).then_some(())
        });
    }
    assert!(advertised(&node1).1 > epoch, "a new level has a new epoch");

    // Records before and after the change: dense offsets, identical replicas.
    produce_and_check(&cluster, &mut acked, 300..600);

    // Level 3: batches are written once, into the segments at append, and
    // the Raft logs keep references. Records written either way read the same.
    let (code, out) = cluster.cli(1, &["version", "--set", "3"]);
    assert_eq!(code, 0, "{out}");
    produce_and_check(&cluster, &mut acked, 600..900);

    // Never down, by either path.
    let (code, out) = cluster.cli(1, &["version", "--set", "2"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("cannot go down"), "{out}");
    let down = update_features(&node1, 2, &[(FEATURE, 2, 2)], false);
    assert_eq!(down.error_code, ResponseError::InvalidUpdateVersion.code(), "{down:?}");
    let unknown_type = update_features(&node1, 1, &[(FEATURE, 3, 7)], false);
    assert_eq!(unknown_type.results[0].error_code, ResponseError::InvalidRequest.code());
    assert_eq!(advertised(&node1).0, 3);
}

/// A node whose cluster runs at a level its build does not read (one
/// started with an older binary after the upgrade) refuses to start and says
/// why, before it applies anything.
#[test]
fn a_build_older_than_its_cluster_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("broker");
    let mut broker = common::Broker::start(&data, &[]);
    broker.stop();
    // What a newer build would have written: a level this one does not read.
    let path = data.join("metadata.json");
    let mut metadata: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // A new cluster starts at the newest level, and from level 2 on the file
    // is wrapped so that a build from before the version cannot read it.
    assert_eq!(metadata["chronik_version"], 3, "{metadata}");
    assert_eq!(metadata["state"]["version"]["level"], 3, "{metadata}");
    metadata["chronik_version"] = json!(99);
    metadata["state"]["version"]["level"] = json!(99);
    std::fs::write(&path, serde_json::to_vec(&metadata).unwrap()).unwrap();

    broker.respawn();
    let code = broker.wait_exit(Duration::from_secs(30));
    assert!(matches!(code, Some(c) if c != 0), "it refused to start: {code:?}");
    let log = std::fs::read_to_string(broker.log_path()).unwrap();
    assert!(
        log.contains("chronik.version 99") && log.contains("run a newer build"),
        "the log says what is wrong:\n{}",
        broker.log_tail()
    );
}
