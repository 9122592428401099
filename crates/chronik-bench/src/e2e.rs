//! End-to-end mode: produce at a fixed rate and measure, for every record,
//! the time from just before it was sent to when a consumer received it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::report::Latency;

#[derive(Debug, Args)]
pub struct E2eArgs {
    /// Records per second the producer sends.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// How long to send for, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes of each record (at least 16: the send time is stamped in it).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, default_value_t = 0)]
    linger_ms: u32,
    /// librdkafka's fetch.wait.max.ms for the consumer.
    #[arg(long, default_value_t = 500)]
    fetch_wait_max_ms: u32,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sequence number of the record that warms the pipeline up.
const WARM_UP: u64 = u64::MAX;

/// Sends one record and waits until the consumer has it, so connecting to
/// the partition's leader and the first fetch are not counted as latency.
fn warm_up(producer: &BaseProducer, consumer: &BaseConsumer, topic: &str, size: usize) -> anyhow::Result<()> {
    let mut payload = vec![0u8; size];
    payload[8..16].copy_from_slice(&WARM_UP.to_be_bytes());
    producer
        .send(BaseRecord::<(), [u8]>::to(topic).partition(0).payload(&payload[..]))
        .map_err(|(e, _)| e)
        .context("cannot send the warm-up record")?;
    producer
        .flush(Duration::from_secs(30))
        .context("the warm-up record was not acknowledged")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message))
                if message
                    .payload()
                    .is_some_and(|p| p.len() >= 16 && p[8..16] == payload[8..16]) =>
            {
                return Ok(());
            }
            Some(Err(e)) => bail!("consume error during warm-up: {e}"),
            _ => {}
        }
    }
    bail!("the consumer did not receive the warm-up record within 30 s")
}

/// Runs producer and consumer on partition 0 of `topic`; returns the latency
/// distribution in microseconds and the number of records measured.
pub fn run(bootstrap: &str, topic: &str, args: &E2eArgs) -> anyhow::Result<(Latency, u64)> {
    if args.record_size < 16 || args.rate == 0 {
        bail!("--record-size must be at least 16 and --rate above 0");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chronik-bench-e2e")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string())
        .set("fetch.min.bytes", "1")
        .create()
        .context("cannot create the consumer")?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .create()
        .context("cannot create the producer")?;
    // Start reading at the current end, so only this run's records count.
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .with_context(|| format!("topic {topic} must exist (create it with `produce --create-topic`)"))?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(high))?;
    consumer.assign(&assignment)?;
    warm_up(&producer, &consumer, topic, args.record_size)?;

    let total = args.rate * args.seconds;
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let sending = sending.clone();
        let (topic, size, rate) = (topic.to_string(), args.record_size, args.rate);
        std::thread::spawn(move || {
            let mut payload = vec![0u8; size];
            let start = Instant::now();
            for i in 0..total {
                // Pace by the schedule, not by the previous send, so a slow
                // moment does not lower the offered rate.
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                payload[..8].copy_from_slice(&now_nanos().to_be_bytes());
                payload[8..16].copy_from_slice(&i.to_be_bytes());
                let mut record = BaseRecord::<(), [u8]>::to(&topic).partition(0).payload(&payload[..]);
                while let Err((_, returned)) = producer.send(record) {
                    producer.poll(Duration::from_millis(1));
                    record = returned;
                }
                producer.poll(Duration::ZERO);
            }
            let _ = producer.flush(Duration::from_secs(30));
            sending.store(false, Ordering::Relaxed);
        })
    };

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let mut received = 0;
    let mut quiet_since = Instant::now();
    while received < total {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                if payload.len() >= 16 {
                    let sent = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                    histogram.saturating_record(now_nanos().saturating_sub(sent) / 1_000);
                    received += 1;
                }
                quiet_since = Instant::now();
            }
            Some(Err(e)) => bail!("consume error: {e}"),
            None if !sending.load(Ordering::Relaxed) && quiet_since.elapsed() > Duration::from_secs(10) => break,
            None => {}
        }
    }
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?;
    Ok((Latency::from_histogram(&histogram), received))
}
