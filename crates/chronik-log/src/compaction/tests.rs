use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::*;
use crate::testing::{KeyedRecord, build_keyed_batch};

/// Every record of a log: offset -> (key, value).
type Contents = BTreeMap<i64, (String, Option<String>)>;

/// Far enough ahead that every tombstone has expired, if the config says 0.
const LATER: i64 = i64::MAX / 2;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 200,
        index_interval_bytes: 100,
        retention_ms: None,
        retention_bytes: None,
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        delete_retention_ms: 0,
    }
}

/// Appends one batch of (key, value) records; returns their offsets.
fn produce(log: &mut PartitionLog, records: &[(&str, Option<&str>)]) -> Vec<i64> {
    let records: Vec<KeyedRecord> = records.iter().map(|(k, v)| KeyedRecord::new(Some(k), *v)).collect();
    let mut batch = build_keyed_batch(1_000, &records);
    let info = log.append(&mut batch).unwrap();
    (info.base_offset..=info.last_offset).collect()
}

/// Every record the log holds: offset -> (key, value).
fn contents(log: &PartitionLog) -> Contents {
    let mut out = BTreeMap::new();
    let mut offset = log.log_start_offset();
    while offset < log.next_offset() {
        let mut bytes = log.read(offset, 1 << 20).unwrap();
        if bytes.is_empty() {
            break;
        }
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        for record in sets.iter().flat_map(|s| &s.records) {
            let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap());
            out.insert(record.offset, (text(&record.key).unwrap(), text(&record.value)));
        }
        let last = crate::batch::split_batches(&log.read(offset, 1 << 20).unwrap())
            .unwrap()
            .into_iter()
            .map(|r| {
                parse_header(&log.read(offset, 1 << 20).unwrap()[r])
                    .unwrap()
                    .last_offset()
            })
            .max()
            .unwrap();
        offset = last + 1;
    }
    out
}

/// Writes keys k0..k4 over and over in batches of two, then rolls.
fn overwritten_log(dir: &Path) -> (PartitionLog, BTreeMap<String, (i64, String)>) {
    let mut log = PartitionLog::open(dir, config()).unwrap();
    let mut latest = BTreeMap::new();
    for round in 0..12 {
        let (a, b) = (format!("k{}", round % 5), format!("k{}", (round + 2) % 5));
        let (va, vb) = (format!("v{round}a"), format!("v{round}b"));
        let offsets = produce(&mut log, &[(&a, Some(&va)), (&b, Some(&vb))]);
        latest.insert(a, (offsets[0], va));
        latest.insert(b, (offsets[1], vb));
    }
    assert!(log.segments().len() > 3, "small segments roll");
    (log, latest)
}

fn active_base(log: &PartitionLog) -> i64 {
    log.segments().last().unwrap().base_offset()
}

fn pass(log: &mut PartitionLog, now_ms: i64) -> Option<CleanStats> {
    let plan = log.plan_cleaning(now_ms, log.next_offset()).unwrap()?;
    let cleaned = plan.clean(now_ms).unwrap();
    let stats = cleaned.stats;
    assert!(log.install_cleaned(cleaned).unwrap());
    Some(stats)
}

