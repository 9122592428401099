use proptest::prelude::*;

use super::*;
use crate::batch::{parse_header, split_batches};
use crate::testing::build_batch;

/// What the test expects the log to hold: each batch as stored.
struct Stored {
    base: i64,
    last: i64,
    max_timestamp: i64,
    bytes: Vec<u8>,
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 200,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

fn append(log: &mut PartitionLog, records: u32, timestamp: i64, payload: usize) -> Stored {
    let mut batch = build_batch(records, timestamp, payload);
    let info = log.append(&mut batch).unwrap();
    assert_eq!(info.base_offset, parse_header(&batch).unwrap().base_offset);
    assert_eq!(info.last_offset, info.base_offset + i64::from(records) - 1);
    Stored {
        base: info.base_offset,
        last: info.last_offset,
        max_timestamp: info.max_timestamp,
        bytes: batch,
    }
}

/// Appends batches of varying shape with increasing timestamps.
fn fill(log: &mut PartitionLog, count: usize) -> Vec<Stored> {
    (0..count)
        .map(|i| append(log, 1 + (i % 4) as u32, 1_000 + 10 * i as i64, 20 + (i * 7) % 50))
        .collect()
}

fn segment_count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().ends_with(".log"))
        .count()
}

fn concat(batches: &[Stored]) -> Vec<u8> {
    batches.iter().flat_map(|b| b.bytes.iter().copied()).collect()
}

/// Every offset reads back from its own batch, and a full read returns all.
fn assert_log_holds(log: &PartitionLog, batches: &[Stored]) {
    for batch in batches {
        for offset in batch.base..=batch.last {
            let read = log.read(offset, 1).unwrap();
            assert_eq!(read, batch.bytes, "offset {offset}");
        }
    }
    let start = batches.first().map_or(log.next_offset(), |b| b.base);
    assert_eq!(log.read(start, usize::MAX).unwrap(), concat(batches));
    assert!(log.read(log.next_offset(), 100).unwrap().is_empty());
}

#[test]
fn appends_and_reads_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    assert_eq!(log.next_offset(), 0);
    assert!(log.read(0, 100).unwrap().is_empty());
    let batches = fill(&mut log, 40);
    assert!(segment_count(dir.path()) > 5);
    assert_eq!(log.next_offset(), batches.last().unwrap().last + 1);
    assert_eq!(log.size_bytes(), concat(&batches).len() as u64);
    assert_log_holds(&log, &batches);
    let all = log.read(0, usize::MAX).unwrap();
    assert_eq!(split_batches(&all).unwrap().len(), batches.len());
}

#[test]
fn oversized_batch_gets_its_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(100)).unwrap();
    let batches: Vec<_> = (0..3).map(|_| append(&mut log, 2, 0, 200)).collect();
    assert_eq!(segment_count(dir.path()), 3);
    assert_log_holds(&log, &batches);
}

#[test]
fn read_respects_max_bytes_but_returns_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(1_000)).unwrap();
    let batches = fill(&mut log, 20);
    let (a, b) = (batches[0].bytes.len(), batches[1].bytes.len());
    assert_eq!(log.read(0, 0).unwrap(), batches[0].bytes);
    assert_eq!(log.read(0, a + b - 1).unwrap(), batches[0].bytes);
    assert_eq!(log.read(0, a + b).unwrap(), concat(&batches[..2]));
    // Without the first-batch exception nothing larger than the limit comes back.
    assert!(log.read_within(0, a - 1, false).unwrap().is_empty());
    assert_eq!(log.read_within(0, a + b - 1, false).unwrap(), batches[0].bytes);
    // Crossing a segment boundary keeps whole batches too.
    let total: usize = batches.iter().map(|b| b.bytes.len()).sum();
    for max_bytes in [a, total / 2, total - 1, total] {
        let read = log.read(0, max_bytes).unwrap();
        let ranges = split_batches(&read).unwrap();
        assert!(read.len() <= max_bytes);
        assert_eq!(read, concat(&batches[..ranges.len()]));
        let next = batches[ranges.len()..].first().map_or(0, |b| b.bytes.len());
        assert!(ranges.len() == batches.len() || read.len() + next > max_bytes);
    }
}

