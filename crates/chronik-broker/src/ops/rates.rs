//! Produce and fetch rates over the last minutes, sampled from the node's
//! traffic totals, for the console's chart.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Broker;
use crate::ops::telemetry::Traffic;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Ten minutes of samples.
const KEPT: usize = 120;

/// Rates per second over one sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub produced_bytes: f64,
    pub produced_records: f64,
    pub fetched_bytes: f64,
    pub fetched_records: f64,
}

#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
}

impl Rates {
    /// The samples kept, oldest first.
    pub fn recent(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back(sample);
        while samples.len() > KEPT {
            samples.pop_front();
        }
    }
}

fn totals(traffic: &Traffic) -> [u64; 4] {
    [
        traffic.produced_bytes.load(Ordering::Relaxed),
        traffic.produced_records.load(Ordering::Relaxed),
        traffic.fetched_bytes.load(Ordering::Relaxed),
        traffic.fetched_records.load(Ordering::Relaxed),
    ]
}

/// Samples the broker's traffic every [`SAMPLE_EVERY`] for as long as it runs.
pub async fn run_sampler(broker: Arc<Broker>) {
    let traffic = &broker.telemetry.traffic;
    let mut last = (Instant::now(), totals(traffic));
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = (Instant::now(), totals(traffic));
        let seconds = now.0.duration_since(last.0).as_secs_f64().max(0.001);
        let rate = |i: usize| now.1[i].saturating_sub(last.1[i]) as f64 / seconds;
        broker.telemetry.rates.push(Sample {
            produced_bytes: rate(0),
            produced_records: rate(1),
            fetched_bytes: rate(2),
            fetched_records: rate(3),
        });
        last = now;
    }
}
