//! The SASL exchange of one connection (SaslHandshake v1, then
//! SaslAuthenticate): PLAIN, checked against the stored SCRAM credentials,
//! and SCRAM-SHA-256/512. A failure ends the connection, as in Kafka.

use bytes::Bytes;
use chronik_state::users::{ScramCredential, ScramMechanism};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::scram::{self, ScramServer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::Scram(ScramMechanism::Sha256),
        Mechanism::Scram(ScramMechanism::Sha512),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// What a step of the exchange means for the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    /// The client proved it is this principal.
    Authenticated(String),
    /// Answer, then close the connection.
    Close,
}

enum State {
    Handshake,
    Plain,
    Scram(ScramServer),
    Authenticated,
}

pub struct SaslExchange {
    enabled: Vec<Mechanism>,
    state: State,
    /// The handshake was v0: tokens come as bare frames, not SaslAuthenticate.
    raw_tokens: bool,
}

impl SaslExchange {
    pub fn new(enabled: Vec<Mechanism>) -> SaslExchange {
        SaslExchange {
            enabled,
            state: State::Handshake,
            raw_tokens: false,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Whether the next frame is a bare token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens && !matches!(self.state, State::Handshake | State::Authenticated)
    }

    pub fn handshake(&mut self, request: &SaslHandshakeRequest, version: i16) -> (SaslHandshakeResponse, Outcome) {
        let mechanisms = self
            .enabled
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
        if !matches!(self.state, State::Handshake) {
            let error = ResponseError::IllegalSaslState.code();
            return (response.with_error_code(error), Outcome::Close);
        }
        match Mechanism::from_name(request.mechanism.as_str()).filter(|m| self.enabled.contains(m)) {
            Some(Mechanism::Plain) => self.state = State::Plain,
            Some(Mechanism::Scram(m)) => self.state = State::Scram(ScramServer::new(m)),
            None => {
                tracing::info!(mechanism = %request.mechanism.as_str(), "refused an unsupported SASL mechanism");
                let error = ResponseError::UnsupportedSaslMechanism.code();
                return (response.with_error_code(error), Outcome::Close);
            }
        }
        self.raw_tokens = version == 0;
        (response, Outcome::Continue)
    }

    /// One SaslAuthenticate token. `credential` finds a user's stored
    /// credential for a mechanism.
    pub fn authenticate(
        &mut self,
        request: &SaslAuthenticateRequest,
        credential: impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
    ) -> (SaslAuthenticateResponse, Outcome) {
        let state = std::mem::replace(&mut self.state, State::Handshake);
        let (result, next) = match state {
            State::Plain => (plain(&request.auth_bytes, &credential), State::Authenticated),
            State::Scram(mut server) => {
                let mechanism = server.mechanism();
                let nonce = server_nonce();
                match server.step(&request.auth_bytes, |user| credential(user, mechanism), &nonce) {
                    Ok(step) => {
                        let outcome = match step.authenticated {
                            Some(user) => Outcome::Authenticated(format!("User:{user}")),
                            None => Outcome::Continue,
                        };
                        let next = if outcome == Outcome::Continue {
                            State::Scram(server)
                        } else {
                            State::Authenticated
                        };
                        let response = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(step.reply));
                        self.state = next;
                        return (response, outcome);
                    }
                    Err(e) => {
                        tracing::info!("SCRAM authentication failed: {e}");
                        (
                            Err(format!(
                                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                                mechanism.name()
                            )),
                            State::Handshake,
                        )
                    }
                }
            }
            State::Handshake | State::Authenticated => {
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate must follow a successful SaslHandshake",
                    )));
                return (response, Outcome::Close);
            }
        };
        self.state = next;
        match result {
            Ok(principal) => (SaslAuthenticateResponse::default(), Outcome::Authenticated(principal)),
            Err(message) => {
                self.state = State::Handshake;
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(message)));
                (response, Outcome::Close)
            }
        }
    }
}