/// What Fetch sends from the files: one range per segment spanned, the
/// headers of exactly the batches in them, and a cut at a batch start.
#[test]
fn stored_batches_name_their_ranges_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    let batches = fill(&mut log, 40);
    let stored = log.stored_within(0, usize::MAX, true).unwrap();
    assert_eq!(stored.ranges().len(), segment_count(dir.path()));
    assert_eq!(stored.len(), concat(&batches).len());
    let bases: Vec<i64> = stored.headers().iter().map(|h| h.base_offset).collect();
    assert_eq!(bases, batches.iter().map(|b| b.base).collect::<Vec<_>>());
    assert_eq!(stored.read().unwrap(), concat(&batches));

    // From the middle of a batch: that whole batch on.
    let from = batches[7].base + 1;
    assert!(from <= batches[7].last, "batch 7 holds more than one record");
    let stored = log.stored_within(from, usize::MAX, true).unwrap();
    assert_eq!(stored.read().unwrap(), concat(&batches[7..]));

    // Cut below a batch start, in a later segment than the first range.
    let cut = batches[25].base;
    let below = log.stored_within(from, usize::MAX, true).unwrap().below(cut);
    assert_eq!(below.read().unwrap(), concat(&batches[7..25]));
    assert_eq!(below.headers().len(), 18);
    assert!(below.ranges().iter().all(|r| !r.is_empty()));
    // A cut at the first batch's start keeps nothing, one inside it keeps
    // it, one past the end keeps all.
    assert!(stored.clone().below(batches[7].base).is_empty());
    assert_eq!(stored.clone().below(from).read().unwrap(), batches[7].bytes);
    assert_eq!(stored.clone().below(i64::MAX).len(), stored.len());
}

/// A damaged batch in a closed segment (they are not checked on open) after
/// good ones: a read serves the good ones, and the read from the damaged
/// one reports it.
#[test]
fn a_damaged_batch_ends_a_read_after_the_good_ones() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    let batches = fill(&mut log, 40);
    let (first_file, first_len) = log.segment_files()[0].clone();
    // The last batch of the first segment is damaged.
    let mut in_first = 0;
    let mut damaged_at = 0;
    while damaged_at + batches[in_first].bytes.len() < first_len as usize {
        damaged_at += batches[in_first].bytes.len();
        in_first += 1;
    }
    assert!(in_first >= 1, "good batches come before the damaged one");
    // A batch length reaching past the segment's end.
    let file = fs::OpenOptions::new().write(true).open(first_file).unwrap();
    file.write_all_at(&i32::MAX.to_be_bytes(), damaged_at as u64 + 8)
        .unwrap();

    let stored = log.stored_within(0, usize::MAX, true).unwrap();
    assert_eq!(stored.read().unwrap(), concat(&batches[..in_first]));
    assert!(matches!(
        log.stored_within(batches[in_first].base, usize::MAX, true),
        Err(LogError::Corrupt { .. })
    ));
}

#[test]
fn read_rejects_offsets_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(1_000)).unwrap();
    fill(&mut log, 3);
    let end = log.next_offset();
    assert!(matches!(
        log.read(end + 1, 10),
        Err(LogError::OffsetOutOfRange { offset, start: 0, end: e }) if offset == end + 1 && e == end
    ));
    assert!(matches!(log.read(-1, 10), Err(LogError::OffsetOutOfRange { .. })));
}

#[test]
fn reopen_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(500)).unwrap();
    let mut batches = fill(&mut log, 30);
    log.flush().unwrap();
    let max = log.max_timestamp();
    let found = log.batch_at_timestamp(1_105).unwrap();
    drop(log);

    let mut log = PartitionLog::open(dir.path(), config(500)).unwrap();
    assert_eq!(log.next_offset(), batches.last().unwrap().last + 1);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.max_timestamp(), max);
    assert_eq!(log.batch_at_timestamp(1_105).unwrap(), found);
    assert_log_holds(&log, &batches);

    // Unflushed appends are in the OS already and survive a reopen.
    batches.push(append(&mut log, 3, 5_000, 10));
    drop(log);
    let log = PartitionLog::open(dir.path(), config(500)).unwrap();
    assert_log_holds(&log, &batches);
    assert_eq!(log.max_timestamp(), Some((5_002, batches.last().unwrap().base)));
}

