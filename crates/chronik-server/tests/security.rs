//! Security with real processes and rdkafka: SASL_SSL and SSL with client
//! certificates on one node; a cluster whose nodes use mutual TLS, with
//! users managed by the CLI, and strangers (a certificate of another CA, no
//! certificate) refused, logged, and without effect on the cluster.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Broker;
use common::certs::Ca;
use common::cluster::{Cluster, serial};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Remembers the records the broker refused.
#[derive(Clone, Default)]
struct Refusals(Arc<Mutex<Vec<KafkaError>>>);

impl ClientContext for Refusals {}

impl ProducerContext for Refusals {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.0.lock().unwrap().push(error.clone());
        }
    }
}

/// Produces `values` to partition 0 with acks=all: the first refusal, if any.
fn produce(config: &ClientConfig, topic: &str, values: &[String]) -> Result<(), KafkaError> {
    let refusals = Refusals::default();
    let producer: BaseProducer<Refusals> = config
        .clone()
        .set("acks", "all")
        .create_with_context(refusals.clone())
        .expect("producer");
    for value in values {
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(value).partition(0))
            .map_err(|(e, _)| e)?;
    }
    producer.flush(TIMEOUT)?;
    match refusals.0.lock().unwrap().first() {
        Some(error) => Err(error.clone()),
        None => Ok(()),
    }
}

/// Every value of partition 0 of `topic`, read from the start.
fn consume(config: &ClientConfig, topic: &str, expected: usize) -> Result<Vec<String>, KafkaError> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "security-tests")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut values = Vec::new();
    while values.len() < expected && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message?;
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    Ok(values)
}

fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

fn sasl(bootstrap: &str, protocol: &str, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("security.protocol", protocol)
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password);
    config
}

#[test]
fn rdkafka_produces_over_sasl_ssl_and_consumes_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "kafka");
    let server = ca.issue(dir.path(), "broker");
    let client = ca.issue(dir.path(), "rust-client");
    let path = |p: &std::path::Path| p.display().to_string();
    let (cert, key, ca_path) = (path(&server.cert), path(&server.key), path(&ca.cert_path));
    let mut broker = Broker::start(
        &dir.path().join("data"),
        &[
            "--listeners",
            "SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca_path,
            "--tls-client-auth",
            "requested",
            "--bootstrap-user",
            "admin:admin-password",
            "--super-users",
            "User:CN=rust-client",
        ],
    );
    let ssl_addr = broker.listener("SSL");

    let mut producer = sasl(&broker.addr, "SASL_SSL", "SCRAM-SHA-512", "admin", "admin-password");
    producer.set("ssl.ca.location", &ca_path);
    let sent = values("secure", 10);
    produce(&producer, "secured", &sent).expect("the admin produces over SASL_SSL");

    let mut reader = ClientConfig::new();
    reader
        .set("bootstrap.servers", &ssl_addr)
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", &ca_path)
        .set("ssl.certificate.location", path(&client.cert))
        .set("ssl.key.location", path(&client.key));
    assert_eq!(
        consume(&reader, "secured", sent.len()).unwrap(),
        sent,
        "the certificate's principal reads what was acknowledged"
    );

    // Without a certificate the client is User:ANONYMOUS, which no ACL names.
    let mut anonymous = ClientConfig::new();
    anonymous
        .set("bootstrap.servers", &ssl_addr)
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", &ca_path);
    let refused = produce(&anonymous, "secured", &values("anonymous", 1)).unwrap_err();
    assert_eq!(
        refused,
        KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    assert_eq!(
        consume(&reader, "secured", sent.len() + 1).unwrap(),
        sent,
        "nothing of the refused producer was written"
    );
    broker.stop();
}

#[test]
fn a_mutual_tls_cluster_manages_users_and_refuses_strangers() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(
        dir.path(),
        3,
        &[
            "--offsets-topic-partitions",
            "1",
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--super-users",
            "User:alice",
        ],
    );
    let via = cluster.raft_addrs[0].clone();
    let user = |args: &[&str]| {
        let output = cluster
            .command()
            .arg("user")
            .args(args)
            .args(["--via", &via])
            .output()
            .expect("run the user CLI");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    };
    let (code, out) = user(&["create", "--name", "alice", "--password", "alice-password"]);
    assert_eq!(code, 0, "{out}");
    let (code, listed) = user(&["list", "--json"]);
    assert_eq!(code, 0, "{listed}");
    assert!(
        listed.contains("alice") && listed.contains("SCRAM-SHA-256") && listed.contains("SCRAM-SHA-512"),
        "{listed}"
    );

    // alice logs in on every node's SASL listener, and writes through Raft.
    let bootstrap = cluster.bootstrap();
    let alice = sasl(&bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", "alice-password");
    let sent = values("cluster", 20);
    produce(&alice, "users-topic", &sent).expect("alice produces");
    assert_eq!(consume(&alice, "users-topic", sent.len()).unwrap(), sent);

    // A stranger with a certificate of another CA: the CLI is refused, and
    // so is a node that tries to join with it; the refusals are logged.
    let rogue_dir = dir.path().join("rogue");
    std::fs::create_dir_all(&rogue_dir).unwrap();
    let rogue_ca = Ca::new(&rogue_dir, "rogue");
    let rogue = rogue_ca.issue(&rogue_dir, "rogue-node");
    let rogue_flags = [
        "--peer-tls-cert".to_string(),
        rogue.cert.display().to_string(),
        "--peer-tls-key".to_string(),
        rogue.key.display().to_string(),
        "--peer-tls-ca".to_string(),
        rogue_ca.cert_path.display().to_string(),
    ];
    let stranger = std::process::Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .args(&rogue_flags)
        .args([
            "cluster",
            "add-node",
            "--id",
            "9",
            "--addr",
            "127.0.0.1:1",
            "--raft-port",
            "1",
        ])
        .args(["--via", &via, "--timeout-ms", "3000"])
        .output()
        .unwrap();
    assert_ne!(stranger.status.code(), Some(0), "a stranger's add-node ran");
    let without_tls = std::process::Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .args([
            "user",
            "delete",
            "--name",
            "alice",
            "--via",
            &via,
            "--timeout-ms",
            "3000",
        ])
        .output()
        .unwrap();
    assert_ne!(without_tls.status.code(), Some(0), "a user change without TLS ran");
    let log = std::fs::read_to_string(cluster.nodes[0].log_path()).unwrap();
    assert!(
        log.contains("refused a connection to the Raft port"),
        "the refusals are logged"
    );
    let (code, health) = cluster.cli(1, &["health"]);
    assert_eq!(code, 0, "the cluster is unaffected: {health}");
    let (code, listed) = user(&["list"]);
    assert!(code == 0 && listed.contains("alice"), "alice is still there: {listed}");

    // Deleting alice ends her logins.
    let (code, out) = user(&["delete", "--name", "alice"]);
    assert_eq!(code, 0, "{out}");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut short = alice.clone();
        short.set("message.timeout.ms", "3000");
        if produce(&short, "users-topic", &values("after", 1)).is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "alice still logs in after her deletion");
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.node(1).stop();
}
