//! IncrementalAlterConfigs (v0-1): SET, DELETE, APPEND and SUBTRACT on single topic or broker
//! configs, computing the new full set first and applying it through the same path as AlterConfigs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::alter_configs::{alter_broker, alter_topic, duplicate_failure, duplicate_resources, null_value_failure};
use super::create_topics::Failure;
use super::describe_configs::{unsupported_resource_type, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::Broker;
use crate::config::{BrokerConfig, Kind, BROKER_CONFIGS, TOPIC_CONFIGS};
use crate::error::Error;

/// Kafka's AlterConfigOp.OpType ids.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Applies each resource independently; within a resource, all operations apply or none.
pub fn handle(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let config = broker.config();
    let duplicates = duplicate_resources(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut response = IncrementalAlterConfigsResponse::default();
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
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Failure> {
    let mut seen = HashSet::new();
    for op in &resource.configs {
        if !seen.insert(op.name.as_str()) {
            return Err(Failure::new(
                ResponseError::InvalidRequest,
                format!("config {} appears more than once for one resource", op.name),
            ));
        }
        if !matches!(op.config_operation, OP_SET | OP_DELETE | OP_APPEND | OP_SUBTRACT) {
            let message = format!(
                "unknown operation {} on config {}; expected SET (0), DELETE (1), APPEND (2) or SUBTRACT (3)",
                op.config_operation, op.name
            );
            return Err(Failure::new(ResponseError::InvalidRequest, message));
        }
        if op.config_operation != OP_DELETE && op.value.is_none() {
            return Err(null_value_failure(op.name.as_str()));
        }
    }
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => {
            let topic = broker
                .topics
                .get(name)
                .ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?;
            let mut configs = topic.configs();
            for op in &resource.configs {
                apply_topic_op(&mut configs, op)?;
            }
            alter_topic(broker, config, name, configs, validate_only)
        }
        RESOURCE_BROKER => {
            let mut changes = Vec::with_capacity(resource.configs.len());
            for op in &resource.configs {
                let key = op.name.as_str();
                let value = op.value.as_ref().map(|v| v.to_string());
                let change = match op.config_operation {
                    OP_SET => value,
                    OP_DELETE => None,
                    _ => {
                        let kind = BROKER_CONFIGS
                            .iter()
                            .find(|d| d.name == key)
                            .map(|d| d.kind)
                            .or_else(|| TOPIC_CONFIGS.iter().find(|d| d.broker_name == key).map(|d| d.kind))
                            .ok_or_else(|| unknown(key, "not a broker config Brook knows"))?;
                        let current = config.get(key).map(|(v, _)| v).unwrap_or_default();
                        Some(combine_list(key, kind, &current, op)?)
                    }
                };
                changes.push((key.to_string(), change));
            }
            alter_broker(broker, config, name, &changes, validate_only)
        }
        other => Err(unsupported_resource_type(other)),
    }
}

fn unknown(name: &str, reason: &str) -> Failure {
    Error::InvalidConfig {
        name: name.to_string(),
        reason: reason.to_string(),
    }
    .into()
}

/// Applies one operation to a topic's overrides. As in Kafka, APPEND and SUBTRACT start from
/// the topic's own value, or from the config's default when the topic has none.
fn apply_topic_op(configs: &mut BTreeMap<String, String>, op: &AlterableConfig) -> Result<(), Failure> {
    let key = op.name.as_str();
    let def = TOPIC_CONFIGS
        .iter()
        .find(|d| d.name == key)
        .ok_or_else(|| unknown(key, "not a topic config Brook knows"))?;
    match op.config_operation {
        OP_SET => {
            configs.insert(
                key.to_string(),
                op.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            );
        }
        OP_DELETE => {
            configs.remove(key);
        }
        _ => {
            let current = configs.get(key).cloned().unwrap_or_else(|| def.default.to_string());
            let combined = combine_list(key, def.kind, &current, op)?;
            configs.insert(key.to_string(), combined);
        }
    }
    Ok(())
}

/// APPEND adds the items not yet present; SUBTRACT removes every given item. Only list configs
/// take these operations.
fn combine_list(key: &str, kind: Kind, current: &str, op: &AlterableConfig) -> Result<String, Failure> {
    let verb = if op.config_operation == OP_APPEND {
        "append to"
    } else {
        "subtract from"
    };
    if !matches!(kind, Kind::List(_)) {
        return Err(unknown(
            key,
            &format!("cannot {verb} it because its type is not a list"),
        ));
    }
    let mut items: Vec<&str> = current.split(',').filter(|s| !s.is_empty()).collect();
    let given = op.value.as_ref().map(|v| v.as_str()).unwrap_or_default();
    for item in given.split(',') {
        if op.config_operation == OP_APPEND {
            if !items.contains(&item) {
                items.push(item);
            }
        } else {
            items.retain(|i| *i != item);
        }
    }
    Ok(items.join(","))
}

#[cfg(test)]
mod tests {
    use super::super::create_topics::test_support::{create, encodes, open, s};
    use super::*;

    fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
        let mut c = AlterableConfig::default();
        c.name = s(name);
        c.config_operation = operation;
        c.value = value.map(s);
        c
    }

    fn resource(resource_type: i8, name: &str, ops: Vec<AlterableConfig>) -> AlterConfigsResource {
        let mut r = AlterConfigsResource::default();
        r.resource_type = resource_type;
        r.resource_name = s(name);
        r.configs = ops;
        r
    }

    fn alter(broker: &Arc<Broker>, resources: Vec<AlterConfigsResource>, validate_only: bool) -> Vec<i16> {
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = resources;
        request.validate_only = validate_only;
        let response = handle(broker, request, 1);
        encodes(&response, 0..=1);
        for r in &response.responses {
            assert!(r.error_code == 0 || r.error_message.as_ref().is_some_and(|m| !m.is_empty()));
        }
        response.responses.iter().map(|r| r.error_code).collect()
    }

    fn value(broker: &Arc<Broker>, topic: &str, name: &str) -> Option<String> {
        broker.topics.get(topic).unwrap().configs().get(name).cloned()
    }

    #[test]
    fn set_delete_append_and_subtract_on_a_topic() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[("retention.ms", "1000")]);
        let ops = vec![
            op("segment.bytes", OP_SET, Some("4096")),
            op("retention.ms", OP_DELETE, None),
            op("cleanup.policy", OP_APPEND, Some("compact")),
        ];
        assert_eq!(alter(&broker, vec![resource(RESOURCE_TOPIC, "t", ops)], false), vec![0]);
        assert_eq!(value(&broker, "t", "segment.bytes").as_deref(), Some("4096"));
        assert_eq!(value(&broker, "t", "retention.ms"), None);
        assert_eq!(
            value(&broker, "t", "cleanup.policy").as_deref(),
            Some("delete,compact"),
            "append starts from the default"
        );
        let again = vec![op("cleanup.policy", OP_APPEND, Some("compact"))];
        assert_eq!(
            alter(&broker, vec![resource(RESOURCE_TOPIC, "t", again)], false),
            vec![0]
        );
        assert_eq!(
            value(&broker, "t", "cleanup.policy").as_deref(),
            Some("delete,compact"),
            "append skips items present"
        );
        let subtract = vec![op("cleanup.policy", OP_SUBTRACT, Some("delete"))];
        assert_eq!(
            alter(&broker, vec![resource(RESOURCE_TOPIC, "t", subtract)], false),
            vec![0]
        );
        assert_eq!(value(&broker, "t", "cleanup.policy").as_deref(), Some("compact"));
    }

    #[test]
    fn refusals_leave_the_topic_unchanged() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[("retention.ms", "1000")]);
        let invalid_config = ResponseError::InvalidConfig.code();
        let invalid_request = ResponseError::InvalidRequest.code();
        let cases = vec![
            (vec![op("retention.ms", OP_APPEND, Some("5"))], invalid_config),
            (vec![op("retention.ms", OP_SET, Some("soon"))], invalid_config),
            (vec![op("no.such", OP_DELETE, None)], invalid_config),
            (vec![op("retention.ms", OP_SET, None)], invalid_request),
            (vec![op("retention.ms", 9, Some("5"))], invalid_request),
            (
                vec![
                    op("retention.ms", OP_SET, Some("5")),
                    op("retention.ms", OP_DELETE, None),
                ],
                invalid_request,
            ),
            (
                vec![
                    op("segment.bytes", OP_SET, Some("4096")),
                    op("cleanup.policy", OP_APPEND, Some("shred")),
                ],
                invalid_config,
            ),
        ];
        for (ops, code) in cases {
            assert_eq!(
                alter(&broker, vec![resource(RESOURCE_TOPIC, "t", ops)], false),
                vec![code]
            );
        }
        let ok = vec![op("retention.ms", OP_SET, Some("5"))];
        assert_eq!(alter(&broker, vec![resource(RESOURCE_TOPIC, "t", ok)], true), vec![0]);
        assert_eq!(
            broker
                .topics
                .get("t")
                .unwrap()
                .configs()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![("retention.ms".to_string(), "1000".to_string())]
        );
        let missing = vec![op("retention.ms", OP_SET, Some("5"))];
        assert_eq!(
            alter(&broker, vec![resource(RESOURCE_TOPIC, "missing", missing)], false),
            vec![ResponseError::UnknownTopicOrPartition.code()]
        );
    }

    #[test]
    fn broker_configs_change_only_when_dynamic() {
        let (_dir, broker) = open();
        let set = vec![
            op("log.retention.ms", OP_SET, Some("5000")),
            op("log.cleanup.policy", OP_APPEND, Some("compact")),
        ];
        assert_eq!(
            alter(&broker, vec![resource(RESOURCE_BROKER, "0", set)], false),
            vec![0]
        );
        let config = broker.config();
        assert_eq!(config.get("log.retention.ms").unwrap().0, "5000");
        assert_eq!(config.get("log.cleanup.policy").unwrap().0, "delete,compact");
        let delete = vec![op("log.retention.ms", OP_DELETE, None)];
        assert_eq!(
            alter(&broker, vec![resource(RESOURCE_BROKER, "", delete)], false),
            vec![0]
        );
        assert_eq!(broker.config().get("log.retention.ms").unwrap().0, "604800000");
        let fixed = vec![op("socket.request.max.bytes", OP_SET, Some("2048"))];
        let elsewhere = vec![op("num.partitions", OP_SET, Some("2"))];
        let codes = alter(
            &broker,
            vec![
                resource(RESOURCE_BROKER, "0", fixed),
                resource(RESOURCE_BROKER, "7", elsewhere),
            ],
            false,
        );
        assert_eq!(
            codes,
            vec![
                ResponseError::InvalidConfig.code(),
                ResponseError::InvalidRequest.code()
            ]
        );
        let dry = vec![op("num.partitions", OP_SET, Some("2"))];
        assert_eq!(alter(&broker, vec![resource(RESOURCE_BROKER, "0", dry)], true), vec![0]);
        assert_eq!(broker.config().long("num.partitions"), 1);
    }
}