#[test]
fn reopen_rebuilds_lost_or_garbage_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(500)).unwrap();
    let batches = fill(&mut log, 30);
    let max = log.max_timestamp();
    drop(log);
    let mut damaged = 0;
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("index") if damaged % 2 == 0 => fs::remove_file(&path).unwrap(),
            Some("index") => fs::write(&path, [0xab; 16]).unwrap(),
            Some("timeindex") => fs::write(&path, [0xcd; 7]).unwrap(),
            _ => continue,
        }
        damaged += 1;
    }
    let log = PartitionLog::open(dir.path(), config(500)).unwrap();
    assert_log_holds(&log, &batches);
    assert_eq!(log.max_timestamp(), max);
    for batch in &batches {
        let (base, bytes) = log.batch_at_timestamp(batch.max_timestamp).unwrap().unwrap();
        assert_eq!((base, bytes.as_ref()), (batch.base, batch.bytes.as_slice()));
    }
}

#[test]
fn delete_records_before_moves_start_and_drops_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    let batches = fill(&mut log, 30);
    let segments = segment_count(dir.path());
    let mid = &batches[15];

    assert_eq!(log.delete_records_before(mid.base + 1).unwrap(), mid.base + 1);
    assert_eq!(log.log_start_offset(), mid.base + 1);
    assert!(segment_count(dir.path()) < segments);
    assert!(matches!(log.read(mid.base, 10), Err(LogError::OffsetOutOfRange { .. })));
    // The batch holding the start stays readable from the start.
    assert_eq!(log.read(mid.base + 1, 1).unwrap(), mid.bytes);
    assert_log_holds(&log, &batches[16..]);

    // Never backwards.
    assert_eq!(log.delete_records_before(3).unwrap(), mid.base + 1);
    drop(log);

    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    assert_eq!(log.log_start_offset(), mid.base + 1);
    assert_log_holds(&log, &batches[16..]);

    // Past the end clamps to the end and deletes everything.
    let end = log.next_offset();
    assert_eq!(log.delete_records_before(end + 100).unwrap(), end);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(segment_count(dir.path()), 1);
    assert!(log.read(end, 10).unwrap().is_empty());
    drop(log);

    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset()), (end, end));
    let next = append(&mut log, 2, 0, 5);
    assert_eq!(next.base, end);
    assert_log_holds(&log, &[next]);
}

#[test]
fn retention_by_time_deletes_expired_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(300);
    config.retention_ms = Some(1_000);
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    // Timestamps 0, 100, ..., 1900: about three batches per segment.
    let batches: Vec<_> = (0..20).map(|i| append(&mut log, 1, i * 100, 40)).collect();
    let segments = segment_count(dir.path());
    assert!(segments >= 5);

    assert_eq!(log.enforce_retention(0, i64::MAX).unwrap(), 0);
    // Cutoff 1000: every segment whose newest batch is older goes.
    let deleted = log.enforce_retention(2_000, i64::MAX).unwrap();
    assert!(deleted > 0);
    assert_eq!(segment_count(dir.path()), segments - deleted);
    let first_kept = batches.iter().position(|b| b.base == log.log_start_offset()).unwrap();
    assert!(batches[first_kept - 1].max_timestamp < 1_000);
    assert_log_holds(&log, &batches[first_kept..]);
    // The first remaining segment holds something too new to delete.
    let first_segment_max = batches[first_kept..]
        .iter()
        .take(3)
        .map(|b| b.max_timestamp)
        .max()
        .unwrap();
    assert!(first_segment_max >= 1_000);

    // Everything expired, including the active segment: roll and delete all.
    let end = log.next_offset();
    assert!(log.enforce_retention(10_000, i64::MAX).unwrap() > 0);
    assert_eq!((log.log_start_offset(), log.next_offset()), (end, end));
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(segment_count(dir.path()), 1);
    assert_eq!(log.max_timestamp(), None);
    drop(log);

    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset()), (end, end));
    assert_eq!(append(&mut log, 1, 0, 1).base, end);
}

