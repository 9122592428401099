//! The identity a connection's requests are authorized as.

use std::net::IpAddr;

/// The principal of a connection that has not authenticated (PLAINTEXT, or
/// TLS without a client certificate).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

#[derive(Debug, Clone)]
pub struct Session {
    /// The name of the listener the client connected to.
    pub listener: String,
    /// `Type:name`, e.g. `User:alice`.
    pub principal: String,
    /// The client's address, as ACL hosts name it.
    pub host: String,
}

impl Session {
    pub fn new(listener: &str, peer: IpAddr) -> Session {
        Session {
            listener: listener.to_string(),
            principal: ANONYMOUS.to_string(),
            // An IPv4 client of a dual-stack listener is named as IPv4, as
            // Kafka names it, so that ACL hosts match.
            host: peer.to_canonical().to_string(),
        }
    }
}
