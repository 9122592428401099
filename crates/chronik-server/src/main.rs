//! `chronik-server`: a Kafka-compatible broker whose every write goes through
//! Raft. With no arguments it is a single-node broker on 127.0.0.1:9092 that
//! keeps its data under `./data`; with `raft-cluster` it is one node of a
//! cluster; with `cluster …` it asks a running cluster about its state.

mod cli;
mod cluster_cli;
mod cluster_view;
mod membership_cli;

use std::sync::Arc;

use anyhow::Context;
use chronik_broker::{Broker, cluster, server};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, Settings};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Some(Command::Cluster(command)) => runtime.block_on(cluster_cli::run(command)),
        Some(Command::RaftCluster(cluster)) => run_server(&runtime, cli.server, Some(cluster)),
        None => run_server(&runtime, cli.server, None),
    };
    match outcome {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run_server(
    runtime: &tokio::runtime::Runtime,
    args: cli::ServerArgs,
    cluster: Option<cli::RaftClusterArgs>,
) -> anyhow::Result<u8> {
    let settings = Settings::resolve(args, cluster)?;
    stop_the_process_on_panic();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level)))
        .with_writer(std::io::stderr)
        .init();
    runtime.block_on(serve(settings))?;
    Ok(0)
}

/// A panic on any thread ends the process: a broker whose Raft loop or
/// checkpointer died would keep accepting connections and answer nothing.
/// Ending is safe: a restart recovers from the disk (fail-stop).
fn stop_the_process_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("fatal: a thread panicked; stopping the node, a restart recovers from the disk");
        std::process::exit(70);
    }));
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listen = settings.listen_addr()?;
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!(
            "cannot listen on {listen}; is another broker running there? Pick another with --kafka-port or --listen"
        )
    })?;
    let raft_listener = match settings.raft_listen_addr()? {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for Raft; is another node running there? Pick another --raft-addr")
        })?),
        None => None,
    };
    let bound = listener.local_addr()?;
    let raft_bound = raft_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let config = settings.broker_config(bound, raft_bound)?;
    let broker = Broker::start(config).context("cannot start the broker")?;
    if let Some(raft_listener) = raft_listener {
        tokio::spawn(cluster::serve(broker.clone(), raft_listener));
        tokio::spawn(cluster::peer_view::run_peer_view(broker.clone()));
    }
    broker.join().await.context("cannot join the cluster")?;
    if broker.config.cluster.is_some() {
        tokio::spawn(cluster::reconciler::run_reconciler(broker.clone()));
    }
    tokio::spawn(chronik_broker::run_retention(broker.clone()));
    tokio::spawn(chronik_broker::groups::coordinator::run_group_timers(broker.clone()));
    tracing::info!(listen = %bound, data_dir = %broker.config.data_dir.display(), "Chronik is serving Kafka clients");
    // A line on stdout that scripts and tests wait for.
    match raft_bound {
        Some(raft) => println!(
            "chronik-server ready: kafka={bound} raft={raft} node={}",
            broker.config.node_id
        ),
        None => println!("chronik-server ready: kafka={bound} node={}", broker.config.node_id),
    }
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
