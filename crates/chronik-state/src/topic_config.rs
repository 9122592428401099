//! Per-topic configuration: the keys Chronik understands, their defaults,
//! validation, and the partition-log settings they translate to.

use std::collections::BTreeMap;

use chronik_log::LogConfig;

pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const CLEANUP_POLICY: &str = "cleanup.policy";

/// Every supported key with its default, as Kafka documents them.
pub const DEFAULTS: &[(&str, &str)] = &[
    (CLEANUP_POLICY, "delete"),
    (MAX_MESSAGE_BYTES, "1048588"),
    (RETENTION_BYTES, "-1"),
    (RETENTION_MS, "604800000"),
    (SEGMENT_BYTES, "1073741824"),
];

/// Smallest segment Kafka allows; smaller ones would make a file per batch.
const MIN_SEGMENT_BYTES: i64 = 14;

/// Checks one key and value; the error says what is wrong.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let int = |min: i64| -> Result<(), String> {
        match value.parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            _ => Err(format!("{key} must be an integer >= {min}, got '{value}'")),
        }
    };
    match key {
        RETENTION_MS | RETENTION_BYTES => int(-1),
        SEGMENT_BYTES => int(MIN_SEGMENT_BYTES),
        MAX_MESSAGE_BYTES => int(0),
        CLEANUP_POLICY if value == "delete" => Ok(()),
        CLEANUP_POLICY => Err(format!("cleanup.policy '{value}' is not supported; only 'delete' is")),
        _ => Err(format!("unknown topic config '{key}'")),
    }
}

/// The value in force: the topic's own setting, or the default.
pub fn effective<'a>(overrides: &'a BTreeMap<String, String>, key: &'a str) -> &'a str {
    overrides
        .get(key)
        .map(String::as_str)
        .or_else(|| DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
        .unwrap_or("")
}

fn effective_i64(overrides: &BTreeMap<String, String>, key: &str) -> i64 {
    effective(overrides, key).parse().unwrap_or(-1)
}

pub fn max_message_bytes(overrides: &BTreeMap<String, String>) -> usize {
    effective_i64(overrides, MAX_MESSAGE_BYTES).max(0) as usize
}

pub fn log_config(overrides: &BTreeMap<String, String>) -> LogConfig {
    let retention_ms = effective_i64(overrides, RETENTION_MS);
    let retention_bytes = effective_i64(overrides, RETENTION_BYTES);
    LogConfig {
        segment_bytes: effective_i64(overrides, SEGMENT_BYTES).max(MIN_SEGMENT_BYTES) as u64,
        retention_ms: (retention_ms >= 0).then_some(retention_ms),
        retention_bytes: (retention_bytes >= 0).then_some(retention_bytes as u64),
        ..LogConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_known_keys() {
        assert!(validate(RETENTION_MS, "1000").is_ok());
        assert!(validate(RETENTION_MS, "-1").is_ok());
        assert!(validate(RETENTION_MS, "-2").is_err());
        assert!(validate(RETENTION_MS, "soon").is_err());
        assert!(validate(CLEANUP_POLICY, "compact").is_err());
        assert!(validate("no.such.key", "1").is_err());
        assert!(validate(SEGMENT_BYTES, "1").is_err());
    }

    #[test]
    fn translates_to_log_config() {
        let mut overrides = BTreeMap::new();
        assert_eq!(log_config(&overrides).retention_ms, Some(604_800_000));
        assert_eq!(log_config(&overrides).retention_bytes, None);
        overrides.insert(RETENTION_MS.to_string(), "-1".to_string());
        overrides.insert(RETENTION_BYTES.to_string(), "5000".to_string());
        overrides.insert(SEGMENT_BYTES.to_string(), "1024".to_string());
        let config = log_config(&overrides);
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, Some(5000));
        assert_eq!(config.segment_bytes, 1024);
        assert_eq!(max_message_bytes(&overrides), 1_048_588);
    }
}
