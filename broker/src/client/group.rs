//! Consumer group membership for Brook's [`Consumer`]: the configuration, the rebalance events
//! handed to the caller, the state shared between `poll` and the background membership task
//! (`group_classic.rs` or `group_kip848.rs`), and the commit and close calls.
//!
//! How it works. `subscribe` starts one background task per consumer. The task owns the protocol:
//! it joins, heartbeats every `heartbeat_interval_ms` whatever the caller does, rebalances, and
//! auto-commits. It changes the set of owned partitions and queues [`RebalanceEvent`]s; `poll`
//! reads that set at its start, drops partitions that were taken away, and starts new ones at
//! their committed offset (else `auto_offset_reset`).
//!
//! When the events fire. `Revoked(ps)` is queued when the member gives `ps` up: after the offsets
//! of records returned by earlier `poll` calls were committed (with auto commit), and before the
//! partitions can be given to anyone else; from that moment no record of `ps` is returned.
//! A member that lost its membership (session expired, fenced) also gets `Revoked`, without a
//! commit. `Assigned(ps)` is queued when the coordinator gave `ps` to this member, before the first
//! record of them is returned. Eager assignors (`range`) revoke everything before each rebalance;
//! `cooperative-sticky` and the consumer protocol revoke only what moves.
//!
//! Delivery is at least once: auto commit, and the commit on revocation, cover records returned by
//! `poll` calls before the latest one (the caller is taken to have processed a batch when it
//! polls again), like Java's auto commit. `commit()` covers every record returned so far.
//!
//! Gap, on purpose: `max.poll.interval.ms` is not enforced. Heartbeats do not depend on `poll`, so
//! a caller that stops polling keeps its partitions (they stall) until it closes or is dropped;
//! dropping the consumer without `close` stops heartbeats and the session timeout frees them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::admin::OffsetSpec;
use super::assignor::Assignor;
use super::cluster::Cluster;
use super::consumer::Consumer;
use super::consumer_protocol::TopicPartition;
use super::offsets::{self, Committer};
use super::remote_error;
use crate::error::{Error, Result};

/// The most topics one subscription may name.
pub const MAX_SUBSCRIBED_TOPICS: usize = 10_000;
/// The most events kept for a caller that never reads them; older ones are dropped first.
pub const MAX_QUEUED_EVENTS: usize = 1_024;

/// How a consumer takes part in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The group id (`group.id`).
    pub group_id: String,
    /// A static member id (`group.instance.id`): a restart within the session timeout keeps the
    /// assignment; a static member does not leave the group on close.
    pub group_instance_id: Option<String>,
    /// How long the coordinator waits for a heartbeat before it drops the member (classic).
    pub session_timeout_ms: i32,
    /// How long a rebalance may wait for this member to rejoin (Java uses `max.poll.interval.ms`).
    pub rebalance_timeout_ms: i32,
    /// The time between heartbeats (classic; the consumer protocol's coordinator sets its own).
    pub heartbeat_interval_ms: i32,
    /// The group protocol and its assignor.
    pub protocol: GroupProtocol,
    /// Whether offsets of returned records are committed in the background and on revocation.
    pub auto_commit: bool,
    /// The time between background commits.
    pub auto_commit_interval_ms: u64,
}

impl GroupConfig {
    /// Kafka's consumer defaults: 45 s session, 5 min rebalance, 3 s heartbeat, cooperative-sticky,
    /// auto commit every 5 s.
    pub fn new(group_id: impl Into<String>) -> GroupConfig {
        GroupConfig {
            group_id: group_id.into(),
            group_instance_id: None,
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            heartbeat_interval_ms: 3_000,
            protocol: GroupProtocol::Classic {
                assignor: Assignor::CooperativeSticky.name().to_string(),
            },
            auto_commit: true,
            auto_commit_interval_ms: 5_000,
        }
    }

