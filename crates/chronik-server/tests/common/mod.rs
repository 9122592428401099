//! Test harness: real `chronik-server` processes on ephemeral 127.0.0.1 ports.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub mod certs;
pub mod cluster;
pub mod delivery;
pub mod proxy;
pub mod raw;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One broker process. Killed when dropped.
pub struct Broker {
    child: Option<Child>,
    ready: Option<mpsc::Receiver<String>>,
    pub addr: String,
    /// `NAME=HOST:PORT` of each listener, when it has more than one.
    listeners: Vec<(String, String)>,
    /// The HTTP endpoint (metrics, health), HOST:PORT.
    http: String,
    /// The Kafka port it listens on; 0 for one the system picks.
    pub kafka_port: u16,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Environment variables set on the process (test hooks).
    env: Vec<(String, String)>,
    log_path: PathBuf,
}

impl Broker {
    /// Starts a broker on a fresh port with its data in `data_dir`.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Broker {
        let mut broker = Broker::spawn(data_dir, extra_args);
        broker.wait_ready();
        broker
    }

    /// Starts the process without waiting for it to serve: a cluster node is
    /// ready only once a majority of its peers run.
    pub fn spawn(data_dir: &Path, extra_args: &[&str]) -> Broker {
        Broker::spawn_with_env(data_dir, extra_args, &[])
    }

    /// Like `spawn`, on a given Kafka port (kept across restarts).
    pub fn spawn_on_port(data_dir: &Path, kafka_port: u16, extra_args: &[&str]) -> Broker {
        let mut broker = Broker::new(data_dir, extra_args, &[]);
        broker.kafka_port = kafka_port;
        broker.spawn_process();
        broker
    }

    /// Like `spawn`, with environment variables such as `CHRONIK_CRASH_AT`.
    pub fn spawn_with_env(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Broker {
        let mut broker = Broker::new(data_dir, extra_args, env);
        broker.spawn_process();
        broker
    }

    fn new(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Broker {
        Broker {
            child: None,
            ready: None,
            addr: String::new(),
            listeners: Vec::new(),
            http: String::new(),
            kafka_port: 0,
            data_dir: data_dir.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            log_path: data_dir.with_extension("log"),
        }
    }

    fn launch(&mut self) {
        self.spawn_process();
        self.wait_ready();
    }

    fn spawn_process(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open broker log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--kafka-port", &self.kafka_port.to_string()])
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            // Brokers side by side: each its own free port for the HTTP endpoint.
            .env("CHRONIK_HTTP_ADDR", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn chronik-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("chronik-server ready: kafka=") {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        self.child = Some(child);
        self.ready = Some(rx);
    }

    /// Waits (bounded) for the process to print that it serves.
    pub fn wait_ready(&mut self) {
        let Some(ready) = self.ready.take() else { return };
        match ready.recv_timeout(READY_TIMEOUT) {
            Ok(line) => {
                self.addr = line.split_whitespace().next().unwrap_or_default().to_string();
                self.listeners = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("listeners="))
                    .into_iter()
                    .flat_map(|list| list.split(','))
                    .filter_map(|item| item.split_once('='))
                    .map(|(name, addr)| (name.to_string(), addr.to_string()))
                    .collect();
                self.http = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("http="))
                    .unwrap_or_default()
                    .to_string();
            }
            Err(_) => {
                self.kill9();
                panic!("broker did not become ready; log:\n{}", self.log_tail());
            }
        }
    }

    /// The address of the listener named `name`.
    pub fn listener(&self, name: &str) -> String {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| addr.clone())
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
    }

    /// Restarts on the same data directory without waiting for it to serve.
    pub fn respawn(&mut self) {
        self.stop();
        self.spawn_process();
    }

    /// Forgets the environment given at spawn, for the next start.
    pub fn clear_env(&mut self) {
        self.env.clear();
    }

    /// Waits (bounded) for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Restarts on the same data directory (on a new port).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// SIGKILL: no shutdown work at all, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a node that hangs, its
    /// connections open and silent.
    pub fn pause(&self, paused: bool) {
        let child = self.child.as_ref().expect("the broker runs");
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal}");
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    status.success(),
                    "broker exited with {status}; log:\n{}",
                    self.log_tail()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("broker did not stop within 15 s of SIGTERM");
    }

    /// The value of an unlabelled counter or gauge on the node's
    /// `/metrics` page; 0 for one not recorded yet.
    pub fn metric(&self, name: &str) -> f64 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.http).expect("connect to the HTTP endpoint");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.http).unwrap();
        let mut page = String::new();
        stream.read_to_string(&mut page).expect("read /metrics");
        page.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn producer(&self, settings: &[(&str, &str)]) -> BaseProducer {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.addr).set("linger.ms", "5");
        for (k, v) in settings {
            config.set(*k, *v);
        }
        config.create().expect("create producer")
    }

    pub fn consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("group.id", "chronik-tests")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("create consumer")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until every queued message is delivered or `timeout` passes.
pub fn flush(producer: &BaseProducer, timeout: Duration) {
    producer.flush(timeout).expect("flush producer");
}

/// Reads `partition` from `from` until `count` messages arrived, calling
/// `each` on every one. Bounded by `timeout`.
pub fn consume_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: Offset,
    count: usize,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> usize {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, from).expect("offset");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    while seen < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                assert_eq!(message.partition(), partition);
                each(&message);
                seen += 1;
            }
            // Transient (a node of the cluster is down); the count decides.
            Some(Err(e)) => eprintln!("consume error, retrying: {e}"),
            None => {}
        }
    }
    seen
}

/// (low, high) watermarks of a partition as the broker reports them.
pub fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> (i64, i64) {
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("fetch watermarks")
}

/// Creates a topic through the admin API and waits for it.
pub fn create_topic(addr: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_replicated_topic(addr, topic, partitions, 1, configs);
}

/// Creates a topic with `replication` replicas per partition and waits for it.
pub fn create_replicated_topic(addr: &str, topic: &str, partitions: i32, replication: i32, configs: &[(&str, &str)]) {
    request_topic(addr, topic, partitions, replication, configs).expect("topic created");
}

/// Asks for a topic and ignores the outcome: for a broker that is meant to
/// stop before it answers.
pub fn try_create_topic(addr: &str, topic: &str, partitions: i32) {
    let _ = request_topic(addr, topic, partitions, 1, &[]);
}

fn request_topic(
    addr: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> Result<(), String> {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    let results =
        with_admin(addr, |admin| admin.create_topics([&new_topic], &AdminOptions::new())).map_err(|e| e.to_string())?;
    for result in results {
        result.map_err(|(topic, code)| format!("{topic}: {code}"))?;
    }
    Ok(())
}

/// Deletes a topic through the admin API.
pub fn delete_topic(addr: &str, topic: &str) {
    let options = rdkafka::admin::AdminOptions::new();
    let results = with_admin(addr, |admin| admin.delete_topics(&[topic], &options)).expect("delete_topics");
    for result in results {
        result.expect("topic deleted");
    }
}

/// Runs one admin request against `addr` on a runtime of its own, in a
/// thread of its own, so async tests can call it too.
fn with_admin<T: Send, F: std::future::Future<Output = T>>(
    addr: &str,
    request: impl FnOnce(&rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>) -> F + Send,
) -> T {
    let admin = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(request(&admin))
            })
            .join()
            .unwrap()
    })
}

/// Calls `attempt` until it returns a value, every 50 ms, for at most `timeout`.
pub fn retry_until<T>(timeout: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(Instant::now() < deadline, "no success within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
