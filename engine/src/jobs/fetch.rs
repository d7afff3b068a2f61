//! One micro-batch from several partitions of a topic, for jobs and `EMIT CHANGES`: at once when
//! any partition has records, else a long poll that ends as soon as one partition has news, so
//! that an idle partition never holds back a busy one. Each partition gets an equal share of the
//! record and byte bounds, so that none starves the others. Exactly-once jobs read
//! read_committed.

use std::collections::BTreeMap;

use brook_broker::access::{ConsumerRecord, Fetched, Isolation, TopicAccess};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};

/// What one round of fetches returned.
#[derive(Default)]
pub struct Round {
    /// Records at or after each partition's position, by partition then offset.
    pub records: Vec<ConsumerRecord>,
    /// Partitions whose fetch failed.
    pub errors: Vec<(i32, i64, brook_broker::Error)>,
}

impl Round {
    fn absorb(&mut self, partition: i32, from: i64, result: brook_broker::Result<Fetched>, max_records: usize) {
        match result {
            Ok(f) => self
                .records
                .extend(f.records.into_iter().filter(|r| r.offset >= from).take(max_records)),
            Err(e) => self.errors.push((partition, from, e)),
        }
    }

    fn news(&self) -> bool {
        !self.records.is_empty() || !self.errors.is_empty()
    }
}

/// Fetches from every partition in `positions` (partition to next offset), up to `max_records`
/// and about `max_bytes` in all, waiting up to `wait_ms` when none has records.
pub async fn fetch_round(
    access: &dyn TopicAccess,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    max_records: usize,
    max_bytes: usize,
    wait_ms: u64,
) -> Round {
    fetch_round_as(
        access,
        topic,
        positions,
        max_records,
        max_bytes,
        wait_ms,
        Isolation::ReadUncommitted,
    )
    .await
}

/// As [`fetch_round`], with `isolation` (read_committed for exactly-once jobs).
pub(super) async fn fetch_round_as(
    access: &dyn TopicAccess,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    max_records: usize,
    max_bytes: usize,
    wait_ms: u64,
    isolation: Isolation,
) -> Round {
    let n = positions.len().max(1);
    let share_bytes = (max_bytes / n).max(1024);
    let share_records = max_records.div_ceil(n).max(1);
    let fetch = |p: i32, from: i64, wait: u64| async move {
        let fetched = access
            .fetch_isolated(topic, p, from, share_bytes, wait, isolation)
            .await;
        (p, from, fetched)
    };
    let mut round = Round::default();
    for (p, from, result) in join_all(positions.iter().map(|(p, o)| fetch(*p, *o, 0))).await {
        round.absorb(p, from, result, share_records);
    }
    if round.news() || wait_ms == 0 {
        return round;
    }
    let mut pending: FuturesUnordered<_> = positions.iter().map(|(p, o)| fetch(*p, *o, wait_ms)).collect();
    while let Some((p, from, result)) = pending.next().await {
        round.absorb(p, from, result, share_records);
        if round.news() {
            break;
        }
    }
    round
}
