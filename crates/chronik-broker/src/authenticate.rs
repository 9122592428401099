//! SaslHandshake and SaslAuthenticate frames on a SASL listener (or bare
//! tokens after a v0 handshake), answered by the connection's exchange
//! before any other request is served.

use bytes::Bytes;
use chronik_state::users::{ScramCredential, ScramMechanism};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest};

use crate::Broker;
use crate::codec::{Decoded, Response, decode, encode};
use crate::security::sasl::{Outcome, SaslExchange};

/// Answers a bare token (after SaslHandshake v0) with a bare token. A
/// failure closes the connection without an answer, as Kafka does.
pub fn raw_step(broker: &Broker, exchange: &mut SaslExchange, frame: Bytes) -> (Response, Outcome) {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(frame);
    let (response, outcome) = exchange.authenticate(&request, |user, mechanism| credential(broker, user, mechanism));
    match outcome {
        Outcome::Close => (None, Outcome::Close),
        outcome => (Some(response.auth_bytes.into()), outcome),
    }
}

fn credential(broker: &Broker, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
    broker.state.metadata().users.credential(user, mechanism).cloned()
}

/// Answers one SASL frame and says what it means for the connection.
pub fn step(broker: &Broker, exchange: &mut SaslExchange, frame: Bytes) -> (Response, Outcome) {
    let (header, request) = match decode(frame) {
        Decoded::Request(header, request) => (header, request),
        Decoded::Rejected(response) => return (response, Outcome::Close),
    };
    let (key, body, outcome) = match request {
        RequestKind::SaslHandshake(request) => {
            let (response, outcome) = exchange.handshake(&request, header.request_api_version);
            (ApiKey::SaslHandshake, ResponseKind::SaslHandshake(response), outcome)
        }
        RequestKind::SaslAuthenticate(request) => {
            let (response, outcome) =
                exchange.authenticate(&request, |user, mechanism| credential(broker, user, mechanism));
            (
                ApiKey::SaslAuthenticate,
                ResponseKind::SaslAuthenticate(response),
                outcome,
            )
        }
        _ => return (None, Outcome::Close),
    };
    (
        encode(header.correlation_id, key, header.request_api_version, body),
        outcome,
    )
}
