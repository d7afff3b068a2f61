//! Produce: validates each partition's record batches (CRC, size, keys on compacted topics),
//! appends them verbatim, and acknowledges once they are durable (acks 1 and all).

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
                append(broker, &config, &name, data.index, data.records).map_err(Some)
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
