//! A raw Kafka protocol connection, for requests no client library sends as is.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Connection {
    pub stream: TcpStream,
    pub correlation: i32,
}

impl Connection {
    pub fn open(addr: &str) -> Connection {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Connection { stream, correlation: 0 }
    }

    pub fn send_raw(&mut self, frame: &[u8]) {
        let mut out = Vec::with_capacity(frame.len() + 4);
        out.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        out.extend_from_slice(frame);
        self.stream.write_all(&out).unwrap();
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub fn receive(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    pub fn header(&mut self, key: ApiKey, version: i16) -> BytesMut {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("protocol-test")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        buf
    }

    /// Sends a request and returns the response body after its header.
    pub fn call<R: Encodable>(&mut self, key: ApiKey, version: i16, request: &R) -> Bytes {
        let mut frame = self.header(key, version);
        request.encode(&mut frame, version).unwrap();
        self.send_raw(&frame);
        let mut response = self.receive().expect("a response");
        let header_version = if key == ApiKey::ApiVersions {
            0
        } else {
            key.response_header_version(version)
        };
        let header = ResponseHeader::decode(&mut response, header_version).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        response
    }
}
