//! One client connection: reads length-prefixed frames, runs requests in arrival order, and
//! writes responses in the same order while later requests are already being worked on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::api::{self, Reply};
use crate::broker::Broker;
use crate::server::versions;

/// A response on its way to the writer: ready bytes, or a task that will produce them (None for acks=0).
pub(crate) enum Pending {
    Ready(Bytes),
    Task(tokio::task::JoinHandle<Option<Bytes>>),
}

/// Serves one connection until the client closes it, breaks the protocol, or stays idle too long.
pub async fn run(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let config = broker.config();
    let max_request_bytes = config.long("socket.request.max.bytes") as usize;
    let idle = Duration::from_millis(config.long("connections.max.idle.ms") as u64);
    let depth = config.long("queued.max.requests").max(1) as usize;
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Pending>(depth);

    let writer_task = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            let bytes = match pending {
                Pending::Ready(b) => Some(b),
                Pending::Task(handle) => match handle.await {
                    Ok(Some(b)) => Some(b),
                    Ok(None) => {
                        // Skipping a response would shift every later one onto the wrong request.
                        tracing::error!(peer = %peer, "a response could not be built; closing connection");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(peer = %peer, error = %e, "request task failed; closing connection");
                        return;
                    }
                },
            };
            if let Some(bytes) = bytes {
                if let Err(e) = writer.write_all(&bytes).await {
                    tracing::debug!(peer = %peer, error = %e, "write failed; closing connection");
                    return;
                }
            }
        }
    });

    let mut shutdown = broker.shutdown_signal();
    loop {
        let mut len_buf = [0u8; 4];
        let read = tokio::select! {
            r = tokio::time::timeout(idle, reader.read_exact(&mut len_buf)) => r,
            _ = shutdown.changed() => break,
        };
        match read {
            Err(_) => {
                tracing::info!(peer = %peer, idle_ms = idle.as_millis() as u64, "closing idle connection");
                break;
            }
            Ok(Err(_)) => break, // The client closed the connection.
            Ok(Ok(_)) => {}
        }
        let len = i32::from_be_bytes(len_buf);
        if len < 0 || len as usize > max_request_bytes {
            tracing::warn!(peer = %peer, size_bytes = len, limit_bytes = max_request_bytes, "request frame size out of bounds; closing connection");
            break;
        }
        // The buffer grows as bytes arrive, so a length prefix alone reserves no memory.
        let mut body = Vec::with_capacity((len as usize).min(64 * 1024));
        let read = tokio::time::timeout(idle, (&mut reader).take(len as u64).read_to_end(&mut body)).await;
        match read {
            Ok(Ok(n)) if n == len as usize => {}
            Ok(Ok(n)) => {
                tracing::info!(peer = %peer, size_bytes = len, read_bytes = n, "truncated request frame; closing connection");
                break;
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %peer, error = %e, "request read failed; closing connection");
                break;
            }
            Err(_) => {
                tracing::info!(peer = %peer, size_bytes = len, "request body stalled; closing connection");
                break;
            }
        }
        let frame = Bytes::from(body);
        match dispatch(&broker, frame, peer) {
            Ok(None) => {}
            Ok(Some(pending)) => {
                if tx.send(pending).await.is_err() {
                    break;
                }
            }
            Err(reason) => {
                tracing::warn!(peer = %peer, reason = %reason, "bad request; closing connection");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer_task.await;
}

/// Decodes one frame and starts its handler. Errors close the connection, as Kafka does for
/// requests it cannot parse.
pub(crate) fn dispatch(broker: &Arc<Broker>, mut frame: Bytes, peer: SocketAddr) -> Result<Option<Pending>, String> {
    if frame.len() < 8 {
        return Err(format!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let key_num = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(key_num).map_err(|_| format!("unknown api key {key_num}"))?;
    let Some(range) = versions::supported(key) else {
        return Err(format!("api {key:?} is not supported"));
    };
    if version < range.min_decodable || version > range.max_version {
        if key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with a v0 response listing what we serve.
            let body = api::api_versions::unsupported_version_response();
            return Ok(Some(Pending::Ready(encode_response(key, 0, correlation_id, &body)?)));
        }
        if key == ApiKey::Produce && (range.min_version..range.min_decodable).contains(&version) {
            let body = frame.split_off(8);
            let bytes = api::produce::old_version_response(body, version, correlation_id)?;
            return Ok(Some(Pending::Ready(bytes)));
        }
        return Err(format!("{key:?} version {version} is not supported"));
    }
    let header_version = key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| format!("bad {key:?} v{version} header: {e}"))?;
    let request = kafka_protocol::messages::RequestKind::decode(key, &mut frame, version)
        .map_err(|e| format!("bad {key:?} v{version} body: {e}"))?;
    if frame.has_remaining() {
        tracing::debug!(peer = %peer, api = ?key, version, trailing_bytes = frame.remaining(), "request has trailing bytes");
    }
    let client = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
    tracing::trace!(peer = %peer, api = ?key, version, correlation_id, client = %client, "request");
    match api::handle(
        broker,
        request,
        version,
        &api::Client {
            id: &client,
            addr: peer,
        },
    ) {
        None => Err(format!("no handler for {key:?}")),
        Some(Reply::Now(body)) => Ok(Some(Pending::Ready(encode_response(
            key,
            version,
            correlation_id,
            &body,
        )?))),
        Some(Reply::Nothing) => Ok(None),
        Some(Reply::Later(fut)) => Ok(Some(Pending::Task(tokio::spawn(async move {
            let body = fut.await?;
            match encode_response(key, version, correlation_id, &body) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    tracing::error!(api = ?key, version, error = %e, "response did not encode");
                    None
                }
            }
        })))),
    }
}

/// Frames a response: length, header (v0 or flexible v1), body.
pub fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &kafka_protocol::messages::ResponseKind,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, key.response_header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("{key:?} v{version} response: {e}"))?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}
