//! Incremental fetch sessions (KIP-227): the broker remembers which partitions a fetcher
//! follows, so that later fetches name only what changed and responses carry only partitions
//! with news. The cache is bounded; the least recently used session is evicted first.

use std::collections::HashMap;
use std::sync::Mutex;

use kafka_protocol::ResponseError;
use uuid::Uuid;

/// The epoch a fetcher sends to fetch without a session, or to close one.
pub const FINAL_EPOCH: i32 = -1;
/// The epoch a fetcher sends to open a session.
pub const INITIAL_EPOCH: i32 = 0;

/// One partition a session follows, with what the fetcher last asked for and was last told.
#[derive(Debug, Clone)]
pub struct SessionPartition {
    /// The topic's name.
    pub topic: String,
    /// The topic's id, echoed in responses.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition: i32,
    /// Where the fetcher reads next.
    pub fetch_offset: i64,
    /// The fetcher's per-partition byte limit.
    pub max_bytes: i32,
    /// The high watermark last sent, to tell whether there is news.
    pub sent_high_watermark: i64,
    /// The log start offset last sent.
    pub sent_log_start_offset: i64,
    /// The last stable offset last sent.
    pub sent_last_stable_offset: i64,
}

/// A session: the partitions in the fetcher's order and the epoch expected next.
#[derive(Debug, Clone)]
pub struct Session {
    /// The id the fetcher uses.
    pub id: i32,
    /// The epoch of the next request.
    pub next_epoch: i32,
    /// Followed partitions, in the order they were added.
    pub partitions: Vec<SessionPartition>,
    last_used: u64,
}

/// What a fetch request asks of the session cache.
#[derive(Debug)]
pub enum Plan {
    /// A full fetch without a session (epoch -1): answer every partition, remember nothing.
    Sessionless,
    /// A full fetch that opens a session (epoch 0): answer every partition, then remember them.
    Open,
    /// An incremental fetch in session `Session::id`: the merged partition list to consider.
    Incremental(Session),
}

/// The broker's bounded cache of fetch sessions.
pub struct FetchSessions {
    inner: Mutex<Inner>,
    max_sessions: usize,
}

struct Inner {
    sessions: HashMap<i32, Session>,
    next_id: i32,
    clock: u64,
}

