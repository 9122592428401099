//! Feeds arbitrary frames to the request decoding path: API and version
//! checks, header and body decoding, record-batch validation of produce
//! requests, and what a topic's configs do to a valid batch (decompressing
//! it, recompressing it, stamping it). None of it may panic.
#![no_main]

use chronik_broker::codec::{Decoded, decode};
use chronik_broker::conform::conform;
use chronik_broker::handlers::produce::validate;
use chronik_state::topic_config::produce_policy;
use kafka_protocol::messages::RequestKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Decoded::Request(_, RequestKind::Produce(request)) = decode(bytes::Bytes::copy_from_slice(data)) {
        for topic in request.topic_data {
            for partition in topic.partition_data {
                let records = partition.records.unwrap_or_default();
                let Ok(header) = validate(&records, 1 << 20) else {
                    continue;
                };
                for codec in ["zstd", "uncompressed"] {
                    let configs = [
                        ("compression.type".to_string(), codec.to_string()),
                        ("message.timestamp.type".to_string(), "LogAppendTime".to_string()),
                    ]
                    .into();
                    let _ = conform(records.clone(), &header, &produce_policy(&configs), 0, &mut (1 << 20));
                }
            }
        }
    }
});
