//! Membership of a KIP-848 consumer group for the embedded access: a background task heartbeats
//! the in-process coordinator as a KIP-848 client does (at the interval it returns, reporting the
//! owned partitions, giving up revoked partitions before acknowledging), and commits are fenced
//! by the member epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::embedded::commit_as;
use super::{BoxFuture, ConsumerGroupMetadata, GroupMember, Owned};
use crate::broker::{now_ms, Broker};
use crate::client::remote_error;
use crate::error::{Error, Result};
use crate::group::consumer::assignor::{Assignment, TopicInfo};
use crate::group::consumer::group::LEAVE_EPOCH;
use crate::group::consumer::{ConsumerGroupError, Heartbeat, HeartbeatReply, Settings};

/// How long a member waits before rejoining after a retriable coordinator error.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// The rebalance timeout a member announces, as Java's default `max.poll.interval.ms`.
const REBALANCE_TIMEOUT_MS: i32 = 300_000;
/// REBALANCE_IN_PROGRESS: what a commit gets before the member has an epoch.
const REBALANCE_IN_PROGRESS: i16 = 27;

/// What the membership task and the caller share.
#[derive(Debug, Default)]
struct State {
    member_id: String,
    /// The member epoch; 0 while joining.
    epoch: i32,
    owned: BTreeSet<(String, i32)>,
    /// The error that ended the membership, handed to the caller once.
    fatal: Option<Error>,
}

/// A member of a KIP-848 group on the broker in this process.
pub(super) struct EmbeddedMember {
    broker: Arc<Broker>,
    group: String,
    state: Arc<Mutex<State>>,
    changes: watch::Receiver<u64>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The assignment last returned by `assignment`.
    seen: Option<Owned>,
}

struct Task {
    broker: Arc<Broker>,
    group: String,
    topics: Vec<String>,
    state: Arc<Mutex<State>>,
    changes: watch::Sender<u64>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EmbeddedMember {
    /// Joins at once (so that a refused subscription fails here) and starts heartbeating.
    pub(super) fn join(broker: Arc<Broker>, group: String, topics: Vec<String>) -> Result<EmbeddedMember> {
        let state = Arc::new(Mutex::new(State {
            member_id: Uuid::new_v4().simple().to_string(),
            ..State::default()
        }));
        let (changes_tx, changes) = watch::channel(0u64);
        let task = Task {
            broker: broker.clone(),
            group: group.clone(),
            topics,
            state: state.clone(),
            changes: changes_tx,
        };
        let first = task
            .heartbeat()
            .map_err(|e| remote_error(e.code(), Some(&e.to_string())))?;
        let interval = task.apply(first);
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(task.run(interval, stopped));
        Ok(EmbeddedMember {
            broker,
            group,
            state,
            changes,
            stop: Some(stop),
            task: Some(handle),
            seen: None,
        })
    }

    fn current(&self) -> Result<Owned> {
        let mut s = lock(&self.state);
        if let Some(e) = s.fatal.take() {
            return Err(e);
        }
        Ok(s.owned.iter().cloned().collect())
    }
}

impl Task {
    /// One heartbeat with the current epoch and owned partitions.
    fn heartbeat(&self) -> std::result::Result<HeartbeatReply, ConsumerGroupError> {
        let (member_id, epoch, owned) = {
            let s = lock(&self.state);
            (s.member_id.clone(), s.epoch, s.owned.clone())
        };
        let joining = epoch == 0;
        let mut by_id = Assignment::new();
        for (topic, partition) in &owned {
            if let Some(t) = self.broker.topics.get(topic) {
                by_id.entry(t.id).or_default().insert(*partition);
            }
        }
        let hb = Heartbeat {
            version: 1,
            group_id: self.group.clone(),
            member_id,
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            client_id: "brook-embedded".to_string(),
            client_host: "/embedded".to_string(),
            rebalance_timeout_ms: if joining { REBALANCE_TIMEOUT_MS } else { -1 },
            subscribed_topic_names: joining.then(|| self.topics.clone()),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: Some(by_id),
        };
        self.send(&hb)
    }

    fn send(&self, hb: &Heartbeat) -> std::result::Result<HeartbeatReply, ConsumerGroupError> {
        let settings = Settings::from_config(&self.broker.config());
        let topics = &self.broker.topics;
        let resolve = |name: &str| {
            topics.get(name).map(|t| TopicInfo {
                id: t.id,
                partitions: t.partition_count(),
            })
        };
        self.broker.groups.consumer.heartbeat(hb, &settings, now_ms(), &resolve)
    }

