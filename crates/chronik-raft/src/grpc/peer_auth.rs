//! How nodes (and the cluster CLI) prove to a node's gRPC port that they
//! belong to the cluster: mutual TLS with certificates from the cluster CA,
//! or a shared secret sent with every request. The TLS side of the server
//! is set up by whoever binds the port; this module holds the settings, the
//! client's connection, and the secret on both sides.

use std::path::PathBuf;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// The request header that carries the cluster secret.
pub const SECRET_HEADER: &str = "x-chronik-cluster-secret";
/// The shortest secret accepted: anything shorter can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// This node's certificate and key, and the CA every peer's certificate must
/// chain to, all PEM files.
#[derive(Debug, Clone)]
pub struct PeerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct PeerSecurity {
    /// Sent with every request, and required on every request received.
    pub secret: Option<Arc<str>>,
    pub tls: Option<PeerTls>,
}

impl PeerSecurity {
    /// Checks a secret before it is used: long enough, and printable ASCII so
    /// that it fits a request header.
    pub fn check_secret(secret: &str) -> Result<(), String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the cluster secret must be at least {MIN_SECRET_LEN} characters"
            ));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the cluster secret must be printable ASCII without spaces".into());
        }
        Ok(())
    }

    /// The endpoint of a node's gRPC port (`host:port`): `https` with this
    /// node's certificate under mutual TLS.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let Some(tls) = &self.tls else {
            return Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string());
        };
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
            .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
            .domain_name(host);
        Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(config))
            .map_err(|e| e.to_string())
    }

    /// Wraps a connection so that each request carries the secret.
    pub fn channel(&self, channel: Channel) -> PeerChannel {
        let header = self.secret.as_ref().map(|s| {
            s.parse::<MetadataValue<Ascii>>()
                .expect("secrets are checked to be printable ASCII")
        });
        InterceptedService::new(channel, AddSecret(header))
    }

    /// The check every request to this node's gRPC services passes.
    pub fn checker(&self) -> CheckSecret {
        CheckSecret(self.secret.clone())
    }
}

/// A connection to a node's gRPC port.
pub type PeerChannel = InterceptedService<Channel, AddSecret>;

#[derive(Clone)]
pub struct AddSecret(Option<MetadataValue<Ascii>>);

impl Interceptor for AddSecret {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(secret) = &self.0 {
            request.metadata_mut().insert(SECRET_HEADER, secret.clone());
        }
        Ok(request)
    }
}

#[derive(Clone)]
pub struct CheckSecret(Option<Arc<str>>);

impl Interceptor for CheckSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(secret) = &self.0 else { return Ok(request) };
        let given = request.metadata().get(SECRET_HEADER).map(|v| v.as_bytes());
        if given.is_some_and(|g| bool::from(g.ct_eq(secret.as_bytes()))) {
            return Ok(request);
        }
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let why = if given.is_some() { "a wrong" } else { "no" };
        tracing::warn!(%peer, "refused a gRPC request with {why} cluster secret");
        Err(Status::unauthenticated(format!(
            "{why} cluster secret: give the cluster's secret (--cluster-secret or --cluster-secret-file)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_on_both_sides() {
        assert!(PeerSecurity::check_secret("short").is_err());
        assert!(PeerSecurity::check_secret("with a space in it!").is_err());
        let security = PeerSecurity {
            secret: Some("0123456789abcdef".into()),
            tls: None,
        };
        let mut check = security.checker();
        assert_eq!(
            check.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut add = AddSecret(Some("0123456789abcdef".parse().unwrap()));
        assert!(check.call(add.call(Request::new(())).unwrap()).is_ok());
        let mut wrong = AddSecret(Some("0123456789abcdeX".parse().unwrap()));
        assert!(check.call(wrong.call(Request::new(())).unwrap()).is_err());
        assert!(
            PeerSecurity::default().checker().call(Request::new(())).is_ok(),
            "no secret configured"
        );
    }
}
