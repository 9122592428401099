//! Per-topic configuration: Kafka's whole topic-config set with its types,
//! defaults and validation, and what the keys Chronik acts on translate to.
//! Keys without a meaning here are accepted and stored, as Kafka 3.x stores
//! its deprecated ones.

use std::collections::BTreeMap;

use chronik_log::LogConfig;

pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const COMPRESSION_TYPE: &str = "compression.type";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS: &str = "message.timestamp.after.max.ms";
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS: &str = "message.timestamp.before.max.ms";
pub const MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS: &str = "message.timestamp.difference.max.ms";
pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
pub const REMOTE_STORAGE_ENABLE: &str = "remote.storage.enable";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const RETENTION_MS: &str = "retention.ms";
pub const SEGMENT_BYTES: &str = "segment.bytes";

/// A config value's type, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

/// What a value must be, beyond parsing as its kind.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Any,
    AtLeast(i64),
    Between(i64, i64),
    /// `-1`, or within the range (gzip's level).
    DefaultOr(i64, i64),
    OneOf(&'static [&'static str]),
    /// A list whose every element is one of these.
    ListOf(&'static [&'static str]),
    /// Kafka's throttled-replica list: `*`, or `partition:broker` pairs.
    ThrottledReplicas,
    /// A Kafka release such as `3.0-IV1` or `2.8`.
    Version,
    Fraction,
    /// Only `false` is allowed: the feature does not exist here.
    Disabled(&'static str),
}

/// One topic config as Kafka defines it.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    /// The broker setting Kafka takes this topic config's default from.
    pub broker_synonym: &'static str,
    /// Whether Chronik acts on the value, or only stores it.
    pub honoured: bool,
    rule: Rule,
}

const LONG_MAX: &str = "9223372036854775807";
const CODECS: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

const fn def(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    broker_synonym: &'static str,
    honoured: bool,
    rule: Rule,
) -> ConfigDef {
    ConfigDef {
        name,
        default,
        kind,
        broker_synonym,
        honoured,
        rule,
    }
}