#[test]
fn retention_by_size_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(300)).unwrap();
    let batches: Vec<_> = (0..20).map(|i| append(&mut log, 1, i, 40)).collect();
    let limit = 500;
    let mut config = log.config().clone();
    config.retention_bytes = Some(limit);
    log.set_config(config);
    assert_eq!(log.config().retention_bytes, Some(limit));

    let before = log.size_bytes();
    let deleted = log.enforce_retention(0, i64::MAX).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() >= limit && log.size_bytes() < before);
    let first_kept = batches.iter().position(|b| b.base == log.log_start_offset()).unwrap();
    assert_log_holds(&log, &batches[first_kept..]);
    // Deleting one more segment would go below the limit.
    assert_eq!(log.enforce_retention(0, i64::MAX).unwrap(), 0);

    // Never deletes the active segment.
    let mut config = log.config().clone();
    config.retention_bytes = Some(0);
    log.set_config(config);
    log.enforce_retention(0, i64::MAX).unwrap();
    assert_eq!(segment_count(dir.path()), 1);
    assert!(log.size_bytes() > 0);
}

#[test]
fn batch_at_timestamp_matches_a_linear_scan() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(600);
    config.index_interval_bytes = 100;
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    // Timestamps jump around so max timestamps are not monotonic.
    let batches: Vec<_> = (0..60i64)
        .map(|i| append(&mut log, 1 + (i % 3) as u32, (i * 37) % 500 + i, 30))
        .collect();
    let expect = |timestamp: i64, start: i64| {
        batches
            .iter()
            .find(|b| b.last >= start && b.max_timestamp >= timestamp)
            .map(|b| (b.base, b.bytes.clone()))
    };
    for start in [0, batches[25].base + 1] {
        log.delete_records_before(start).unwrap();
        for timestamp in -1..=600 {
            let found = log
                .batch_at_timestamp(timestamp)
                .unwrap()
                .map(|(base, bytes)| (base, bytes.to_vec()));
            assert_eq!(found, expect(timestamp, start), "timestamp {timestamp}");
        }
    }
}

#[test]
fn max_timestamp_names_the_first_batch_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(300)).unwrap();
    assert_eq!(log.max_timestamp(), None);
    let timestamps = [50, 900, 10, 900, 300, 899];
    let batches: Vec<_> = timestamps.iter().map(|&ts| append(&mut log, 1, ts, 100)).collect();
    assert_eq!(log.max_timestamp(), Some((900, batches[1].base)));
}

#[test]
fn append_rejects_invalid_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(1_000)).unwrap();
    let mut corrupt = build_batch(2, 0, 10);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        log.append(&mut corrupt),
        Err(LogError::Batch(crate::BatchError::CrcMismatch { .. }))
    ));
    let mut two = [build_batch(1, 0, 1), build_batch(1, 0, 1)].concat();
    assert!(matches!(log.append(&mut two), Err(LogError::Batch(_))));
    assert!(matches!(
        log.append(&mut build_batch(0, 0, 0)),
        Err(LogError::Batch(crate::BatchError::NoRecords))
    ));
    assert_eq!((log.next_offset(), log.size_bytes()), (0, 0));
}

#[test]
fn open_survives_garbage_files() {
    let dir = tempfile::tempdir().unwrap();
    let noise: Vec<u8> = (0..5_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    fs::write(dir.path().join("00000000000000000000.log"), &noise).unwrap();
    fs::write(dir.path().join("00000000000000000000.index"), &noise[..800]).unwrap();
    fs::write(dir.path().join("00000000000000000000.timeindex"), &noise[..1200]).unwrap();
    fs::write(dir.path().join("00000000000000000100.log"), &noise).unwrap();
    fs::write(dir.path().join("log-start-offset"), &noise[..20]).unwrap();
    fs::write(dir.path().join("unrelated.log"), b"x").unwrap();
    let mut log = PartitionLog::open(dir.path(), config(1_000)).unwrap();
    assert_eq!(log.next_offset(), 100);
    assert_eq!(log.log_start_offset(), 0);
    assert!(log.read(0, 100).unwrap().is_empty());
    let batch = append(&mut log, 1, 0, 1);
    assert_eq!(batch.base, 100);
    assert_eq!(log.read(0, 100).unwrap(), batch.bytes);
}

#[test]
fn remove_deletes_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("topic-0");
    let mut log = PartitionLog::open(&dir, LogConfig::default()).unwrap();
    fill(&mut log, 3);
    log.remove().unwrap();
    assert!(!dir.exists());
}

