//! Feeds arbitrary records sections, under each compression codec, through
//! what a topic's configs do to a produced batch: decompressing it (bounded),
//! walking its records for the keys a compacted topic requires,
//! recompressing it to the topic's codec, stamping it. The batch around them
//! is valid (length and CRC), so every input reaches the codecs. None of it
//! may panic, and a batch it accepts must still be a valid batch.
#![no_main]

use chronik_broker::conform::conform;
use chronik_log::{BATCH_HEADER_LEN, rebuild_batch, validate_batch};
use chronik_state::topic_config::produce_policy;
use libfuzzer_sys::fuzz_target;

const CODECS: [&str; 5] = ["uncompressed", "gzip", "snappy", "lz4", "zstd"];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, records)) = data.split_first() else {
        return;
    };
    let template = chronik_log::testing::build_batch(1, 1_000, 0);
    let header = validate_batch(&template).expect("a valid template");
    // The sender's codec from the low bits, the topic's from the next ones.
    let attributes = (header.attributes & !0b111) | i16::from(choice % 5);
    let batch = rebuild_batch(&header, attributes, header.max_timestamp, records);
    let header = validate_batch(&batch).expect("rebuilt batches are valid");
    let configs = [
        ("compression.type".to_string(), CODECS[usize::from(choice / 5 % 5)].to_string()),
        (
            "message.timestamp.type".to_string(),
            if choice >= 128 { "LogAppendTime" } else { "CreateTime" }.to_string(),
        ),
        (
            "cleanup.policy".to_string(),
            if choice / 25 % 2 == 1 { "compact" } else { "delete" }.to_string(),
        ),
    ]
    .into();
    let mut budget = 1 << 20;
    if let Ok(conformed) = conform(batch.into(), &header, &produce_policy(&configs), 1_000, &mut budget) {
        let stored = validate_batch(&conformed.batch).expect("a conformed batch is valid");
        assert_eq!(stored.record_count, header.record_count);
        assert!(conformed.batch.len() >= BATCH_HEADER_LEN);
    }
});
