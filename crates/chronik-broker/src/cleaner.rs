//! The log cleaner: compacts the partitions whose `cleanup.policy` includes
//! `compact`, one at a time, on a blocking thread, off the Raft loop. Each
//! replica compacts on its own clock, as Kafka brokers do; what a fetch at
//! an offset returns for a key's latest value never changes.

use std::sync::Arc;

use crate::Broker;
use crate::groups::registry::now_ms;
use crate::ops::telemetry::{CLEANER_BYTES_RECLAIMED, CLEANER_LOCKED_SECONDS, CLEANER_PASSES, CLEANER_RECORDS_REMOVED};

/// Runs a pass over every compacted partition, then waits
/// `log_cleaner_backoff`, forever.
pub async fn run_cleaner(broker: Arc<Broker>) {
    loop {
        tokio::time::sleep(broker.config.log_cleaner_backoff).await;
        let compacted = broker
            .state
            .all_partitions()
            .into_iter()
            .filter(|p| p.log().config().compact);
        for partition in compacted {
            let cleaning = partition.clone();
            let outcome = tokio::task::spawn_blocking(move || cleaning.clean(now_ms())).await;
            match outcome {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(stats))) => {
                    metrics::counter!(CLEANER_PASSES).increment(1);
                    metrics::counter!(CLEANER_RECORDS_REMOVED).increment(stats.records_removed);
                    metrics::counter!(CLEANER_BYTES_RECLAIMED)
                        .increment(stats.bytes_before.saturating_sub(stats.bytes_after));
                    metrics::histogram!(CLEANER_LOCKED_SECONDS).record(stats.locked.as_secs_f64());
                    tracing::info!(
                        topic = %partition.topic,
                        partition = partition.index,
                        records_removed = stats.records_removed,
                        bytes_before = stats.bytes_before,
                        bytes_after = stats.bytes_after,
                        locked_us = stats.locked.as_micros() as u64,
                        "compacted"
                    );
                }
                // The pass is dropped; its staged files go at the next pass.
                Ok(Err(e)) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, "compaction failed: {e}")
                }
                Err(e) => tracing::error!("the cleaner's thread failed: {e}"),
            }
        }
    }
}
