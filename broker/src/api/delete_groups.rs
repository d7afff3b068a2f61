//! DeleteGroups (v0-2): deletes groups without members, of either protocol, with their
//! committed offsets. The deletion takes effect at once; the answer waits until the offset
//! tombstones are durable.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::{now_ms, Broker};
use crate::group::offsets::coordinator_error_code;

/// Deletes each group: NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND if it does not
/// exist in any form.
pub fn handle(broker: &Arc<Broker>, request: DeleteGroupsRequest, _version: i16) -> Reply {
    let groups = &broker.groups;
    let now = now_ms();
    let mut results = Vec::with_capacity(request.groups_names.len());
    let mut waits = Vec::new();
    for (i, id) in request.groups_names.into_iter().enumerate() {
        let group = id.0.as_str();
        let classic = groups.classic.delete(group);
        let outcome = match classic {
            Err(code) if code == ResponseError::GroupIdNotFound.code() => match groups.consumer.delete(group) {
                Err(code) if code == ResponseError::GroupIdNotFound.code() && groups.offsets.has_offsets(group) => {
                    Ok(())
                }
                other => other,
            },
            other => other,
        };
        let mut code = outcome.err().unwrap_or(0);
        if code == 0 && groups.offsets.has_offsets(group) {
            match groups.offsets.begin_delete_group(group, now) {
                Ok(appended) => waits.push((i, appended)),
                Err(e) => code = coordinator_error_code(&e),
            }
        }
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(code));
    }
    if waits.is_empty() {
        return Reply::Now(Box::new(ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(results),
        )));
    }
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        for (i, appended) in waits {
            if let Err(e) = broker.groups.offsets.finish(appended).await {
                results[i].error_code = coordinator_error_code(&e);
            }
        }
        Some(ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(results),
        ))
    }))
}
