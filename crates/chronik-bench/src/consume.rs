//! Consume mode: read a topic from the beginning until a number of records
//! has arrived.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::ProgressBar;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::report::Report;

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Records to read before stopping.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Stop with an error if they have not all arrived by then.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// librdkafka's fetch.wait.max.ms.
    #[arg(long, default_value_t = 500)]
    fetch_wait_max_ms: u32,
}

pub fn run(bootstrap: &str, topic: &str, args: &ConsumeArgs) -> anyhow::Result<Report> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chronik-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string())
        .create()
        .context("cannot create the consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("cannot read metadata")?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .with_context(|| format!("topic {topic} has no partitions"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition as i32, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let progress = ProgressBar::new(args.records);
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let (mut records, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    while records < args.records {
        if Instant::now() > deadline {
            bail!("read {records} of {} records in {} s", args.records, args.timeout_secs);
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.context("consume error")?;
            records += 1;
            bytes += message.payload_len() as u64;
            if records % 1024 == 0 {
                progress.set_position(records);
            }
        }
    }
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    Ok(Report::new("consume", records, bytes, 0, elapsed))
}