/// What a reader of `before` still finds after compaction: offsets keep
/// their records, the latest record of every key is there, and below
/// `cleaned` (the active segment's base) each key appears once.
fn assert_compacted_from(before: &Contents, after: &Contents, cleaned: i64) {
    for (offset, record) in after {
        assert_eq!(before.get(offset), Some(record), "offset {offset} keeps its record");
    }
    let mut latest: BTreeMap<&String, i64> = BTreeMap::new();
    for (offset, (key, _)) in before {
        latest.insert(key, *offset);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (key, _) in after.range(..cleaned).map(|(_, r)| r) {
        assert!(seen.insert(key), "key {key} appears once in the cleaned part");
    }
    for (key, offset) in latest {
        let tombstone = before[&offset].1.is_none();
        assert!(
            tombstone || after.contains_key(&offset),
            "latest {key} at {offset} kept"
        );
    }
}

#[test]
fn keeps_the_latest_record_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, latest) = overwritten_log(dir.path());
    let before = contents(&log);
    let (end, start) = (log.next_offset(), log.log_start_offset());
    let stats = pass(&mut log, 2_000).expect("dirty segments are cleaned");
    assert!(stats.records_removed > 0 && stats.bytes_after < stats.bytes_before);
    let after = contents(&log);
    assert_compacted_from(&before, &after, active_base(&log));
    assert!(after.len() < before.len());
    assert_eq!(
        (log.next_offset(), log.log_start_offset()),
        (end, start),
        "offsets do not move"
    );
    // Only the active segment may hold older values of a key.
    let active_base = log.segments().last().unwrap().base_offset();
    for (key, (offset, value)) in &latest {
        assert_eq!(after.get(offset), Some(&(key.clone(), Some(value.clone()))));
    }
    let cleaned_keys: Vec<&String> = after.range(..active_base).map(|(_, (k, _))| k).collect();
    let unique: std::collections::BTreeSet<_> = cleaned_keys.iter().collect();
    assert_eq!(cleaned_keys.len(), unique.len());
    // A read inside a gap returns the next batch that is left.
    let gap = (start..end).find(|o| !after.contains_key(o)).unwrap();
    let read = log.read(gap, 1).unwrap();
    assert!(parse_header(&read).unwrap().last_offset() > gap);

    // Reopening finds the cleaned segments, and nothing dirty is left.
    drop(log);
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(contents(&log), after);
    assert!(log.plan_cleaning(2_000, log.next_offset()).unwrap().is_none());
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        delete_retention_ms: 3_600_000,
        ..config()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    produce(&mut log, &[("a", Some("1")), ("b", Some("1"))]);
    let tombstone = produce(&mut log, &[("a", None)])[0];
    for i in 0..8 {
        produce(&mut log, &[("c", Some(&i.to_string()))]);
    }
    let now = millis(SystemTime::now());
    pass(&mut log, now).unwrap();
    let after = contents(&log);
    assert_eq!(
        after.get(&tombstone),
        Some(&("a".to_string(), None)),
        "a recent tombstone stays"
    );
    assert!(
        !after.values().any(|(k, v)| k == "a" && v.is_some()),
        "the value it deleted goes"
    );

    // Past the retention (and with new dirty data), the tombstone goes too.
    produce(&mut log, &[("c", Some("x"))]);
    for _ in 0..4 {
        produce(&mut log, &[("d", Some("y"))]);
    }
    pass(&mut log, now + 3_600_001).unwrap();
    assert!(!contents(&log).values().any(|(k, _)| k == "a"));
}

#[test]
fn honours_lag_ratio_and_the_durable_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = overwritten_log(dir.path());
    // Records are stamped 1_000 and on: with a lag of an hour, none is old enough.
    log.set_config(LogConfig {
        min_compaction_lag_ms: 3_600_000,
        ..config()
    });
    assert!(log.plan_cleaning(1_000_000, log.next_offset()).unwrap().is_none());
    log.set_config(config());
    // Nothing is durable: nothing is cleanable.
    assert!(log.plan_cleaning(LATER, 0).unwrap().is_none());
    // Durable up to the second segment's end: only the first is cleaned.
    let second_end = log.segments()[2].base_offset();
    let plan = log.plan_cleaning(LATER, second_end).unwrap().unwrap();
    assert!(plan.sources.iter().all(|s| s.next_base <= second_end));
    assert_eq!(plan.sources.len(), 2);
    let cleaned = plan.clean(LATER).unwrap();
    assert!(log.install_cleaned(cleaned).unwrap());
    assert_eq!(log.cleaner_offset(), second_end);

    // After a pass, a little new data is below a high dirty ratio.
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 0.99,
        ..config()
    });
    pass(&mut log, LATER);
    for _ in 0..4 {
        produce(&mut log, &[("k9", Some("new"))]);
    }
    let end = log.next_offset();
    assert!(log.plan_cleaning(LATER, end).unwrap().is_none());
    // Unless a dirty segment has waited longer than max.compaction.lag.ms.
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 0.99,
        max_compaction_lag_ms: 1_000,
        ..config()
    });
    assert!(log.plan_cleaning(LATER, end).unwrap().is_some());
    assert!(log.plan_cleaning(1_500, end).unwrap().is_none(), "not yet overdue");
}

#[test]
fn a_pass_whose_segments_changed_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = overwritten_log(dir.path());
    let before = contents(&log);
    let plan = log.plan_cleaning(LATER, log.next_offset()).unwrap().unwrap();
    let cleaned = plan.clean(LATER).unwrap();
    // Retention deletes the first segment meanwhile.
    let second = log.segments()[1].base_offset();
    log.delete_records_before(second).unwrap();
    assert!(!log.install_cleaned(cleaned).unwrap());
    assert!(!dir.path().join(STAGING_DIR).exists());
    let after = contents(&log);
    assert_eq!(after, before.range(second..).map(|(o, r)| (*o, r.clone())).collect());
}

