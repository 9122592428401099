//! `chronik-bench`: a load generator for Kafka-compatible brokers, built on
//! rdkafka (librdkafka), so it measures what real clients see.

mod broker_stats;
mod consume;
mod e2e;
mod produce;
mod report;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chronik-bench",
    about = "Measure produce and consume throughput of a Kafka-compatible broker"
)]
struct Args {
    /// Broker address, host:port.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    bootstrap: String,

    /// Topic to use.
    #[arg(long, default_value = "chronik-bench", global = true)]
    topic: String,

    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,

    /// The broker's process id: report its CPU seconds and peak RSS for the run.
    #[arg(long, global = true)]
    broker_pid: Option<u32>,

    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Produce records as fast as the broker acknowledges them.
    Produce(produce::ProduceArgs),
    /// Consume a topic from the beginning.
    Consume(consume::ConsumeArgs),
    /// Produce at a fixed rate and measure produce-to-consume latency.
    E2e(e2e::E2eArgs),
}

fn run(args: &Args) -> anyhow::Result<report::Report> {
    let cpu_before = args.broker_pid.map(broker_stats::cpu_seconds).transpose()?;
    let mut report = match &args.mode {
        Mode::Produce(produce) => produce::run(&args.bootstrap, &args.topic, produce)?,
        Mode::Consume(consume) => consume::run(&args.bootstrap, &args.topic, consume)?,
        Mode::E2e(e2e) => {
            let start = std::time::Instant::now();
            let (latency, records) = e2e::run(&args.bootstrap, &args.topic, e2e)?;
            let mut report = report::Report::new("e2e", records, records * e2e.record_size as u64, 0, start.elapsed());
            report.latency = Some(latency);
            report
        }
    };
    if let (Some(pid), Some(before)) = (args.broker_pid, cpu_before) {
        report.broker = Some(broker_stats::BrokerUsage {
            cpu_seconds: broker_stats::cpu_seconds(pid)? - before,
            peak_rss_kib: broker_stats::peak_rss_kib(pid)?,
        });
    }
    Ok(report)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            report.print(args.json);
            if report.errors > 0 {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
