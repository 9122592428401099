//! Partition log append and read, the two halves of the produce and fetch
//! hot paths below the network.

use std::hint::black_box;

use chronik_log::{LogConfig, PartitionLog, testing::build_batch};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// A batch like librdkafka sends under load: 16 records of 1 KiB.
fn batch() -> Vec<u8> {
    build_batch(16, 1_700_000_000_000, 1024)
}

fn append(c: &mut Criterion) {
    let template = batch();
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(template.len() as u64));
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    group.bench_function("append 16x1KiB batch", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |batch| log.append(black_box(batch)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let template = batch();
    for _ in 0..1000 {
        log.append(&mut template.clone()).unwrap();
    }
    let end = log.next_offset();
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(1 << 20));
    let mut offset = 0;
    group.bench_function("read 1 MiB from the middle", |b| {
        b.iter(|| {
            offset = (offset + 977) % (end - 1100);
            black_box(log.read(offset, 1 << 20).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