fn server_nonce() -> String {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`. Checked against the user's
/// SCRAM-SHA-512 credential, or its SCRAM-SHA-256 one.
fn plain(
    token: &[u8],
    credential: &impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
) -> Result<String, String> {
    let refused = || "Authentication failed: Invalid username or password".to_string();
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        tracing::info!("malformed SASL/PLAIN token");
        return Err(refused());
    };
    let (Ok(authzid), Ok(user), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(user),
        std::str::from_utf8(password),
    ) else {
        return Err(refused());
    };
    if !authzid.is_empty() && authzid != user {
        return Err(
            "Authentication failed: Client requested an authorization id that is different from username".into(),
        );
    }
    let matched = ScramMechanism::ALL
        .into_iter()
        .rev()
        .find_map(|m| credential(user, m).map(|c| scram::password_matches(m, &c, password)));
    if matched == Some(true) {
        Ok(format!("User:{user}"))
    } else {
        tracing::info!(user, "SASL/PLAIN authentication failed");
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticate(exchange: &mut SaslExchange, token: &[u8], stored: &ScramCredential) -> (i16, Outcome) {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
        let (response, outcome) = exchange.authenticate(&request, |user, m| {
            (user == "alice" && m == ScramMechanism::Sha256).then(|| stored.clone())
        });
        (response.error_code, outcome)
    }

    fn handshake(exchange: &mut SaslExchange, mechanism: &'static str) -> (i16, Outcome) {
        let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let (response, outcome) = exchange.handshake(&request, 1);
        (response.error_code, outcome)
    }

    #[test]
    fn plain_checks_the_stored_credential() {
        let stored = scram::new_credential(ScramMechanism::Sha256, "s3cret", 4096);
        let mut exchange = SaslExchange::new(Mechanism::ALL.to_vec());
        assert_eq!(handshake(&mut exchange, "PLAIN"), (0, Outcome::Continue));
        assert_eq!(
            authenticate(&mut exchange, b"\0alice\0s3cret", &stored),
            (0, Outcome::Authenticated("User:alice".into()))
        );
        assert!(exchange.is_authenticated());
        assert_eq!(
            handshake(&mut exchange, "PLAIN").1,
            Outcome::Close,
            "no second handshake"
        );

        let mut exchange = SaslExchange::new(Mechanism::ALL.to_vec());
        handshake(&mut exchange, "PLAIN");
        assert_eq!(
            authenticate(&mut exchange, b"\0alice\0wrong", &stored),
            (ResponseError::SaslAuthenticationFailed.code(), Outcome::Close)
        );
        for token in [
            &b"alice\0s3cret"[..],
            b"bob\0alice\0s3cret",
            b"\0alice\0s3cret\0x",
            b"\xff\0\xff\0\xff",
        ] {
            let mut exchange = SaslExchange::new(Mechanism::ALL.to_vec());
            handshake(&mut exchange, "PLAIN");
            assert_eq!(
                authenticate(&mut exchange, token, &stored).1,
                Outcome::Close,
                "{token:?}"
            );
        }
    }

    #[test]
    fn unknown_or_disabled_mechanisms_are_refused() {
        let mut exchange = SaslExchange::new(vec![Mechanism::Scram(ScramMechanism::Sha512)]);
        assert_eq!(
            handshake(&mut exchange, "PLAIN"),
            (ResponseError::UnsupportedSaslMechanism.code(), Outcome::Close)
        );
        let mut exchange = SaslExchange::new(Mechanism::ALL.to_vec());
        assert_eq!(
            handshake(&mut exchange, "GSSAPI").0,
            ResponseError::UnsupportedSaslMechanism.code()
        );
        let stored = scram::new_credential(ScramMechanism::Sha256, "x", 4096);
        let mut fresh = SaslExchange::new(Mechanism::ALL.to_vec());
        assert_eq!(
            authenticate(&mut fresh, b"\0alice\0x", &stored),
            (ResponseError::IllegalSaslState.code(), Outcome::Close),
            "SaslAuthenticate before SaslHandshake"
        );
    }
}
