//! A full or failing disk: the node refuses writes cleanly while it still has
//! room, keeps serving reads, takes writes again once space is freed, and
//! stops the whole process on an fsync error. Data directories live on small
//! tmpfs volumes the tests mount (CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Broker;
use common::cluster::{Cluster, serial};
use common::raw::Connection;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::Offset;
use rdkafka::message::Message;

/// A tmpfs of a given size, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, mib: u64) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "chronik-test"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {mib} MiB tmpfs at {} needs root",
            path.display()
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    /// Grows (or shrinks) the volume in place: space comes back.
    fn resize(&self, mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

const RECORDS_PER_BATCH: u32 = 100;

/// Produces one batch of 100 records of 1,000 bytes with acks=all; the
/// partition's error code.
fn produce(connection: &mut Connection, topic: &str) -> i16 {
    let batch = Bytes::from(chronik_log::testing::build_batch(RECORDS_PER_BATCH, now_ms(), 1000));
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_index(0).with_records(Some(batch)),
                ]),
        ]);
    let mut body = connection.call(ApiKey::Produce, 9, &request);
    let response = ProduceResponse::decode(&mut body, 9).unwrap();
    response.responses[0].partition_responses[0].error_code
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Produces until the broker refuses with KAFKA_STORAGE_ERROR (bounded);
/// returns the records acknowledged before.
fn produce_until_refused(connection: &mut Connection, topic: &str) -> u64 {
    let mut acked = 0;
    for _ in 0..5_000 {
        match produce(connection, topic) {
            0 => acked += u64::from(RECORDS_PER_BATCH),
            code if code == ResponseError::KafkaStorageError.code() => return acked,
            code => panic!("produce failed with error {code} before the disk guard refused it"),
        }
    }
    panic!("the disk guard never refused a write");
}

/// Every record of `topic`/0, read from the start: the offsets, which must be
/// dense from 0.
fn read_all(broker: &Broker, topic: &str, expected: u64) {
    let consumer = broker.consumer();
    let mut next = 0;
    let seen = common::consume_partition(
        &consumer,
        topic,
        0,
        Offset::Beginning,
        expected as usize,
        Duration::from_secs(60),
        |m| {
            assert_eq!(m.offset(), next, "offsets are dense");
            next += 1;
        },
    );
    assert_eq!(seen as u64, expected, "every acknowledged record is read back");
}