#[test]
fn compressed_batches_are_rewritten_with_their_codec() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config()).unwrap();
    let mut expected = BTreeMap::new();
    for round in 0..10 {
        let records: Vec<KeyedRecord> = (0..3)
            .map(|i| KeyedRecord::new(Some(&format!("k{}", (round + i) % 4)), Some(&format!("v{round}.{i}"))))
            .collect();
        let plain = build_keyed_batch(1_000, &records);
        let header = parse_header(&plain).unwrap();
        let section = compress(1, default_level(1), &plain[BATCH_HEADER_LEN..]).unwrap();
        let mut gzipped = rebuild_batch(&header, 1, header.max_timestamp, &section);
        let info = log.append(&mut gzipped).unwrap();
        for (i, record) in records.iter().enumerate() {
            let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
            expected.insert(key, info.base_offset + i as i64);
        }
    }
    let before = contents(&log);
    pass(&mut log, LATER).unwrap();
    let after = contents(&log);
    assert_compacted_from(&before, &after, active_base(&log));
    let bytes = log.read(log.log_start_offset(), 1 << 20).unwrap();
    for range in crate::batch::split_batches(&bytes).unwrap() {
        assert_eq!(parse_header(&bytes[range]).unwrap().compression(), 1, "still gzip");
    }
}

#[test]
fn keyless_records_are_dropped_and_control_batches_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config()).unwrap();
    let mut keyless = build_keyed_batch(
        1_000,
        &[
            KeyedRecord::new(None, Some("x")),
            KeyedRecord::new(Some("a"), Some("1")),
        ],
    );
    let keyless_base = log.append(&mut keyless).unwrap().base_offset;
    // A control batch (attributes bit 5) with a record of its own.
    let control = build_keyed_batch(1_000, &[KeyedRecord::new(Some("\0\0\0\0"), Some("\0\0\0\0\0\0"))]);
    let header = parse_header(&control).unwrap();
    let mut control = rebuild_batch(
        &header,
        1 << 5 | 1 << 4,
        header.max_timestamp,
        &control[BATCH_HEADER_LEN..],
    );
    let control_base = log.append(&mut control).unwrap().base_offset;
    for i in 0..8 {
        produce(&mut log, &[("b", Some(&i.to_string()))]);
    }
    pass(&mut log, LATER).unwrap();
    let after = contents(&log);
    assert!(!after.contains_key(&keyless_base), "the keyless record is gone");
    assert!(after.contains_key(&(keyless_base + 1)));
    assert!(after.contains_key(&control_base), "the control batch stays");
}

/// Cleans, then stops the install at `step`, as a crash would, and reopens.
fn crash_during_install(step: usize) -> (Contents, Contents, PartitionLog) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = overwritten_log(dir.path());
    let before = contents(&log);
    let plan = log.plan_cleaning(LATER, log.next_offset()).unwrap().unwrap();
    let cleaned = plan.clean(LATER).unwrap();
    assert!(!cleaned.swaps.is_empty());
    let path = dir.path().to_path_buf();
    if step >= 1 {
        write_marker(&path, &cleaned.swaps).unwrap();
    }
    if step >= 2 {
        // Part of the swap: the first staged segment's data file moved in.
        let base = cleaned.swaps[0].base();
        fs::rename(
            segment_path(&path.join(STAGING_DIR), base, LOG_SUFFIX),
            segment_path(&path, base, LOG_SUFFIX),
        )
        .unwrap();
    }
    drop(log);
    let reopened = PartitionLog::open(&path, config()).unwrap();
    assert!(!path.join(STAGING_DIR).exists(), "staging is gone after open");
    let after = contents(&reopened);
    std::mem::forget(dir);
    (before, after, reopened)
}

#[test]
fn a_crash_before_the_marker_leaves_the_old_segments() {
    let (before, after, _) = crash_during_install(0);
    assert_eq!(before, after);
}

#[test]
fn a_crash_after_the_marker_leaves_the_new_segments() {
    for step in [1, 2] {
        let (before, after, log) = crash_during_install(step);
        assert!(after.len() < before.len(), "step {step}: the swap was finished");
        assert_compacted_from(&before, &after, active_base(&log));
        // The segments follow each other: every offset reads.
        for offset in log.log_start_offset()..log.next_offset() {
            log.read(offset, 1).unwrap();
        }
        let _ = fs::remove_dir_all(log.dir());
    }
}

