//! AlterConfigs (v0-2), the legacy API that replaces a topic's whole set of overrides. Also home
//! of the apply step IncrementalAlterConfigs shares: duplicate detection, topic and broker changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::create_topics::Failure;
use super::describe_configs::{
    check_broker_name, is_alterable_broker_config, unsupported_resource_type, RESOURCE_BROKER, RESOURCE_TOPIC,
};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::error::Error;

/// Which (resource type, resource name) pairs appear more than once; Kafka refuses all of them.
pub(crate) fn duplicate_resources<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> Vec<(i8, &'a str)> {
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    for r in resources {
        *counts.entry(r).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).map(|(r, _)| r).collect()
}

/// The failure for a resource named more than once in one request.
pub(crate) fn duplicate_failure() -> Failure {
    Failure::new(
        ResponseError::InvalidRequest,
        "the resource appears more than once in the request",
    )
}

/// The failure for a null value where a value is required.
pub(crate) fn null_value_failure(name: &str) -> Failure {
    Failure::new(
        ResponseError::InvalidRequest,
        format!("a null value is not supported for config {name}"),
    )
}

/// Replaces a topic's overrides with `configs` (every entry validated first).
pub(crate) fn alter_topic(
    broker: &Broker,
    config: &BrokerConfig,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), Failure> {
    if broker.topics.get(name).is_none() {
        return Err(Error::UnknownTopicOrPartition(name.to_string()).into());
    }
    broker.topics.set_configs(config, name, configs, validate_only)?;
    if !validate_only {
        tracing::info!(topic = name, "topic configs altered");
    }
    Ok(())
}

/// Sets (Some) or removes (None) broker configs; only names that may change while the broker
/// runs are accepted, and nothing changes unless every entry is valid.
pub(crate) fn alter_broker(
    broker: &Broker,
    config: &BrokerConfig,
    resource_name: &str,
    changes: &[(String, Option<String>)],
    validate_only: bool,
) -> Result<(), Failure> {
    check_broker_name(config, resource_name)?;
    for (name, _) in changes {
        if !is_alterable_broker_config(name) {
            let reason = if BrokerConfig::names().any(|n| n == name) {
                "it cannot be changed while the broker runs; set it on the command line"
            } else {
                "not a broker config Brook knows"
            };
            return Err(Error::InvalidConfig {
                name: name.clone(),
                reason: reason.to_string(),
            }
            .into());
        }
    }
    broker.alter_config(changes, validate_only)?;
    if !validate_only && !changes.is_empty() {
        let names: Vec<&str> = changes.iter().map(|(n, _)| n.as_str()).collect();
        tracing::info!(configs = %names.join(","), "broker configs altered");
    }
    Ok(())
}

