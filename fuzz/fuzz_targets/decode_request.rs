//! Feeds arbitrary frames to the request decoding path: API and version
//! checks, header and body decoding, and record-batch validation of produce
//! requests. None of it may panic.
#![no_main]

use chronik_broker::codec::{Decoded, decode};
use chronik_broker::handlers::produce::validate;
use kafka_protocol::messages::RequestKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Decoded::Request(_, RequestKind::Produce(request)) = decode(bytes::Bytes::copy_from_slice(data)) {
        for topic in request.topic_data {
            for partition in topic.partition_data {
                let _ = validate(&partition.records.unwrap_or_default(), 1 << 20);
            }
        }
    }
});
