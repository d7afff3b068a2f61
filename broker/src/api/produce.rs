//! Produce: validates each partition's record batches (CRC, size, keys on compacted topics,
//! a transactional id for transactional batches), appends them verbatim (the log checks
//! producer epochs, sequences and transactions), and acknowledges once they are durable (acks 1
//! and all).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::error::{Error, Result};
use crate::log::batch::{require_keys, validate_batches};
use crate::log::{AppendInfo, AppendOptions, PartitionLog};

/// Largest decompressed batch the broker inspects (for key checks on compacted topics).
const MAX_INSPECT_BYTES: usize = 64 << 20;

/// Appends every partition's batches now, in request order, and answers once they are durable.
pub fn handle(broker: &Arc<Broker>, request: ProduceRequest, _version: i16) -> Reply {
    let acks = request.acks;
    let transactional = request.transactional_id.is_some();
    let config = broker.config();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    // (topic index, partition index, log, offset that must be durable)
    let mut waits: Vec<(usize, usize, Arc<PartitionLog>, i64)> = Vec::new();
    for (ti, topic) in request.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, data) in topic.partition_data.into_iter().enumerate() {
            let response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let outcome = if !matches!(acks, -1..=1) {
                Err(None)
            } else {
                append(broker, &config, &name, data.index, data.records, transactional).map_err(Some)
            };
            let response = match outcome {
                Ok((log, info)) => {
                    if acks != 0 && log.flush_before_ack() {
                        waits.push((ti, pi, log.clone(), info.last_offset + 1));
                    }
                    response
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time_ms)
                        .with_log_start_offset(info.log_start_offset)
                }
                Err(None) => response.with_error_code(ResponseError::InvalidRequiredAcks.code()),
                Err(Some(e)) => {
                    tracing::info!(topic = %name, partition = data.index, error = %e, "produce rejected");
                    response
                        .with_error_code(e.kafka_code())
                        .with_error_message(Some(StrBytes::from_string(e.to_string())))
                }
            };
            partitions.push(response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        return Reply::Nothing;
    }
    let response = ProduceResponse::default().with_responses(topics);
    if waits.is_empty() {
        return Reply::Now(Box::new(ResponseKind::Produce(response)));
    }
    Reply::Later(Box::pin(async move {
        let mut response = response;
        for (ti, pi, log, end) in waits {
            if let Err(e) = log.wait_durable(end).await {
                tracing::error!(error = %e, "fsync failed; the produce is not acknowledged");
                let p = &mut response.responses[ti].partition_responses[pi];
                p.error_code = e.kafka_code();
                p.base_offset = -1;
                p.error_message = Some(StrBytes::from_string(e.to_string()));
            }
        }
        Some(ResponseKind::Produce(response))
    }))
}

fn append(
    broker: &Broker,
    config: &crate::config::BrokerConfig,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    transactional: bool,
) -> Result<(Arc<PartitionLog>, AppendInfo)> {
    if crate::topics::is_internal_topic(topic) {
        return Err(Error::InvalidTopic {
            name: topic.to_string(),
            reason: "clients cannot write to an internal topic".to_string(),
        });
    }
    let (log, rules) = broker.topics.partition(config, topic, partition)?;
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::CorruptBatch("the request holds no record batch".to_string()))?;
    let headers = validate_batches(&records)?;
    if headers.len() != 1 {
        // Kafka requires exactly one batch per partition from Produce v3 on.
        return Err(Error::InvalidRecord(format!(
            "a produce request must hold exactly one record batch per partition, not {}",
            headers.len()
        )));
    }
    if headers[0].is_transactional() && !transactional {
        // Kafka refuses these with TRANSACTIONAL_ID_AUTHORIZATION_FAILED: no transactional id, no
        // coordinator will ever end the transaction, and it would hold the last stable offset.
        return Err(Error::InvalidRecord(
            "a transactional batch needs the produce request's transactional id".to_string(),
        ));
    }
    let size_bytes = headers[0].total_bytes();
    if size_bytes > rules.max_message_bytes {
        return Err(Error::MessageTooLarge {
            size_bytes,
            max_bytes: rules.max_message_bytes,
        });
    }
    if rules.compacted {
        require_keys(&records, MAX_INSPECT_BYTES)?;
    }
    let opts = AppendOptions {
        now_ms: now_ms(),
        log_append_time: rules.log_append_time,
        leader_epoch: 0,
    };
    let info = log.append(BytesMut::from(&records[..]), &headers, &opts)?;
    Ok((log, info))
}

