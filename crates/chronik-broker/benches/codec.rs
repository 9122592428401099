//! The wire codec on the hot paths: decoding a produce request (record
//! batches stay raw bytes) and encoding a fetch response.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use chronik_broker::codec::{self, Decoded};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, RequestHeader, ResponseKind, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

fn records(batches: usize) -> Bytes {
    let mut out = Vec::new();
    for _ in 0..batches {
        out.extend(chronik_log::testing::build_batch(16, 1_700_000_000_000, 1024));
    }
    Bytes::from(out)
}

fn produce_frame() -> Bytes {
    let mut frame = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_client_id(Some(StrBytes::from_static_str("bench")))
        .encode(&mut frame, ApiKey::Produce.request_header_version(9))
        .unwrap();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("bench")))
                .with_partition_data(vec![PartitionProduceData::default().with_records(Some(records(1)))]),
        ])
        .encode(&mut frame, 9)
        .unwrap();
    frame.freeze()
}

fn decode_produce(c: &mut Criterion) {
    let frame = produce_frame();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode produce v9 (16x1KiB)", |b| {
        b.iter(|| match codec::decode(black_box(frame.clone())) {
            Decoded::Request(_, request) => black_box(request),
            Decoded::Rejected(_) => panic!("a valid request was rejected"),
        })
    });
    group.finish();
}

fn encode_fetch(c: &mut Criterion) {
    let data = records(64);
    let response = FetchResponse::default().with_responses(vec![
        FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("bench")))
            .with_partitions(vec![PartitionData::default().with_records(Some(data.clone()))]),
    ]);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("encode fetch v12 (1 MiB of batches)", |b| {
        b.iter(|| codec::encode(1, ApiKey::Fetch, 12, ResponseKind::Fetch(black_box(response.clone()))))
    });
    group.finish();
}

criterion_group!(benches, decode_produce, encode_fetch);
criterion_main!(benches);
