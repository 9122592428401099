//! What the loop publishes about each group, for request handlers to read.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::{GroupId, NodeId};

/// A group's view of its own leadership, as of the last loop iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStatus {
    /// The leader this node knows of; `None` during an election.
    pub leader: Option<NodeId>,
    pub term: u64,
}

/// Shared, cheaply readable map of group statuses.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<HashMap<GroupId, GroupStatus>>>,
}

impl StatusBoard {
    pub fn get(&self, group: GroupId) -> Option<GroupStatus> {
        self.read().get(&group).copied()
    }

    pub(crate) fn set(&self, group: GroupId, status: GroupStatus) {
        self.write().insert(group, status);
    }

    pub(crate) fn remove(&self, group: GroupId) {
        self.write().remove(&group);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupId, GroupStatus>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<GroupId, GroupStatus>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}
