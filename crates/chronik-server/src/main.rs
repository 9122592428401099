//! `chronik-server`: a Kafka-compatible broker whose every write goes through
//! Raft. With no arguments it is a single-node broker on 127.0.0.1:9092 that
//! keeps its data under `./data`.

mod cli;

use std::sync::Arc;

use anyhow::Context;
use chronik_broker::{Broker, server};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&args.log_level)))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: cli::Args) -> anyhow::Result<()> {
    let listen = args.listen_addr()?;
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!(
            "cannot listen on {listen}; is another broker running there? Pick another with --kafka-port or --listen"
        )
    })?;
    let bound = listener.local_addr()?;
    let config = args.broker_config(bound)?;
    let broker = Broker::start(config).await.context("cannot start the broker")?;
    tokio::spawn(chronik_broker::run_retention(broker.clone()));
    tokio::spawn(chronik_broker::groups::coordinator::run_group_timers(broker.clone()));
    tracing::info!(listen = %bound, data_dir = %broker.config.data_dir.display(), "Chronik is serving Kafka clients");
    // A line on stdout that scripts and tests wait for.
    println!("chronik-server ready: kafka={bound} node={}", broker.config.node_id);
    server::serve(Arc::clone(&broker), listener, shutdown_signal()).await;
    tracing::info!("shutting down");
    broker.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
