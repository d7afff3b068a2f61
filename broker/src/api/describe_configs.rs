//! DescribeConfigs (v1-4): lists topic and broker configs with their values, sources, synonyms,
//! types and documentation, read from the config tables. Also home of the config helpers the
//! alter handlers share (resource types, sources, broker resource names, alterability).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::create_topics::Failure;
use crate::broker::Broker;
use crate::config::{BrokerConfig, ConfigSource, Kind, BROKER_CONFIGS, TOPIC_CONFIGS};
use crate::error::Error;
use crate::topics::validate_topic_name;

/// Kafka's ConfigResource.Type id of a topic.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
/// Kafka's ConfigResource.Type id of a broker.
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigSource ids (DescribeConfigsResponse.ConfigSource).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's ConfigType ids (DescribeConfigsResponse.ConfigType).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// Numeric configs that Kafka declares as INT rather than LONG; the rest of Brook's numbers are LONG.
const INT_CONFIGS: &[&str] = &[
    "default.replication.factor",
    "index.interval.bytes",
    "log.index.interval.bytes",
    "log.segment.bytes",
    "max.connections",
    "max.message.bytes",
    "message.max.bytes",
    "min.insync.replicas",
    "num.partitions",
    "queued.max.requests",
    "segment.bytes",
    "socket.request.max.bytes",
];

/// The ConfigSource id a client sees. Brook does not tell command-line broker settings from
/// ones set by AlterConfigs, so both are reported as STATIC_BROKER_CONFIG.
pub(crate) fn source_code(source: ConfigSource) -> i8 {
    match source {
        ConfigSource::Topic => SOURCE_TOPIC,
        ConfigSource::Broker => SOURCE_STATIC_BROKER,
        ConfigSource::Default => SOURCE_DEFAULT,
    }
}

/// Kafka's ConfigType id for a config.
fn config_type(name: &str, kind: Kind) -> i8 {
    match kind {
        Kind::Long { .. } if INT_CONFIGS.contains(&name) => TYPE_INT,
        Kind::Long { .. } => TYPE_LONG,
        Kind::Bool => TYPE_BOOLEAN,
        Kind::Enum(_) => TYPE_STRING,
        Kind::List(_) => TYPE_LIST,
    }
}

/// Checks a broker resource name: empty (the cluster default) or this node's id, as Kafka requires.
pub(crate) fn check_broker_name(config: &BrokerConfig, name: &str) -> Result<(), Failure> {
    if name.is_empty() {
        return Ok(());
    }
    let id: i32 = name.parse().map_err(|_| {
        Failure::new(
            ResponseError::InvalidRequest,
            format!("broker id must be an integer, but it is {name:?}"),
        )
    })?;
    if id != config.node_id {
        let message = format!(
            "unexpected broker id {id}: this broker is {} and answers only for itself or the empty name",
            config.node_id
        );
        return Err(Failure::new(ResponseError::InvalidRequest, message));
    }
    Ok(())
}

/// Whether a broker config may change while the broker runs: a topic default, or a broker-only
/// config marked dynamic in the table.
pub(crate) fn is_alterable_broker_config(name: &str) -> bool {
    TOPIC_CONFIGS.iter().any(|d| d.broker_name == name) || BROKER_CONFIGS.iter().any(|d| d.name == name && d.dynamic)
}

/// The failure for a resource type Brook does not describe or alter.
pub(crate) fn unsupported_resource_type(resource_type: i8) -> Failure {
    let known = match resource_type {
        8 => " (broker logger)",
        16 => " (client metrics)",
        32 => " (group)",
        _ => "",
    };
    Failure::new(
        ResponseError::InvalidRequest,
        format!("resource type {resource_type}{known} is not supported; Brook handles topics (2) and brokers (4)"),
    )
}