fn segment_exists(dir: &Path, base: i64) -> bool {
    crate::segment::segment_path(dir, base, ".log").exists()
}

fn assert_out_of_range(log: &PartitionLog, offset: i64) {
    assert!(
        matches!(log.read(offset, 100), Err(LogError::OffsetOutOfRange { offset: o, .. }) if o == offset),
        "offset {offset}"
    );
}

#[test]
fn truncate_to_cuts_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(10_000)).unwrap();
    let mut batches = fill(&mut log, 12);
    assert_eq!(segment_count(dir.path()), 1);
    let cut = &batches[7];
    let (offset, dropped_last) = (cut.base, batches.last().unwrap().last);

    log.truncate_to(offset).unwrap();
    batches.truncate(7);
    assert_eq!(log.next_offset(), offset);
    assert_eq!(log.size_bytes(), concat(&batches).len() as u64);
    assert_log_holds(&log, &batches);
    assert_out_of_range(&log, offset + 1);
    assert_out_of_range(&log, dropped_last);

    // Appends continue at the cut, where the dropped batch was.
    let next = append(&mut log, 3, 50, 9);
    assert_eq!(next.base, offset);
    batches.push(next);
    assert_log_holds(&log, &batches);
    drop(log);

    let log = PartitionLog::open(dir.path(), config(10_000)).unwrap();
    assert_eq!(log.next_offset(), offset + 3);
    assert_log_holds(&log, &batches);
}

#[test]
fn truncate_to_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    let mut batches = fill(&mut log, 40);
    let segments = segment_count(dir.path());
    assert!(segments > 5);
    // A batch inside an older segment, not at its start.
    let cut = (10..40)
        .find(|&i| !segment_exists(dir.path(), batches[i].base))
        .unwrap();
    let offset = batches[cut].base;
    let dropped: Vec<i64> = batches[cut..].iter().map(|b| b.last).collect();

    log.truncate_to(offset).unwrap();
    batches.truncate(cut);
    assert_eq!(log.next_offset(), offset);
    assert!(segment_count(dir.path()) < segments);
    assert_eq!(log.size_bytes(), concat(&batches).len() as u64);
    assert_log_holds(&log, &batches);
    for offset in dropped.into_iter().skip(1) {
        assert_out_of_range(&log, offset);
    }

    // New appends get the dropped offsets and roll as usual.
    let more = fill(&mut log, 20);
    assert_eq!(more[0].base, offset);
    batches.extend(more);
    assert_log_holds(&log, &batches);
    drop(log);

    let log = PartitionLog::open(dir.path(), config(400)).unwrap();
    assert_eq!(log.next_offset(), batches.last().unwrap().last + 1);
    assert_log_holds(&log, &batches);
}

#[test]
fn truncate_to_a_segment_start_reactivates_its_predecessor() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    let mut batches = fill(&mut log, 30);
    let cut = (1..30).find(|&i| segment_exists(dir.path(), batches[i].base)).unwrap();
    let offset = batches[cut].base;
    let before = log.segments.iter().filter(|s| s.base_offset() < offset).count();

    log.truncate_to(offset).unwrap();
    batches.truncate(cut);
    // As in a log that never got the batch at `offset`: no empty segment
    // there, the one before it is active again.
    assert!(!segment_exists(dir.path(), offset));
    assert_eq!(log.segments.len(), before);
    assert!(log.active().size() > 0);
    assert_eq!(log.next_offset(), offset);
    assert_log_holds(&log, &batches);
    batches.push(append(&mut log, 1, 0, 1));
    assert_log_holds(&log, &batches);
    drop(log);

    let log = PartitionLog::open(dir.path(), config(400)).unwrap();
    assert_log_holds(&log, &batches);
}