    fn validate(&self, topics: &[String]) -> Result<()> {
        let invalid = |name: &str, reason: String| {
            Err(Error::InvalidConfig {
                name: name.to_string(),
                reason,
            })
        };
        if self.group_id.is_empty() {
            return invalid("group.id", "must not be empty".into());
        }
        if topics.is_empty() || topics.len() > MAX_SUBSCRIBED_TOPICS || topics.iter().any(String::is_empty) {
            return invalid(
                "subscription",
                format!("needs 1..={MAX_SUBSCRIBED_TOPICS} non-empty topic names"),
            );
        }
        if self.heartbeat_interval_ms <= 0 || self.heartbeat_interval_ms >= self.session_timeout_ms {
            return invalid(
                "heartbeat.interval.ms",
                "must be positive and below session.timeout.ms".into(),
            );
        }
        if self.rebalance_timeout_ms <= 0 || self.auto_commit_interval_ms == 0 {
            return invalid("max.poll.interval.ms", "timeouts and intervals must be positive".into());
        }
        if let GroupProtocol::Classic { assignor } = &self.protocol {
            if Assignor::from_name(assignor).is_none() {
                return invalid(
                    "partition.assignment.strategy",
                    format!("{assignor:?} is not range or cooperative-sticky"),
                );
            }
        }
        Ok(())
    }
}

/// The group protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup/Heartbeat with a client-side assignor: `range` or `cooperative-sticky`.
    Classic {
        /// The assignor's protocol name.
        assignor: String,
    },
    /// KIP-848 (`group.protocol=consumer`): ConsumerGroupHeartbeat, assignment by the coordinator.
    Consumer {
        /// The server-side assignor (`uniform`, `range`), `None` for the coordinator's default.
        server_assignor: Option<String>,
    },
}

/// A change of the partitions this member owns; see the module docs for when each fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions were given to this member.
    Assigned(Vec<TopicPartition>),
    /// These partitions were taken away (or lost with the membership).
    Revoked(Vec<TopicPartition>),
}

/// State shared by `poll` and the membership task; the lock is never held across an await.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The partitions this member owns now.
    pub owned: BTreeSet<TopicPartition>,
    /// The identity commits carry; generation -1 while the member has none.
    pub committer: Option<Committer>,
    /// Offsets safe to commit: positions after records returned by earlier polls.
    pub consumed: BTreeMap<TopicPartition, i64>,
    /// The offsets last committed, so that auto commit sends only what moved.
    pub committed: BTreeMap<TopicPartition, i64>,
    /// Events not yet read by the caller.
    pub events: Vec<RebalanceEvent>,
    /// An error that ended the membership, surfaced once by the next `poll`.
    pub fatal: Option<Error>,
}

/// What the consumer asks of its membership task.
pub(crate) enum Command {
    /// Commit, give up every partition, leave the group, then answer.
    Close(oneshot::Sender<()>),
}

/// The consumer's side of its membership task.
pub(crate) struct GroupHandle {
    /// The configuration.
    pub config: GroupConfig,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl Drop for GroupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GroupHandle {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }
}

pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the membership task works with; the protocol loops add their own state.
pub(crate) struct Member {
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// The configuration.
    pub config: GroupConfig,
    /// The subscribed topics.
    pub topics: Vec<String>,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
    commands: mpsc::Receiver<Command>,
    /// Set once close was asked for: the answer to send when the member has left.
    pub closing: Option<Option<oneshot::Sender<()>>>,
}

impl Member {
    /// The partitions owned now.
    pub(crate) fn owned(&self) -> BTreeSet<TopicPartition> {
        lock(&self.shared).owned.clone()
    }

    /// Sets the identity commits carry.
    pub(crate) fn set_committer(&self, generation_or_epoch: i32, member_id: &str) {
        lock(&self.shared).committer = Some(Committer {
            generation_or_epoch,
            member_id: member_id.to_string(),
            group_instance_id: self.config.group_instance_id.clone(),
        });
    }

