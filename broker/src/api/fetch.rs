//! Fetch: serves stored batches verbatim, long-polling until `min_bytes` are available or
//! `max_wait_ms` passes, woken by appends and transaction markers; full fetches and incremental
//! fetch sessions. read_committed fetches (isolation level 1) read only below the last stable
//! offset and get the aborted transactions overlapping what they read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Reply;
use crate::broker::Broker;
use crate::fetch_session::{Plan, SessionPartition};
use crate::log::batch::scan_headers;
use crate::log::Isolation;

/// Brook's own bound on one fetch response, whatever the client asks for.
pub const MAX_FETCH_RESPONSE_BYTES: usize = 64 << 20;
/// Brook's own bound on how long a fetch may wait.
pub const MAX_FETCH_WAIT_MS: u64 = 30_000;

/// Starts a fetch; the response is built when enough data is visible or the wait is over.
pub fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        Some(ResponseKind::Fetch(fetch(&broker, request, version).await))
    }))
}

async fn fetch(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    let named: Vec<SessionPartition> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| SessionPartition {
                topic: t.topic.0.to_string(),
                topic_id: t.topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                sent_high_watermark: -1,
                sent_log_start_offset: -1,
                sent_last_stable_offset: -1,
            })
        })
        .collect();
    let forgotten: Vec<(String, i32)> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p)))
        .collect();
    let plan = if version >= 7 {
        broker
            .fetch_sessions
            .plan(request.session_id, request.session_epoch, named.clone(), &forgotten)
    } else {
        Ok(Plan::Sessionless)
    };
    let (mut targets, session) = match plan {
        Err(code) => return FetchResponse::default().with_error_code(code),
        Ok(Plan::Incremental(session)) => (session.partitions.clone(), Some(session)),
        Ok(Plan::Open) => (named, None),
        Ok(Plan::Sessionless) => (named, None),
    };
    let opening = version >= 7 && session.is_none() && request.session_epoch == 0;
    let incremental = session.is_some();

    let wait = Duration::from_millis((request.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT_MS));
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = (request.min_bytes.max(0) as usize).max(1);
    let max_bytes = (request.max_bytes.max(0) as usize).min(MAX_FETCH_RESPONSE_BYTES);
    let isolation = Isolation::from_level(request.isolation_level);
    let mut signal = broker.signal.subscribe();
    let parts = loop {
        signal.borrow_and_update();
        let (parts, bytes, errors) = collect(broker, &targets, max_bytes, isolation);
        if bytes >= min_bytes || errors || tokio::time::Instant::now() >= deadline {
            break parts;
        }
        tokio::select! {
            changed = signal.changed() => if changed.is_err() { break parts },
            _ = tokio::time::sleep_until(deadline) => break collect(broker, &targets, max_bytes, isolation).0,
        }
    };

    // Incremental responses carry only partitions with news: records, an error, or a moved
    // high watermark, log start offset or last stable offset. Every response updates what the
    // session last sent.
    let mut included = Vec::with_capacity(parts.len());
    for (target, data) in targets.iter_mut().zip(parts) {
        let news = data.error_code != 0
            || data.records.as_ref().is_some_and(|r| !r.is_empty())
            || data.high_watermark != target.sent_high_watermark
            || data.log_start_offset != target.sent_log_start_offset
            || data.last_stable_offset != target.sent_last_stable_offset;
        target.sent_high_watermark = data.high_watermark;
        target.sent_log_start_offset = data.log_start_offset;
        target.sent_last_stable_offset = data.last_stable_offset;
        if !incremental || news {
            included.push((target.topic.clone(), target.topic_id, data));
        }
    }
    let session_id = if let Some(mut session) = session {
        session.partitions = targets;
        let id = session.id;
        broker.fetch_sessions.update(session);
        id
    } else if opening {
        broker.fetch_sessions.open(targets)
    } else {
        0
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (topic, topic_id, data) in included {
        match topics.last_mut() {
            Some(last) if last.topic.0.as_str() == topic => last.partitions.push(data),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_topic_id(topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    FetchResponse::default()
        .with_session_id(if version >= 7 { session_id } else { 0 })
        .with_responses(topics)
}

/// Reads what every target partition has now: one PartitionData per target (same order), the
/// record bytes collected, and whether any partition answered with an error (ending the wait).
fn collect(
    broker: &Broker,
    targets: &[SessionPartition],
    max_bytes: usize,
    isolation: Isolation,
) -> (Vec<PartitionData>, usize, bool) {
    let read_committed = isolation == Isolation::ReadCommitted;
    let mut budget = max_bytes;
    let mut total = 0usize;
    let mut errors = false;
    let mut parts = Vec::with_capacity(targets.len());
    for t in targets {
        let mut data = PartitionData::default()
            .with_partition_index(t.partition)
            .with_records(Some(Bytes::new()));
        // Kafka sends null aborted transactions to read_uncommitted fetchers, a list otherwise.
        data.aborted_transactions = read_committed.then(Vec::new);
        match broker.topics.log(&t.topic, t.partition) {
            Err(e) => {
                errors = true;
                data.error_code = e.kafka_code();
            }
            Ok(log) => {
                let offsets = log.visible_offsets();
                data.high_watermark = offsets.high_watermark;
                data.last_stable_offset = offsets.last_stable_offset;
                data.log_start_offset = offsets.log_start_offset;
                let max = (t.max_bytes.max(0) as usize).min(budget);
                // The first batch is returned even past the limits (KIP-74), but only while
                // nothing else has been collected, so the response stays bounded.
                let limit = if total == 0 { max.max(1) } else { max };
                if limit > 0 {
                    match log.read(t.fetch_offset, limit, offsets.end(isolation)) {
                        Ok(bytes) => {
                            total += bytes.len();
                            budget = budget.saturating_sub(bytes.len());
                            if read_committed && !bytes.is_empty() {
                                data.aborted_transactions = Some(aborted(&log, t.fetch_offset, &bytes));
                            }
                            data.records = Some(bytes);
                        }
                        Err(e) => {
                            errors = true;
                            if !matches!(e, crate::Error::OffsetOutOfRange { .. }) {
                                tracing::error!(topic = %t.topic, partition = t.partition, error = %e, "fetch read failed");
                            }
                            data.error_code = e.kafka_code();
                        }
                    }
                }
            }
        }
        parts.push(data);
    }
    (parts, total, errors)
}

/// The aborted transactions overlapping the records read from `fetch_offset`: up to the end of
/// the last batch returned, as Kafka bounds them.
fn aborted(log: &crate::log::PartitionLog, fetch_offset: i64, bytes: &Bytes) -> Vec<AbortedTransaction> {
    let upto = scan_headers(bytes)
        .filter_map(|item| item.ok())
        .last()
        .map_or(fetch_offset, |(_, header)| header.last_offset() + 1);
    log.aborted_transactions(fetch_offset, upto)
        .into_iter()
        .map(|(producer_id, first_offset)| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(producer_id))
                .with_first_offset(first_offset)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};

    use super::*;
    use crate::api::create_topics::test_support;
    use crate::log::batch::{encode_batch, validate_batches, EncodeOptions, NewRecord};
    use crate::log::AppendOptions;

    fn append(broker: &Broker, partition: i32) {
        let record = NewRecord {
            timestamp_ms: 1,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        };
        let options = EncodeOptions::default();
        let payload = encode_batch(&[record], &options).unwrap();
        let headers = validate_batches(&payload).unwrap();
        let log = broker.topics.get("t").unwrap().partition(partition).unwrap();
        let opts = AppendOptions {
            now_ms: 1,
            log_append_time: false,
            leader_epoch: 0,
        };
        log.append(payload, &headers, &opts).unwrap();
    }

    fn request(session_id: i32, epoch: i32, partitions: &[(i32, i64)]) -> FetchRequest {
        let parts = partitions
            .iter()
            .map(|(p, o)| {
                FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(*o)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        let topics = if partitions.is_empty() {
            vec![]
        } else {
            vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(parts)]
        };
        FetchRequest::default()
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(topics)
    }

    fn shown(response: &FetchResponse) -> Vec<(i32, usize)> {
        response
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |r| r.len())))
            })
            .collect()
    }

    /// Appends a transactional batch of one record of producer `producer_id` to partition 0.
    fn append_txn(broker: &Broker, producer_id: i64, sequence: i32) {
        let record = NewRecord {
            timestamp_ms: 1,
            key: None,
            value: Some(Bytes::from_static(b"t")),
            headers: vec![],
        };
        let options = EncodeOptions {
            producer_id,
            producer_epoch: 0,
            base_sequence: sequence,
            transactional: true,
            ..EncodeOptions::default()
        };
        let payload = encode_batch(&[record], &options).unwrap();
        let headers = validate_batches(&payload).unwrap();
        let log = broker.topics.log("t", 0).unwrap();
        let opts = AppendOptions {
            now_ms: 1,
            log_append_time: false,
            leader_epoch: 0,
        };
        log.append(payload, &headers, &opts).unwrap();
    }

    fn end_txn(broker: &Broker, producer_id: i64, commit: bool) {
        let log = broker.topics.log("t", 0).unwrap();
        log.append_marker_at(producer_id, 0, commit, 0, 1).unwrap();
    }

    /// (records bytes, high watermark, last stable offset, aborted transactions) of a partition.
    type Shown = (usize, i64, i64, Option<Vec<(i64, i64)>>);

    /// What the response shows of partition 0.
    fn partition_zero(response: &FetchResponse) -> Shown {
        let p = &response.responses[0].partitions[0];
        let aborted = p
            .aborted_transactions
            .as_ref()
            .map(|list| list.iter().map(|t| (t.producer_id.0, t.first_offset)).collect());
        (
            p.records.as_ref().map_or(0, |r| r.len()),
            p.high_watermark,
            p.last_stable_offset,
            aborted,
        )
    }

    #[tokio::test]
    async fn read_committed_fetches_stop_at_the_last_stable_offset_with_aborted_transactions() {
        let (_dir, broker) = test_support::open();
        let configs = BTreeMap::from([("flush.messages".to_string(), "1000".to_string())]);
        broker.topics.create(&broker.config(), "t", 1, configs, false).unwrap();
        append(&broker, 0); // 0
        append_txn(&broker, 1, 0); // 1
        append(&broker, 0); // 2
        end_txn(&broker, 1, false); // 3
        append_txn(&broker, 2, 0); // 4, open
        append(&broker, 0); // 5

        let committed = fetch(&broker, request(0, -1, &[(0, 0)]).with_isolation_level(1), 12).await;
        let (bytes, hw, lso, aborted) = partition_zero(&committed);
        assert_eq!((hw, lso, aborted), (6, 4, Some(vec![(1, 1)])));
        let log = broker.topics.log("t", 0).unwrap();
        assert_eq!(
            bytes,
            log.read(0, usize::MAX, 4).unwrap().len(),
            "everything below 4, nothing past"
        );

        let uncommitted = fetch(&broker, request(0, -1, &[(0, 0)]), 12).await;
        let (bytes, hw, lso, aborted) = partition_zero(&uncommitted);
        assert_eq!(
            (hw, lso, aborted),
            (6, 4, None),
            "Kafka sends null aborted transactions"
        );
        assert_eq!(bytes, log.read(0, usize::MAX, 6).unwrap().len());

        // Past the aborted transaction's marker, it is no longer reported.
        let later = fetch(&broker, request(0, -1, &[(0, 4)]).with_isolation_level(1), 12).await;
        assert_eq!(partition_zero(&later), (0, 6, 4, Some(vec![])));
        end_txn(&broker, 2, true);
        let later = fetch(&broker, request(0, -1, &[(0, 4)]).with_isolation_level(1), 12).await;
        let (bytes, hw, lso, aborted) = partition_zero(&later);
        assert!(bytes > 0);
        assert_eq!((hw, lso, aborted), (7, 7, Some(vec![])));
        test_support::encodes(&committed, 4..=12);
    }

    #[tokio::test]
    async fn a_read_committed_long_poll_wakes_when_a_marker_moves_the_last_stable_offset() {
        let (_dir, broker) = test_support::open();
        let configs = BTreeMap::from([("flush.messages".to_string(), "1000".to_string())]);
        broker.topics.create(&broker.config(), "t", 1, configs, false).unwrap();
        append_txn(&broker, 1, 0);
        let poll = request(0, -1, &[(0, 0)])
            .with_isolation_level(1)
            .with_max_wait_ms(MAX_FETCH_WAIT_MS as i32);
        let broker_for_poll = broker.clone();
        let waiting = tokio::spawn(async move { fetch(&broker_for_poll, poll, 12).await });
        // The poll subscribes before its first look, so a marker appended at any time wakes it.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing is committed yet: the poll waits");
        end_txn(&broker, 1, true);
        // Woken, the poll answers within its next turn, long before its deadline: were it not
        // woken, it would still wait here and answer the same only once the deadline passed.
        tokio::task::yield_now().await;
        assert!(waiting.is_finished(), "the marker woke the poll");
        let response = waiting.await.unwrap();
        let (bytes, hw, lso, _) = partition_zero(&response);
        assert!(bytes > 0, "the committed record is returned");
        assert_eq!((hw, lso), (2, 2));
    }

    #[tokio::test]
    async fn incremental_sessions_report_a_moved_last_stable_offset() {
        let (_dir, broker) = test_support::open();
        let configs = BTreeMap::from([("flush.messages".to_string(), "1000".to_string())]);
        broker.topics.create(&broker.config(), "t", 1, configs, false).unwrap();
        append_txn(&broker, 1, 0);
        let full = fetch(&broker, request(0, 0, &[(0, 0)]).with_isolation_level(1), 12).await;
        assert_eq!(partition_zero(&full), (0, 1, 0, Some(vec![])));
        let quiet = fetch(&broker, request(full.session_id, 1, &[]).with_isolation_level(1), 12).await;
        assert!(quiet.responses.is_empty());
        end_txn(&broker, 1, false);
        let news = fetch(&broker, request(full.session_id, 2, &[]).with_isolation_level(1), 12).await;
        let (_, hw, lso, aborted) = partition_zero(&news);
        assert_eq!((hw, lso, aborted), (2, 2, Some(vec![(1, 0)])));
    }

    #[tokio::test]
    async fn incremental_sessions_send_only_news() {
        let (_dir, broker) = test_support::open();
        let configs = BTreeMap::from([("flush.messages".to_string(), "1000".to_string())]);
        broker.topics.create(&broker.config(), "t", 2, configs, false).unwrap();
        append(&broker, 0);

        let full = fetch(&broker, request(0, 0, &[(0, 0), (1, 0)]), 12).await;
        assert_ne!(full.session_id, 0);
        let parts = shown(&full);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].1 > 0 && parts[1].1 == 0);

        // Partition 0 moved on; nothing new anywhere: an empty incremental response.
        let quiet = fetch(&broker, request(full.session_id, 1, &[(0, 1)]), 12).await;
        assert_eq!(quiet.session_id, full.session_id);
        assert_eq!(shown(&quiet), vec![]);

        // New data in partition 1 shows up without the fetcher naming it.
        append(&broker, 1);
        let news = fetch(&broker, request(full.session_id, 2, &[]), 12).await;
        let parts = shown(&news);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, 1);
        assert!(parts[0].1 > 0);

        // A stale epoch is refused; closing the session falls back to a full fetch.
        let stale = fetch(&broker, request(full.session_id, 2, &[]), 12).await;
        assert_eq!(
            stale.error_code,
            kafka_protocol::ResponseError::InvalidFetchSessionEpoch.code()
        );
        let closed = fetch(&broker, request(full.session_id, -1, &[(0, 0), (1, 0)]), 12).await;
        assert_eq!(closed.session_id, 0);
        assert_eq!(shown(&closed).len(), 2);
        assert!(broker.fetch_sessions.is_empty());
    }
}