impl FetchSessions {
    /// A cache holding at most `max_sessions` sessions (0 turns sessions off).
    pub fn new(max_sessions: usize) -> Self {
        FetchSessions {
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                next_id: 1,
                clock: 0,
            }),
            max_sessions,
        }
    }

    /// Decides how to serve a request with this session id and epoch. For incremental fetches,
    /// `changed` (partitions named in the request) are merged into the session and `forgotten`
    /// removed. Errors are Kafka error codes for the whole response.
    pub fn plan(
        &self,
        session_id: i32,
        epoch: i32,
        changed: Vec<SessionPartition>,
        forgotten: &[(String, i32)],
    ) -> Result<Plan, i16> {
        let mut inner = self.inner.lock().expect("fetch session lock");
        if session_id == 0 {
            return Ok(if epoch == INITIAL_EPOCH && self.max_sessions > 0 {
                Plan::Open
            } else {
                Plan::Sessionless
            });
        }
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            // Closing (and perhaps reopening): the old session goes either way.
            inner.sessions.remove(&session_id);
            return Ok(if epoch == INITIAL_EPOCH && self.max_sessions > 0 {
                Plan::Open
            } else {
                Plan::Sessionless
            });
        }
        inner.clock += 1;
        let now = inner.clock;
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            return Err(ResponseError::FetchSessionIdNotFound.code());
        };
        if session.next_epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch.code());
        }
        session.last_used = now;
        session
            .partitions
            .retain(|p| !forgotten.iter().any(|(t, i)| *t == p.topic && *i == p.partition));
        for c in changed {
            match session
                .partitions
                .iter_mut()
                .find(|p| p.topic == c.topic && p.partition == c.partition)
            {
                Some(p) => {
                    p.fetch_offset = c.fetch_offset;
                    p.max_bytes = c.max_bytes;
                }
                None => session.partitions.push(c),
            }
        }
        Ok(Plan::Incremental(session.clone()))
    }

    /// Stores a new session after its first full response; returns its id, or 0 when the
    /// cache declines (KIP-227 lets a broker do so; the fetcher then fetches in full).
    pub fn open(&self, partitions: Vec<SessionPartition>) -> i32 {
        if self.max_sessions == 0 {
            return 0;
        }
        let mut inner = self.inner.lock().expect("fetch session lock");
        inner.clock += 1;
        let now = inner.clock;
        if inner.sessions.len() >= self.max_sessions {
            let oldest = inner.sessions.values().min_by_key(|s| s.last_used).map(|s| s.id);
            if let Some(id) = oldest {
                inner.sessions.remove(&id);
            }
        }
        let mut id = inner.next_id;
        while id == 0 || inner.sessions.contains_key(&id) {
            id = id.wrapping_add(1).max(1);
        }
        inner.next_id = id.wrapping_add(1).max(1);
        inner.sessions.insert(
            id,
            Session {
                id,
                next_epoch: 1,
                partitions,
                last_used: now,
            },
        );
        id
    }

    /// Records what an incremental response told the fetcher and advances the epoch.
    pub fn update(&self, session: Session) {
        let mut inner = self.inner.lock().expect("fetch session lock");
        if let Some(stored) = inner.sessions.get_mut(&session.id) {
            stored.partitions = session.partitions;
            stored.next_epoch = if session.next_epoch == i32::MAX {
                1
            } else {
                session.next_epoch + 1
            };
        }
    }

    /// The number of live sessions.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("fetch session lock").sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(topic: &str, partition: i32, fetch_offset: i64) -> SessionPartition {
        SessionPartition {
            topic: topic.to_string(),
            topic_id: Uuid::nil(),
            partition,
            fetch_offset,
            max_bytes: 1024,
            sent_high_watermark: -1,
            sent_log_start_offset: -1,
            sent_last_stable_offset: -1,
        }
    }

    #[test]
    fn sessions_open_advance_and_close() {
        let cache = FetchSessions::new(2);
        assert!(matches!(cache.plan(0, FINAL_EPOCH, vec![], &[]), Ok(Plan::Sessionless)));
        assert!(matches!(cache.plan(0, INITIAL_EPOCH, vec![], &[]), Ok(Plan::Open)));
        let id = cache.open(vec![part("a", 0, 0), part("a", 1, 0)]);
        assert_ne!(id, 0);
        assert_eq!(
            cache.plan(id, 2, vec![], &[]).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch.code()
        );
        let Ok(Plan::Incremental(s)) =
            cache.plan(id, 1, vec![part("a", 1, 7), part("b", 0, 3)], &[("a".to_string(), 0)])
        else {
            panic!("expected an incremental plan")
        };
        let offsets: Vec<_> = s
            .partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition, p.fetch_offset))
            .collect();
        assert_eq!(offsets, vec![("a", 1, 7), ("b", 0, 3)]);
        cache.update(s);
        assert!(matches!(cache.plan(id, 2, vec![], &[]), Ok(Plan::Incremental(_))));
        assert!(matches!(
            cache.plan(id, FINAL_EPOCH, vec![], &[]),
            Ok(Plan::Sessionless)
        ));
        assert_eq!(
            cache.plan(id, 3, vec![], &[]).unwrap_err(),
            ResponseError::FetchSessionIdNotFound.code()
        );
    }

    #[test]
    fn the_least_recently_used_session_is_evicted() {
        let cache = FetchSessions::new(2);
        let a = cache.open(vec![]);
        let b = cache.open(vec![]);
        assert!(cache.plan(a, 1, vec![], &[]).is_ok());
        let c = cache.open(vec![]);
        assert_eq!(cache.len(), 2);
        assert!(cache.plan(b, 1, vec![], &[]).is_err());
        assert!(cache.plan(a, 1, vec![], &[]).is_ok());
        assert!(cache.plan(c, 1, vec![], &[]).is_ok());
    }
}