/// Describes each resource independently.
pub fn handle(broker: &Arc<Broker>, request: DescribeConfigsRequest, _version: i16) -> DescribeConfigsResponse {
    let config = broker.config();
    let want = Wanted {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    let mut response = DescribeConfigsResponse::default();
    response.results = request
        .resources
        .iter()
        .map(|resource| {
            let mut result = DescribeConfigsResult::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name.clone();
            match describe(broker, &config, resource, want) {
                Ok(configs) => {
                    result.error_message = None;
                    result.configs = configs;
                }
                Err(failure) => {
                    result.error_code = failure.code;
                    result.error_message = failure.message_bytes();
                }
            }
            result
        })
        .collect();
    response
}

/// The optional parts of each entry the client asked for.
#[derive(Clone, Copy)]
struct Wanted {
    synonyms: bool,
    documentation: bool,
}

fn describe(
    broker: &Broker,
    config: &BrokerConfig,
    resource: &DescribeConfigsResource,
    want: Wanted,
) -> Result<Vec<DescribeConfigsResourceResult>, Failure> {
    // Kafka treats both a null and an empty key list as "every config".
    let keys = resource.configuration_keys.as_deref().filter(|k| !k.is_empty());
    let wanted = |name: &str| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == name));
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => {
            validate_topic_name(name)?;
            let topic = broker
                .topics
                .get(name)
                .ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
            let overrides = topic.configs();
            Ok(TOPIC_CONFIGS
                .iter()
                .filter(|d| wanted(d.name))
                .map(|d| topic_entry(config, &overrides, d, want))
                .collect())
        }
        RESOURCE_BROKER => {
            check_broker_name(config, name)?;
            Ok(BrokerConfig::names()
                .filter(|n| wanted(n))
                .filter_map(|n| broker_entry(config, n, want))
                .collect())
        }
        other => Err(unsupported_resource_type(other)),
    }
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    let mut s = DescribeConfigsSynonym::default();
    s.name = StrBytes::from_string(name.to_string());
    s.value = Some(StrBytes::from_string(value.to_string()));
    s.source = source;
    s
}

/// One entry without its synonyms, which the caller adds when asked for.
fn entry(name: &str, value: String, source: i8, kind: Kind, doc: &str, want: Wanted) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = StrBytes::from_string(name.to_string());
    e.value = Some(StrBytes::from_string(value));
    e.read_only = false;
    e.config_source = source;
    e.is_sensitive = false;
    e.config_type = config_type(name, kind);
    e.documentation = want.documentation.then(|| StrBytes::from_string(doc.to_string()));
    e
}

/// A topic config's entry; its synonyms are, as in Kafka, the topic override, then the broker
/// setting, then the default, each only when present.
fn topic_entry(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    def: &crate::config::TopicConfigDef,
    want: Wanted,
) -> DescribeConfigsResourceResult {
    let mut synonyms = Vec::new();
    if let Some(v) = overrides.get(def.name) {
        synonyms.push(synonym(def.name, v, SOURCE_TOPIC));
    }
    if let Some((v, ConfigSource::Broker)) = config.get(def.broker_name) {
        synonyms.push(synonym(def.broker_name, &v, SOURCE_STATIC_BROKER));
    }
    synonyms.push(synonym(def.broker_name, def.default, SOURCE_DEFAULT));
    let (value, source) = config
        .topic_value(overrides, def.name)
        .unwrap_or_else(|| (def.default.to_string(), ConfigSource::Default));
    let mut e = entry(def.name, value, source_code(source), def.kind, def.doc, want);
    if want.synonyms {
        e.synonyms = synonyms;
    }
    e
}

