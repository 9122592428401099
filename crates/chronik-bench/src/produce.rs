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
    /// Producer instances, each on its own thread with its own connections;
    /// the records are split evenly between them.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Distinct record keys; 0 sends records without a key, which leaves
    /// the choice of partition to librdkafka's sticky partitioner.
    #[arg(long, default_value_t = 1024)]
    keys: u64,
    /// How keys are picked: in turn, uniformly at random, or skewed (Zipf,
    /// s = 1: the first key is picked about twice as often as the second).
    #[arg(long, value_enum, default_value_t = KeyDistribution::Sequential)]
    key_distribution: KeyDistribution,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyDistribution {
    Sequential,
    Uniform,
    Zipf,
}

/// Draws record keys by the chosen distribution.
struct KeyPicker {
    distribution: KeyDistribution,
    keys: u64,
    /// Zipf only: the cumulative probability of keys 0..=i, scaled to u64.
    cumulative: Vec<u64>,
}

impl KeyPicker {
    fn new(distribution: KeyDistribution, keys: u64) -> KeyPicker {
        let cumulative = if distribution == KeyDistribution::Zipf && keys > 0 {
            let total: f64 = (1..=keys).map(|k| 1.0 / k as f64).sum();
            let mut sum = 0.0;
            (1..=keys)
                .map(|k| {
                    sum += 1.0 / k as f64 / total;
                    (sum.min(1.0) * u64::MAX as f64) as u64
                })
                .collect()
        } else {
            Vec::new()
        };
        KeyPicker {
            distribution,
            keys,
            cumulative,
        }
    }

    /// The key of record `i`, or None when records carry no key.
    fn key(&self, i: u64, random: &mut Xorshift) -> Option<u64> {
        if self.keys == 0 {
            return None;
        }
        Some(match self.distribution {
            KeyDistribution::Sequential => i % self.keys,
            KeyDistribution::Uniform => random.next() % self.keys,
            KeyDistribution::Zipf => {
                let draw = random.next();
                (self.cumulative.partition_point(|&c| c < draw) as u64).min(self.keys - 1)
            }
        })
    }
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
    if args.producers == 0 {
        bail!("--producers must be at least 1");
    }
    if args.create_topic {
        create_topic(bootstrap, topic, args)?;
    }
    let counters = Arc::new(Counters::default());
    let producers = (0..args.producers)
        .map(|_| {
            ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("acks", &args.acks)
                .set("linger.ms", args.linger_ms.to_string())
                .set("batch.size", args.batch_size.to_string())
                .set("compression.codec", &args.compression)
                .set("queue.buffering.max.kbytes", "1048576")
                .set("queue.buffering.max.messages", "1000000")
                .create_with_context(CountingContext(counters.clone()))
                .context("cannot create the producer")
        })
        .collect::<anyhow::Result<Vec<BaseProducer<CountingContext>>>>()?;
    let keys = Arc::new(KeyPicker::new(args.key_distribution, args.keys));
    let progress = ProgressBar::new(args.records);
    let start = Instant::now();
    let share = args.records / args.producers as u64;
    let senders: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(n, producer)| {
            let first = n as u64 * share;
            let count = if n as u32 + 1 == args.producers {
                args.records - first
            } else {
                share
            };
            let (topic, size, keys) = (topic.to_string(), args.record_size, keys.clone());
            std::thread::spawn(move || send_all(&producer, &topic, first..first + count, size, &keys))
        })
        .collect();
    // Each sender returns once its records are acknowledged (or failed), or
    // gives up after 300 s.
    while !senders.iter().all(|s| s.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        progress.set_position(counters.acked.load(Ordering::Relaxed));
    }
    let mut finished = start;
    for sender in senders {
        let done = sender
            .join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
        finished = finished.max(done);
    }
    let elapsed = finished.duration_since(start);
    progress.finish_and_clear();
    let acked = counters.acked.load(Ordering::Relaxed);
    Ok(Report::new(
        "produce",
        acked,
        acked * args.record_size as u64,
        counters.failed.load(Ordering::Relaxed),
        elapsed,
    ))
}

/// One producer's share: sends records `range` and waits until each is
/// acknowledged or failed; returns when that was.
fn send_all(
    producer: &BaseProducer<CountingContext>,
    topic: &str,
    range: std::ops::Range<u64>,
    record_size: usize,
    keys: &KeyPicker,
) -> anyhow::Result<Instant> {
    let mut payload = vec![0u8; record_size];
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15 ^ range.start);
    for i in range {
        // Fresh random bytes per record: no layer below can compress them away.
        random.fill(&mut payload);
        let key = keys.key(i, &mut random).map(u64::to_be_bytes);
        let mut record = BaseRecord::to(topic).payload(&payload[..]);
        if let Some(key) = &key {
            record = record.key(&key[..]);
        }
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
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            bail!("records still unacknowledged after 300 s");
        }
        producer.poll(Duration::from_millis(50));
    }
    Ok(Instant::now())
}

/// A tiny PRNG (xorshift64): fast enough to fill every record.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyDistribution, KeyPicker, Xorshift};

    fn counts(distribution: KeyDistribution, keys: u64, draws: u64) -> Vec<u64> {
        let picker = KeyPicker::new(distribution, keys);
        let mut random = Xorshift(7);
        let mut counts = vec![0; keys as usize];
        for i in 0..draws {
            counts[picker.key(i, &mut random).expect("keyed") as usize] += 1;
        }
        counts
    }

    #[test]
    fn sequential_keys_take_turns() {
        assert_eq!(counts(KeyDistribution::Sequential, 4, 40), vec![10; 4]);
    }

    #[test]
    fn uniform_keys_are_even_and_zipf_keys_are_skewed() {
        let uniform = counts(KeyDistribution::Uniform, 10, 100_000);
        assert!(uniform.iter().all(|&c| (9_000..11_000).contains(&c)), "{uniform:?}");
        let zipf = counts(KeyDistribution::Zipf, 10, 100_000);
        // Key k is drawn in proportion to 1/(k+1): the first about twice the second.
        let ratio = zipf[0] as f64 / zipf[1] as f64;
        assert!((1.8..2.2).contains(&ratio), "{zipf:?}");
        assert!(zipf.windows(2).all(|w| w[0] > w[1]), "{zipf:?}");
    }

    #[test]
    fn no_keys_means_records_without_a_key() {
        assert_eq!(
            KeyPicker::new(KeyDistribution::Uniform, 0).key(1, &mut Xorshift(7)),
            None
        );
    }
}