    fn push_event(shared: &mut Shared, event: RebalanceEvent) {
        if shared.events.len() >= MAX_QUEUED_EVENTS {
            shared.events.remove(0);
        }
        shared.events.push(event);
    }

    /// Adds partitions to the owned set and queues `Assigned`.
    pub(crate) fn assign(&self, partitions: BTreeSet<TopicPartition>) {
        if partitions.is_empty() {
            return;
        }
        tracing::info!(group = %self.config.group_id, partitions = ?partitions, "partitions assigned");
        let mut s = lock(&self.shared);
        s.owned.extend(partitions.iter().cloned());
        Self::push_event(&mut s, RebalanceEvent::Assigned(partitions.into_iter().collect()));
        drop(s);
        self.changed.notify_one();
    }

    /// Gives partitions up: commits their consumed offsets first when `commit` (and auto commit),
    /// then removes them and queues `Revoked`.
    pub(crate) async fn revoke(&self, partitions: BTreeSet<TopicPartition>, commit: bool) {
        if partitions.is_empty() {
            return;
        }
        if commit && self.config.auto_commit {
            if let Err(e) = self.commit_consumed(Some(&partitions)).await {
                tracing::warn!(group = %self.config.group_id, error = %e, "commit before revocation failed");
            }
        }
        tracing::info!(group = %self.config.group_id, partitions = ?partitions, lost = !commit, "partitions revoked");
        let mut s = lock(&self.shared);
        for tp in &partitions {
            s.owned.remove(tp);
            s.consumed.remove(tp);
            s.committed.remove(tp);
        }
        Self::push_event(&mut s, RebalanceEvent::Revoked(partitions.into_iter().collect()));
        drop(s);
        self.changed.notify_one();
    }

    /// Revokes everything without committing (the membership is gone) and forgets the identity.
    pub(crate) async fn lose_all(&self) {
        let owned = self.owned();
        self.revoke(owned, false).await;
        lock(&self.shared).committer = None;
    }

    /// Commits consumed offsets that moved since the last commit (of `only`, if given).
    pub(crate) async fn commit_consumed(&self, only: Option<&BTreeSet<TopicPartition>>) -> Result<()> {
        let (committer, offsets) = {
            let s = lock(&self.shared);
            let Some(committer) = s.committer.clone() else {
                return Ok(());
            };
            let offsets: Vec<(String, i32, i64)> = s
                .consumed
                .iter()
                .filter(|(tp, o)| s.owned.contains(*tp) && s.committed.get(*tp) != Some(*o))
                .filter(|(tp, _)| only.is_none_or(|set| set.contains(*tp)))
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect();
            (committer, offsets)
        };
        if offsets.is_empty() {
            return Ok(());
        }
        offsets::commit(&self.cluster, &self.config.group_id, &committer, &offsets).await?;
        let mut s = lock(&self.shared);
        for (t, p, o) in offsets {
            s.committed.insert((t, p), o);
        }
        Ok(())
    }

    /// Ends the membership with an error the next `poll` returns.
    pub(crate) fn fail(&self, error: Error) {
        tracing::warn!(group = %self.config.group_id, error = %error, "group membership failed");
        lock(&self.shared).fatal = Some(error);
        self.changed.notify_one();
    }

    /// Waits `ms`, or less if close is asked for; returns false once closing.
    pub(crate) async fn pause(&mut self, ms: u64) -> bool {
        if self.closing.is_some() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
            command = self.commands.recv() => {
                self.closing = Some(command.map(|Command::Close(tx)| tx));
                false
            }
        }
    }

    /// Runs `fut` unless close is asked for first (then `None`).
    pub(crate) async fn unless_closed<T>(&mut self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        if self.closing.is_some() {
            return None;
        }
        tokio::select! {
            out = fut => Some(out),
            command = self.commands.recv() => {
                self.closing = Some(command.map(|Command::Close(tx)| tx));
                None
            }
        }
    }

    /// Answers the close request, if there is one.
    pub(crate) fn closed(&mut self) {
        if let Some(Some(tx)) = self.closing.take() {
            let _ = tx.send(());
        }
    }
}

