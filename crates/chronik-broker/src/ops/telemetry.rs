//! The metrics the Kafka front end records, the recorder that renders all
//! of them in Prometheus' text format, and bounded labels.
//!
//! Recording goes through the `metrics` facade. Without an installed
//! recorder (tests, `--metrics false`) it costs a branch and records nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use metrics::{Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::apis::SUPPORTED_APIS;
use crate::ops::rates::Rates;

pub const REQUESTS: &str = "chronik_kafka_requests_total";
pub const REQUEST_ERRORS: &str = "chronik_kafka_request_errors_total";
pub const REQUEST_SECONDS: &str = "chronik_kafka_request_duration_seconds";
pub const CONNECTIONS: &str = "chronik_kafka_connections";
pub const BYTES_IN: &str = "chronik_topic_bytes_in_total";
pub const RECORDS_IN: &str = "chronik_topic_records_in_total";
pub const BYTES_OUT: &str = "chronik_topic_bytes_out_total";
pub const RECORDS_OUT: &str = "chronik_topic_records_out_total";
pub const PRODUCE_COMMIT_SECONDS: &str = "chronik_produce_commit_seconds";
pub const RETENTION_DELETED_SEGMENTS: &str = "chronik_retention_deleted_segments_total";
pub const CLEANER_PASSES: &str = "chronik_log_cleaner_passes_total";
pub const CLEANER_RECORDS_REMOVED: &str = "chronik_log_cleaner_records_removed_total";
pub const CLEANER_BYTES_RECLAIMED: &str = "chronik_log_cleaner_bytes_reclaimed_total";
pub const CLEANER_LOCKED_SECONDS: &str = "chronik_log_cleaner_locked_seconds";
pub const GROUP_REBALANCES: &str = "chronik_group_rebalances_total";

/// Topics (and groups) that get series of their own; the rest share the
/// label value [`OTHER`], so a client creating topics without end cannot
/// make the scrape grow without end.
const MAX_LABELLED: usize = 1000;
pub const OTHER: &str = "_other";

/// Seconds: from 100 µs to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bytes: from 1 KiB to 64 MiB.
const BYTES_BUCKETS: &[f64] = &[
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// Installs the process-wide Prometheus recorder and describes every
/// metric. Call once, before the broker starts.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES_BUCKETS)?
        // Scrape-time gauges of deleted partitions and groups go away.
        .idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(Duration::from_secs(300)))
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    describe();
    chronik_raft::telemetry::describe();
    super::gauges::describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(REQUESTS, "Kafka requests answered, per API");
    describe_counter!(
        REQUEST_ERRORS,
        "Kafka requests answered with at least one error code, per API"
    );
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Time from reading a request to its response, per API"
    );
    describe_gauge!(CONNECTIONS, "Open Kafka client connections");
    describe_counter!(BYTES_IN, Unit::Bytes, "Record bytes produced, per topic");
    describe_counter!(RECORDS_IN, "Records produced, per topic");
    describe_counter!(BYTES_OUT, Unit::Bytes, "Record bytes fetched, per topic");
    describe_counter!(RECORDS_OUT, "Records fetched, per topic");
    describe_histogram!(
        PRODUCE_COMMIT_SECONDS,
        Unit::Seconds,
        "Time from proposing a produced batch to its being applied (Raft commit)"
    );
    describe_counter!(RETENTION_DELETED_SEGMENTS, "Log segments deleted by retention");
    describe_counter!(CLEANER_PASSES, "Cleaner passes that compacted a partition");
    describe_counter!(
        CLEANER_RECORDS_REMOVED,
        "Records the cleaner removed from compacted partitions"
    );
    describe_counter!(
        CLEANER_BYTES_RECLAIMED,
        "Bytes the cleaner removed from compacted partitions"
    );
    describe_histogram!(
        chronik_state::CHECKPOINT_SECONDS,
        Unit::Seconds,
        "Time of one partition checkpoint: the fsync of its new data and the checkpoint file"
    );
    describe_histogram!(
        CLEANER_LOCKED_SECONDS,
        "How long a cleaner pass held its partition's exclusive lock to install"
    );
    describe_counter!(
        GROUP_REBALANCES,
        "Consumer group rebalances (new generations or epochs), per group"
    );
}

/// Per-API request metrics, registered once for every API served.
pub struct RequestMetrics {
    by_key: HashMap<i16, ApiMetrics>,
}