/// Kafka's topic configs (3.9), sorted by name.
pub const DEFS: &[ConfigDef] = &[
    def(
        CLEANUP_POLICY,
        "delete",
        Kind::List,
        "log.cleanup.policy",
        true,
        Rule::ListOf(&["compact", "delete"]),
    ),
    def(
        "compression.gzip.level",
        "-1",
        Kind::Int,
        "compression.gzip.level",
        true,
        Rule::DefaultOr(1, 9),
    ),
    def(
        "compression.lz4.level",
        "9",
        Kind::Int,
        "compression.lz4.level",
        true,
        Rule::Between(1, 17),
    ),
    def(
        COMPRESSION_TYPE,
        "producer",
        Kind::String,
        "compression.type",
        true,
        Rule::OneOf(CODECS),
    ),
    def(
        "compression.zstd.level",
        "3",
        Kind::Int,
        "compression.zstd.level",
        true,
        Rule::Between(-131072, 22),
    ),
    def(
        DELETE_RETENTION_MS,
        "86400000",
        Kind::Long,
        "log.cleaner.delete.retention.ms",
        false,
        Rule::AtLeast(0),
    ),
    def(
        "file.delete.delay.ms",
        "60000",
        Kind::Long,
        "log.segment.delete.delay.ms",
        false,
        Rule::AtLeast(0),
    ),
    def(
        "flush.messages",
        LONG_MAX,
        Kind::Long,
        "log.flush.interval.messages",
        false,
        Rule::AtLeast(1),
    ),
    def(
        "flush.ms",
        LONG_MAX,
        Kind::Long,
        "log.flush.interval.ms",
        false,
        Rule::AtLeast(0),
    ),
    def(
        "follower.replication.throttled.replicas",
        "",
        Kind::List,
        "",
        false,
        Rule::ThrottledReplicas,
    ),
    def(
        INDEX_INTERVAL_BYTES,
        "4096",
        Kind::Int,
        "log.index.interval.bytes",
        true,
        Rule::AtLeast(0),
    ),
    def(
        "leader.replication.throttled.replicas",
        "",
        Kind::List,
        "",
        false,
        Rule::ThrottledReplicas,
    ),
    def(
        "local.retention.bytes",
        "-2",
        Kind::Long,
        "log.local.retention.bytes",
        false,
        Rule::AtLeast(-2),
    ),
    def(
        "local.retention.ms",
        "-2",
        Kind::Long,
        "log.local.retention.ms",
        false,
        Rule::AtLeast(-2),
    ),
    def(
        MAX_COMPACTION_LAG_MS,
        LONG_MAX,
        Kind::Long,
        "log.cleaner.max.compaction.lag.ms",
        false,
        Rule::AtLeast(1),
    ),
    def(
        MAX_MESSAGE_BYTES,
        "1048588",
        Kind::Int,
        "message.max.bytes",
        true,
        Rule::AtLeast(0),
    ),
    def(
        "message.downconversion.enable",
        "true",
        Kind::Boolean,
        "log.message.downconversion.enable",
        false,
        Rule::Any,
    ),
    def(
        "message.format.version",
        "3.0-IV1",
        Kind::String,
        "log.message.format.version",
        false,
        Rule::Version,
    ),
    def(
        MESSAGE_TIMESTAMP_AFTER_MAX_MS,
        LONG_MAX,
        Kind::Long,
        "log.message.timestamp.after.max.ms",
        true,
        Rule::AtLeast(0),
    ),
    def(
        MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
        LONG_MAX,
        Kind::Long,
        "log.message.timestamp.before.max.ms",
        true,
        Rule::AtLeast(0),
    ),
    def(
        MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS,
        LONG_MAX,
        Kind::Long,
        "log.message.timestamp.difference.max.ms",
        true,
        Rule::AtLeast(0),
    ),
    def(
        MESSAGE_TIMESTAMP_TYPE,
        "CreateTime",
        Kind::String,
        "log.message.timestamp.type",
        true,
        Rule::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    def(
        MIN_CLEANABLE_DIRTY_RATIO,
        "0.5",
        Kind::Double,
        "log.cleaner.min.cleanable.ratio",
        false,
        Rule::Fraction,
    ),
    def(
        MIN_COMPACTION_LAG_MS,
        "0",
        Kind::Long,
        "log.cleaner.min.compaction.lag.ms",
        false,
        Rule::AtLeast(0),
    ),
    def(
        MIN_INSYNC_REPLICAS,
        "1",
        Kind::Int,
        "min.insync.replicas",
        true,
        Rule::AtLeast(1),
    ),
    def(
        "preallocate",
        "false",
        Kind::Boolean,
        "log.preallocate",
        false,
        Rule::Any,
    ),
    def("remote.log.copy.disable", "false", Kind::Boolean, "", false, Rule::Any),
    def(
        "remote.log.delete.on.disable",
        "false",
        Kind::Boolean,
        "",
        false,
        Rule::Any,
    ),
    def(
        REMOTE_STORAGE_ENABLE,
        "false",
        Kind::Boolean,
        "",
        false,
        Rule::Disabled("tiered storage is not supported"),
    ),
    def(
        RETENTION_BYTES,
        "-1",
        Kind::Long,
        "log.retention.bytes",
        true,
        Rule::Any,
    ),
    def(
        RETENTION_MS,
        "604800000",
        Kind::Long,
        "log.retention.ms",
        true,
        Rule::AtLeast(-1),
    ),
    def(
        SEGMENT_BYTES,
        "1073741824",
        Kind::Int,
        "log.segment.bytes",
        true,
        Rule::AtLeast(MIN_SEGMENT_BYTES),
    ),
    def(
        "segment.index.bytes",
        "10485760",
        Kind::Int,
        "log.index.size.max.bytes",
        false,
        Rule::AtLeast(4),
    ),
    def(
        "segment.jitter.ms",
        "0",
        Kind::Long,
        "log.roll.jitter.ms",
        false,
        Rule::AtLeast(0),
    ),
    def(
        "segment.ms",
        "604800000",
        Kind::Long,
        "log.roll.ms",
        false,
        Rule::AtLeast(1),
    ),
    def(
        "unclean.leader.election.enable",
        "false",
        Kind::Boolean,
        "unclean.leader.election.enable",
        false,
        Rule::Any,
    ),
];

/// Smallest segment Kafka allows; smaller ones would make a file per batch.
const MIN_SEGMENT_BYTES: i64 = 14;

pub fn definition(key: &str) -> Option<&'static ConfigDef> {
    DEFS.iter().find(|d| d.name == key)
}

