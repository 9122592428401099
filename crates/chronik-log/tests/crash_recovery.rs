//! Crash recovery: damage the active segment at an arbitrary byte, reopen,
//! and check the log holds exactly a prefix of what was appended.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chronik_log::testing::build_batch;
use chronik_log::{LogConfig, PartitionLog};
use proptest::prelude::*;

/// Bytes 12..16 of a batch: the partition leader epoch, which the CRC does
/// not cover, so damage there cannot be detected (same as in Kafka).
const EPOCH_FIELD: std::ops::Range<u64> = 12..16;

struct Appended {
    base: i64,
    last: i64,
    /// Position in its segment file.
    position: u64,
    bytes: Vec<u8>,
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 128,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

/// (records, payload length) per batch.
fn batch_shapes() -> impl Strategy<Value = Vec<(u32, usize)>> {
    prop::collection::vec((1u32..6, 0usize..120), 1..25)
}

fn write_log(dir: &Path, segment_bytes: u64, shapes: &[(u32, usize)]) -> Vec<Appended> {
    let mut log = PartitionLog::open(dir, config(segment_bytes)).unwrap();
    let appended = shapes
        .iter()
        .enumerate()
        .map(|(i, &(records, payload))| {
            let mut batch = build_batch(records, 1_000 + i as i64, payload);
            let info = log.append(&mut batch).unwrap();
            Appended {
                base: info.base_offset,
                last: info.last_offset,
                position: info.position,
                bytes: batch,
            }
        })
        .collect();
    log.flush().unwrap();
    appended
}

/// The active segment: the `.log` file with the highest base offset.
fn active_segment(dir: &Path) -> (i64, PathBuf) {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| {
            let base = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            (base, p)
        })
        .max()
        .unwrap()
}

/// Reopens and checks the log holds exactly `kept` and then accepts appends.
fn assert_prefix(dir: &Path, segment_bytes: u64, active_base: i64, kept: &[&Appended]) -> Result<(), TestCaseError> {
    let mut log = PartitionLog::open(dir, config(segment_bytes)).unwrap();
    let end = kept.last().map_or(0, |b| b.last + 1).max(active_base);
    prop_assert_eq!(log.next_offset(), end);
    for batch in kept {
        for offset in [batch.base, batch.last] {
            prop_assert_eq!(log.read(offset, 1).unwrap(), batch.bytes.as_slice());
        }
    }
    let all: Vec<u8> = kept.iter().flat_map(|b| b.bytes.clone()).collect();
    prop_assert_eq!(log.read(0, usize::MAX).unwrap(), all);
    prop_assert!(log.read(end, usize::MAX).unwrap().is_empty());

    let mut batch = build_batch(2, 5_000, 10);
    let info = log.append(&mut batch).unwrap();
    prop_assert_eq!(info.base_offset, end);
    prop_assert_eq!(log.read(end, 1).unwrap(), batch.as_slice());
    drop(log);

    let log = PartitionLog::open(dir, config(segment_bytes)).unwrap();
    prop_assert_eq!(log.next_offset(), end + 2);
    prop_assert_eq!(log.read(end, 1).unwrap(), batch.as_slice());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn torn_tail_is_cut_at_the_last_whole_batch(
        shapes in batch_shapes(),
        segment_bytes in 200u64..1_500,
        cut in 0.0f64..=1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let appended = write_log(dir.path(), segment_bytes, &shapes);
        let (active_base, path) = active_segment(dir.path());
        let len = fs::metadata(&path).unwrap().len();
        let cut = (len as f64 * cut) as u64;
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();

        let kept: Vec<&Appended> = appended
            .iter()
            .filter(|b| b.base < active_base || b.position + b.bytes.len() as u64 <= cut)
            .collect();
        assert_prefix(dir.path(), segment_bytes, active_base, &kept)?;
    }

    #[test]
    fn corrupt_byte_drops_its_batch_and_everything_after(
        shapes in batch_shapes(),
        segment_bytes in 200u64..1_500,
        at in 0.0f64..1.0,
        flip in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut appended = write_log(dir.path(), segment_bytes, &shapes);
        let (active_base, path) = active_segment(dir.path());
        let len = fs::metadata(&path).unwrap().len();
        let at = ((len as f64 * at) as u64).min(len - 1);
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ flip], at).unwrap();

        let hit = appended
            .iter()
            .position(|b| b.base >= active_base && b.position + b.bytes.len() as u64 > at)
            .unwrap();
        let within = at - appended[hit].position;
        let kept_count = if EPOCH_FIELD.contains(&within) {
            // Undetectable: the batch is kept, as damaged.
            appended[hit].bytes[within as usize] ^= flip;
            appended.len()
        } else {
            hit
        };
        let kept: Vec<&Appended> = appended[..kept_count].iter().collect();
        assert_prefix(dir.path(), segment_bytes, active_base, &kept)?;
    }

    #[test]
    fn open_never_panics_on_garbage(
        log_bytes in prop::collection::vec(any::<u8>(), 0..600),
        index_bytes in prop::collection::vec(any::<u8>(), 0..64),
        valid_prefix in 0usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Valid batches followed by garbage, in a closed and an active segment.
        let mut data: Vec<u8> = (0..valid_prefix).flat_map(|_| build_batch(1, 0, 3)).collect();
        for (i, chunk) in data.chunks_mut(build_batch(1, 0, 3).len()).enumerate() {
            chronik_log::set_base_offset(chunk, i as i64);
        }
        data.extend_from_slice(&log_bytes);
        for base in ["00000000000000000000", "00000000000000000010"] {
            fs::write(dir.path().join(format!("{base}.log")), &data).unwrap();
            fs::write(dir.path().join(format!("{base}.index")), &index_bytes).unwrap();
            fs::write(dir.path().join(format!("{base}.timeindex")), &index_bytes).unwrap();
        }
        let log = PartitionLog::open(dir.path(), config(1_000)).unwrap();
        prop_assert!(log.next_offset() >= 10);
        for offset in log.log_start_offset()..=log.next_offset() {
            // Trusted garbage indexes may make reads fail, but never panic.
            let _ = log.read(offset, 100);
        }
        let _ = log.batch_at_timestamp(0);
    }
}