#[test]
fn marker_round_trips_and_garbage_is_refused() {
    let swaps = vec![
        Swap {
            replaces: vec![(0, 10), (5, 20)],
        },
        Swap {
            replaces: vec![(9, 30)],
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(STAGING_DIR)).unwrap();
    write_marker(dir.path(), &swaps).unwrap();
    let text = fs::read_to_string(dir.path().join(STAGING_DIR).join(SWAP_MARKER)).unwrap();
    assert_eq!(parse_marker(&text), Some(swaps));
    assert_eq!(parse_marker("1:2 x\n"), None);
    assert_eq!(parse_marker("\n"), None);
}

#[test]
fn groups_fit_the_segment_size() {
    let file = tempfile::tempfile().unwrap();
    let source = |base, next_base, size| Source {
        base,
        next_base,
        size,
        file: file.try_clone().unwrap(),
    };
    let sources = [
        source(0, 10, 100),
        source(10, 20, 100),
        source(20, 30, 300),
        source(30, 40, 50),
    ];
    let refs: Vec<&Source> = sources.iter().collect();
    let groups = group_by_size(&refs, 250);
    let bases: Vec<Vec<i64>> = groups.iter().map(|g| g.iter().map(|s| s.base).collect()).collect();
    assert_eq!(bases, [vec![0, 10], vec![20], vec![30]]);
    let far = [
        source(0, 10, 1),
        source(i64::from(u32::MAX), i64::from(u32::MAX) + 5, 1),
    ];
    let refs: Vec<&Source> = far.iter().collect();
    assert_eq!(group_by_size(&refs, 1 << 30).len(), 2, "relative offsets must fit u32");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Random writes of a few keys (tombstones among them) with cleaner
    /// passes in between: after every pass each offset still holds what was
    /// written there, every key's latest value is kept, and a reopened log
    /// reads the same.
    #[test]
    fn passes_keep_every_latest_value_at_its_offset(
        steps in proptest::collection::vec((0u8..6, proptest::bool::weighted(0.15), 1usize..4, proptest::bool::weighted(0.2)), 1..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { delete_retention_ms: 3_600_000, ..config() };
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let mut written = Contents::new();
        for (key, tombstone, repeat, clean) in steps {
            let key = format!("k{key}");
            let value = (!tombstone).then(|| format!("v{}", log.next_offset()));
            let records: Vec<(&str, Option<&str>)> = (0..repeat).map(|_| (key.as_str(), value.as_deref())).collect();
            for offset in produce(&mut log, &records) {
                written.insert(offset, (key.clone(), value.clone()));
            }
            if clean {
                let now = millis(SystemTime::now());
                pass(&mut log, now);
                let after = contents(&log);
                assert_compacted_from(&written, &after, active_base(&log));
            }
        }
        let before = contents(&log);
        drop(log);
        let log = PartitionLog::open(dir.path(), config).unwrap();
        proptest::prop_assert_eq!(contents(&log), before);
    }
}

#[test]
fn aborted_transactional_records_are_removed_and_never_win_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config()).unwrap();
    let committed = produce(&mut log, &[("k", Some("committed"))])[0];
    let mut aborted_batch = build_keyed_batch(1_000, &[KeyedRecord::new(Some("k"), Some("aborted"))]);
    crate::testing::set_transactional(&mut aborted_batch, 9, 0, 0);
    let aborted_at = log.append(&mut aborted_batch).unwrap().base_offset;
    let marker = crate::control::Marker {
        producer_id: 9,
        producer_epoch: 0,
        commit: false,
        coordinator_epoch: 0,
        timestamp: 1_000,
    };
    let marker_at = log
        .append(&mut crate::control::marker_batch(&marker))
        .unwrap()
        .base_offset;
    for round in 0..6 {
        produce(
            &mut log,
            &[(&format!("other{round}"), Some("x")), ("filler", Some("y"))],
        );
    }
    let aborted = vec![AbortedTxn {
        producer_id: 9,
        first_offset: aborted_at,
        last_offset: marker_at,
    }];
    let plan = log.plan_cleaning(2_000, log.next_offset()).unwrap().unwrap();
    let cleaned = plan.dropping_aborted(aborted).clean(2_000).unwrap();
    assert!(log.install_cleaned(cleaned).unwrap());
    let after = contents(&log);
    assert_eq!(
        after.get(&committed),
        Some(&("k".to_string(), Some("committed".to_string())))
    );
    assert!(!after.contains_key(&aborted_at), "the aborted record is gone");
    // The marker stays: read_committed consumers still need it.
    let read = log.read(marker_at, 1 << 10).unwrap();
    let header = parse_header(&read).unwrap();
    assert_eq!((header.base_offset, header.is_control()), (marker_at, true));
}
