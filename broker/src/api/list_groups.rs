//! ListGroups (v0-5): every group of the broker, of both protocols, plus groups that only have
//! committed offsets (listed as Empty classic consumer groups, as Kafka lists them), with the
//! state filter (v4+, KIP-518) and the type filter (v5+, KIP-848).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::group::GroupListing;

/// One listed group and its type ("classic" or "consumer").
pub(crate) struct Listed {
    /// Id, protocol type and state.
    pub listing: GroupListing,
    /// Kafka's group type name.
    pub group_type: &'static str,
}

/// Every group of the broker by id: KIP-848 groups, classic groups (preferred when an id is in
/// both, unless the classic one is Empty) and groups known only by their offsets.
pub(crate) fn all_groups(broker: &Broker) -> BTreeMap<String, Listed> {
    let mut groups = BTreeMap::new();
    for group_id in broker.groups.offsets.groups() {
        let listing = GroupListing {
            group_id: group_id.clone(),
            protocol_type: "consumer".to_string(),
            state: "Empty".to_string(),
        };
        groups.insert(
            group_id,
            Listed {
                listing,
                group_type: "classic",
            },
        );
    }
    for listing in broker.groups.consumer.list() {
        let group_type = "consumer";
        groups.insert(listing.group_id.clone(), Listed { listing, group_type });
    }
    for listing in broker.groups.classic.list() {
        let shadowed = listing.state == "Empty"
            && groups
                .get(&listing.group_id)
                .is_some_and(|l| l.group_type == "consumer");
        if !shadowed {
            let group_type = "classic";
            groups.insert(listing.group_id.clone(), Listed { listing, group_type });
        }
    }
    groups
}

/// Lists the groups that pass the filters (case-insensitive, as Kafka compares them).
pub fn handle(broker: &Arc<Broker>, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let states: Vec<String> = if version >= 4 {
        request.states_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        request.types_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let groups = all_groups(broker)
        .into_values()
        .filter(|g| states.is_empty() || states.contains(&g.listing.state.to_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.listing.group_id)))
                .with_protocol_type(StrBytes::from_string(g.listing.protocol_type))
                .with_group_state(StrBytes::from_string(g.listing.state))
                .with_group_type(StrBytes::from_static_str(g.group_type))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
