//! The consumer groups this node coordinates, in memory: each classic
//! `Group` and each `ConsumerGroup` (KIP-848) loaded from its persisted
//! membership the first time it is asked for, and let go when the node stops
//! coordinating it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;

use super::consumer_group::{self, ConsumerGroup};
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
    pub consumer_session_timeout_ms: i64,
}

/// A group whose membership changed and must be saved.
pub enum Unsaved {
    Classic(GroupSnapshot),
    /// A consumer-protocol group; its snapshot is taken when it is queued
    /// for writing (`coordinator::update_consumer_group`).
    Consumer,
}

#[derive(Default)]
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    consumer_groups: Mutex<HashMap<String, ConsumerGroup>>,
    /// Held from taking a consumer-protocol group's snapshot until its write
    /// is queued, so writes queue in the order the snapshots were taken and
    /// the last one written is the newest.
    pub consumer_save_order: tokio::sync::Mutex<()>,
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

    fn lock_consumer(&self) -> MutexGuard<'_, HashMap<String, ConsumerGroup>> {
        self.consumer_groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on consumer-protocol group `group`, loading it from its
    /// persisted state (or starting it empty) the first time it is asked for.
    pub fn with_consumer_group<R>(
        &self,
        loader: &GroupLoader<'_>,
        group: &str,
        f: impl FnOnce(&mut ConsumerGroup) -> R,
    ) -> R {
        let mut groups = self.lock_consumer();
        let entry = groups.entry(group.to_string()).or_insert_with(|| {
            load_consumer_group(loader, group)
                .unwrap_or_else(|| ConsumerGroup::new(group, loader.consumer_session_timeout_ms))
        });
        f(entry)
    }

    /// Runs `f` on `group` if it is a consumer-protocol group, in memory or
    /// persisted.
    pub fn consumer_group<R>(
        &self,
        loader: &GroupLoader<'_>,
        group: &str,
        f: impl FnOnce(&ConsumerGroup) -> R,
    ) -> Option<R> {
        let mut groups = self.lock_consumer();
        if !groups.contains_key(group) {
            let loaded = load_consumer_group(loader, group)?;
            groups.insert(group.to_string(), loaded);
        }
        groups.get(group).map(f)
    }

    pub fn forget_consumer_group(&self, group: &str) {
        self.lock_consumer().remove(group);
    }

    pub fn consumer_group_ids(&self) -> Vec<String> {
        self.lock_consumer().keys().cloned().collect()
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
        self.lock_consumer().remove(group);
    }

    /// Advances timers, and lets go of groups this node no longer coordinates.
    /// Returns the groups whose membership changed and must be saved.
    pub fn tick(&self, coordinates: impl Fn(&str) -> bool) -> Vec<(String, Unsaved)> {
        let now = now_ms();
        let mut changed = Vec::new();
        self.lock().retain(|id, group| {
            if !coordinates(id) {
                group.shut_down(ResponseError::NotCoordinator.code());
                return false;
            }
            group.tick(now);
            if let Some(snapshot) = group.take_unsaved_snapshot() {
                changed.push((id.clone(), Unsaved::Classic(snapshot)));
            }
            true
        });
        self.lock_consumer().retain(|id, group| {
            if !coordinates(id) {
                return false;
            }
            group.tick(now);
            if group.has_unsaved() {
                changed.push((id.clone(), Unsaved::Consumer));
            }
            true
        });
        changed
    }
}

fn load_consumer_group(loader: &GroupLoader<'_>, group: &str) -> Option<ConsumerGroup> {
    let snapshot = consumer_group::decode(&loader.offsets.group_metadata(group)?)?;
    Some(ConsumerGroup::restore(
        group,
        snapshot,
        loader.consumer_session_timeout_ms,
        now_ms(),
    ))
}
