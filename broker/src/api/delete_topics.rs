//! DeleteTopics (v1-6): deletes topics by name, or from v6 by topic id, with their data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::create_topics::Failure;
use crate::broker::Broker;
use crate::error::Error;

/// Deletes each topic independently. Up to v5 topics come by name in `topic_names`; v6 names
/// each in `topics` by name or by id, never both. Internal topics may be deleted, as in Kafka.
pub fn handle(broker: &Arc<Broker>, request: DeleteTopicsRequest, _version: i16) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.clone()), Uuid::nil()))
        .chain(request.topics.iter().map(|t| (t.name.clone(), t.topic_id)))
        .collect();
    let mut counts: HashMap<(Option<&str>, Uuid), usize> = HashMap::new();
    for (name, id) in &wanted {
        *counts.entry((name.as_ref().map(|n| n.as_str()), *id)).or_default() += 1;
    }
    let mut answered = HashSet::new();
    let mut response = DeleteTopicsResponse::default();
    for (name, id) in &wanted {
        let key = (name.as_ref().map(|n| n.as_str()), *id);
        // Kafka answers once per distinct topic, refusing every topic given more than once.
        if !answered.insert(key) {
            continue;
        }
        let mut result = DeletableTopicResult::default();
        result.name = name.clone();
        result.topic_id = *id;
        let outcome = if counts.get(&key).copied().unwrap_or(0) > 1 {
            Err(Failure::new(
                ResponseError::InvalidRequest,
                "the topic appears more than once in the request",
            ))
        } else {
            delete(broker, name.as_ref().map(|n| n.as_str()), *id, &mut result)
        };
        if let Err(failure) = outcome {
            result.error_code = failure.code;
            result.error_message = failure.message_bytes();
        }
        response.responses.push(result);
    }
    response
}

/// Deletes one topic, filling in the result's name or id from the topic found.
fn delete(broker: &Broker, name: Option<&str>, id: Uuid, result: &mut DeletableTopicResult) -> Result<(), Failure> {
    let topic = match (name, id.is_nil()) {
        (Some(_), false) => {
            return Err(Failure::new(
                ResponseError::InvalidRequest,
                "a topic may be given by name or by id, not both",
            ))
        }
        (None, true) => {
            return Err(Failure::new(
                ResponseError::InvalidRequest,
                "a topic must be given by name or by id",
            ))
        }
        (Some(name), true) => broker
            .topics
            .get(name)
            .ok_or_else(|| Error::UnknownTopicOrPartition(name.to_string()))?,
        (None, false) => broker
            .topics
            .all()
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Failure::new(ResponseError::UnknownTopicId, format!("no topic has id {id}")))?,
    };
    result.name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    result.topic_id = topic.id;
    if topic.is_internal() {
        tracing::warn!(topic = %topic.name, "deleting an internal topic");
    }
    broker.topics.delete(&topic.name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::create_topics::test_support::{create, encodes, open, s};
    use super::*;
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    fn by_names(names: &[&str]) -> DeleteTopicsRequest {
        let mut r = DeleteTopicsRequest::default();
        r.topic_names = names.iter().map(|n| TopicName(s(n))).collect();
        r
    }

    #[test]
    fn deletes_topics_by_name() {
        let (dir, broker) = open();
        create(&broker, "t", 2, &[]);
        let id = broker.topics.get("t").unwrap().id;
        let response = handle(&broker, by_names(&["t", "missing"]), 5);
        encodes(&response, 1..=5);
        assert_eq!(response.responses.len(), 2);
        assert_eq!(response.responses[0].error_code, 0);
        assert_eq!(response.responses[0].topic_id, id);
        assert_eq!(
            response.responses[1].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert!(response.responses[1]
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("missing")));
        assert!(broker.topics.get("t").is_none());
        assert!(!dir.path().join("t-0").exists());
        let twice = handle(&broker, by_names(&["x", "x"]), 5);
        assert_eq!(twice.responses.len(), 1);
        assert_eq!(twice.responses[0].error_code, ResponseError::InvalidRequest.code());
    }

    #[test]
    fn deletes_topics_by_id_in_v6() {
        let (_dir, broker) = open();
        create(&broker, "t", 1, &[]);
        create(&broker, "__internal", 1, &[]);
        let id = broker.topics.get("t").unwrap().id;
        let state = |name: Option<&str>, id: Uuid| {
            let mut t = DeleteTopicState::default();
            t.name = name.map(|n| TopicName(s(n)));
            t.topic_id = id;
            t
        };
        let mut request = DeleteTopicsRequest::default();
        request.topics = vec![
            state(None, id),
            state(None, Uuid::new_v4()),
            state(Some("__internal"), Uuid::nil()),
            state(Some("t"), id),
        ];
        let response = handle(&broker, request, 6);
        encodes(&response, 6..=6);
        let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                ResponseError::UnknownTopicId.code(),
                0,
                ResponseError::InvalidRequest.code()
            ]
        );
        assert_eq!(response.responses[0].name.as_ref().map(|n| n.as_str()), Some("t"));
        assert!(broker.topics.all().iter().all(|t| t.is_internal()));
    }
}
