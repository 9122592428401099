//! Who a client is and what it may do:
//!
//! - [`listener`]: the Kafka listeners and their security protocols;
//! - [`tls`]: TLS on a listener, and the principal of a client certificate;
//! - [`sasl`] with [`scram`]: SASL PLAIN and SCRAM authentication;
//! - [`session`]: the principal and address of one connection;
//! - [`authorizer`]: Kafka's ACL decision for a session.
//!
//! ACLs and SCRAM credentials themselves are replicated metadata
//! (`chronik_state::acl`, `chronik_state::users`).

pub mod authorizer;
pub mod listener;
pub mod sasl;
pub mod scram;
pub mod session;
pub mod tls;

/// Security settings of the Kafka side of one broker.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    pub tls: Option<tls::TlsSettings>,
    pub sasl_mechanisms: Vec<sasl::Mechanism>,
    pub authorizer: authorizer::Authorizer,
    /// Users created at startup if missing (name, password); they are super-users.
    pub bootstrap_users: Vec<(String, String)>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            tls: None,
            sasl_mechanisms: sasl::Mechanism::ALL.to_vec(),
            authorizer: authorizer::Authorizer::new(Vec::new(), true),
            bootstrap_users: Vec::new(),
        }
    }
}
