//! Security flags: Kafka listeners and their TLS, SASL and authorization
//! settings, and how nodes and the CLI authenticate to a node's gRPC port.
//! As with every flag, a `CHRONIK_*` variable or the `--config` file may set
//! them instead.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chronik_broker::security::SecurityConfig;
use chronik_broker::security::authorizer::Authorizer;
use chronik_broker::security::listener::{self, ListenerSpec, SecurityProtocol};
use chronik_broker::security::sasl::Mechanism;
use chronik_broker::security::tls::{ClientAuth, TlsSettings};
use chronik_raft::grpc::{PeerSecurity, PeerTls};
use clap::Args;
use serde::Deserialize;

#[derive(Debug, Args, Default)]
pub struct ListenerArgs {
    /// Kafka listeners as NAME://HOST:PORT, comma-separated, e.g.
    /// "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093" (replaces --listen).
    #[arg(long, env = "CHRONIK_LISTENERS")]
    pub listeners: Option<String>,

    /// The address each listener is advertised at, as NAME://HOST:PORT [default: where it binds].
    #[arg(long, env = "CHRONIK_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,

    /// The security protocol of listeners not named after one, as NAME:PROTOCOL, comma-separated.
    #[arg(long, env = "CHRONIK_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,

    /// PEM certificate (chain) of the SSL and SASL_SSL listeners.
    #[arg(long, env = "CHRONIK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert. SIGHUP reloads both, and --tls-client-ca.
    #[arg(long, env = "CHRONIK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates that client certificates must chain to.
    #[arg(long, env = "CHRONIK_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Kafka's ssl.client.auth: none, requested or required [default: none].
    #[arg(long, env = "CHRONIK_TLS_CLIENT_AUTH")]
    pub tls_client_auth: Option<String>,

    /// SASL mechanisms of the SASL listeners [default: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512].
    #[arg(long, env = "CHRONIK_SASL_MECHANISMS")]
    pub sasl_mechanisms: Option<String>,

    /// Principals that bypass ACLs, ';'-separated, e.g. "User:admin;User:CN=ops".
    #[arg(long, env = "CHRONIK_SUPER_USERS")]
    pub super_users: Option<String>,

    /// Allow what no ACL names (Kafka's allow.everyone.if.no.acl.found)
    /// [default: false when any listener authenticates clients, else true].
    #[arg(long, env = "CHRONIK_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    pub allow_everyone_if_no_acl_found: Option<bool>,

    /// A SASL user NAME:PASSWORD created at startup if missing, and a super-user.
    #[arg(long, env = "CHRONIK_BOOTSTRAP_USER", hide_env_values = true)]
    pub bootstrap_user: Option<String>,

    /// A file of NAME:PASSWORD lines, each created like --bootstrap-user.
    #[arg(long, env = "CHRONIK_BOOTSTRAP_USERS_FILE")]
    pub bootstrap_users_file: Option<PathBuf>,
}

#[derive(Debug, Args, Default, Clone)]
pub struct PeerSecurityArgs {
    /// The cluster's shared secret (16+ printable characters), sent with every request
    /// between nodes and from the CLI. Prefer --cluster-secret-file.
    #[arg(long, global = true, env = "CHRONIK_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// A file holding the cluster's shared secret.
    #[arg(long, global = true, env = "CHRONIK_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// PEM certificate of this node (or CLI user) for mutual TLS on the Raft/admin port.
    #[arg(long, global = true, env = "CHRONIK_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,

    /// PEM private key of --peer-tls-cert.
    #[arg(long, global = true, env = "CHRONIK_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,

    /// PEM certificate of the cluster CA: every node's certificate must chain to it.
    #[arg(long, global = true, env = "CHRONIK_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
}

/// The security keys of the `--config` file (top level, named as the flags).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSecurity {
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    listener_security_protocol_map: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_client_auth: Option<String>,
    sasl_mechanisms: Option<String>,
    super_users: Option<String>,
    allow_everyone_if_no_acl_found: Option<bool>,
    bootstrap_users_file: Option<PathBuf>,
    cluster_secret_file: Option<PathBuf>,
    peer_tls_cert: Option<PathBuf>,
    peer_tls_key: Option<PathBuf>,
    peer_tls_ca: Option<PathBuf>,
}

