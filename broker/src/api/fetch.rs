//! Fetch: serves stored batches verbatim, long-polling until `min_bytes` are available or
//! `max_wait_ms` passes, woken by appends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::Broker;
use crate::error::Error;

/// Brook's own bound on one fetch response, whatever the client asks for.
pub const MAX_FETCH_RESPONSE_BYTES: usize = 64 << 20;
/// Brook's own bound on how long a fetch may wait.
pub const MAX_FETCH_WAIT_MS: u64 = 30_000;

/// Starts a fetch; the response is built when enough data is visible or the wait is over.
pub fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        Some(ResponseKind::Fetch(fetch(&broker, &request, version).await))
    }))
}

async fn fetch(broker: &Broker, request: &FetchRequest, version: i16) -> FetchResponse {
    // Brook declines to create fetch sessions (KIP-227 allows it): clients send full fetches.
    if version >= 7 && request.session_id != 0 {
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let wait = Duration::from_millis((request.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT_MS));
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let mut signal = broker.signal.subscribe();
    loop {
        signal.borrow_and_update();
        let (response, bytes, errors) = collect(broker, request);
        if bytes >= min_bytes.max(1) || errors || tokio::time::Instant::now() >= deadline {
            return response;
        }
        tokio::select! {
            changed = signal.changed() => if changed.is_err() { return response },
            _ = tokio::time::sleep_until(deadline) => {
                return collect(broker, request).0;
            }
        }
    }
}

/// Reads what every requested partition has now: the response, its record bytes, and whether
/// any partition answered with an error (which ends the wait).
fn collect(broker: &Broker, request: &FetchRequest) -> (FetchResponse, usize, bool) {
    let mut budget = (request.max_bytes.max(0) as usize).min(MAX_FETCH_RESPONSE_BYTES);
    let mut total = 0usize;
    let mut errors = false;
    let config = broker.config();
    let read_committed = request.isolation_level == 1;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_records(Some(Bytes::new()));
            data.aborted_transactions = read_committed.then(Vec::new);
            match broker.topics.partition(&config, name, p.partition) {
                Err(e) => {
                    errors = true;
                    data.error_code = e.kafka_code();
                }
                Ok((log, _)) => {
                    let hw = log.high_watermark();
                    data.high_watermark = hw;
                    data.last_stable_offset = hw;
                    data.log_start_offset = log.log_start_offset();
                    let max = (p.partition_max_bytes.max(0) as usize).min(budget);
                    // The first batch is returned even past the limits (KIP-74), but only while
                    // nothing else has been collected, so the response stays bounded.
                    let limit = if total == 0 { max.max(1) } else { max };
                    if limit > 0 {
                        match log.read(p.fetch_offset, limit, hw) {
                            Ok(bytes) => {
                                total += bytes.len();
                                budget = budget.saturating_sub(bytes.len());
                                data.records = Some(bytes);
                            }
                            Err(e @ Error::OffsetOutOfRange { .. }) => {
                                errors = true;
                                data.error_code = e.kafka_code();
                                data.high_watermark = hw;
                            }
                            Err(e) => {
                                errors = true;
                                tracing::error!(topic = name, partition = p.partition, error = %e, "fetch read failed");
                                data.error_code = e.kafka_code();
                            }
                        }
                    }
                }
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (FetchResponse::default().with_responses(topics), total, errors)
}
