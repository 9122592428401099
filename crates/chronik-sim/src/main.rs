//! `chronik-sim`: runs seeds of the deterministic cluster simulation.
//!
//! `--seed N` replays one run exactly; `--seeds A..B` sweeps a range. A
//! failing seed prints its fault schedule and the first violated invariant,
//! and the process exits with 1.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chronik_raft::PlantedBug;
use chronik_sim::{Config, Report, run};
use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(about = "Deterministic simulation of a Chronik cluster")]
struct Args {
    /// Replay this one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Sweep a range of seeds, A..B (B excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Nodes in the cluster (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// Simulated seconds of work under faults, per seed.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Plant a known bug, to see the simulator catch it.
    #[arg(long)]
    plant: Option<Bug>,
    /// Start at the first chronik.version and upgrade to the newest halfway through.
    #[arg(long)]
    upgrade: bool,
    /// Print every event of the history, and the product's own logs.
    #[arg(long)]
    verbose: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Bug {
    ReadWithoutGate,
    AckBeforeFsync,
    ReadWithoutLease,
    StaleIncarnation,
    ReferenceBeforeSync,
    /// A leader's forecast puts every 50th batch at the wrong offset.
    MisassignedOffset,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("'{text}' is not a range like 1..100"))?;
    let parse = |s: &str| s.parse::<u64>().map_err(|e| format!("'{s}': {e}"));
    let (a, b) = (parse(a)?, parse(b)?);
    if a >= b {
        return Err(format!("the range {a}..{b} is empty"));
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.verbose {
        // RUST_LOG narrows or widens it, e.g. RUST_LOG=info,raft=debug.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        // A panic is reported as a violation, with the seed and schedule.
        std::panic::set_hook(Box::new(|_| {}));
    }
    let (first, end) = match (args.seed, args.seeds) {
        (Some(seed), _) => (seed, seed + 1),
        (None, Some(range)) => range,
        (None, None) => (0, 1),
    };
    let planted_bug = args.plant.and_then(|bug| match bug {
        Bug::ReadWithoutGate => Some(PlantedBug::ReadWithoutGate),
        Bug::AckBeforeFsync => Some(PlantedBug::AckBeforeFsync),
        Bug::ReadWithoutLease => Some(PlantedBug::ReadWithoutLease),
        Bug::StaleIncarnation => Some(PlantedBug::StaleIncarnation),
        Bug::ReferenceBeforeSync => Some(PlantedBug::ReferenceBeforeSync),
        Bug::MisassignedOffset => None,
    });
    let misassign_offsets = matches!(args.plant, Some(Bug::MisassignedOffset));
    let started = Instant::now();
    let mut failed = Vec::new();
    for seed in first..end {
        let config = Config {
            seed,
            nodes: args.nodes as usize,
            duration: Duration::from_secs(args.seconds),
            planted_bug,
            misassign_offsets,
            upgrade: args.upgrade,
            keep_history: args.verbose,
        };
        let report = run(&config);
        for event in &report.history {
            println!("  {event}");
        }
        print_summary(&report);
        if !report.violations.is_empty() {
            print_failure(&report);
            failed.push(seed);
        }
    }
    println!(
        "{} seeds, {} failed{}, in {:.1?}",
        end - first,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({failed:?})")
        },
        started.elapsed()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_summary(report: &Report) {
    println!(
        "seed {} nodes {}: {} faults, {} records acked, {} more with acks=1, {} read, {} commits, {} transactions committed and {} aborted, {} read committed, {:.1} group-seconds asleep, {} poison entries refused, {:.1?} simulated, history {:016x} ({} events): {}",
        report.seed,
        report.nodes,
        report.faults,
        report.stats.acked_records,
        report.stats.acked_locally,
        report.stats.read_records,
        report.stats.commits_acked,
        report.stats.transactions_committed,
        report.stats.transactions_aborted,
        report.stats.read_committed,
        report.stats.asleep_ms as f64 / 1000.0,
        report.poison_refused,
        report.simulated,
        report.digest,
        report.events,
        if report.violations.is_empty() {
            "ok"
        } else {
            "VIOLATION"
        }
    );
}

fn print_failure(report: &Report) {
    println!("  fault schedule of seed {}:", report.seed);
    for line in &report.schedule {
        println!("    {line}");
    }
    println!("  first violated invariant: {}", report.violations[0]);
    println!(
        "  replay: cargo run -p chronik-sim -- --seed {} --nodes {}",
        report.seed, report.nodes
    );
}
