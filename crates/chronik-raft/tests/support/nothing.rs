//! A state machine that applies nothing; everything is durable at once.

use chronik_raft::{Effect, GroupId, StateMachine};

pub struct Nothing;

impl StateMachine for Nothing {
    type Output = ();

    fn open_group(&mut self, _group: GroupId) -> Option<u64> {
        Some(0)
    }

    fn assigned_groups(&self) -> Vec<Effect> {
        Vec::new()
    }

    fn apply(&mut self, _group: GroupId, _index: u64, _term: u64, _data: &[u8], _effects: &mut Vec<Effect>) {}

    fn checkpoint(&mut self) -> Vec<(GroupId, u64)> {
        Vec::new()
    }
}
