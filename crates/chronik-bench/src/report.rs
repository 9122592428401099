//! The result of one run, as a table or as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::broker_stats::BrokerUsage;

/// Produce-to-consume latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_histogram(micros: &Histogram<u64>) -> Latency {
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            p50_ms: ms(micros.value_at_quantile(0.5)),
            p99_ms: ms(micros.value_at_quantile(0.99)),
            p999_ms: ms(micros.value_at_quantile(0.999)),
            max_ms: ms(micros.max()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
}

impl Report {
    pub fn new(mode: &'static str, records: u64, bytes: u64, errors: u64, elapsed: Duration) -> Report {
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        Report {
            mode,
            records,
            bytes,
            errors,
            seconds,
            records_per_sec: records as f64 / seconds,
            mb_per_sec: bytes as f64 / seconds / 1_000_000.0,
            latency: None,
            broker: None,
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("reports serialize"));
            return;
        }
        println!("mode              {}", self.mode);
        println!("records           {}", self.records);
        println!("errors            {}", self.errors);
        println!("seconds           {:.2}", self.seconds);
        println!("records/s         {:.0}", self.records_per_sec);
        println!("MB/s              {:.2}", self.mb_per_sec);
        if let Some(l) = &self.latency {
            println!("latency p50 ms    {:.2}", l.p50_ms);
            println!("latency p99 ms    {:.2}", l.p99_ms);
            println!("latency p99.9 ms  {:.2}", l.p999_ms);
            println!("latency max ms    {:.2}", l.max_ms);
        }
        if let Some(b) = &self.broker {
            println!("broker CPU s      {:.2}", b.cpu_seconds);
            println!("broker peak RSS   {} MiB", b.peak_rss_kib / 1024);
        }
    }
}
