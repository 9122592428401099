//! The faults of a run, drawn from the seed: crashes (with or without a
//! power loss), pauses, cut links, bad network weather, and now and then
//! a power loss of the whole cluster. Every fault but the last touches at
//! most a minority of the nodes at once, the promise under test.

use std::time::Duration;

use chronik_raft::NodeId;
use rand::Rng;

use crate::network::Conditions;

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Crash {
        node: NodeId,
        power_loss: bool,
        tear: bool,
    },
    Pause {
        node: NodeId,
    },
    /// Both directions between `node` and every other node; `refuses` as
    /// a rejecting firewall does, or drops silently.
    Isolate {
        node: NodeId,
        refuses: bool,
    },
    /// One direction only.
    CutLink {
        from: NodeId,
        to: NodeId,
        refuses: bool,
    },
    Weather(Conditions),
    /// Every node loses power at once. Acknowledged records were fsynced
    /// on a quorum, so even this loses none of them.
    PowerLossAll,
}

/// How a fault ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    Restart(NodeId),
    Resume(NodeId),
    Reconnect(NodeId),
    HealLink { from: NodeId, to: NodeId },
    CalmWeather,
    RestartAll,
}

/// Chooses the next fault; `faulty` are the nodes a fault holds now, and
/// `leaders` those leading a group of the data topic, the nodes whose
/// faults move leaderships (and so test the read gate and failover).
pub fn next_fault(
    rng: &mut impl Rng,
    nodes: &[NodeId],
    faulty: &[NodeId],
    leaders: &[NodeId],
) -> Option<(Fault, Recovery, Duration)> {
    let minority = (nodes.len() - 1) / 2;
    let healthy: Vec<NodeId> = nodes.iter().copied().filter(|n| !faulty.contains(n)).collect();
    let lasting = Duration::from_millis(rng.gen_range(100..3000));
    let roll = rng.gen_range(0..100);
    if roll < 3 && faulty.is_empty() {
        return Some((
            Fault::PowerLossAll,
            Recovery::RestartAll,
            Duration::from_millis(rng.gen_range(50..500)),
        ));
    }
    if roll < 15 {
        let drop = rng.gen_range(0.0..0.2);
        let duplicate = rng.gen_range(0.0..0.1);
        let max_delay = Duration::from_millis(rng.gen_range(2..80));
        let weather = Conditions {
            drop,
            duplicate,
            min_delay: Duration::from_millis(1),
            max_delay,
        };
        return Some((Fault::Weather(weather), Recovery::CalmWeather, lasting));
    }
    if faulty.len() >= minority || healthy.is_empty() {
        return None;
    }
    let healthy_leaders: Vec<NodeId> = healthy.iter().copied().filter(|n| leaders.contains(n)).collect();
    let node = if !healthy_leaders.is_empty() && rng.gen_bool(0.6) {
        healthy_leaders[rng.gen_range(0..healthy_leaders.len())]
    } else {
        healthy[rng.gen_range(0..healthy.len())]
    };
    Some(match roll {
        15..=44 => {
            let power_loss = rng.gen_bool(0.5);
            let tear = rng.gen_bool(0.5);
            let fault = Fault::Crash { node, power_loss, tear };
            (fault, Recovery::Restart(node), lasting)
        }
        45..=64 => (Fault::Pause { node }, Recovery::Resume(node), lasting),
        65..=84 => {
            let refuses = rng.gen_bool(0.5);
            (Fault::Isolate { node, refuses }, Recovery::Reconnect(node), lasting)
        }
        _ => {
            let others: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != node).collect();
            let other = others[rng.gen_range(0..others.len())];
            let (from, to) = if rng.gen_bool(0.5) {
                (node, other)
            } else {
                (other, node)
            };
            let refuses = rng.gen_bool(0.5);
            (
                Fault::CutLink { from, to, refuses },
                Recovery::HealLink { from, to },
                lasting,
            )
        }
    })
}