/// Checks one key and value as Kafka does; the error says what is wrong.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let Some(def) = definition(key) else {
        return Err(format!("unknown topic config '{key}'"));
    };
    let value = value.trim();
    let wrong = |expected: String| Err(format!("{key} must be {expected}, got '{value}'"));
    match def.kind {
        Kind::Boolean if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") => {
            return wrong("true or false".into());
        }
        Kind::Int if value.parse::<i32>().is_err() => return wrong("a 32-bit integer".into()),
        Kind::Long if value.parse::<i64>().is_err() => return wrong("a 64-bit integer".into()),
        Kind::Double if value.parse::<f64>().map_or(true, |v| !v.is_finite()) => return wrong("a number".into()),
        _ => {}
    }
    let number = || value.parse::<i64>().unwrap_or_default();
    match def.rule {
        Rule::Any => Ok(()),
        Rule::AtLeast(min) if number() < min => wrong(format!("at least {min}")),
        Rule::Between(min, max) if !(min..=max).contains(&number()) => wrong(format!("between {min} and {max}")),
        Rule::DefaultOr(min, max) if number() != -1 && !(min..=max).contains(&number()) => {
            wrong(format!("-1 or between {min} and {max}"))
        }
        Rule::OneOf(allowed) if !allowed.contains(&value) => wrong(format!("one of {}", allowed.join(", "))),
        Rule::ListOf(allowed) => {
            let items = list(value);
            if items.is_empty() || items.iter().any(|item| !allowed.contains(item)) {
                wrong(format!("a list of {}", allowed.join(", ")))
            } else {
                Ok(())
            }
        }
        Rule::ThrottledReplicas if !throttled_replicas_ok(value) => {
            wrong("'*' or a list of partition:broker pairs".into())
        }
        Rule::Version if !version_ok(value) => wrong("a Kafka version such as 3.0-IV1".into()),
        Rule::Fraction if !(0.0..=1.0).contains(&value.parse::<f64>().unwrap_or(-1.0)) => {
            wrong("between 0 and 1".into())
        }
        Rule::Disabled(why) if !value.eq_ignore_ascii_case("false") => Err(format!("{key}: {why}")),
        _ => Ok(()),
    }
}

/// The elements of a list value, trimmed, without empty ones.
pub fn list(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
}

fn throttled_replicas_ok(value: &str) -> bool {
    value.trim() == "*"
        || list(value).iter().all(|pair| {
            pair.split_once(':')
                .is_some_and(|(p, b)| p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok())
        })
}

fn version_ok(value: &str) -> bool {
    let release = value.split_once("-IV").map_or(
        value,
        |(release, iv)| {
            if iv.parse::<u32>().is_ok() { release } else { "" }
        },
    );
    let parts: Vec<&str> = release.split('.').collect();
    (2..=4).contains(&parts.len()) && parts.iter().all(|p| p.parse::<u32>().is_ok())
}

/// The value in force: the topic's own setting, or the default.
pub fn effective<'a>(overrides: &'a BTreeMap<String, String>, key: &'a str) -> &'a str {
    overrides
        .get(key)
        .map(|v| v.trim())
        .or_else(|| definition(key).map(|d| d.default))
        .unwrap_or("")
}

fn effective_i64(overrides: &BTreeMap<String, String>, key: &str) -> i64 {
    effective(overrides, key).parse().unwrap_or(-1)
}

/// A codec the broker stores batches in, whatever the producer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The batch attribute bits of this codec.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }
}

