//! Tests of the connection's framing, correlation and version negotiation against a tiny
//! in-process TCP server that answers canned ApiVersions responses (not a model of Kafka).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::connection::Connection;
use super::ClientConfig;
use crate::error::Error;

/// Reads one request frame and returns its header and body.
async fn read_request(stream: &mut TcpStream) -> Option<(RequestHeader, Bytes)> {
    let length = stream.read_i32().await.ok()?;
    let mut frame = BytesMut::zeroed(length as usize);
    stream.read_exact(&mut frame).await.ok()?;
    let mut frame = frame.freeze();
    let api = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).ok()?;
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).ok()?;
    Some((header, frame))
}

/// An ApiVersions response frame advertising Produce v0..=11 and ApiVersions v0..=`max`.
fn api_versions_frame(correlation_id: i32, version: i16, error_code: i16, max: i16, padding_bytes: usize) -> BytesMut {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    for (key, top) in [(ApiKey::ApiVersions, max), (ApiKey::Produce, 11)] {
        let mut v = ApiVersion::default();
        v.api_key = key as i16;
        v.min_version = 0;
        v.max_version = top;
        response.api_keys.push(v);
    }
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let mut body = BytesMut::new();
    header.encode(&mut body, 0).unwrap();
    response.encode(&mut body, version).unwrap();
    body.put_bytes(0, padding_bytes);
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put(body);
    frame
}

fn config(max_response_bytes: usize) -> ClientConfig {
    ClientConfig {
        request_timeout_ms: 10_000,
        max_response_bytes,
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn negotiates_versions_and_matches_pipelined_responses_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        // The negotiation, then three pipelined requests read before any is answered.
        let (first, _) = read_request(&mut stream).await.unwrap();
        seen.push((
            first.request_api_key,
            first.request_api_version,
            first.client_id.as_deref().map(str::to_string),
        ));
        let frame = api_versions_frame(first.correlation_id, 3, 0, 3, 0);
        stream.write_all(&frame).await.unwrap();
        let mut pending = Vec::new();
        for _ in 0..3 {
            let (header, _) = read_request(&mut stream).await.unwrap();
            pending.push(header.correlation_id);
        }
        for (i, id) in pending.iter().enumerate() {
            // Each answer carries a different ApiVersions max so the client can tell them apart.
            stream
                .write_all(&api_versions_frame(*id, 3, 0, i as i16, 0))
                .await
                .unwrap();
        }
        (seen, pending)
    });
    let connection = Connection::connect(&addr, &config(1 << 20)).await.unwrap();
    assert_eq!(connection.version(ApiKey::Produce).unwrap(), 9);
    let request = ApiVersionsRequest::default();
    let mut futures = Vec::new();
    for _ in 0..3 {
        futures.push(connection.submit(&request, 3, 10_000).await.unwrap());
    }
    for (i, future) in futures.into_iter().enumerate() {
        let response: ApiVersionsResponse = future.wait().await.unwrap();
        let api_versions = response
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
            .unwrap();
        assert_eq!(api_versions.max_version, i as i16);
    }
    let (seen, ids) = server.await.unwrap();
    assert_eq!(seen, vec![(ApiKey::ApiVersions as i16, 3, Some("brook".to_string()))]);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "correlation ids increase: {ids:?}");
}

#[tokio::test]
async fn falls_back_when_the_broker_does_not_know_the_api_versions_version() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (first, _) = read_request(&mut stream).await.unwrap();
        // KIP-511: error 35 in the v0 layout, advertising ApiVersions up to v2.
        stream
            .write_all(&api_versions_frame(first.correlation_id, 0, 35, 2, 0))
            .await
            .unwrap();
        let (second, _) = read_request(&mut stream).await.unwrap();
        stream
            .write_all(&api_versions_frame(second.correlation_id, 2, 0, 2, 0))
            .await
            .unwrap();
        (first.request_api_version, second.request_api_version)
    });
    let connection = Connection::connect(&addr, &config(1 << 20)).await.unwrap();
    assert_eq!(connection.version(ApiKey::ApiVersions).unwrap(), 2);
    assert_eq!(server.await.unwrap(), (3, 2));
}

#[tokio::test]
async fn a_response_larger_than_the_bound_closes_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (first, _) = read_request(&mut stream).await.unwrap();
        stream
            .write_all(&api_versions_frame(first.correlation_id, 3, 0, 3, 4096))
            .await
            .unwrap();
        // Keep the socket open until the client gives up on it.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    let error = Connection::connect(&addr, &config(1024))
        .await
        .err()
        .expect("the frame is over the bound");
    match error {
        Error::Connection { reason, .. } => assert!(reason.contains("outside"), "{reason}"),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn frames_start_with_their_length() {
    let frame = api_versions_frame(7, 3, 0, 3, 0);
    let mut bytes = frame.freeze();
    let length = bytes.get_i32();
    assert_eq!(length as usize, bytes.len());
    assert_eq!(bytes.get_i32(), 7);
}
