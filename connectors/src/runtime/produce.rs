//! Writing records for a step: retried while the cluster says retrying helps, the topic created
//! when missing, and records the topic refuses for good (too large, say) handed back one by one
//! so that the step's error policy decides what becomes of them.

use brook_broker::access::{OutRecord, TopicAccess, TopicSpec};

use super::{retrying, Halt, RunnerSettings, Stop};
use crate::error::Error;

/// Creates `topic` with `partitions` (-1: the cluster default) unless it exists.
pub async fn ensure_topic(access: &dyn TopicAccess, topic: &str, partitions: i32) -> Result<(), Error> {
    let spec = TopicSpec {
        name: topic.to_string(),
        partitions,
        configs: Vec::new(),
    };
    match access.create_topic(spec).await {
        Ok(()) | Err(brook_broker::Error::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Produces `records` to `topic` in order, acknowledged and durable on return, creating the
/// topic (cluster defaults) the first time it is missing. Each attempt sends a copy, which is
/// what lets a failed one be retried or split.
pub async fn produce(
    access: &dyn TopicAccess,
    topic: &str,
    records: &[OutRecord],
    settings: &RunnerSettings,
    stop: &Stop,
) -> Result<(), Halt> {
    if records.is_empty() {
        return Ok(());
    }
    match access.produce(topic, records.to_vec()).await {
        Ok(_) => return Ok(()),
        Err(brook_broker::Error::UnknownTopicOrPartition(_)) => ensure_topic(access, topic, -1).await?,
        Err(e) if e.is_retriable() => {}
        Err(e) => return Err(Halt::Failed(e.into())),
    }
    retrying(settings, stop, "producing", || access.produce(topic, records.to_vec())).await?;
    Ok(())
}

/// Produces `records`; when the topic refuses the batch for good, writes them one at a time and
/// returns those still refused, with why.
pub async fn produce_or_return(
    access: &dyn TopicAccess,
    topic: &str,
    records: Vec<OutRecord>,
    settings: &RunnerSettings,
    stop: &Stop,
) -> Result<Vec<(OutRecord, Error)>, Halt> {
    match produce(access, topic, &records, settings, stop).await {
        Ok(()) => return Ok(Vec::new()),
        Err(Halt::Failed(e)) => tracing::warn!(topic, error = %e, "batch refused; writing record by record"),
        Err(stop) => return Err(stop),
    }
    let mut refused = Vec::new();
    for record in records {
        match produce(access, topic, std::slice::from_ref(&record), settings, stop).await {
            Ok(()) => {}
            Err(Halt::Failed(e)) => refused.push((record, e)),
            Err(stop) => return Err(stop),
        }
    }
    Ok(refused)
}

/// Writes dead letters to `topic`; a letter the topic refuses is written again without key and
/// value (its headers still say what failed and where), else logged and dropped.
pub async fn write_dead_letters(
    access: &dyn TopicAccess,
    topic: &str,
    letters: Vec<OutRecord>,
    settings: &RunnerSettings,
    stop: &Stop,
) -> Result<(), Halt> {
    for (mut letter, e) in produce_or_return(access, topic, letters, settings, stop).await? {
        letter.key = None;
        letter.value = None;
        letter.headers.push((
            bytes::Bytes::from_static(b"brook.dlq.error"),
            Some(e.to_string().into()),
        ));
        if let Err(Halt::Failed(e2)) = produce(access, topic, std::slice::from_ref(&letter), settings, stop).await {
            tracing::error!(topic, error = %e2, "a dead letter could not be written; dropping it");
        }
    }
    Ok(())
}
