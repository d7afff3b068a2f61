//! One TCP connection to one broker: 4-byte length framing, correlation ids, pipelined requests
//! answered in order, a bound on response size, a timeout on every request, and the API versions
//! negotiated with ApiVersions when the connection opens.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::versions::BrokerVersions;
use super::{check_code, ClientConfig};
use crate::error::{Error, Result};

/// The most requests one connection keeps in flight before `submit` waits.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 64;
/// Offset of the correlation id inside a request frame: length i32, api key i16, api version i16.
const CORRELATION_ID_AT: usize = 8;

/// A connection to one broker; cheap to share behind an `Arc`, safe to use from many tasks.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    request_timeout_ms: u64,
    outgoing: mpsc::Sender<Outgoing>,
    closed: Arc<AtomicBool>,
    versions: BrokerVersions,
}

/// What a request frame expects back.
enum Reply {
    /// The caller waits for the response frame.
    Response(oneshot::Sender<Result<Bytes>>),
    /// The broker sends no response (Produce with acks=0): the caller learns when the frame is written.
    Written(oneshot::Sender<Result<()>>),
}

/// A frame queued for the writer task.
struct Outgoing {
    frame: BytesMut,
    reply: Reply,
}

/// A request written to the socket whose response has not arrived yet.
struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Result<Bytes>>,
}

/// The response to one submitted request, decoded when awaited.
pub struct ResponseFuture<T> {
    rx: oneshot::Receiver<Result<Bytes>>,
    api: ApiKey,
    version: i16,
    addr: String,
    timeout_ms: u64,
    closed: Arc<AtomicBool>,
    _response: PhantomData<fn() -> T>,
}

impl Connection {
    /// Opens a connection to `addr` and negotiates API versions with it.
    pub async fn connect(addr: &str, config: &ClientConfig) -> Result<Connection> {
        let timeout_ms = config.request_timeout_ms;
        let stream = tokio::time::timeout(Duration::from_millis(timeout_ms), TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                what: format!("connecting to {addr}"),
                ms: timeout_ms,
            })?
            .map_err(|e| Error::Connection {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        stream.set_nodelay(true).map_err(|e| Error::Connection {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        let (read, write) = stream.into_split();
        let closed = Arc::new(AtomicBool::new(false));
        let (outgoing, outgoing_rx) = mpsc::channel(MAX_IN_FLIGHT_REQUESTS);
        let (pending_tx, pending_rx) = mpsc::channel(MAX_IN_FLIGHT_REQUESTS);
        tokio::spawn(write_loop(
            write,
            outgoing_rx,
            pending_tx,
            closed.clone(),
            addr.to_string(),
        ));
        tokio::spawn(read_loop(
            read,
            pending_rx,
            closed.clone(),
            addr.to_string(),
            config.max_response_bytes,
        ));
        let mut connection = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout_ms: timeout_ms,
            outgoing,
            closed,
            versions: BrokerVersions::default(),
        };
        connection.versions = connection.negotiate_versions().await?;
        Ok(connection)
    }

    /// The broker's address as dialled.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection failed or was closed; a closed connection is replaced, never reused.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.outgoing.is_closed()
    }

    /// The version to use for `api` with this broker: the highest both sides support.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        self.versions.pick(api, &self.addr)
    }

