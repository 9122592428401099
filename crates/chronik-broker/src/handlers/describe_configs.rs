//! DescribeConfigs: every topic config with its value, source and synonyms,
//! and this broker's settings (all static: they are chronik-server flags).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::groups::assignor::ASSIGNORS;
use crate::security::listener::ListenerConfig;
use crate::security::session::Session;
use crate::{Broker, BrokerConfig};
use chronik_state::acl::Operation;
use chronik_state::topic_config::{self, ConfigDef, DEFS, Kind};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

// Config sources, as Kafka numbers them.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One described config, before it is put on the wire.
struct Described {
    name: &'static str,
    value: String,
    source: i8,
    kind: Kind,
    read_only: bool,
    /// Where the value could come from, most specific first.
    synonyms: Vec<(&'static str, String, i8)>,
    documentation: Option<&'static str>,
}

pub fn describe(
    broker: &Broker,
    session: &Session,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let options = Options {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let name = resource.resource_name.as_str();
            let described = match resource.resource_type {
                RESOURCE_TOPIC if !broker.allows_topic(session, Operation::DescribeConfigs, name) => Err((
                    ResponseError::TopicAuthorizationFailed,
                    format!("not authorized to DESCRIBE_CONFIGS topic '{name}'"),
                )),
                RESOURCE_BROKER if !broker.allows_cluster(session, Operation::DescribeConfigs) => Err((
                    ResponseError::ClusterAuthorizationFailed,
                    "not authorized to DESCRIBE_CONFIGS the cluster".to_string(),
                )),
                RESOURCE_TOPIC => topic(broker, name),
                RESOURCE_BROKER => broker_settings(&broker.config, name),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("config resource type {other} is not supported; topics (2) and brokers (4) are"),
                )),
            };
            match described {
                Ok(configs) => {
                    let wanted = |name: &str| {
                        resource
                            .configuration_keys
                            .as_ref()
                            .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
                    };
                    let configs = configs
                        .into_iter()
                        .filter(|c| wanted(c.name))
                        .map(|c| encode(c, &options, version))
                        .collect();
                    result.with_configs(configs)
                }
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// What the request asked to include besides values.
struct Options {
    synonyms: bool,
    documentation: bool,
}

fn topic(broker: &Broker, name: &str) -> Result<Vec<Described>, (ResponseError, String)> {
    let metadata = broker.state.metadata();
    let Some(topic) = metadata.topic(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        ));
    };
    Ok(DEFS
        .iter()
        .map(|def| {
            let own = topic.configs.get(def.name);
            let mut synonyms = Vec::new();
            if let Some(value) = own {
                synonyms.push((def.name, value.clone(), SOURCE_TOPIC));
            }
            if !def.broker_synonym.is_empty() {
                synonyms.push((def.broker_synonym, def.default.to_string(), SOURCE_DEFAULT));
            }
            Described {
                name: def.name,
                value: topic_config::effective(&topic.configs, def.name).to_string(),
                source: if own.is_some() { SOURCE_TOPIC } else { SOURCE_DEFAULT },
                kind: def.kind,
                read_only: false,
                synonyms,
                documentation: documentation(def),
            }
        })
        .collect())
}

fn documentation(def: &ConfigDef) -> Option<&'static str> {
    (!def.honoured).then_some("Accepted and stored; Chronik does not act on this setting.")
}

