//! `chronik-bench`: a load generator for Kafka-compatible brokers, built on
//! rdkafka (librdkafka), so it measures what real clients see.

mod consume;
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

    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Produce records as fast as the broker acknowledges them.
    Produce(produce::ProduceArgs),
    /// Consume a topic from the beginning.
    Consume(consume::ConsumeArgs),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match &args.mode {
        Mode::Produce(produce) => produce::run(&args.bootstrap, &args.topic, produce),
        Mode::Consume(consume) => consume::run(&args.bootstrap, &args.topic, consume),
    };
    match result {
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