    /// Sends a request at the given version and waits for its response (within the request timeout).
    pub async fn request<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        self.submit(request, version, self.request_timeout_ms)
            .await?
            .wait()
            .await
    }

    /// Queues a request for writing and returns its response future; frames are written in the order
    /// of `submit` calls, which the producer relies on to keep sequence numbers in order.
    pub async fn submit<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout_ms: u64,
    ) -> Result<ResponseFuture<R::Response>> {
        let api = api_key::<R>()?;
        let frame = self.encode_frame(request, api, version)?;
        let (tx, rx) = oneshot::channel();
        self.enqueue(Outgoing {
            frame,
            reply: Reply::Response(tx),
        })
        .await?;
        Ok(ResponseFuture {
            rx,
            api,
            version,
            addr: self.addr.clone(),
            timeout_ms,
            closed: self.closed.clone(),
            _response: PhantomData,
        })
    }

    /// Queues a request the broker will not answer (Produce with acks=0) and waits until it is written.
    pub async fn send_without_response<R: Request>(&self, request: &R, version: i16) -> Result<()> {
        let api = api_key::<R>()?;
        let frame = self.encode_frame(request, api, version)?;
        let (tx, rx) = oneshot::channel();
        self.enqueue(Outgoing {
            frame,
            reply: Reply::Written(tx),
        })
        .await?;
        rx.await.map_err(|_| self.closed_error())?
    }

    async fn enqueue(&self, outgoing: Outgoing) -> Result<()> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        self.outgoing.send(outgoing).await.map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> Error {
        Error::Connection {
            addr: self.addr.clone(),
            reason: "connection closed".to_string(),
        }
    }

    fn encode_frame<R: Request>(&self, request: &R, api: ApiKey, version: i16) -> Result<BytesMut> {
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = 0;
        header.client_id = Some(self.client_id.clone());
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        let encoded = header
            .encode(&mut frame, api.request_header_version(version))
            .and_then(|()| request.encode(&mut frame, version));
        encoded.map_err(|e| Error::MalformedRequest(format!("cannot encode {api:?} v{version} request: {e}")))?;
        let length = i32::try_from(frame.len() - 4).map_err(|_| Error::TooLarge {
            what: "request",
            size_bytes: frame.len(),
            limit_bytes: i32::MAX as usize,
        })?;
        frame[0..4].copy_from_slice(&length.to_be_bytes());
        Ok(frame)
    }

    /// Asks the broker which versions it supports, with the KIP-511 fallback to v0.
    async fn negotiate_versions(&self) -> Result<BrokerVersions> {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("brook");
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut version = 3;
        let response = loop {
            let frame = self.encode_frame(&request, ApiKey::ApiVersions, version)?;
            let (tx, rx) = oneshot::channel();
            self.enqueue(Outgoing {
                frame,
                reply: Reply::Response(tx),
            })
            .await?;
            let future: ResponseFuture<ApiVersionsResponse> = ResponseFuture {
                rx,
                api: ApiKey::ApiVersions,
                version,
                addr: self.addr.clone(),
                timeout_ms: self.request_timeout_ms,
                closed: self.closed.clone(),
                _response: PhantomData,
            };
            let mut body = future.body().await?;
            ResponseHeader::decode(&mut body, 0).map_err(|e| self.decode_error(ApiKey::ApiVersions, version, e))?;
            // A broker that does not know our version answers error 35 in the v0 layout.
            let error_code = if body.len() >= 2 {
                i16::from_be_bytes([body[0], body[1]])
            } else {
                0
            };
            let layout = if error_code == 35 { 0 } else { version };
            let response = ApiVersionsResponse::decode(&mut body, layout)
                .map_err(|e| self.decode_error(ApiKey::ApiVersions, layout, e))?;
            if error_code == 35 && version > 0 {
                let theirs = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16);
                version = theirs.map_or(0, |k| k.max_version).clamp(0, version - 1);
                continue;
            }
            break response;
        };
        check_code(response.error_code, None)?;
        let mut versions = BrokerVersions::default();
        for key in &response.api_keys {
            versions.insert(key.api_key, key.min_version, key.max_version);
        }
        Ok(versions)
    }

    fn decode_error(&self, api: ApiKey, version: i16, e: impl std::fmt::Display) -> Error {
        decode_failure(&self.addr, api, version, e)
    }
}

