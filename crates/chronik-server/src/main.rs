//! `chronik-server`: a Kafka-compatible broker whose every write goes through
//! Raft. With no arguments it is a single-node broker on 127.0.0.1:9092 that
//! keeps its data under `./data`; with `raft-cluster` it is one node of a
//! cluster; with `cluster …` it asks a running cluster about its state.

mod cli;
mod cluster_cli;
mod cluster_view;
#[cfg(test)]
mod config_reference;
mod malloc;
mod membership_cli;
mod security_args;
mod user_cli;
mod version_cli;

use std::sync::Arc;

use anyhow::Context;
use chronik_broker::security::tls::TlsAcceptorCell;
use chronik_broker::{Broker, cluster, server};
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat, Settings};

fn main() -> std::process::ExitCode {
    malloc::keep_freed_memory_for_reuse();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Some(Command::Cluster(command)) => cli
            .server
            .peer
            .resolve(&Default::default())
            .and_then(|security| runtime.block_on(cluster_cli::run(command, security))),
        Some(Command::User(command)) => cli
            .server
            .peer
            .resolve(&Default::default())
            .and_then(|security| runtime.block_on(user_cli::run(command, security))),
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
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
    let mut bound = Vec::new();
    for binding in settings.listener_bindings()? {
        let addr = binding.addr;
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} for listener {}; is another broker running there? \
                 Pick another with --kafka-port, --listen or --listeners",
                binding.name
            )
        })?;
        let local = listener.local_addr()?;
        bound.push((listener, binding, local));
    }
    let raft_listener = match settings.raft_listen_addr()? {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for Raft; is another node running there? Pick another --raft-addr")
        })?),
        None => None,
    };
    let raft_bound = raft_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let http_listener = match settings.http_listen_addr()? {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} for HTTP (metrics, probes, console); is another broker running there? \
                 Pick another --http-addr, or --http-addr off"
            )
        })?),
        None => None,
    };
    let http_bound = http_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    // Before the broker starts: metric handles bind to the recorder installed when they are made.
    let prometheus = if settings.metrics {
        Some(chronik_broker::ops::telemetry::install()?)
    } else {
        None
    };
    let (tcp_listeners, bindings): (Vec<TcpListener>, Vec<_>) = bound
        .into_iter()
        .map(|(tcp, binding, local)| (tcp, (binding, local)))
        .unzip();
    let config = settings.broker_config(&bindings, raft_bound)?;
    let tls = match &config.security.tls {
        Some(tls) => Some(Arc::new(
            TlsAcceptorCell::load(tls.clone()).context("cannot set up TLS for the Kafka listeners")?,
        )),
        None => None,
    };
    let broker = Broker::start(config).context("cannot start the broker")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if let Some(http) = http_listener {
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            if let Err(e) = chronik_broker::ops::http::serve(broker, http, prometheus, shutdown).await {
                tracing::error!("the HTTP endpoint stopped: {e}");
            }
        });
    }
    if let Some(raft_listener) = raft_listener {
        tokio::spawn(cluster::serve(broker.clone(), raft_listener));
        tokio::spawn(cluster::peer_view::run_peer_view(broker.clone()));
    }
    broker.join().await.context("cannot join the cluster")?;
    if broker.config.cluster.is_some() {
        tokio::spawn(cluster::reconciler::run_reconciler(broker.clone()));
    }
    tokio::spawn(chronik_broker::run_retention(broker.clone()));
    tokio::spawn(chronik_broker::run_cleaner(broker.clone()));
    tokio::spawn(chronik_broker::groups::coordinator::run_group_timers(broker.clone()));
    tokio::spawn(chronik_broker::txn::coordinator::run_transaction_timers(broker.clone()));
    if let Some(tls) = &tls {
        tokio::spawn(reload_tls_on_sighup(tls.clone()));
    }
    // Listening before the ready line: a SIGTERM sent the moment a script
    // sees it must stop the node cleanly, not kill it.
    let shutdown = shutdown_signal();
    let main = broker.config.main_listener().bound;
    tracing::info!(listen = %main, data_dir = %broker.config.data_dir.display(), "Chronik is serving Kafka clients");
    // A line on stdout that scripts and tests wait for.
    let mut ready = format!("chronik-server ready: kafka={main}");
    if let Some(raft) = raft_bound {
        ready.push_str(&format!(" raft={raft}"));
    }
    ready.push_str(&format!(" node={}", broker.config.node_id));
    if broker.config.listeners.len() > 1 {
        let listeners: Vec<String> = broker
            .config
            .listeners
            .iter()
            .map(|l| format!("{}={}", l.name, l.bound))
            .collect();
        ready.push_str(&format!(" listeners={}", listeners.join(",")));
    }
    if let Some(http) = http_bound {
        ready.push_str(&format!(" http={http}"));
    }
    println!("{ready}");
    let mut serving = Vec::new();
    for (tcp, listener) in tcp_listeners.into_iter().zip(&broker.config.listeners) {
        let listener = Arc::new(server::KafkaListener {
            config: listener.clone(),
            tls: listener.protocol.tls().then(|| tls.clone()).flatten(),
        });
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        serving.push(tokio::spawn(server::serve(
            Arc::clone(&broker),
            tcp,
            listener,
            shutdown,
        )));
    }
    shutdown.await;
    let _ = stop.send(true);
    for listener in serving {
        let _ = listener.await;
    }
    tracing::info!("shutting down");
    broker.shutdown().await;
    Ok(())
}

/// Kafka listeners' certificates are re-read on SIGHUP; a bad file leaves
/// the ones in use.
async fn reload_tls_on_sighup(tls: Arc<TlsAcceptorCell>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP; TLS files will not be reloaded: {e}");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("reloaded the TLS certificate and key"),
            Err(e) => tracing::error!("cannot reload TLS, keeping the files in use: {e:#}"),
        }
    }
}

/// SIGTERM or SIGINT, listened for from the call on (an `async fn` would
/// install its handlers only when first polled).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &str| {
        signal(kind)
            .inspect_err(|e| tracing::warn!("cannot listen for {name}: {e}"))
            .ok()
    };
    let (mut terminate, mut interrupt) = (
        listen(SignalKind::terminate(), "SIGTERM"),
        listen(SignalKind::interrupt(), "SIGINT"),
    );
    async move {
        tokio::select! {
            _ = received(terminate.as_mut()) => {}
            _ = received(interrupt.as_mut()) => {}
        }
    }
}

/// The next delivery of `signal`; never, if it could not be listened for.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