#[test]
fn a_full_disk_refuses_writes_serves_reads_and_recovers_without_restart() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("volume"), 192);
    let broker = Broker::start(
        &disk.path.join("broker"),
        &[
            "--min-free-bytes",
            &(64u64 << 20).to_string(),
            "--offsets-topic-partitions",
            "1",
        ],
    );
    common::create_topic(&broker.addr, "filler", 1, &[]);
    common::create_topic(&broker.addr, "kept", 1, &[]);
    let mut connection = Connection::open(&broker.addr);
    connection
        .stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    // Some data to delete later, then the topic that must keep everything.
    let mut filler = 0;
    for _ in 0..200 {
        assert_eq!(produce(&mut connection, "filler"), 0);
        filler += 1;
    }
    let mut kept = produce_until_refused(&mut connection, "kept");
    assert!(kept > 0 && filler > 0);
    assert_eq!(
        produce(&mut connection, "kept"),
        ResponseError::KafkaStorageError.code(),
        "still refused while the disk is low"
    );
    let log = std::fs::read_to_string(broker.log_path()).unwrap();
    assert!(
        log.contains("free space is below --min-free-bytes"),
        "one clear error in the log"
    );

    // Reads go on.
    read_all(&broker, "kept", kept);

    // Deleting a topic frees space: writes resume without a restart.
    common::delete_topic(&broker.addr, "filler");
    let deleted = Instant::now();
    let deadline = deleted + Duration::from_secs(30);
    loop {
        match produce(&mut connection, "kept") {
            0 => {
                kept += u64::from(RECORDS_PER_BATCH);
                println!("writes resumed {:?} after the topic was deleted", deleted.elapsed());
                break;
            }
            code => assert_eq!(code, ResponseError::KafkaStorageError.code()),
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume after the topic was deleted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..5 {
        assert_eq!(produce(&mut connection, "kept"), 0);
        kept += u64::from(RECORDS_PER_BATCH);
    }
    read_all(&broker, "kept", kept);
}

#[test]
fn a_replica_out_of_space_falls_behind_without_stopping_its_partition() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Node 3 keeps its data on a small volume; the others have room.
    let disk = SmallDisk::mount(&dir.path().join("node3"), 160);
    let cluster = Cluster::start(
        dir.path(),
        3,
        &[
            "--min-free-bytes",
            &(64u64 << 20).to_string(),
            "--offsets-topic-partitions",
            "1",
        ],
    );
    common::create_replicated_topic(&cluster.nodes[0].addr, "spread", 1, 3, &[]);
    cluster.wait_for_leaders(1, "spread", 1);

    // Writes go on through node 3 filling up (if it led, it hands the
    // leadership over) until well past its free space.
    let (producer, deliveries) = common::delivery::new_producer(&cluster.bootstrap(), &[]);
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        common::delivery::send(&producer, "spread", Some(0), sent..sent + 1000);
        sent += 1000;
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60)).expect("flush");
        let health = cluster.cli(1, &["health"]).1;
        if health.contains("node 3 is low on disk space") && sent >= 150_000 {
            break;
        }
        assert!(Instant::now() < deadline, "node 3 never ran low on space: {health}");
    }
    assert!(
        deliveries.failed.lock().unwrap().is_empty(),
        "{:?}",
        deliveries.failed.lock().unwrap()
    );
    assert_eq!(deliveries.acked.lock().unwrap().len() as u64, sent);
    let status = cluster.cli_json(2, &["status"]);
    let node3 = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == 3)
        .unwrap()
        .clone();
    assert_eq!(node3["reachable"], true, "node 3 still runs: {node3}");
    assert_eq!(node3["low_on_disk"], true, "{node3}");
    cluster.wait_for_identical_replicas(1, "spread", 0, &[1, 2]);

    // Given room, node 3 catches up to the same log.
    println!("node 3 ran low after {sent} acknowledged records; the partition kept taking writes");
    disk.resize(1024);
    let resized = Instant::now();
    let end = cluster.wait_for_identical_replicas(1, "spread", 0, &[1, 2, 3]);
    println!("node 3 caught up {:?} after it got room", resized.elapsed());
    assert_eq!(end as u64, sent);
}

#[test]
fn an_fsync_error_stops_the_process_and_a_restart_serves_every_acked_record() {
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join("fail-fsync");
    let trigger_env = trigger.to_str().unwrap().to_string();
    let mut broker = Broker::spawn_with_env(
        &dir.path().join("broker"),
        &["--offsets-topic-partitions", "1"],
        &[("CHRONIK_FAIL_FSYNC_IF_EXISTS", &trigger_env)],
    );
    broker.wait_ready();
    common::create_topic(&broker.addr, "synced", 1, &[]);
    let mut connection = Connection::open(&broker.addr);
    connection
        .stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut acked = 0;
    for _ in 0..20 {
        assert_eq!(produce(&mut connection, "synced"), 0);
        acked += u64::from(RECORDS_PER_BATCH);
    }

    std::fs::write(&trigger, b"").unwrap();
    let mut refused = Connection::open(&broker.addr);
    refused.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::thread::spawn(move || {
        // Never acknowledged: the process stops while writing it.
        let _ = std::panic::catch_unwind(move || produce(&mut refused, "synced"));
    });
    let code = broker.wait_exit(Duration::from_secs(30));
    assert!(
        matches!(code, Some(c) if c != 0),
        "the process stopped with an error: {code:?}; log:\n{}",
        broker.log_tail()
    );
    let log = std::fs::read_to_string(broker.log_path()).unwrap();
    assert!(log.contains("fsync failed"), "the log says why:\n{}", broker.log_tail());

    std::fs::remove_file(&trigger).unwrap();
    broker.clear_env();
    broker.restart();
    read_all(&broker, "synced", acked);
}
