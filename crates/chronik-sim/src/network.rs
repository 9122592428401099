//! The simulated network between the nodes: every packet gets a delivery
//! time from the seed, and may be dropped or duplicated; links can be cut
//! one way or both, and healed. A cut link drops packets silently, or
//! refuses them as a rejecting firewall does: the sender then learns of a
//! refused connection from a node that is alive.

use std::collections::BTreeMap;
use std::time::Duration;

use chronik_raft::{GroupId, NodeId, SnapshotDone};
use raft::eraftpb::Message;
use rand::Rng;

pub enum Payload {
    Messages(Vec<(GroupId, Message)>),
    /// A snapshot: the message, plus the outcome the leader waits for.
    Snapshot {
        group: GroupId,
        message: Message,
        done: SnapshotDone,
    },
}

pub struct Packet {
    pub from: NodeId,
    pub to: NodeId,
    pub payload: Payload,
}

/// How the network misbehaves at the moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    pub drop: f64,
    pub duplicate: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Conditions {
    pub const CALM: Conditions = Conditions {
        drop: 0.0,
        duplicate: 0.0,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(3),
    };
}

pub struct Network {
    /// In flight, by delivery time, then by the order sent.
    in_flight: BTreeMap<(Duration, u64), Packet>,
    sent: u64,
    /// Directed links that carry nothing, and whether each refuses.
    cut: BTreeMap<(NodeId, NodeId), Refuses>,
    pub conditions: Conditions,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            in_flight: BTreeMap::new(),
            sent: 0,
            cut: BTreeMap::new(),
            conditions: Conditions::CALM,
        }
    }
}

/// Whether a cut link refuses connections rather than dropping silently.
pub type Refuses = bool;

impl Network {
    /// Puts `packet` in flight; false when its link refuses it, which its
    /// sender's transport would see as a refused connection.
    pub fn send(&mut self, now: Duration, rng: &mut impl Rng, packet: Packet) -> bool {
        if let Some(refuses) = self.cut.get(&(packet.from, packet.to)).copied() {
            lose(packet);
            return !refuses;
        }
        if rng.gen_bool(self.conditions.drop) {
            lose(packet);
            return true;
        }
        if let Payload::Messages(messages) = &packet.payload
            && rng.gen_bool(self.conditions.duplicate)
        {
            let copy = Packet {
                from: packet.from,
                to: packet.to,
                payload: Payload::Messages(messages.clone()),
            };
            self.schedule(now, rng, copy);
        }
        self.schedule(now, rng, packet);
        true
    }

    fn schedule(&mut self, now: Duration, rng: &mut impl Rng, packet: Packet) {
        let delay = rng.gen_range(self.conditions.min_delay..=self.conditions.max_delay);
        self.sent += 1;
        self.in_flight.insert((now + delay, self.sent), packet);
    }

    /// The packets due by `now`, in delivery order. Packets on links cut
    /// while they were in flight are lost.
    pub fn due(&mut self, now: Duration) -> Vec<Packet> {
        let later = self.in_flight.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut self.in_flight, later);
        let mut delivered = Vec::with_capacity(due.len());
        for (_, packet) in due {
            if self.is_cut(packet.from, packet.to) {
                lose(packet);
            } else {
                delivered.push(packet);
            }
        }
        delivered
    }

    /// Holds `packet` back until `until`: its receiver is paused.
    pub fn hold(&mut self, until: Duration, packet: Packet) {
        self.sent += 1;
        self.in_flight.insert((until, self.sent), packet);
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains_key(&(from, to))
    }

    pub fn cut(&mut self, from: NodeId, to: NodeId, refuses: Refuses) {
        self.cut.insert((from, to), refuses);
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.conditions = Conditions::CALM;
    }

    pub fn heal_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.remove(&(from, to));
    }
}

/// A lost snapshot is reported as failed, as a broken stream would be.
pub fn lose(packet: Packet) {
    if let Payload::Snapshot { done, .. } = packet.payload {
        done.finish(false);
    }
}
