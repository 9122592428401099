//! Time- and size-based retention. Each replica deletes old segments on its
//! own clock, as Kafka brokers do; the log start offset follows.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Broker;
use crate::ops::telemetry::RETENTION_DELETED_SEGMENTS;

/// Enforces retention on every partition each `retention_check_interval`, forever.
pub async fn run_retention(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(broker.config.retention_check_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for partition in broker.state.all_partitions() {
            let result = partition.enforce_retention(now_ms);
            match result {
                Ok(0) => {}
                Ok(deleted) => {
                    metrics::counter!(RETENTION_DELETED_SEGMENTS).increment(deleted as u64);
                    tracing::info!(topic = %partition.topic, partition = partition.index, deleted, "retention deleted segments")
                }
                Err(e) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, "retention failed: {e}")
                }
            }
        }
    }
}
