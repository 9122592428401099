//! Produce mode: a fixed number of records of a fixed size, counted as they
//! are acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::ProgressBar;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::report::Report;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Records to produce.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Partitions of the topic, when this tool creates it.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor of the topic, when this tool creates it.
    #[arg(long, default_value_t = 1)]
    replication: i32,
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// librdkafka's batch.size, in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    batch_size: u32,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Create the topic first (an existing one is kept).
    #[arg(long)]
    create_topic: bool,
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    failed: AtomicU64,
}

struct CountingContext(Arc<Counters>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn create_topic(bootstrap: &str, topic: &str, args: &ProduceArgs) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("admin client")?;
    let new_topic = NewTopic::new(topic, args.partitions, TopicReplication::Fixed(args.replication));
    // rdkafka's admin calls return futures; a tiny executor is enough here.
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &AdminOptions::new()))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

pub fn run(bootstrap: &str, topic: &str, args: &ProduceArgs) -> anyhow::Result<Report> {
    if args.create_topic {
        create_topic(bootstrap, topic, args)?;
    }
    let counters = Arc::new(Counters::default());
    let producer: BaseProducer<CountingContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set("compression.codec", &args.compression)
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(CountingContext(counters.clone()))
        .context("cannot create the producer")?;
    let mut payload = vec![0u8; args.record_size];
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    let progress = ProgressBar::new(args.records);
    let start = Instant::now();
    for i in 0..args.records {
        // Fresh random bytes per record: no layer below can compress them away.
        random.fill(&mut payload);
        let key = (i % 1024).to_be_bytes();
        let mut record = BaseRecord::to(topic).payload(&payload[..]).key(&key[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    producer.poll(Duration::from_millis(1));
                    record = returned;
                }
                Err((e, _)) => bail!("cannot enqueue a record: {e}"),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
            progress.set_position(counters.acked.load(Ordering::Relaxed));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while counters.acked.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed) < args.records {
        if Instant::now() > deadline {
            bail!("records still unacknowledged after 300 s");
        }
        producer.poll(Duration::from_millis(50));
        progress.set_position(counters.acked.load(Ordering::Relaxed));
    }
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    producer.flush(Duration::from_secs(10)).context("flush")?;
    let acked = counters.acked.load(Ordering::Relaxed);
    Ok(Report::new(
        "produce",
        acked,
        acked * args.record_size as u64,
        counters.failed.load(Ordering::Relaxed),
        elapsed,
    ))
}

/// A tiny PRNG (xorshift64): fast enough to fill every record.
struct Xorshift(u64);

impl Xorshift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}