    /// Takes in a reply: the epoch, and a new assignment applied at once (revoked partitions are
    /// dropped before the next heartbeat acknowledges). The wait before the next heartbeat: none
    /// when the assignment changed, so that the change is acknowledged promptly.
    fn apply(&self, reply: HeartbeatReply) -> Duration {
        let interval = Duration::from_millis(reply.heartbeat_interval_ms.max(1) as u64);
        let mut s = lock(&self.state);
        s.member_id = reply.member_id;
        s.epoch = reply.member_epoch;
        let Some(assignment) = reply.assignment else {
            return interval;
        };
        let names: BTreeMap<Uuid, String> = self
            .broker
            .topics
            .all()
            .iter()
            .map(|t| (t.id, t.name.clone()))
            .collect();
        let owned: BTreeSet<(String, i32)> = assignment
            .iter()
            .filter_map(|(id, partitions)| names.get(id).map(|name| (name, partitions)))
            .flat_map(|(name, partitions)| partitions.iter().map(move |p| (name.clone(), *p)))
            .collect();
        if owned == s.owned {
            return interval;
        }
        s.owned = owned;
        drop(s);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        Duration::ZERO
    }

    /// Gives up every partition (fenced, expired or failed).
    fn lose_all(&self, fatal: Option<Error>) {
        let mut s = lock(&self.state);
        s.owned.clear();
        s.epoch = 0;
        if fatal.is_some() {
            s.fatal = fatal;
        }
        drop(s);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Heartbeats until stopped (or the member is dropped), then leaves the group.
    async fn run(self, mut interval: Duration, mut stop: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(interval) => {}
            }
            interval = match self.heartbeat() {
                Ok(reply) => self.apply(reply),
                Err(ConsumerGroupError::UnknownMember(_) | ConsumerGroupError::FencedMemberEpoch { .. }) => {
                    // Fenced or forgotten: everything owned is lost; join again at once.
                    tracing::info!(group = %self.group, "embedded group member fenced; rejoining");
                    self.lose_all(None);
                    Duration::ZERO
                }
                Err(e) if kafka_protocol::ResponseError::try_from_code(e.code()).is_some_and(|r| r.is_retriable()) => {
                    // A passing condition (the coordinator is full, say): give everything up
                    // and rejoin after a pause rather than leave the caller with no partitions.
                    tracing::warn!(group = %self.group, error = %e, "embedded group member lost its membership; rejoining");
                    self.lose_all(None);
                    RETRY_BACKOFF
                }
                Err(e) => {
                    tracing::warn!(group = %self.group, error = %e, "embedded group member failed");
                    self.lose_all(Some(remote_error(e.code(), Some(&e.to_string()))));
                    return;
                }
            };
        }
        self.leave();
    }

    fn leave(&self) {
        let member_id = lock(&self.state).member_id.clone();
        let hb = Heartbeat {
            version: 1,
            group_id: self.group.clone(),
            member_id,
            member_epoch: LEAVE_EPOCH,
            rebalance_timeout_ms: -1,
            ..Heartbeat::default()
        };
        if let Err(e) = self.send(&hb) {
            tracing::debug!(group = %self.group, error = %e, "leaving the group");
        }
        self.lose_all(None);
    }
}

impl GroupMember for EmbeddedMember {
    fn assignment(&mut self, wait_ms: u64) -> BoxFuture<'_, Result<Owned>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
            loop {
                self.changes.borrow_and_update();
                let current = self.current()?;
                let news = match &self.seen {
                    None => !current.is_empty(),
                    Some(seen) => *seen != current,
                };
                if news || tokio::time::Instant::now() >= deadline {
                    self.seen = Some(current.clone());
                    return Ok(current);
                }
                tokio::select! {
                    changed = self.changes.changed() => if changed.is_err() {
                        self.seen = Some(current.clone());
                        return Ok(current);
                    },
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        })
    }

    fn commit(&mut self, offsets: Vec<(String, i32, i64)>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (member_id, epoch) = {
                let s = lock(&self.state);
                (s.member_id.clone(), s.epoch)
            };
            if epoch <= 0 {
                return Err(remote_error(REBALANCE_IN_PROGRESS, Some(&self.group)));
            }
            commit_as(&self.broker, &self.group, &member_id, epoch, offsets).await
        })
    }

    fn group_metadata(&self) -> ConsumerGroupMetadata {
        let s = lock(&self.state);
        ConsumerGroupMetadata {
            group_id: self.group.clone(),
            generation_id: s.epoch,
            member_id: s.member_id.clone(),
            group_instance_id: None,
        }
    }

    fn leave(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(task) = self.task.take() {
                task.await.map_err(|_| Error::Shutdown("group membership task"))?;
            }
            Ok(())
        })
    }
}
