//! The record-batch codecs, by their attribute id (0 none, 1 gzip, 2 snappy,
//! 3 lz4, 4 zstd): for a topic whose `compression.type` makes the broker
//! recompress what producers send, and for the cleaner, which rewrites
//! batches with the codec they had. Decompression is bounded: a small batch
//! must not expand into more memory than its caller allows.

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Snappy};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("the records do not decompress: {0}")]
    Corrupt(String),
    #[error("the records decompress to more than {0} bytes")]
    TooLarge(usize),
    #[error("unknown compression codec {0}")]
    Unknown(u8),
}

/// xerial snappy-java's stream header, which Kafka's Java clients write.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// The records section of a batch compressed with codec `id`, decompressed,
/// if it holds at most `limit` bytes.
pub fn decompress(id: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let corrupt = |e: std::io::Error| CodecError::Corrupt(e.to_string());
    match id {
        0 => Ok(data.to_vec()),
        // Java writes and reads gzip streams of several members.
        1 => read_bounded(flate2::read::MultiGzDecoder::new(data), limit),
        2 => snappy(data, limit),
        3 => read_bounded(lz4::Decoder::new(data).map_err(corrupt)?, limit),
        4 => read_bounded(zstd::stream::read::Decoder::new(data).map_err(corrupt)?, limit),
        other => Err(CodecError::Unknown(other)),
    }
}

fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(CodecError::TooLarge(limit));
    }
    Ok(out)
}

/// Raw snappy, or xerial's framing of it (length-prefixed raw blocks).
fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), CodecError> {
        let corrupt = |e: snap::Error| CodecError::Corrupt(e.to_string());
        let len = snap::raw::decompress_len(raw).map_err(corrupt)?;
        if out.len() + len > limit {
            return Err(CodecError::TooLarge(limit));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(corrupt)?;
        Ok(())
    };
    if !data.starts_with(XERIAL_MAGIC) {
        block(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER_LEN..).unwrap_or_default();
    while !rest.is_empty() {
        let truncated = || CodecError::Corrupt("truncated snappy block".into());
        let (prefix, tail) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
        let len = u32::from_be_bytes(*prefix) as usize;
        let raw = tail.get(..len).ok_or_else(truncated)?;
        block(raw, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Kafka's default level of codec `id` (gzip's own default, lz4 9, zstd 3).
pub fn default_level(id: u8) -> i32 {
    match id {
        3 => 9,
        4 => 3,
        _ => -1,
    }
}

/// `data` compressed with codec `id` at `level` (where the codec has levels;
/// negative means the codec's default), in the framing Kafka's clients read.
pub fn compress(id: u8, level: i32, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let failed = |e: std::io::Error| CodecError::Corrupt(e.to_string());
    match id {
        0 => Ok(data.to_vec()),
        1 => {
            let level = if level < 0 {
                flate2::Compression::default()
            } else {
                flate2::Compression::new(level as u32)
            };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        2 => {
            let mut out = BytesMut::new();
            Snappy::compress(&mut out, |buf: &mut BytesMut| {
                buf.put_slice(data);
                Ok(())
            })
            .map_err(|e| CodecError::Corrupt(e.to_string()))?;
            Ok(out.to_vec())
        }
        3 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(level.max(1) as u32)
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::new())
                .map_err(failed)?;
            encoder.write_all(data).map_err(failed)?;
            let (out, result) = encoder.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        4 => zstd::bulk::compress(data, level).map_err(failed),
        other => Err(CodecError::Unknown(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
        for codec in 0..=4 {
            let compressed = compress(codec, 3, &data).unwrap();
            assert_eq!(decompress(codec, &compressed, data.len()).unwrap(), data, "{codec:?}");
            assert_eq!(
                decompress(
                    codec,
                    &compress(codec, default_level(codec), &data).unwrap(),
                    data.len()
                )
                .unwrap(),
                data,
                "{codec:?} at its default level"
            );
            if codec != 0 {
                assert!(compressed.len() < data.len() / 2, "{codec:?}");
                assert_eq!(
                    decompress(codec, &compressed, data.len() - 1),
                    Err(CodecError::TooLarge(data.len() - 1)),
                    "{codec:?} stops at the limit"
                );
            }
        }
        assert_eq!(
            decompress(2, &snap::raw::Encoder::new().compress_vec(&data).unwrap(), data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for id in 1..=4 {
            for garbage in [
                &b""[..],
                b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff",
                b"\x00\x01\x02",
            ] {
                let _ = decompress(id, garbage, 1 << 20);
            }
        }
        assert_eq!(decompress(7, b"", 10), Err(CodecError::Unknown(7)));
    }
}
