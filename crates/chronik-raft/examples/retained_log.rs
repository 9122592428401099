//! What raft-engine would cost as the store of a partition's retained
//! records, the alternative to making the partition segments the Raft log
//! (see "One write per record" in docs/ARCHITECTURE.md).
//!
//! Writes GIB of entries of ENTRY_KIB each over 12 groups, as a partition
//! log would retain them, then reopens the engine with a cold page cache
//! (restart time and the memory its index takes) and reads one group back
//! through `fetch_entries_to` (what a Fetch would do, since raft-engine does
//! not say where an entry's bytes lie, so `sendfile` is out).
//!
//! usage: cargo run --release -p chronik-raft --example retained_log -- DIR GIB ENTRY_KIB

use std::time::Instant;

use raft::eraftpb::Entry;
use raft_engine::{Config, Engine, LogBatch, MessageExt, ReadableSize};

const GROUPS: u64 = 12;

#[derive(Clone, Copy)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

fn config(dir: &str) -> Config {
    Config {
        dir: dir.to_owned(),
        // Retained data is never purged here: that is the point.
        purge_threshold: ReadableSize::gb(1024),
        batch_compression_threshold: ReadableSize(0),
        target_file_size: ReadableSize::mb(64),
        ..Default::default()
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn write(dir: &str, total: u64, entry_bytes: usize) {
    let engine = Engine::open(config(dir)).expect("open raft-engine");
    let data = vec![7u8; entry_bytes];
    // About 256 KiB per write, one fsync per 64 MiB: the write speed is not
    // what is measured here.
    let per_write = (256 * 1024 / entry_bytes).max(1);
    let mut next = [1u64; GROUPS as usize];
    let (mut written, mut since_sync, mut group) = (0u64, 0u64, 0usize);
    while written < total {
        let entries: Vec<Entry> = (0..per_write)
            .map(|_| {
                next[group] += 1;
                Entry {
                    index: next[group] - 1,
                    term: 1,
                    data: data.clone().into(),
                    ..Default::default()
                }
            })
            .collect();
        let bytes = (per_write * entry_bytes) as u64;
        written += bytes;
        since_sync += bytes;
        let mut batch = LogBatch::default();
        batch
            .add_entries::<EntryExt>(group as u64 + 1, &entries)
            .expect("encode");
        let sync = since_sync >= 64 << 20;
        engine.write(&mut batch, sync).expect("write");
        if sync {
            since_sync = 0;
        }
        group = (group + 1) % GROUPS as usize;
    }
    engine.sync().expect("sync");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, gib, entry_kib] = &args[..] else {
        eprintln!("usage: retained_log DIR GIB ENTRY_KIB");
        std::process::exit(2);
    };
    let gib: u64 = gib.parse().expect("GIB is a number");
    let entry_bytes = entry_kib.parse::<usize>().expect("ENTRY_KIB is a number") * 1024;
    let start = Instant::now();
    write(dir, gib << 30, entry_bytes);
    println!(
        "wrote {gib} GiB in entries of {entry_kib} KiB: {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // A cold restart: nothing of the log in the page cache.
    let dropped = std::process::Command::new("sh")
        .args(["-c", "sync && echo 3 > /proc/sys/vm/drop_caches"])
        .status()
        .is_ok_and(|s| s.success());
    let before = rss_kib();
    let start = Instant::now();
    let engine = Engine::open(config(dir)).expect("reopen raft-engine");
    println!(
        "reopened in {:.2} s ({} page cache); RSS grew by {} MiB",
        start.elapsed().as_secs_f64(),
        if dropped { "cold" } else { "warm: could not drop the" },
        rss_kib().saturating_sub(before) / 1024
    );

    let start = Instant::now();
    let last = engine.last_index(1).unwrap_or(0);
    let (mut read, mut low, mut entries) = (0u64, 1u64, Vec::new());
    while low <= last {
        entries.clear();
        let high = (low + 64).min(last + 1);
        engine
            .fetch_entries_to::<EntryExt>(1, low, high, None, &mut entries)
            .expect("read back");
        read += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
        low = high;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "read group 1 back, {} MiB: {:.2} s, {:.0} MB/s",
        read >> 20,
        seconds,
        read as f64 / seconds / 1e6
    );
}
