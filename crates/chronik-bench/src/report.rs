//! The result of one run, as a table or as JSON.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
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
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("reports serialize"));
            return;
        }
        println!("mode        {}", self.mode);
        println!("records     {}", self.records);
        println!("errors      {}", self.errors);
        println!("seconds     {:.2}", self.seconds);
        println!("records/s   {:.0}", self.records_per_sec);
        println!("MB/s        {:.2}", self.mb_per_sec);
    }
}