/// Applies each resource independently. Topic resources get exactly the given overrides; broker
/// resources get the given values set (see the note on brokers in `alter_resource`).
pub fn handle(broker: &Arc<Broker>, request: AlterConfigsRequest, _version: i16) -> AlterConfigsResponse {
    let config = broker.config();
    let duplicates = duplicate_resources(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut response = AlterConfigsResponse::default();
    response.responses = request
        .resources
        .iter()
        .map(|r| {
            let outcome = if duplicates.contains(&(r.resource_type, r.resource_name.as_str())) {
                Err(duplicate_failure())
            } else {
                alter_resource(broker, &config, r, request.validate_only)
            };
            let mut result = AlterConfigsResourceResponse::default();
            result.resource_type = r.resource_type;
            result.resource_name = r.resource_name.clone();
            result.error_message = None;
            if let Err(failure) = outcome {
                result.error_code = failure.code;
                result.error_message = failure.message_bytes();
            }
            result
        })
        .collect();
    response
}

fn alter_resource(
    broker: &Broker,
    config: &BrokerConfig,
    resource: &kafka_protocol::messages::alter_configs_request::AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Failure> {
    let mut values = Vec::with_capacity(resource.configs.len());
    for c in &resource.configs {
        let value = c
            .value
            .as_ref()
            .map(StrBytes::to_string)
            .ok_or_else(|| null_value_failure(c.name.as_str()))?;
        values.push((c.name.to_string(), value));
    }
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => alter_topic(broker, config, name, values.into_iter().collect(), validate_only),
        // Kafka replaces the broker's dynamic layer; Brook keeps command-line and dynamic values
        // in one layer, so it sets the given values and leaves the others alone rather than
        // silently dropping settings the operator gave on the command line.
        RESOURCE_BROKER => {
            let changes: Vec<(String, Option<String>)> = values.into_iter().map(|(k, v)| (k, Some(v))).collect();
            alter_broker(broker, config, name, &changes, validate_only)
        }
        other => Err(unsupported_resource_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::create_topics::test_support::{create, encodes, open, s};
    use super::*;
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};

    fn resource(resource_type: i8, name: &str, configs: &[(&str, Option<&str>)]) -> AlterConfigsResource {
        let mut r = AlterConfigsResource::default();
        r.resource_type = resource_type;
        r.resource_name = s(name);
        r.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = AlterableConfig::default();
                c.name = s(k);
                c.value = v.map(s);
                c
            })
            .collect();
        r
    }

    fn alter(broker: &Arc<Broker>, resources: Vec<AlterConfigsResource>, validate_only: bool) -> Vec<i16> {
        let mut request = AlterConfigsRequest::default();
        request.resources = resources;
        request.validate_only = validate_only;
        let response = handle(broker, request, 2);
        encodes(&response, 0..=2);
        for r in &response.responses {
            assert!(r.error_code == 0 || r.error_message.as_ref().is_some_and(|m| !m.is_empty()));
        }
        response.responses.iter().map(|r| r.error_code).collect()
    }

    fn overrides(broker: &Arc<Broker>, topic: &str) -> Vec<(String, String)> {
        broker.topics.get(topic).unwrap().configs().into_iter().collect()
    }

    #[test]
    fn legacy_alter_replaces_every_topic_override() {
        let (_dir, broker) = open();
        create(
            &broker,
            "t",
            1,
            &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
        );
        assert_eq!(
            alter(
                &broker,
                vec![resource(RESOURCE_TOPIC, "t", &[("segment.bytes", Some("4096"))])],
                false
            ),
            vec![0]
        );
        assert_eq!(
            overrides(&broker, "t"),
            vec![("segment.bytes".to_string(), "4096".to_string())]
        );
        assert_eq!(
            alter(
                &broker,
                vec![resource(RESOURCE_TOPIC, "t", &[("segment.bytes", Some("1"))])],
                true
            ),
            vec![ResponseError::InvalidConfig.code()]
        );
        assert_eq!(alter(&broker, vec![resource(RESOURCE_TOPIC, "t", &[])], true), vec![0]);
        assert_eq!(overrides(&broker, "t").len(), 1, "validate_only changes nothing");
    }

    #[test]
    fn errors_are_per_resource() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[]);
        let codes = alter(
            &broker,
            vec![
                resource(RESOURCE_TOPIC, "missing", &[]),
                resource(RESOURCE_TOPIC, "t", &[("retention.ms", None)]),
                resource(RESOURCE_BROKER, "0", &[("max.connections", Some("10"))]),
                resource(RESOURCE_BROKER, "0", &[("num.partitions", Some("2"))]),
                resource(8, "root", &[]),
            ],
            false,
        );
        let invalid_request = ResponseError::InvalidRequest.code();
        assert_eq!(
            codes,
            vec![
                ResponseError::UnknownTopicOrPartition.code(),
                invalid_request,
                invalid_request,
                invalid_request,
                invalid_request
            ],
            "the broker resource appears twice"
        );
        let codes = alter(
            &broker,
            vec![
                resource(RESOURCE_BROKER, "", &[("max.connections", Some("10"))]),
                resource(RESOURCE_BROKER, "0", &[("num.partitions", Some("2"))]),
            ],
            false,
        );
        assert_eq!(
            codes,
            vec![ResponseError::InvalidConfig.code(), 0],
            "\"\" and \"0\" are distinct resources, as in Kafka"
        );
        assert_eq!(broker.config().long("num.partitions"), 2);
    }
}
