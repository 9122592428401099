//! Consume mode: read a topic from the beginning until a number of records
//! has arrived, with one consumer that assigns itself every partition or
//! with several consumers sharing the partitions as one consumer group.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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
    /// Consumers; more than one join one consumer group (a new one per run)
    /// and share the partitions, and the time then counts from the first
    /// record received, after the group has formed.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
}

pub fn run(bootstrap: &str, topic: &str, args: &ConsumeArgs) -> anyhow::Result<Report> {
    match args.consumers {
        0 => bail!("--consumers must be at least 1"),
        1 => run_alone(bootstrap, topic, args),
        _ => run_group(bootstrap, topic, args),
    }
}

fn consumer_config(bootstrap: &str, group: &str, args: &ConsumeArgs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string());
    config
}

fn run_alone(bootstrap: &str, topic: &str, args: &ConsumeArgs) -> anyhow::Result<Report> {
    let consumer: BaseConsumer = consumer_config(bootstrap, "chronik-bench", args)
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

/// Consumers in one new group, each on its own thread, until together they
/// have read `args.records`.
fn run_group(bootstrap: &str, topic: &str, args: &ConsumeArgs) -> anyhow::Result<Report> {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let group = format!("chronik-bench-{}-{unique}", std::process::id());
    let consumers = (0..args.consumers)
        .map(|_| {
            let consumer: BaseConsumer = consumer_config(bootstrap, &group, args)
                .create()
                .context("cannot create a consumer")?;
            consumer.subscribe(&[topic])?;
            Ok(consumer)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let records = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let first_record = Arc::new(OnceLock::new());
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let wanted = args.records;
    let readers: Vec<_> = consumers
        .into_iter()
        .map(|consumer| {
            let (records, bytes, first_record) = (records.clone(), bytes.clone(), first_record.clone());
            std::thread::spawn(move || -> anyhow::Result<Instant> {
                while records.load(Ordering::Relaxed) < wanted {
                    if Instant::now() > deadline {
                        bail!("read {} of {wanted} records in time", records.load(Ordering::Relaxed));
                    }
                    if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                        let message = message.context("consume error")?;
                        first_record.get_or_init(Instant::now);
                        bytes.fetch_add(message.payload_len() as u64, Ordering::Relaxed);
                        records.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Instant::now())
            })
        })
        .collect();
    let progress = ProgressBar::new(wanted);
    while !readers.iter().all(|r| r.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        progress.set_position(records.load(Ordering::Relaxed));
    }
    let mut last = None;
    for reader in readers {
        let finished = reader
            .join()
            .map_err(|_| anyhow::anyhow!("a consumer thread panicked"))??;
        last = last.max(Some(finished));
    }
    progress.finish_and_clear();
    let start = *first_record.get().context("no record arrived")?;
    let elapsed = last.map_or(Duration::ZERO, |l| l.duration_since(start));
    Ok(Report::new(
        "consume",
        records.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        0,
        elapsed,
    ))
}