impl<T: Decodable> ResponseFuture<T> {
    /// Waits for the response and decodes it.
    pub async fn wait(self) -> Result<T> {
        let (api, version, addr) = (self.api, self.version, self.addr.clone());
        let mut body = self.body().await?;
        ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| decode_failure(&addr, api, version, e))?;
        T::decode(&mut body, version).map_err(|e| decode_failure(&addr, api, version, e))
    }

    /// Waits for the raw response frame (correlation id first), within the timeout.
    async fn body(self) -> Result<Bytes> {
        match tokio::time::timeout(Duration::from_millis(self.timeout_ms), self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Connection {
                addr: self.addr,
                reason: "connection closed".to_string(),
            }),
            Err(_) => {
                // Kafka clients close a connection whose request timed out; so does this one.
                self.closed.store(true, Ordering::Relaxed);
                Err(Error::Timeout {
                    what: format!("{:?} request to {}", self.api, self.addr),
                    ms: self.timeout_ms,
                })
            }
        }
    }
}

/// The error for a response frame that does not decode as the API and version asked for.
fn decode_failure(addr: &str, api: ApiKey, version: i16, e: impl std::fmt::Display) -> Error {
    Error::Connection {
        addr: addr.to_string(),
        reason: format!("cannot decode {api:?} v{version} response: {e}"),
    }
}

fn api_key<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|_| Error::MalformedRequest(format!("unknown API key {}", R::KEY)))
}

async fn write_loop(
    mut write: OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Outgoing>,
    pending: mpsc::Sender<Pending>,
    closed: Arc<AtomicBool>,
    addr: String,
) {
    let mut next_correlation_id: i32 = 1;
    while let Some(mut out) = outgoing.recv().await {
        let correlation_id = next_correlation_id;
        next_correlation_id = next_correlation_id.checked_add(1).unwrap_or(1);
        out.frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&correlation_id.to_be_bytes());
        let written = match out.reply {
            // Registered before writing, so the reader always finds it when the response arrives.
            Reply::Response(reply) => match pending.send(Pending { correlation_id, reply }).await {
                Ok(()) => None,
                Err(_) => break,
            },
            Reply::Written(tx) => Some(tx),
        };
        if let Err(e) = write.write_all(&out.frame).await {
            tracing::debug!(addr = %addr, error = %e, "kafka client write failed");
            if let Some(tx) = written {
                let _ = tx.send(Err(Error::Connection {
                    addr: addr.clone(),
                    reason: e.to_string(),
                }));
            }
            break;
        }
        if let Some(tx) = written {
            let _ = tx.send(Ok(()));
        }
    }
    closed.store(true, Ordering::Relaxed);
}

async fn read_loop(
    mut read: OwnedReadHalf,
    mut pending: mpsc::Receiver<Pending>,
    closed: Arc<AtomicBool>,
    addr: String,
    max_response_bytes: usize,
) {
    let reason = loop {
        let mut length = [0u8; 4];
        if let Err(e) = read.read_exact(&mut length).await {
            break format!("read failed: {e}");
        }
        let length = i32::from_be_bytes(length);
        if length < 4 || length as usize > max_response_bytes {
            break format!("response frame of {length} bytes is outside 4..={max_response_bytes}");
        }
        let mut body = BytesMut::zeroed(length as usize);
        if let Err(e) = read.read_exact(&mut body).await {
            break format!("read failed: {e}");
        }
        let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let Ok(expected) = pending.try_recv() else {
            break format!("unsolicited response with correlation id {correlation_id}");
        };
        if expected.correlation_id != correlation_id {
            let message = format!(
                "expected correlation id {}, got {correlation_id}",
                expected.correlation_id
            );
            let _ = expected.reply.send(Err(Error::Connection {
                addr: addr.clone(),
                reason: message.clone(),
            }));
            break message;
        }
        let _ = expected.reply.send(Ok(body.freeze()));
    };
    tracing::debug!(addr = %addr, reason = %reason, "kafka client connection closed");
    closed.store(true, Ordering::Relaxed);
    pending.close();
    while let Ok(waiting) = pending.try_recv() {
        let _ = waiting.reply.send(Err(Error::Connection {
            addr: addr.clone(),
            reason: reason.clone(),
        }));
    }
}
