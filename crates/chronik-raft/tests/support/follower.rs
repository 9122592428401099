//! A follower played by a test: it grants every vote and takes every entry.

use raft::eraftpb::{Message, MessageType};

/// The follower's answer to `sent`, from its addressee to its sender;
/// `None` for messages that need none.
pub fn answer(sent: &Message) -> Option<Message> {
    let kind = match sent.get_msg_type() {
        MessageType::MsgRequestPreVote => MessageType::MsgRequestPreVoteResponse,
        MessageType::MsgRequestVote => MessageType::MsgRequestVoteResponse,
        MessageType::MsgAppend => MessageType::MsgAppendResponse,
        MessageType::MsgHeartbeat => MessageType::MsgHeartbeatResponse,
        _ => return None,
    };
    let mut reply = Message::default();
    reply.set_msg_type(kind);
    reply.from = sent.to;
    reply.to = sent.from;
    reply.term = sent.term;
    reply.index = sent.index + sent.entries.len() as u64;
    // A read-index round's heartbeat is answered with its context.
    reply.context = sent.context.clone();
    Some(reply)
}