/// The listeners and Kafka-side security, resolved.
#[derive(Debug)]
pub struct KafkaSecurity {
    /// `None`: the one PLAINTEXT listener of --listen.
    pub listeners: Option<Vec<ListenerSpec>>,
    pub advertised: BTreeMap<String, (String, u16)>,
    pub config: SecurityConfig,
}

impl ListenerArgs {
    pub fn resolve(self, file: &FileSecurity) -> anyhow::Result<KafkaSecurity> {
        let map_text = self
            .listener_security_protocol_map
            .or_else(|| file.listener_security_protocol_map.clone())
            .unwrap_or_default();
        let map = listener::parse_protocol_map(&map_text)
            .map_err(anyhow::Error::msg)
            .context("--listener-security-protocol-map")?;
        let listeners = self
            .listeners
            .or_else(|| file.listeners.clone())
            .map(|text| listener::parse_listeners(&text, &map))
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--listeners")?;
        let advertised = match self.advertised_listeners.or_else(|| file.advertised_listeners.clone()) {
            None => BTreeMap::new(),
            Some(text) => {
                let all = listener::parse_listeners(&text, &map)
                    .map_err(anyhow::Error::msg)
                    .context("--advertised-listeners")?;
                for spec in &all {
                    if !listeners.iter().flatten().any(|l| l.name == spec.name) {
                        bail!(
                            "--advertised-listeners names '{}', which is not in --listeners",
                            spec.name
                        );
                    }
                }
                all.into_iter().map(|l| (l.name, (l.host, l.port))).collect()
            }
        };
        let protocols: Vec<SecurityProtocol> = listeners.iter().flatten().map(|l| l.protocol).collect();
        let client_auth = match self.tls_client_auth.or_else(|| file.tls_client_auth.clone()) {
            None => ClientAuth::None,
            Some(name) => ClientAuth::from_name(&name)
                .with_context(|| format!("--tls-client-auth '{name}': use none, requested or required"))?,
        };
        let tls = match (
            self.tls_cert.or_else(|| file.tls_cert.clone()),
            self.tls_key.or_else(|| file.tls_key.clone()),
        ) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert,
                key,
                client_ca: self.tls_client_ca.or_else(|| file.tls_client_ca.clone()),
                client_auth,
            }),
            (None, None) => None,
            _ => bail!("TLS needs both --tls-cert and --tls-key"),
        };
        if tls.is_none() && protocols.iter().any(|p| p.tls()) {
            bail!("an SSL or SASL_SSL listener needs --tls-cert and --tls-key");
        }
        let sasl_mechanisms = match self.sasl_mechanisms.or_else(|| file.sasl_mechanisms.clone()) {
            None => Mechanism::ALL.to_vec(),
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|name| {
                    Mechanism::from_name(name).with_context(|| {
                        format!("--sasl-mechanisms: '{name}' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        if sasl_mechanisms.is_empty() {
            bail!("--sasl-mechanisms names no mechanism");
        }
        let mut bootstrap_users = Vec::new();
        if let Some(user) = self.bootstrap_user {
            bootstrap_users.push(parse_user(&user).context("--bootstrap-user")?);
        }
        if let Some(path) = self.bootstrap_users_file.or_else(|| file.bootstrap_users_file.clone()) {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read --bootstrap-users-file {}", path.display()))?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                bootstrap_users.push(parse_user(line).with_context(|| format!("in {}", path.display()))?);
            }
        }
        let mut super_users: Vec<String> = self
            .super_users
            .or_else(|| file.super_users.clone())
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = super_users.iter().find(|p| !p.contains(':')) {
            bail!("--super-users: '{bad}' is not a principal TYPE:NAME, e.g. User:admin");
        }
        super_users.extend(bootstrap_users.iter().map(|(name, _)| format!("User:{name}")));
        // Kafka's default: with clients authenticated, nothing is open by default.
        let authenticated = protocols.iter().any(|p| p.sasl() || p.tls());
        let allow_everyone = self
            .allow_everyone_if_no_acl_found
            .or(file.allow_everyone_if_no_acl_found)
            .unwrap_or(!authenticated);
        Ok(KafkaSecurity {
            listeners,
            advertised,
            config: SecurityConfig {
                tls,
                sasl_mechanisms,
                authorizer: Authorizer::new(super_users, allow_everyone),
                bootstrap_users,
            },
        })
    }
}

fn parse_user(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            Ok((name.to_string(), password.to_string()))
        }
        _ => bail!("a user is NAME:PASSWORD, both non-empty"),
    }
}

