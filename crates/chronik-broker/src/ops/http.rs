//! The HTTP endpoint (`--http-addr`): `/metrics` for Prometheus, `/health`
//! and `/ready` for probes, and the console at `/`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::Broker;
use crate::ops::{console, gauges, probes, rates};

/// How often the recorder drains histogram samples between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

struct Endpoint {
    broker: Arc<Broker>,
    /// `None` when metrics are off.
    prometheus: Option<PrometheusHandle>,
    process: metrics_process::Collector,
}

/// Serves the endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    prometheus: Option<PrometheusHandle>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let process = metrics_process::Collector::default();
    if let Some(handle) = &prometheus {
        process.describe();
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(UPKEEP_EVERY);
            loop {
                ticker.tick().await;
                handle.run_upkeep();
            }
        });
    }
    tokio::spawn(rates::run_sampler(broker.clone()));
    let endpoint = Arc::new(Endpoint {
        broker,
        prometheus,
        process,
    });
    let router = Router::new()
        .route("/", get(console_page))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(endpoint);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(endpoint): State<Arc<Endpoint>>) -> Response {
    let Some(handle) = &endpoint.prometheus else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are off on this node (--metrics false)\n",
        )
            .into_response();
    };
    gauges::collect(&endpoint.broker).await;
    endpoint.process.collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}

async fn health(State(endpoint): State<Arc<Endpoint>>) -> Response {
    match probes::health(&endpoint.broker) {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()).into_response(),
        Err(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")).into_response(),
    }
}

async fn ready(State(endpoint): State<Arc<Endpoint>>) -> Response {
    match probes::readiness(&endpoint.broker).await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Err(problems) => (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n").into_response(),
    }
}

async fn console_page(State(endpoint): State<Arc<Endpoint>>) -> Html<String> {
    Html(console::render(&endpoint.broker))
}
