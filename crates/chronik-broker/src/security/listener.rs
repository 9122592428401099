//! Kafka listeners: a name, a security protocol, and where each binds and is
//! advertised, configured the way Kafka's `listeners`,
//! `advertised.listeners` and `listener.security.protocol.map` are.

use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn from_name(name: &str) -> Option<SecurityProtocol> {
        Some(match name {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// One listener of this broker, after binding.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Where it is bound.
    pub bound: SocketAddr,
    /// The address clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// A listener as written in `--listeners`: `NAME://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub host: String,
    pub port: u16,
}

/// Parses Kafka's `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
pub fn parse_protocol_map(text: &str) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, protocol) = item
            .split_once(':')
            .ok_or_else(|| format!("'{item}' in the security protocol map is not NAME:PROTOCOL"))?;
        let protocol = SecurityProtocol::from_name(protocol).ok_or_else(|| {
            format!("'{protocol}' is not a security protocol: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        })?;
        map.insert(name.to_string(), protocol);
    }
    Ok(map)
}

/// Parses Kafka's `listeners` format: `NAME://HOST:PORT,...`. A name is its
/// own protocol unless `map` says otherwise.
pub fn parse_listeners(text: &str, map: &BTreeMap<String, SecurityProtocol>) -> Result<Vec<ListenerSpec>, String> {
    let mut listeners: Vec<ListenerSpec> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, address) = item
            .split_once("://")
            .ok_or_else(|| format!("listener '{item}' is not NAME://HOST:PORT, e.g. SASL_SSL://0.0.0.0:9093"))?;
        let protocol = map
            .get(name)
            .copied()
            .or_else(|| SecurityProtocol::from_name(name))
            .ok_or_else(|| {
                format!("listener '{name}' has no security protocol: name it after one, or map it with --listener-security-protocol-map")
            })?;
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("listener '{item}': '{address}' is not HOST:PORT"))?;
        if listeners.iter().any(|l| l.name == name) {
            return Err(format!("listener '{name}' is given twice"));
        }
        listeners.push(ListenerSpec {
            name: name.to_string(),
            protocol,
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port,
        });
    }
    if listeners.is_empty() {
        return Err("no listener given".into());
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_as_kafka_writes_them() {
        let map = parse_protocol_map("INTERNAL:SASL_PLAINTEXT, EXTERNAL:SSL").unwrap();
        let listeners = parse_listeners("INTERNAL://0.0.0.0:9092,EXTERNAL://[::1]:9093,SASL_SSL://h:0", &map).unwrap();
        assert_eq!(listeners[0].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!((listeners[1].host.as_str(), listeners[1].port), ("::1", 9093));
        assert_eq!(listeners[2].protocol, SecurityProtocol::SaslSsl);
        for (bad, why) in [
            ("PLAINTEXT:9092", "NAME://HOST:PORT"),
            ("CUSTOM://h:1", "no security protocol"),
            ("SSL://h:x", "HOST:PORT"),
            ("SSL://h:1,SSL://h:2", "twice"),
            ("", "no listener"),
        ] {
            let error = parse_listeners(bad, &map).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(
            parse_protocol_map("A:TLS")
                .unwrap_err()
                .contains("not a security protocol")
        );
    }
}