/// A broker config's entry; configs that cannot change while the broker runs are read-only.
fn broker_entry(config: &BrokerConfig, name: &str, want: Wanted) -> Option<DescribeConfigsResourceResult> {
    let (kind, default, doc) = match BROKER_CONFIGS.iter().find(|d| d.name == name) {
        Some(d) => (d.kind, d.default, d.doc),
        None => TOPIC_CONFIGS
            .iter()
            .find(|d| d.broker_name == name)
            .map(|d| (d.kind, d.default, d.doc))?,
    };
    let (value, source) = config.get(name)?;
    let mut synonyms = Vec::new();
    if source == ConfigSource::Broker {
        synonyms.push(synonym(name, &value, SOURCE_STATIC_BROKER));
    }
    synonyms.push(synonym(name, default, SOURCE_DEFAULT));
    let mut e = entry(name, value, source_code(source), kind, doc, want);
    e.read_only = !is_alterable_broker_config(name);
    if want.synonyms {
        e.synonyms = synonyms;
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::super::create_topics::test_support::{create, encodes, open, s};
    use super::*;

    fn resource(resource_type: i8, name: &str, keys: Option<&[&str]>) -> DescribeConfigsResource {
        let mut r = DescribeConfigsResource::default();
        r.resource_type = resource_type;
        r.resource_name = s(name);
        r.configuration_keys = keys.map(|k| k.iter().map(|k| s(k)).collect());
        r
    }

    fn describe_one(
        broker: &Arc<Broker>,
        r: DescribeConfigsResource,
        synonyms: bool,
        docs: bool,
    ) -> DescribeConfigsResult {
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![r];
        request.include_synonyms = synonyms;
        request.include_documentation = docs;
        let mut response = handle(broker, request, 4);
        encodes(&response, 1..=4);
        response.results.remove(0)
    }

    fn find<'a>(result: &'a DescribeConfigsResult, name: &str) -> &'a DescribeConfigsResourceResult {
        result
            .configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} listed"))
    }

    #[test]
    fn topic_configs_show_overrides_broker_values_and_defaults() {
        let (_dir, broker) = open();
        broker
            .alter_config(&[("log.segment.bytes".to_string(), Some("2048".to_string()))], false)
            .unwrap();
        create(
            &broker,
            "t",
            1,
            &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
        );
        let result = describe_one(&broker, resource(RESOURCE_TOPIC, "t", None), true, true);
        assert_eq!(result.error_code, 0);
        assert_eq!(result.error_message, None);
        assert_eq!(result.configs.len(), TOPIC_CONFIGS.len());
        let retention = find(&result, "retention.ms");
        assert_eq!(
            (
                retention.value.as_deref(),
                retention.config_source,
                retention.config_type
            ),
            (Some("1000"), 1, 5)
        );
        let sources: Vec<(&str, i8)> = retention.synonyms.iter().map(|s| (s.name.as_str(), s.source)).collect();
        assert_eq!(sources, vec![("retention.ms", 1), ("log.retention.ms", 5)]);
        assert!(retention.documentation.as_ref().is_some_and(|d| !d.is_empty()));
        let segment = find(&result, "segment.bytes");
        assert_eq!(
            (segment.value.as_deref(), segment.config_source, segment.config_type),
            (Some("2048"), 4, 3)
        );
        let cleanup = find(&result, "cleanup.policy");
        assert_eq!((cleanup.value.as_deref(), cleanup.config_type), (Some("compact"), 7));
        assert_eq!(find(&result, "flush.ms").config_source, 5);
    }

    #[test]
    fn keys_filter_and_optional_parts_are_left_out_when_not_asked() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[]);
        let result = describe_one(
            &broker,
            resource(RESOURCE_TOPIC, "t", Some(&["retention.ms", "no.such"])),
            false,
            false,
        );
        assert_eq!(result.configs.len(), 1);
        assert!(result.configs[0].synonyms.is_empty());
        assert_eq!(result.configs[0].documentation, None);
        let all = describe_one(&broker, resource(RESOURCE_TOPIC, "t", Some(&[])), false, false);
        assert_eq!(all.configs.len(), TOPIC_CONFIGS.len());
    }

    #[test]
    fn broker_configs_are_listed_for_this_node_only() {
        let (_dir, broker) = open();
        broker
            .alter_config(&[("num.partitions".to_string(), Some("3".to_string()))], false)
            .unwrap();
        for name in ["0", ""] {
            let result = describe_one(&broker, resource(RESOURCE_BROKER, name, None), true, false);
            assert_eq!(result.error_code, 0);
            assert_eq!(result.configs.len(), BrokerConfig::names().count());
            let partitions = find(&result, "num.partitions");
            assert_eq!(
                (
                    partitions.value.as_deref(),
                    partitions.config_source,
                    partitions.read_only
                ),
                (Some("3"), 4, false)
            );
            assert!(find(&result, "max.connections").read_only);
        }
        for name in ["1", "zero"] {
            let result = describe_one(&broker, resource(RESOURCE_BROKER, name, None), false, false);
            assert_eq!(result.error_code, ResponseError::InvalidRequest.code());
            assert!(result.configs.is_empty());
        }
    }

    #[test]
    fn unknown_topics_and_resource_types_are_errors() {
        let (_dir, broker) = open();
        let missing = describe_one(&broker, resource(RESOURCE_TOPIC, "missing", None), false, false);
        assert_eq!(missing.error_code, ResponseError::UnknownTopicOrPartition.code());
        assert!(missing.error_message.as_ref().is_some_and(|m| m.contains("missing")));
        let group = describe_one(&broker, resource(32, "g", None), false, false);
        assert_eq!(group.error_code, ResponseError::InvalidRequest.code());
        assert_eq!(
            describe_one(&broker, resource(7, "x", None), false, false).error_code,
            ResponseError::InvalidRequest.code()
        );
    }
}