#[test]
fn truncate_to_a_segment_start_after_a_gap_keeps_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    let batches = fill(&mut log, 30);
    drop(log);
    // Tear the last batch of the first segment and lose its index, so
    // recovery cuts it and the log has a gap before the second segment.
    let cut = (1..30).find(|&i| segment_exists(dir.path(), batches[i].base)).unwrap();
    let offset = batches[cut].base;
    let first = crate::segment::segment_path(dir.path(), 0, ".log");
    let len = fs::metadata(&first).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    fs::remove_file(crate::segment::segment_path(dir.path(), 0, ".index")).unwrap();

    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    log.truncate_to(offset).unwrap();
    // The first segment ends before `offset`, so appending to it would
    // break its offset sequence: the segment at `offset` stays, empty.
    assert_eq!(log.next_offset(), offset);
    assert!(segment_exists(dir.path(), offset));
    assert_eq!(log.size_bytes(), concat(&batches[..cut - 1]).len() as u64);
    assert_log_holds(&log, &batches[..cut - 1]);
    let next = append(&mut log, 2, 0, 5);
    assert_eq!(next.base, offset);
    drop(log);

    let log = PartitionLog::open(dir.path(), config(400)).unwrap();
    assert_eq!(log.next_offset(), offset + 2);
    assert_eq!(log.read(offset, 1).unwrap(), next.bytes);
}

#[test]
fn truncate_to_rejects_offsets_inside_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    let batches = fill(&mut log, 30);
    let segments = segment_count(dir.path());
    // Inside a batch of the first segment and of a later one.
    let inside = |from: usize| batches[from..].iter().find(|b| b.last > b.base).unwrap().base + 1;
    for offset in [inside(0), inside(20)] {
        assert!(matches!(
            log.truncate_to(offset),
            Err(LogError::NotBatchBoundary { offset: o }) if o == offset
        ));
    }
    assert_eq!(log.next_offset(), batches.last().unwrap().last + 1);
    assert_eq!(segment_count(dir.path()), segments);
    assert_eq!(log.size_bytes(), concat(&batches).len() as u64);
    assert_log_holds(&log, &batches);
}

#[test]
fn truncate_to_the_end_changes_nothing_and_past_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    log.truncate_to(0).unwrap();
    assert_eq!((log.next_offset(), log.size_bytes()), (0, 0));
    let batches = fill(&mut log, 20);
    let end = log.next_offset();
    log.truncate_to(end).unwrap();
    assert_log_holds(&log, &batches);
    for offset in [end + 1, i64::MAX] {
        assert!(matches!(
            log.truncate_to(offset),
            Err(LogError::ShorterThanCheckpoint { end: e, .. }) if e == end
        ));
        assert_eq!(log.next_offset(), end);
        assert_log_holds(&log, &batches);
    }
    assert!(matches!(
        log.truncate_to(-1),
        Err(LogError::OffsetOutOfRange { offset: -1, .. })
    ));
    assert_log_holds(&log, &batches);
}

#[test]
fn truncate_to_below_the_log_start_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    let batches = fill(&mut log, 30);
    let mid = &batches[15];
    log.delete_records_before(mid.base + 1).unwrap();

    // Still a batch start, but below the start now.
    log.truncate_to(mid.base).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset()), (mid.base, mid.base));
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.max_timestamp(), None);
    assert_eq!(segment_count(dir.path()), 1);
    assert!(log.read(mid.base, 100).unwrap().is_empty());
    let next = append(&mut log, 2, 0, 5);
    assert_eq!(next.base, mid.base);
    drop(log);

    let mut log = PartitionLog::open(dir.path(), config(400)).unwrap();
    assert_eq!(log.log_start_offset(), mid.base);
    assert_log_holds(&log, std::slice::from_ref(&next));

    // Any offset below the start will do, batch start or not.
    log.truncate_to(3).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset()), (3, 3));
    drop(log);
    let log = PartitionLog::open(dir.path(), config(400)).unwrap();
    assert_eq!((log.log_start_offset(), log.next_offset()), (3, 3));
    assert_eq!(segment_count(dir.path()), 1);
    assert!(segment_exists(dir.path(), 3));
}

