//! Operating a node: Prometheus metrics (`telemetry`, `gauges`), the HTTP
//! endpoint (`http`) with its health and readiness probes (`probes`), and
//! the built-in console (`console`, drawn from `rates`).

pub mod console;
pub mod errors;
pub mod gauges;
pub mod http;
pub mod probes;
pub mod rates;
pub mod telemetry;