impl PeerSecurityArgs {
    /// The settings for a node's gRPC port; `file` fills what flags leave unset.
    pub fn resolve(&self, file: &FileSecurity) -> anyhow::Result<PeerSecurity> {
        let secret = match (
            &self.cluster_secret,
            self.cluster_secret_file.as_ref().or(file.cluster_secret_file.as_ref()),
        ) {
            (Some(_), Some(_)) => bail!("give --cluster-secret or --cluster-secret-file, not both"),
            (Some(secret), None) => Some(secret.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --cluster-secret-file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let Some(secret) = &secret {
            PeerSecurity::check_secret(secret).map_err(anyhow::Error::msg)?;
        }
        let cert = self.peer_tls_cert.clone().or_else(|| file.peer_tls_cert.clone());
        let key = self.peer_tls_key.clone().or_else(|| file.peer_tls_key.clone());
        let ca = self.peer_tls_ca.clone().or_else(|| file.peer_tls_ca.clone());
        let tls = match (cert, key, ca) {
            (Some(cert), Some(key), Some(ca)) => Some(PeerTls { cert, key, ca }),
            (None, None, None) => None,
            _ => bail!("mutual TLS between nodes needs all of --peer-tls-cert, --peer-tls-key and --peer-tls-ca"),
        };
        Ok(PeerSecurity {
            secret: secret.map(Arc::from),
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_kafka() {
        let open = ListenerArgs::default().resolve(&FileSecurity::default()).unwrap();
        assert!(open.listeners.is_none());
        let session = chronik_broker::security::session::Session::new("PLAINTEXT", [127, 0, 0, 1].into());
        let acls = chronik_state::acl::AclSet::default();
        let write = chronik_state::acl::Operation::Write;
        let topic = chronik_state::acl::ResourceType::Topic;
        assert!(
            open.config.authorizer.allows(&acls, &session, write, topic, "t"),
            "no authentication, open"
        );
        let closed = ListenerArgs {
            listeners: Some("SASL_PLAINTEXT://127.0.0.1:0".into()),
            bootstrap_user: Some("admin:secret".into()),
            ..Default::default()
        }
        .resolve(&FileSecurity::default())
        .unwrap();
        assert!(!closed.config.authorizer.allows(&acls, &session, write, topic, "t"));
        assert!(
            closed.config.authorizer.is_super_user("User:admin"),
            "bootstrap users are super-users"
        );
        let no_cert = ListenerArgs {
            listeners: Some("SSL://127.0.0.1:0".into()),
            ..Default::default()
        }
        .resolve(&FileSecurity::default())
        .unwrap_err();
        assert!(no_cert.to_string().contains("--tls-cert"), "{no_cert}");
    }

    #[test]
    fn peer_settings_are_all_or_nothing() {
        let partial = PeerSecurityArgs {
            peer_tls_cert: Some("a".into()),
            ..Default::default()
        };
        assert!(partial.resolve(&FileSecurity::default()).is_err());
        let short = PeerSecurityArgs {
            cluster_secret: Some("abc".into()),
            ..Default::default()
        };
        assert!(
            short
                .resolve(&FileSecurity::default())
                .unwrap_err()
                .to_string()
                .contains("16")
        );
    }
}
