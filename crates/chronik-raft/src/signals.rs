//! The loop's own messages between nodes, beside raft-rs's: node liveness
//! and the sleep and wake of idle groups (see `core/hibernate.rs`).
//!
//! They travel as Raft messages of the types raft-rs only ever makes for
//! itself (a tick's `MsgBeat`, a campaign's `MsgHup`, a report's
//! `MsgUnreachable`), which it never sends to a peer, so they cannot be taken
//! for a peer's Raft traffic. None is ever stepped into raft-rs: a peer that
//! sends one of these types reaches only the code here.

use raft::eraftpb::{Message, MessageType};

use crate::NodeId;

/// What one of these messages says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The sender is alive. Sent to every peer each heartbeat interval,
    /// one per node pair whatever the number of groups.
    Beat,
    /// From a group's leader: nothing changed for a while, every replica
    /// holds the whole log, committed up to `commit`; stop ticking.
    Sleep { commit: u64 },
    /// To a group's leader from a replica that woke for a reason of its
    /// own: wake too, so the replica hears heartbeats again.
    Wake,
    /// Another type raft-rs only makes for itself, which no peer of ours
    /// sends: dropped.
    Stray,
}

const BEAT: MessageType = MessageType::MsgBeat;
const SLEEP: MessageType = MessageType::MsgHup;
const WAKE: MessageType = MessageType::MsgUnreachable;

/// The signal `message` carries, if it is one.
pub(crate) fn read(message: &Message) -> Option<Signal> {
    match message.get_msg_type() {
        BEAT => Some(Signal::Beat),
        SLEEP => Some(Signal::Sleep { commit: message.commit }),
        WAKE => Some(Signal::Wake),
        MessageType::MsgSnapStatus | MessageType::MsgCheckQuorum => Some(Signal::Stray),
        _ => None,
    }
}

/// `signal` from `from` to `to`, in `term` of the group it is sent for.
pub(crate) fn message(signal: Signal, from: NodeId, to: NodeId, term: u64) -> Message {
    let mut message = Message {
        from,
        to,
        term,
        ..Default::default()
    };
    match signal {
        Signal::Beat => message.set_msg_type(BEAT),
        Signal::Sleep { commit } => {
            message.set_msg_type(SLEEP);
            message.commit = commit;
        }
        Signal::Wake => message.set_msg_type(WAKE),
        Signal::Stray => message.set_msg_type(MessageType::MsgCheckQuorum),
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_read_back_as_sent_and_raft_traffic_is_not_one() {
        for signal in [Signal::Beat, Signal::Sleep { commit: 42 }, Signal::Wake] {
            let sent = message(signal, 1, 2, 7);
            assert_eq!(read(&sent), Some(signal));
            assert_eq!((sent.from, sent.to, sent.term), (1, 2, 7));
        }
        for kind in [
            MessageType::MsgAppend,
            MessageType::MsgHeartbeat,
            MessageType::MsgRequestPreVote,
            MessageType::MsgTimeoutNow,
        ] {
            let mut raft = Message::default();
            raft.set_msg_type(kind);
            assert_eq!(read(&raft), None);
        }
    }
}
