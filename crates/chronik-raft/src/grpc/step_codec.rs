//! The sending side of the Raft message stream, encoded straight into the
//! gRPC request buffer. Each Raft message is written into the buffer as it
//! is encoded, where encoding it to bytes first and then copying those into
//! the buffer went over every entry twice (a leader's largest copy). The
//! bytes on the wire are the same `StepBatchRequest` the receiver decodes.

use bytes::BufMut;
use protobuf::Message as _;
use raft::eraftpb::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::MAX_MESSAGE_BYTES;
use super::peer_auth::PeerChannel;
use super::proto::{GroupMessage, StepBatchRequest, StepStreamClosed};
use crate::GroupId;

/// The key of `GroupMessage.message` (field 2) and of
/// `StepBatchRequest.messages` (field 4), both length-delimited (wire type 2).
const MESSAGE_KEY: u8 = (2 << 3) | 2;
const MESSAGES_KEY: u8 = (4 << 3) | 2;

/// One Raft message to send, with its encoded length (computing it also
/// caches the sizes its encoding uses).
pub(super) struct Outgoing {
    group: GroupId,
    message: Message,
    len: usize,
}

impl Outgoing {
    pub(super) fn new(group: GroupId, message: Message) -> Outgoing {
        let len = message.compute_size() as usize;
        Outgoing { group, message, len }
    }

    /// The bytes of the encoded Raft message.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The `GroupMessage` without its Raft message: the group alone.
    fn head(&self) -> GroupMessage {
        GroupMessage {
            group: self.group,
            message: Default::default(),
        }
    }

    fn encoded_len(&self) -> usize {
        prost::Message::encoded_len(&self.head()) + 1 + prost::length_delimiter_len(self.len) + self.len
    }
}

/// One item of the stream: a `StepBatchRequest` whose messages are encoded
/// when the item is written out.
pub(super) struct OutgoingBatch {
    /// The request's other fields; its `messages` stay empty.
    pub head: StepBatchRequest,
    pub messages: Vec<Outgoing>,
}

impl OutgoingBatch {
    fn encode(&self, buf: &mut impl BufMut) -> Result<(), String> {
        debug_assert!(self.head.messages.is_empty(), "messages go in `messages`");
        prost::Message::encode_raw(&self.head, buf);
        for outgoing in &self.messages {
            buf.put_u8(MESSAGES_KEY);
            length_delimiter(outgoing.encoded_len(), buf)?;
            prost::Message::encode_raw(&outgoing.head(), buf);
            buf.put_u8(MESSAGE_KEY);
            length_delimiter(outgoing.len, buf)?;
            let mut writer = buf.writer();
            let mut stream = protobuf::CodedOutputStream::new(&mut writer);
            outgoing
                .message
                .write_to_with_cached_sizes(&mut stream)
                .and_then(|()| stream.flush())
                .map_err(|e| format!("cannot encode a Raft message: {e}"))?;
        }
        Ok(())
    }
}

fn length_delimiter(len: usize, buf: &mut impl BufMut) -> Result<(), String> {
    prost::encode_length_delimiter(len, buf).map_err(|e| e.to_string())
}

/// Opens the message stream on `channel`, sending `items`.
pub(super) async fn step_stream(
    channel: PeerChannel,
    items: impl tokio_stream::Stream<Item = OutgoingBatch> + Send + 'static,
) -> Result<Response<StepStreamClosed>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("the connection is not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/chronik.raft.RaftTransport/StepStream");
    grpc.client_streaming(Request::new(items), path, StepCodec).await
}

/// Encodes `OutgoingBatch`es, decodes the stream's one answer.
#[derive(Default)]
struct StepCodec;

impl Codec for StepCodec {
    type Encode = OutgoingBatch;
    type Decode = StepStreamClosed;
    type Encoder = StepEncoder;
    type Decoder = <ProstCodec<StepBatchRequest, StepStreamClosed> as Codec>::Decoder;

    fn encoder(&mut self) -> StepEncoder {
        StepEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<StepBatchRequest, StepStreamClosed>::default().decoder()
    }
}

struct StepEncoder;

impl Encoder for StepEncoder {
    type Item = OutgoingBatch;
    type Error = Status;

    fn encode(&mut self, item: OutgoingBatch, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf).map_err(Status::internal)
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{Entry, MessageType};

    use super::*;

    fn append(group: GroupId, data: &[u8]) -> (GroupId, Message) {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.to = 2;
        message.term = 7;
        let entry = Entry {
            index: 5,
            data: data.to_vec().into(),
            ..Default::default()
        };
        message.set_entries(vec![entry].into());
        (group, message)
    }

    #[test]
    fn a_batch_encoded_into_the_buffer_decodes_as_the_request_it_stands_for() {
        let messages = vec![append(3, &[9; 40_000]), append(0, b""), append(u64::MAX, b"x")];
        let batch = OutgoingBatch {
            head: StepBatchRequest {
                cluster_id: "c".into(),
                from: 1,
                to: 2,
                messages: Vec::new(),
            },
            messages: messages.iter().cloned().map(|(g, m)| Outgoing::new(g, m)).collect(),
        };
        let mut buf = Vec::new();
        batch.encode(&mut buf).unwrap();
        let decoded = <StepBatchRequest as prost::Message>::decode(&buf[..]).unwrap();
        let expected = StepBatchRequest {
            cluster_id: "c".into(),
            from: 1,
            to: 2,
            messages: messages
                .into_iter()
                .map(|(group, message)| GroupMessage {
                    group,
                    message: message.write_to_bytes().unwrap().into(),
                })
                .collect(),
        };
        assert_eq!(decoded, expected);
        assert_eq!(buf, prost::Message::encode_to_vec(&expected));
    }
}