#[test]
fn truncate_to_forgets_dropped_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(600);
    config.index_interval_bytes = 100;
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    // Not monotonic, and the largest timestamps come late.
    let mut batches: Vec<_> = (0..60i64)
        .map(|i| append(&mut log, 1 + (i % 3) as u32, (i * 37) % 500 + i * 5, 30))
        .collect();
    let cut = 40;
    let kept_max = batches[..cut].iter().map(|b| b.max_timestamp).max().unwrap();
    assert!(batches[cut..].iter().any(|b| b.max_timestamp > kept_max));
    log.truncate_to(batches[cut].base).unwrap();
    batches.truncate(cut);

    let expect_max = batches.iter().find(|b| b.max_timestamp == kept_max).unwrap().base;
    let expect = |timestamp: i64| {
        batches
            .iter()
            .find(|b| b.max_timestamp >= timestamp)
            .map(|b| (b.base, b.bytes.clone()))
    };
    for reopen in [false, true] {
        if reopen {
            drop(log);
            log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        }
        assert_eq!(log.max_timestamp(), Some((kept_max, expect_max)));
        for timestamp in (-1..=1_000).step_by(7) {
            let found = log
                .batch_at_timestamp(timestamp)
                .unwrap()
                .map(|(base, bytes)| (base, bytes.to_vec()));
            assert_eq!(found, expect(timestamp), "timestamp {timestamp}");
        }
    }
}

/// The `.log` files and their sizes.
fn segment_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().ends_with(".log"))
        .map(|e| (e.file_name().into_string().unwrap(), e.metadata().unwrap().len()))
        .collect();
    files.sort();
    files
}

/// Two logs in different directories behave the same.
fn assert_same_log(a: &PartitionLog, b: &PartitionLog) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.next_offset(), b.next_offset());
    prop_assert_eq!(a.log_start_offset(), b.log_start_offset());
    prop_assert_eq!(a.size_bytes(), b.size_bytes());
    prop_assert_eq!(a.read(0, usize::MAX).unwrap(), b.read(0, usize::MAX).unwrap());
    prop_assert_eq!(a.max_timestamp(), b.max_timestamp());
    for timestamp in (0..1_100).step_by(50) {
        prop_assert_eq!(
            a.batch_at_timestamp(timestamp).unwrap(),
            b.batch_at_timestamp(timestamp).unwrap()
        );
    }
    prop_assert_eq!(segment_files(&a.dir), segment_files(&b.dir));
    // Offset indexes match too, so later appends index the same batches.
    let offset_entries = |log: &PartitionLog| {
        log.segments
            .iter()
            .map(|s| s.offset_index().entries().to_vec())
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(offset_entries(a), offset_entries(b));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn truncate_to_matches_a_log_that_only_got_the_prefix(
        shapes in prop::collection::vec((1u32..5, 0usize..100, 0i64..1_000), 1..30),
        segment_bytes in 150u64..1_000,
        index_interval_bytes in 0u64..300,
        cut in any::<prop::sample::Index>(),
    ) {
        let config = LogConfig { index_interval_bytes, ..config(segment_bytes) };
        let (truncated_dir, prefix_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut truncated = PartitionLog::open(truncated_dir.path(), config.clone()).unwrap();
        let mut prefix = PartitionLog::open(prefix_dir.path(), config.clone()).unwrap();
        let batches: Vec<_> = shapes
            .iter()
            .map(|&(records, payload, timestamp)| append(&mut truncated, records, timestamp, payload))
            .collect();
        // Every batch start, or the end.
        let kept = cut.index(shapes.len() + 1);
        for &(records, payload, timestamp) in &shapes[..kept] {
            append(&mut prefix, records, timestamp, payload);
        }

        truncated.truncate_to(batches.get(kept).map_or(truncated.next_offset(), |b| b.base)).unwrap();
        assert_same_log(&truncated, &prefix)?;

        // Both go on alike, and reopen alike.
        for &(records, payload, timestamp) in shapes.iter().rev() {
            prop_assert_eq!(
                truncated.append(&mut build_batch(records, timestamp, payload)).unwrap(),
                prefix.append(&mut build_batch(records, timestamp, payload)).unwrap()
            );
        }
        assert_same_log(&truncated, &prefix)?;
        drop((truncated, prefix));
        let truncated = PartitionLog::open(truncated_dir.path(), config.clone()).unwrap();
        let prefix = PartitionLog::open(prefix_dir.path(), config).unwrap();
        assert_same_log(&truncated, &prefix)?;
    }
}