/// This broker's settings: its flags, then the broker defaults of the topic
/// configs. `name` is this broker's id, or empty for the cluster default.
fn broker_settings(config: &BrokerConfig, name: &str) -> Result<Vec<Described>, (ResponseError, String)> {
    let id = config.node_id.to_string();
    if !name.is_empty() && name != id {
        return Err((
            ResponseError::InvalidRequest,
            format!("unexpected broker id, expected {id} or empty string, but received {name}"),
        ));
    }
    let listed = |address: &dyn Fn(&ListenerConfig) -> String| {
        config
            .listeners
            .iter()
            .map(|l| format!("{}://{}", l.name, address(l)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let listeners = listed(&|l| l.bound.to_string());
    let advertised = listed(&|l| format!("{}:{}", l.advertised_host, l.advertised_port));
    let protocols = config
        .listeners
        .iter()
        .map(|l| format!("{}:{}", l.name, l.protocol.name()))
        .collect::<Vec<_>>()
        .join(",");
    let mechanisms = config
        .security
        .sasl_mechanisms
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(",");
    let flags: Vec<(&'static str, String, Kind)> = vec![
        ("broker.id", id, Kind::Int),
        ("node.id", config.node_id.to_string(), Kind::Int),
        ("listeners", listeners, Kind::String),
        ("advertised.listeners", advertised, Kind::String),
        ("listener.security.protocol.map", protocols, Kind::String),
        ("sasl.enabled.mechanisms", mechanisms, Kind::List),
        ("log.dirs", config.data_dir.display().to_string(), Kind::String),
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            Kind::Boolean,
        ),
        ("num.partitions", config.default_partitions.to_string(), Kind::Int),
        ("default.replication.factor", "3".to_string(), Kind::Int),
        (
            "socket.request.max.bytes",
            config.max_request_bytes.to_string(),
            Kind::Int,
        ),
        (
            "queued.max.request.bytes",
            config.queued_max_request_bytes.to_string(),
            Kind::Long,
        ),
        ("fetch.max.bytes", config.fetch_max_bytes.to_string(), Kind::Int),
        (
            "log.retention.check.interval.ms",
            config.retention_check_interval.as_millis().to_string(),
            Kind::Long,
        ),
        (
            "log.cleaner.backoff.ms",
            config.log_cleaner_backoff.as_millis().to_string(),
            Kind::Long,
        ),
        (
            "offsets.topic.num.partitions",
            config.offsets_topic_partitions.to_string(),
            Kind::Int,
        ),
        (
            "transaction.state.log.num.partitions",
            config.transaction_state_partitions.to_string(),
            Kind::Int,
        ),
        (
            "transaction.max.timeout.ms",
            config.transaction_max_timeout_ms.to_string(),
            Kind::Int,
        ),
        (
            "group.initial.rebalance.delay.ms",
            config.group_initial_rebalance_delay_ms.to_string(),
            Kind::Int,
        ),
        (
            "offsets.retention.minutes",
            config.offsets_retention_minutes.to_string(),
            Kind::Int,
        ),
        (
            "group.consumer.session.timeout.ms",
            config.group_consumer_session_timeout_ms.to_string(),
            Kind::Int,
        ),
        (
            "group.consumer.heartbeat.interval.ms",
            config.group_consumer_heartbeat_interval_ms.to_string(),
            Kind::Int,
        ),
        ("group.consumer.assignors", ASSIGNORS.join(","), Kind::List),
    ];
    let mut described: Vec<Described> = flags
        .into_iter()
        .map(|(name, value, kind)| Described {
            name,
            synonyms: vec![(name, value.clone(), SOURCE_STATIC_BROKER)],
            value,
            source: SOURCE_STATIC_BROKER,
            kind,
            read_only: true,
            documentation: None,
        })
        .collect();
    for def in DEFS.iter().filter(|d| !d.broker_synonym.is_empty()) {
        if described.iter().any(|d| d.name == def.broker_synonym) {
            continue;
        }
        described.push(Described {
            name: def.broker_synonym,
            value: def.default.to_string(),
            source: SOURCE_DEFAULT,
            kind: def.kind,
            read_only: true,
            synonyms: vec![(def.broker_synonym, def.default.to_string(), SOURCE_DEFAULT)],
            documentation: documentation(def),
        });
    }
    Ok(described)
}

// Config types, as Kafka numbers them (DescribeConfigs v3+).
fn type_code(kind: Kind) -> i8 {
    match kind {
        Kind::Boolean => 1,
        Kind::String => 2,
        Kind::Int => 3,
        Kind::Long => 5,
        Kind::Double => 6,
        Kind::List => 7,
    }
}

fn encode(config: Described, options: &Options, version: i16) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(config.name))
        .with_value(Some(StrBytes::from_string(config.value)))
        .with_read_only(config.read_only)
        .with_config_source(config.source)
        .with_is_sensitive(false);
    if options.synonyms && version >= 1 {
        result = result.with_synonyms(
            config
                .synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(name))
                        .with_value(Some(StrBytes::from_string(value)))
                        .with_source(source)
                })
                .collect(),
        );
    }
    if version >= 3 {
        result = result.with_config_type(type_code(config.kind));
        if options.documentation {
            result = result.with_documentation(config.documentation.map(str_bytes));
        }
    }
    result
}