/// Whether an error means the coordinator moved or is unreachable (look it up again).
pub(crate) fn coordinator_gone(e: &Error) -> bool {
    matches!(e, Error::Connection { .. } | Error::Timeout { .. })
        || matches!(e, Error::Remote { code, .. } if matches!(*code, 14..=16))
}

impl Consumer {
    /// Joins `group` consuming `topics`; `poll` then returns records of the partitions the group
    /// assigns to this member and keeps them committed (see the module docs of `client::group`).
    /// Replaces any explicit assignment; a consumer subscribes once.
    pub async fn subscribe(&mut self, topics: Vec<String>, group: GroupConfig) -> Result<()> {
        group.validate(&topics)?;
        if self.group.is_some() {
            return Err(Error::InvalidConfig {
                name: "subscription".into(),
                reason: "this consumer is already subscribed; create a new consumer to change groups".into(),
            });
        }
        self.positions.clear();
        self.buffered.clear();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let changed = Arc::new(Notify::new());
        let (commands_tx, commands) = mpsc::channel(4);
        let member = Member {
            cluster: self.cluster.clone(),
            config: group.clone(),
            topics,
            shared: shared.clone(),
            changed: changed.clone(),
            commands,
            closing: None,
        };
        let task = match &group.protocol {
            GroupProtocol::Classic { assignor } => {
                let assignor = Assignor::from_name(assignor).unwrap_or(Assignor::CooperativeSticky);
                tokio::spawn(super::group_classic::run(member, assignor))
            }
            GroupProtocol::Consumer { server_assignor } => {
                tokio::spawn(super::group_kip848::run(member, server_assignor.clone()))
            }
        };
        self.group = Some(GroupHandle {
            config: group,
            shared,
            changed,
            commands: commands_tx,
            task,
        });
        Ok(())
    }

    /// Takes the rebalance events queued since the last call, oldest first.
    pub fn events(&mut self) -> Vec<RebalanceEvent> {
        self.group
            .as_ref()
            .map(|g| std::mem::take(&mut g.lock().events))
            .unwrap_or_default()
    }

    /// The partitions the group has given this member now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.group
            .as_ref()
            .map(|g| g.lock().owned.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Commits the position after the last record returned by `poll` for every owned partition.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets: Vec<(String, i32, i64)> = {
            let Some(g) = &self.group else {
                return Err(not_subscribed());
            };
            let s = g.lock();
            self.returned
                .iter()
                .filter(|(tp, _)| s.owned.contains(*tp))
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect()
        };
        self.commit_offsets(&offsets).await
    }

    /// Commits the given next offsets to read, as this member of the group (its generation or
    /// member epoch); fails with REBALANCE_IN_PROGRESS while the member has no generation.
    pub async fn commit_offsets(&mut self, offsets: &[(String, i32, i64)]) -> Result<()> {
        let g = self.group.as_ref().ok_or_else(not_subscribed)?;
        let committer = g
            .lock()
            .committer
            .clone()
            .ok_or_else(|| remote_error(27, Some(&g.config.group_id)))?;
        offsets::commit(&self.cluster, &g.config.group_id, &committer, offsets).await?;
        let mut s = g.lock();
        for (t, p, o) in offsets {
            let tp = (t.clone(), *p);
            s.committed.insert(tp.clone(), *o);
            let consumed = s.consumed.entry(tp).or_insert(*o);
            *consumed = (*consumed).max(*o);
        }
        Ok(())
    }