struct ApiMetrics {
    requests: Counter,
    errors: Counter,
    seconds: Histogram,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let by_key = SUPPORTED_APIS
            .iter()
            .map(|(key, _, _)| {
                let api = format!("{key:?}");
                let metrics = ApiMetrics {
                    requests: counter!(REQUESTS, "api" => api.clone()),
                    errors: counter!(REQUEST_ERRORS, "api" => api.clone()),
                    seconds: histogram!(REQUEST_SECONDS, "api" => api),
                };
                (*key as i16, metrics)
            })
            .collect();
        RequestMetrics { by_key }
    }
}

impl RequestMetrics {
    /// Counts one answered request of API `key`, and how long it took.
    pub fn answered(&self, key: i16, took: Duration) {
        if let Some(api) = self.by_key.get(&key) {
            api.requests.increment(1);
            api.seconds.record(took);
        }
    }

    /// Counts a request of `key` answered with an error.
    pub fn failed(&self, key: ApiKey) {
        if let Some(api) = self.by_key.get(&(key as i16)) {
            api.errors.increment(1);
        }
    }
}

/// Label values for a bounded set of names: the first [`MAX_LABELLED`]
/// seen get their own, the rest share [`OTHER`].
#[derive(Default)]
pub struct BoundedLabels {
    seen: RwLock<HashMap<String, String>>,
}

impl BoundedLabels {
    pub fn label(&self, name: &str) -> String {
        if let Some(label) = self.seen.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return label.clone();
        }
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_LABELLED {
            return OTHER.to_string();
        }
        seen.entry(name.to_string()).or_insert_with(|| name.to_string()).clone()
    }
}

/// One topic's traffic counters.
#[derive(Clone)]
struct TopicCounters {
    bytes_in: Counter,
    records_in: Counter,
    bytes_out: Counter,
    records_out: Counter,
}

impl TopicCounters {
    fn new(label: &str) -> Self {
        TopicCounters {
            bytes_in: counter!(BYTES_IN, "topic" => label.to_string()),
            records_in: counter!(RECORDS_IN, "topic" => label.to_string()),
            bytes_out: counter!(BYTES_OUT, "topic" => label.to_string()),
            records_out: counter!(RECORDS_OUT, "topic" => label.to_string()),
        }
    }
}

/// Per-topic counters, made once per topic: the first [`MAX_LABELLED`]
/// topics get their own, the rest share those of [`OTHER`].
#[derive(Default)]
struct TopicMeters {
    by_topic: RwLock<HashMap<String, TopicCounters>>,
}

impl TopicMeters {
    fn of(&self, topic: &str) -> TopicCounters {
        if let Some(counters) = self.by_topic.read().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return counters.clone();
        }
        let mut by_topic = self.by_topic.write().unwrap_or_else(|e| e.into_inner());
        let name = if by_topic.len() >= MAX_LABELLED { OTHER } else { topic };
        by_topic
            .entry(name.to_string())
            .or_insert_with(|| TopicCounters::new(name))
            .clone()
    }
}

/// Node-wide totals of client traffic, sampled for the console's chart.
#[derive(Default)]
pub struct Traffic {
    pub produced_bytes: AtomicU64,
    pub produced_records: AtomicU64,
    pub fetched_bytes: AtomicU64,
    pub fetched_records: AtomicU64,
    pub connections: AtomicI64,
}

/// What the front end records, held by the broker. Made after the recorder
/// is installed: its handles bind to the recorder present then.
pub struct Telemetry {
    pub requests: RequestMetrics,
    pub traffic: Traffic,
    pub rates: Rates,
    pub produce_commit: Histogram,
    topics: TopicMeters,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            requests: RequestMetrics::default(),
            traffic: Traffic::default(),
            rates: Rates::default(),
            produce_commit: histogram!(PRODUCE_COMMIT_SECONDS),
            topics: TopicMeters::default(),
        }
    }
}

/// Counts a rebalance of `group`: a new generation of a classic group, a
/// new epoch of a consumer-protocol one.
pub fn rebalanced(group: &str) {
    static GROUPS: LazyLock<BoundedLabels> = LazyLock::new(BoundedLabels::default);
    counter!(GROUP_REBALANCES, "group" => GROUPS.label(group)).increment(1);
}

impl Telemetry {
    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.traffic.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.traffic.produced_records.fetch_add(records, Ordering::Relaxed);
        let counters = self.topics.of(topic);
        counters.bytes_in.increment(bytes);
        counters.records_in.increment(records);
    }

    pub fn fetched(&self, topic: &str, bytes: u64, records: u64) {
        self.traffic.fetched_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.traffic.fetched_records.fetch_add(records, Ordering::Relaxed);
        let counters = self.topics.of(topic);
        counters.bytes_out.increment(bytes);
        counters.records_out.increment(records);
    }
}