/// How the broker must shape a produced batch before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducePolicy {
    pub max_message_bytes: usize,
    /// `None` keeps the producer's compression (`compression.type=producer`).
    pub codec: Option<Codec>,
    /// The level for `codec`, where it has one.
    pub level: i32,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches.
    pub log_append_time: bool,
    /// How far a CreateTime timestamp may lie before or after the broker's clock.
    pub before_max_ms: i64,
    pub after_max_ms: i64,
    /// acks=all writes are refused while fewer replicas than this are in sync.
    pub min_insync_replicas: usize,
    /// A compacted topic refuses records without a key.
    pub keys_required: bool,
}

pub fn produce_policy(overrides: &BTreeMap<String, String>) -> ProducePolicy {
    let codec = match effective(overrides, COMPRESSION_TYPE) {
        "uncompressed" => Some(Codec::None),
        "gzip" => Some(Codec::Gzip),
        "snappy" => Some(Codec::Snappy),
        "lz4" => Some(Codec::Lz4),
        "zstd" => Some(Codec::Zstd),
        _ => None,
    };
    let level = match codec {
        Some(Codec::Gzip) => effective_i64(overrides, "compression.gzip.level"),
        Some(Codec::Lz4) => effective_i64(overrides, "compression.lz4.level"),
        Some(Codec::Zstd) => effective_i64(overrides, "compression.zstd.level"),
        _ => 0,
    } as i32;
    // Kafka 3.6+: the deprecated difference bound applies where the newer
    // before/after bounds are left at their default (no bound).
    let difference = effective_i64(overrides, MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS);
    let bound = |key: &str| match effective_i64(overrides, key) {
        i64::MAX => difference,
        set => set,
    };
    ProducePolicy {
        max_message_bytes: effective_i64(overrides, MAX_MESSAGE_BYTES).max(0) as usize,
        codec,
        level,
        log_append_time: effective(overrides, MESSAGE_TIMESTAMP_TYPE) == "LogAppendTime",
        before_max_ms: bound(MESSAGE_TIMESTAMP_BEFORE_MAX_MS),
        after_max_ms: bound(MESSAGE_TIMESTAMP_AFTER_MAX_MS),
        min_insync_replicas: effective_i64(overrides, MIN_INSYNC_REPLICAS).max(1) as usize,
        keys_required: list(effective(overrides, CLEANUP_POLICY)).contains(&"compact"),
    }
}

