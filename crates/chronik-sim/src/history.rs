//! What happened in a run, in order: faults, acknowledgements, commits.
//! Two runs of one seed must produce the same history, byte for byte.

use std::hash::{DefaultHasher, Hasher};
use std::time::Duration;

#[derive(Default)]
pub struct History {
    events: Vec<String>,
    hasher: DefaultHasher,
}

impl History {
    pub fn record(&mut self, at: Duration, event: String) {
        let line = format!("{:>8.3}s {event}", at.as_secs_f64());
        self.hasher.write(line.as_bytes());
        self.events.push(line);
    }

    /// A digest of every event so far: equal digests, equal histories.
    pub fn digest(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn events(&self) -> &[String] {
        &self.events
    }
}