/// Answers Produce v0-2 (the old message formats, gone since Kafka 4) with UNSUPPORTED_VERSION
/// for every partition, in the old layout, so that old clients get a clear error.
pub fn old_version_response(mut body: Bytes, version: i16, correlation_id: i32) -> std::result::Result<Bytes, String> {
    let short = || "truncated Produce v0-2 request".to_string();
    let need = |b: &Bytes, n: usize| if b.remaining() < n { Err(short()) } else { Ok(()) };
    let mut out = BytesMut::new();
    out.put_i32(0);
    out.put_i32(correlation_id);
    // Skip the rest of the v0 header: client id (nullable string).
    need(&body, 2)?;
    let client_len = body.get_i16();
    if client_len > 0 {
        need(&body, client_len as usize)?;
        body.advance(client_len as usize);
    }
    need(&body, 10)?;
    let _acks = body.get_i16();
    let _timeout = body.get_i32();
    let topic_count = body.get_i32().max(0);
    out.put_i32(topic_count);
    for _ in 0..topic_count {
        need(&body, 2)?;
        let name_len = body.get_i16().max(0) as usize;
        need(&body, name_len + 4)?;
        out.put_i16(name_len as i16);
        out.put_slice(&body[..name_len]);
        body.advance(name_len);
        let partition_count = body.get_i32().max(0);
        out.put_i32(partition_count);
        for _ in 0..partition_count {
            need(&body, 8)?;
            out.put_i32(body.get_i32());
            let set_len = body.get_i32().max(0) as usize;
            need(&body, set_len)?;
            body.advance(set_len);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1);
            if version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0);
    }
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;

    use super::*;
    use crate::api::create_topics::test_support;
    use crate::log::batch::{encode_batch, EncodeOptions, NewRecord};

    /// A produce request of one transactional batch of producer 5 at `epoch` and `sequence`.
    fn request(transactional_id: Option<&'static str>, epoch: i16, sequence: i32) -> ProduceRequest {
        let record = NewRecord {
            timestamp_ms: 1,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        };
        let options = EncodeOptions {
            producer_id: 5,
            producer_epoch: epoch,
            base_sequence: sequence,
            transactional: true,
            ..EncodeOptions::default()
        };
        let records = encode_batch(&[record], &options).unwrap().freeze();
        ProduceRequest::default()
            .with_transactional_id(transactional_id.map(StrBytes::from_static_str).map(Into::into))
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])])
    }

    async fn produce(broker: &Arc<Broker>, request: ProduceRequest) -> (i16, i64) {
        let response = match handle(broker, request, 11) {
            Reply::Now(kind) => *kind,
            Reply::Later(future) => future.await.unwrap(),
            Reply::Nothing => panic!("acks=-1 always answers"),
        };
        let ResponseKind::Produce(response) = response else {
            panic!("not a produce response")
        };
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    #[tokio::test]
    async fn transactional_batches_need_a_transactional_id_and_a_current_epoch() {
        let (_dir, broker) = test_support::open();
        broker
            .topics
            .create(&broker.config(), "t", 1, Default::default(), false)
            .unwrap();
        let invalid_record = ResponseError::InvalidRecord.code();
        assert_eq!(produce(&broker, request(None, 0, 0)).await, (invalid_record, -1));
        assert_eq!(produce(&broker, request(Some("tx"), 1, 0)).await, (0, 0));
        let log = broker.topics.log("t", 0).unwrap();
        assert_eq!(log.last_stable_offset(), 0, "the transaction is open");
        let stale = produce(&broker, request(Some("tx"), 0, 1)).await;
        assert_eq!(stale, (ResponseError::InvalidProducerEpoch.code(), -1));
        log.append_marker(5, 1, true, 0).await.unwrap();
        assert_eq!(log.last_stable_offset(), 2);
    }
}
