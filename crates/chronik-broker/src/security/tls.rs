//! TLS for the Kafka listeners (rustls with the ring provider, as the gRPC
//! port uses): the certificate and key in PEM, optionally client
//! certificates checked against a CA, and reloading of the files (SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// A certificate is asked for; a client without one connects anonymously.
    Requested,
    Required,
}

impl ClientAuth {
    pub fn from_name(name: &str) -> Option<ClientAuth> {
        match name {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read PEM certificates from {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn server_config(settings: &TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    let certs = read_certificates(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .with_context(|| format!("cannot read a PEM private key from {}", settings.key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version is available")?;
    let builder = match (&settings.client_ca, settings.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (None, _) => bail!("client certificates need --tls-client-ca, the CA they must chain to"),
        (Some(ca), auth) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("{} holds an unusable CA certificate", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().context("cannot build the client verifier")?)
        }
    };
    builder
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")
}

/// The acceptor of the gRPC port under mutual TLS: every peer and CLI shows
/// a certificate of the cluster CA. Speaks HTTP/2 only, as gRPC does.
pub fn peer_acceptor(tls: &chronik_raft::grpc::PeerTls) -> anyhow::Result<TlsAcceptor> {
    let mut config = server_config(&TlsSettings {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        client_ca: Some(tls.ca.clone()),
        client_auth: ClientAuth::Required,
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor every TLS listener uses, replaced as a whole on reload.
pub struct TlsAcceptorCell {
    settings: TlsSettings,
    current: RwLock<TlsAcceptor>,
}

impl TlsAcceptorCell {
    pub fn load(settings: TlsSettings) -> anyhow::Result<TlsAcceptorCell> {
        let config = server_config(&settings)?;
        Ok(TlsAcceptorCell {
            settings,
            current: RwLock::new(TlsAcceptor::from(Arc::new(config))),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the files again. On an error the old acceptor stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.settings)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = TlsAcceptor::from(Arc::new(config));
        Ok(())
    }
}

/// The principal of a client certificate: `User:` and its subject's
/// distinguished name in RFC 2253 form, as Kafka's default mapping gives.
pub fn principal_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut parts = Vec::new();
    // RFC 2253 lists the most specific name first, the reverse of DER order.
    for rdn in cert.subject().iter_rdn().collect::<Vec<_>>().into_iter().rev() {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attribute| {
                let key = x509_parser::objects::oid2abbrev(attribute.attr_type(), registry)
                    .map(str::to_string)
                    .unwrap_or_else(|_| attribute.attr_type().to_id_string());
                // A value that is not a plain string is written as RFC 2253's
                // '#' and hex, so no two subjects share a principal.
                match attribute.as_str() {
                    Ok(value) => format!("{key}={}", escape_dn_value(value)),
                    Err(_) => {
                        let hex: String = attribute.as_slice().iter().map(|b| format!("{b:02x}")).collect();
                        format!("{key}=#{hex}")
                    }
                }
            })
            .collect();
        parts.push(attributes.join("+"));
    }
    Some(format!("User:{}", parts.join(",")))
}

fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == '#' || c == ' ')) || (i == last && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_rfc2253_names() {
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CountryName, "NL");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc");
        params.distinguished_name.push(rcgen::DnType::CommonName, "client1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            principal_of(cert.der()).as_deref(),
            Some("User:CN=client1,O=Acme\\, Inc,C=NL")
        );
    }
}