    /// Leaves the group: commits (with auto commit) every record returned so far, queues
    /// `Revoked` for every owned partition, and sends LeaveGroup (classic, dynamic members) or a
    /// leaving heartbeat (consumer protocol). Afterwards `events` still returns the final
    /// `Revoked` and `poll` returns nothing. A consumer without a group has nothing to do.
    pub async fn close(&mut self) -> Result<()> {
        let Some(g) = self.group.as_ref() else {
            return Ok(());
        };
        {
            let mut s = g.lock();
            let returned: Vec<_> = self.returned.iter().filter(|(tp, _)| s.owned.contains(*tp)).collect();
            for (tp, o) in returned {
                s.consumed.insert(tp.clone(), *o);
            }
        }
        let (tx, rx) = oneshot::channel();
        if g.commands.send(Command::Close(tx)).await.is_ok() {
            let wait_ms = self.config.client.request_timeout_ms.saturating_mul(3);
            if tokio::time::timeout(Duration::from_millis(wait_ms), rx).await.is_err() {
                return Err(Error::Timeout {
                    what: format!("leaving group {}", g.config.group_id),
                    ms: wait_ms,
                });
            }
        }
        self.positions.clear();
        self.buffered.clear();
        self.returned.clear();
        Ok(())
    }

    /// Brings positions in line with the owned partitions; called at the start of every poll step.
    pub(super) async fn reconcile_group(&mut self) -> Result<()> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        let group_id = g.config.group_id.clone();
        let owned = {
            let mut s = g.lock();
            if let Some(e) = s.fatal.take() {
                return Err(e);
            }
            for (tp, o) in &self.returned {
                if s.owned.contains(tp) {
                    s.consumed.insert(tp.clone(), *o);
                }
            }
            s.owned.clone()
        };
        self.positions.retain(|tp, _| owned.contains(tp));
        self.returned.retain(|tp, _| owned.contains(tp));
        self.buffered
            .retain(|r| owned.contains(&(r.topic.clone(), r.partition)));
        let new: Vec<TopicPartition> = owned
            .iter()
            .filter(|tp| !self.positions.contains_key(*tp))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let cluster = self.cluster.clone();
        let committed = cluster
            .retry(None, || offsets::fetch_committed(&cluster, &group_id, Some(&new)))
            .await?;
        let reset = match self.config.auto_offset_reset {
            super::AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            super::AutoOffsetReset::Latest => OffsetSpec::Latest,
            super::AutoOffsetReset::None => OffsetSpec::Latest,
        };
        let mut lookups: BTreeMap<String, Vec<(i32, OffsetSpec)>> = BTreeMap::new();
        for tp in new {
            match committed.get(&tp) {
                Some(offset) => {
                    self.positions.insert(tp, *offset);
                }
                None if self.config.auto_offset_reset == super::AutoOffsetReset::None => {
                    return Err(remote_error(
                        1,
                        Some(&format!(
                            "no committed offset for {}-{} in group {group_id}",
                            tp.0, tp.1
                        )),
                    ));
                }
                None => lookups.entry(tp.0).or_default().push((tp.1, reset)),
            }
        }
        for (topic, specs) in lookups {
            for (partition, offset) in self.lookup_offsets(&topic, &specs).await? {
                self.positions.insert((topic.clone(), partition), offset);
            }
        }
        Ok(())
    }

    /// Drops records of partitions no longer owned and remembers the positions returned.
    pub(super) fn keep_owned(&mut self, mut records: Vec<super::ConsumerRecord>) -> Vec<super::ConsumerRecord> {
        if let Some(g) = &self.group {
            let s = g.lock();
            records.retain(|r| s.owned.contains(&(r.topic.clone(), r.partition)));
            for r in &records {
                self.returned.insert((r.topic.clone(), r.partition), r.offset + 1);
            }
        }
        records
    }

    /// Waits until the membership task changes something, or `timeout` passes.
    pub(crate) async fn wait_for_group(&self, timeout: Duration) {
        if let Some(g) = &self.group {
            let _ = tokio::time::timeout(timeout, g.changed.notified()).await;
        }
    }
}

fn not_subscribed() -> Error {
    Error::InvalidConfig {
        name: "group.id".into(),
        reason: "the consumer is not subscribed to a group".into(),
    }
}
