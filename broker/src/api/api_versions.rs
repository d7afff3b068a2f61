//! ApiVersions: tells a client which APIs and versions Brook serves, from the one table in
//! `server::versions`, including the KIP-511 fallback for versions newer than ours.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use crate::server::versions::SUPPORTED;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min_version)
                .with_max_version(s.max_version)
        })
        .collect()
}

/// Answers ApiVersions. Tagged fields stay at their defaults so that old librdkafka parses the reply.
pub fn handle(_request: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The v0-layout reply to an ApiVersions request whose version Brook does not know (KIP-511):
/// error UNSUPPORTED_VERSION and the full list, so the client can retry with a version we serve.
pub fn unsupported_version_response() -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn v3_response_carries_no_tagged_fields() {
        let response = handle(ApiVersionsRequest::default(), 3);
        let mut buf = BytesMut::new();
        response.encode(&mut buf, 3).unwrap();
        // The body ends with the top-level tagged-field count, which must be zero.
        assert_eq!(*buf.last().unwrap(), 0);
        // Every api entry ends with an empty tagged-field section too: 2+2+2+1 bytes each.
        let entries = SUPPORTED.len();
        assert_eq!(buf.len(), 2 + 1 + entries * 7 + 4 + 1);
    }
}
