//! The consumer groups this node coordinates, in memory: each `Group`
//! loaded from its persisted membership the first time it is asked for,
//! and let go when the node stops coordinating it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;

use super::membership::{Group, GroupSnapshot};
use chronik_state::consumer_offsets::OffsetsView;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a group is loaded from the first time it is asked for.
pub struct GroupLoader<'a> {
    pub offsets: &'a OffsetsView,
    pub initial_rebalance_delay_ms: i64,
}

#[derive(Default)]
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
}

impl GroupCoordinator {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on `group`, loading it from its persisted membership (or
    /// starting it empty) the first time this coordinator sees it.
    pub fn with_group<R>(&self, loader: &GroupLoader<'_>, group: &str, f: impl FnOnce(&mut Group) -> R) -> R {
        let mut groups = self.lock();
        let entry = groups.entry(group.to_string()).or_insert_with(|| {
            let delay = loader.initial_rebalance_delay_ms;
            let snapshot = loader
                .offsets
                .group_metadata(group)
                .and_then(|bytes| serde_json::from_slice::<GroupSnapshot>(&bytes).ok());
            match snapshot {
                Some(snapshot) => Group::restore(group, snapshot, delay, now_ms()),
                None => Group::new(group, delay),
            }
        });
        f(entry)
    }

    /// Runs `f` on `group` only if it is in memory.
    pub fn existing<R>(&self, group: &str, f: impl FnOnce(&Group) -> R) -> Option<R> {
        self.lock().get(group).map(f)
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn forget(&self, group: &str) {
        self.lock().remove(group);
    }

    /// Advances timers, and lets go of groups this node no longer coordinates.
    /// Returns the groups whose membership changed and must be saved.
    pub fn tick(&self, coordinates: impl Fn(&str) -> bool) -> Vec<(String, GroupSnapshot)> {
        let now = now_ms();
        let mut groups = self.lock();
        let mut changed = Vec::new();
        groups.retain(|id, group| {
            if !coordinates(id) {
                group.shut_down(ResponseError::NotCoordinator.code());
                return false;
            }
            group.tick(now);
            if let Some(snapshot) = group.take_unsaved_snapshot() {
                changed.push((id.clone(), snapshot));
            }
            true
        });
        changed
    }
}