/// The partition-log settings. Retention deletes only under a `delete`
/// policy, compaction runs only under a `compact` one.
pub fn log_config(overrides: &BTreeMap<String, String>) -> LogConfig {
    let policy = list(effective(overrides, CLEANUP_POLICY));
    let deletes = policy.contains(&"delete");
    let retention_ms = effective_i64(overrides, RETENTION_MS);
    let retention_bytes = effective_i64(overrides, RETENTION_BYTES);
    LogConfig {
        segment_bytes: effective_i64(overrides, SEGMENT_BYTES).max(MIN_SEGMENT_BYTES) as u64,
        index_interval_bytes: effective_i64(overrides, INDEX_INTERVAL_BYTES).max(0) as u64,
        retention_ms: (deletes && retention_ms >= 0).then_some(retention_ms),
        retention_bytes: (deletes && retention_bytes >= 0).then_some(retention_bytes as u64),
        compact: policy.contains(&"compact"),
        min_cleanable_dirty_ratio: effective(overrides, MIN_CLEANABLE_DIRTY_RATIO).parse().unwrap_or(0.5),
        min_compaction_lag_ms: effective_i64(overrides, MIN_COMPACTION_LAG_MS).max(0),
        max_compaction_lag_ms: effective_i64(overrides, MAX_COMPACTION_LAG_MS).max(1),
        delete_retention_ms: effective_i64(overrides, DELETE_RETENTION_MS).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_as_kafka_does() {
        assert!(validate(RETENTION_MS, "1000").is_ok());
        assert!(validate(RETENTION_MS, "-1").is_ok());
        assert!(validate(RETENTION_MS, "-2").is_err());
        assert!(validate(RETENTION_MS, "soon").is_err());
        assert!(validate(CLEANUP_POLICY, "compact").is_ok());
        assert!(validate(CLEANUP_POLICY, "compact,delete").is_ok());
        assert!(validate(CLEANUP_POLICY, "shred").is_err());
        assert!(validate(CLEANUP_POLICY, "").is_err());
        assert!(validate("no.such.key", "1").is_err());
        assert!(validate(SEGMENT_BYTES, "1").is_err());
        assert!(validate(SEGMENT_BYTES, "4294967296").is_err(), "an INT config");
        assert!(validate(COMPRESSION_TYPE, "zstd").is_ok());
        assert!(validate(COMPRESSION_TYPE, "brotli").is_err());
        assert!(validate("message.format.version", "3.0-IV1").is_ok());
        assert!(validate("message.format.version", "2.8").is_ok());
        assert!(validate("message.format.version", "latest").is_err());
        assert!(validate("unclean.leader.election.enable", "TRUE").is_ok());
        assert!(validate("unclean.leader.election.enable", "yes").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "0.25").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("leader.replication.throttled.replicas", "0:1,1:2").is_ok());
        assert!(validate("leader.replication.throttled.replicas", "*").is_ok());
        assert!(validate("leader.replication.throttled.replicas", "0-1").is_err());
        assert!(validate("compression.gzip.level", "-1").is_ok());
        assert!(validate("compression.gzip.level", "0").is_err());
        assert!(validate(REMOTE_STORAGE_ENABLE, "false").is_ok());
        assert!(validate(REMOTE_STORAGE_ENABLE, "true").is_err());
        assert!(validate(MIN_INSYNC_REPLICAS, "0").is_err());
    }

    #[test]
    fn every_default_is_valid_and_names_are_sorted() {
        for def in DEFS {
            assert_eq!(validate(def.name, def.default), Ok(()), "{}", def.name);
        }
        assert!(DEFS.windows(2).all(|w| w[0].name < w[1].name));
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
        assert_eq!(produce_policy(&overrides).max_message_bytes, 1_048_588);
        assert!(!config.compact);
        overrides.insert(CLEANUP_POLICY.to_string(), "compact".to_string());
        overrides.insert(MIN_CLEANABLE_DIRTY_RATIO.to_string(), "0.01".to_string());
        overrides.insert(MIN_COMPACTION_LAG_MS.to_string(), "60000".to_string());
        overrides.insert(DELETE_RETENTION_MS.to_string(), "0".to_string());
        let config = log_config(&overrides);
        assert_eq!(
            config.retention_bytes, None,
            "compact-only deletes nothing by age or size"
        );
        assert!(config.compact);
        assert_eq!(config.min_cleanable_dirty_ratio, 0.01);
        assert_eq!((config.min_compaction_lag_ms, config.delete_retention_ms), (60_000, 0));
        assert_eq!(config.max_compaction_lag_ms, i64::MAX);
        overrides.insert(CLEANUP_POLICY.to_string(), "compact,delete".to_string());
        let config = log_config(&overrides);
        assert!(config.compact && config.retention_bytes == Some(5000));
    }

    #[test]
    fn translates_to_produce_policy() {
        let mut overrides = BTreeMap::new();
        let policy = produce_policy(&overrides);
        assert_eq!(policy.codec, None);
        assert!(!policy.log_append_time);
        assert_eq!(policy.before_max_ms, i64::MAX);
        overrides.insert(COMPRESSION_TYPE.to_string(), "zstd".to_string());
        overrides.insert(MESSAGE_TIMESTAMP_TYPE.to_string(), "LogAppendTime".to_string());
        overrides.insert(MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS.to_string(), "1000".to_string());
        overrides.insert(MESSAGE_TIMESTAMP_AFTER_MAX_MS.to_string(), "5".to_string());
        let policy = produce_policy(&overrides);
        assert_eq!(policy.codec, Some(Codec::Zstd));
        assert_eq!(policy.level, 3);
        assert!(policy.log_append_time);
        assert_eq!((policy.before_max_ms, policy.after_max_ms), (1000, 5));
    }
}
