//! The Raft loop under load: 1,000 pipelined 1 KiB proposals to one group,
//! each answered once committed (fsynced) and applied. Shows how much one
//! loop iteration (one raft-engine write and fsync) carries.

use std::sync::Arc;

use chronik_raft::{Effect, GroupId, METADATA_GROUP, MultiRaft, MultiRaftConfig, NoPeers, StateMachine};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PROPOSALS: u64 = 1000;

/// Applies nothing and is always durable: the bench measures the loop.
struct Discard;

impl StateMachine for Discard {
    type Output = ();

    fn open_group(&mut self, _group: GroupId) -> Option<u64> {
        Some(0)
    }

    /// Each run starts from an empty directory: nothing to recreate.
    fn assigned_groups(&self) -> Vec<Effect> {
        Vec::new()
    }

    fn apply(&mut self, _group: GroupId, _index: u64, _term: u64, data: &[u8], effects: &mut Vec<Effect>) {
        if data == b"create" {
            effects.push(Effect::CreateGroup {
                group: 1,
                voters: vec![1],
            });
        }
    }

    fn checkpoint(&mut self) -> Vec<(GroupId, u64)> {
        Vec::new()
    }
}

fn pipelined(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raft = MultiRaft::start(
        &dir.path().join("raft"),
        MultiRaftConfig::new(1, dir.path().join("snapshots")),
        Discard,
        Arc::new(NoPeers),
    )
    .unwrap();
    runtime.block_on(async {
        while raft.status().get(METADATA_GROUP).and_then(|s| s.leader).is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        raft.propose(METADATA_GROUP, b"create".to_vec()).await.unwrap();
        while raft.status().get(1).and_then(|s| s.leader).is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    });
    let payload = vec![7u8; 1024];
    let mut group = c.benchmark_group("raft");
    group.throughput(Throughput::Elements(PROPOSALS));
    group.sample_size(20);
    group.bench_function("1000 pipelined 1 KiB proposals", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut pending = Vec::with_capacity(PROPOSALS as usize);
                for _ in 0..PROPOSALS {
                    pending.push(raft.submit(1, payload.clone()).await);
                }
                for outcome in pending {
                    outcome.await.unwrap().unwrap();
                }
            })
        })
    });
    group.finish();
    runtime.block_on(raft.shutdown());
}

criterion_group!(benches, pipelined);
criterion_main!(benches);
