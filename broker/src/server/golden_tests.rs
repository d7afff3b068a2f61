//! Golden frames captured from real clients (`broker/tests/golden/<client>/`, recorded by
//! `tests/clients/capture_all.sh`) replayed through request dispatch, so every API version a
//! real client speaks is checked without a running broker or the clients installed.
//!
//! What is asserted, per client, replaying its requests in capture order against one fresh
//! broker on a temporary directory:
//! - every request's (api, version) is in `versions::SUPPORTED` and the request decodes with no
//!   trailing bytes;
//! - dispatch accepts it and answers (no answer only for a Produce with acks=0);
//! - the answer is length-prefixed, its header has the response header version of the API and
//!   version and the request's correlation id, and its body decodes at the request's version
//!   (v0 for the KIP-511 ApiVersions fallback) with no bytes left over;
//! - every error code in the answer is NONE, for the APIs whose errors are listed in
//!   `error_codes` (all APIs captured today); topics a frame names are created first when the
//!   replayed session has not created them already;
//! - ApiVersions answers parse by hand as a client parses them: error 0 (35 for a KIP-511
//!   fallback), no tagged fields anywhere, and exactly the versions of `SUPPORTED`.
//!
//! Each recorded broker response (`.resp`) passes the same decoding checks, which shows the
//! broker that answered the real client sent something decodable. The advertised versions no
//! capture covers are listed in `broker/tests/golden/README.md`, which a test keeps in sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use super::connection::{dispatch, Pending};
use super::versions::{supported, SUPPORTED};
use crate::{Broker, BrokerConfig};

const PEER: &str = "127.0.0.1:1";
/// UNSUPPORTED_VERSION, the error of a KIP-511 ApiVersions fallback.
const UNSUPPORTED_VERSION: i16 = 35;
const README_BEGIN: &str = "<!-- uncovered:begin";
const README_END: &str = "uncovered:end -->";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// One captured request with its recorded response.
struct Golden {
    /// `<client>/<file stem>`, for messages.
    name: String,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: Bytes,
    response: Option<Bytes>,
}

/// Every client's captures, in capture order, by client name.
fn load() -> BTreeMap<String, Vec<Golden>> {
    let mut clients = BTreeMap::new();
    for entry in std::fs::read_dir(golden_dir()).expect("broker/tests/golden exists") {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let client = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut stems: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().to_string();
                name.strip_suffix(".req").map(str::to_string)
            })
            .collect();
        stems.sort();
        let frames = stems
            .into_iter()
            .map(|stem| {
                let request = Bytes::from(std::fs::read(dir.join(format!("{stem}.req"))).unwrap());
                let response = std::fs::read(dir.join(format!("{stem}.resp"))).ok().map(Bytes::from);
                assert!(request.len() >= 8, "{client}/{stem}: request shorter than a header");
                let key_num = i16::from_be_bytes([request[0], request[1]]);
                let key = ApiKey::try_from(key_num).unwrap_or_else(|_| panic!("{client}/{stem}: api key {key_num}"));
                Golden {
                    name: format!("{client}/{stem}"),
                    key,
                    version: i16::from_be_bytes([request[2], request[3]]),
                    correlation_id: i32::from_be_bytes([request[4], request[5], request[6], request[7]]),
                    request,
                    response,
                }
            })
            .collect::<Vec<_>>();
        assert!(!frames.is_empty(), "{client}: no captured frames");
        clients.insert(client, frames);
    }
    assert!(
        !clients.is_empty(),
        "no golden captures under {}",
        golden_dir().display()
    );
    clients
}

/// The request a golden frame holds, decoded as dispatch decodes it, with no bytes left over.
fn decode_request(g: &Golden) -> RequestKind {
    let mut buf = g.request.clone();
    RequestHeader::decode(&mut buf, g.key.request_header_version(g.version))
        .unwrap_or_else(|e| panic!("{}: request header: {e}", g.name));
    let request =
        RequestKind::decode(g.key, &mut buf, g.version).unwrap_or_else(|e| panic!("{}: request: {e}", g.name));
    assert_eq!(buf.remaining(), 0, "{}: trailing bytes after the request", g.name);
    request
}

/// The version a response to this request is encoded at: v0 for the KIP-511 fallback.
fn response_version(g: &Golden) -> i16 {
    let s = supported(g.key).unwrap();
    if g.key == ApiKey::ApiVersions && g.version > s.max_version {
        0
    } else {
        g.version
    }
}

/// Checks a response frame body (no length prefix) and returns the decoded response.
fn check_response(g: &Golden, what: &str, frame: &Bytes) -> ResponseKind {
    let version = response_version(g);
    let mut buf = frame.clone();
    let header = ResponseHeader::decode(&mut buf, g.key.response_header_version(version))
        .unwrap_or_else(|e| panic!("{} ({what}): response header: {e}", g.name));
    assert_eq!(
        header.correlation_id, g.correlation_id,
        "{} ({what}): correlation id",
        g.name
    );
    let body_start = frame.len() - buf.len();
    let response =
        ResponseKind::decode(g.key, &mut buf, version).unwrap_or_else(|e| panic!("{} ({what}): response: {e}", g.name));
    assert_eq!(
        buf.remaining(),
        0,
        "{} ({what}): trailing bytes after the response",
        g.name
    );
    if g.key == ApiKey::ApiVersions {
        check_api_versions_bytes(g, what, &frame[body_start..], version);
    }
    response
}

/// Reads an unsigned varint, as flexible versions encode lengths and tag counts.
fn varint(buf: &mut &[u8]) -> u32 {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let b = buf.get_u8();
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 5 bytes")
}

/// Parses an ApiVersions response body by hand, as librdkafka does: the error code, the API
/// list (compact in v3+, where each entry and the body end in a tagged-field count that must be
/// zero), the throttle time (v1+). The list must be exactly `SUPPORTED`.
fn check_api_versions_bytes(g: &Golden, what: &str, body: &[u8], version: i16) {
    let mut buf = body;
    let flexible = version >= 3;
    let error_code = buf.get_i16();
    let want = if version == 0 && g.version > supported(ApiKey::ApiVersions).unwrap().max_version {
        UNSUPPORTED_VERSION
    } else {
        0
    };
    assert_eq!(error_code, want, "{} ({what}): ApiVersions error code", g.name);
    let count = if flexible {
        varint(&mut buf).checked_sub(1).expect("ApiVersions list is not null") as usize
    } else {
        buf.get_i32() as usize
    };
    let mut apis = Vec::new();
    for _ in 0..count {
        apis.push((buf.get_i16(), buf.get_i16(), buf.get_i16()));
        if flexible {
            assert_eq!(
                varint(&mut buf),
                0,
                "{} ({what}): tagged fields in an api entry",
                g.name
            );
        }
    }
    if version >= 1 {
        buf.get_i32();
    }
    if flexible {
        assert_eq!(varint(&mut buf), 0, "{} ({what}): top-level tagged fields", g.name);
    }
    assert!(
        buf.is_empty(),
        "{} ({what}): {} bytes after ApiVersions",
        g.name,
        buf.len()
    );
    let served: Vec<(i16, i16, i16)> = SUPPORTED
        .iter()
        .map(|s| (s.key as i16, s.min_version, s.max_version))
        .collect();
    assert_eq!(apis, served, "{} ({what}): advertised versions", g.name);
}

/// Every error code in a response, named by where it sits; None for APIs not listed here.
fn error_codes(response: &ResponseKind) -> Option<Vec<(String, i16)>> {
    let mut out = Vec::new();
    match response {
        ResponseKind::ApiVersions(r) => out.push(("error_code".into(), r.error_code)),
        ResponseKind::Produce(r) => {
            for t in &r.responses {
                for p in &t.partition_responses {
                    out.push((format!("{}-{}", t.name.as_str(), p.index), p.error_code));
                }
            }
        }
        ResponseKind::Fetch(r) => {
            out.push(("error_code".into(), r.error_code));
            for t in &r.responses {
                for p in &t.partitions {
                    out.push((format!("{}-{}", t.topic.as_str(), p.partition_index), p.error_code));
                }
            }
        }
        ResponseKind::ListOffsets(r) => {
            for t in &r.topics {
                for p in &t.partitions {
                    out.push((format!("{}-{}", t.name.as_str(), p.partition_index), p.error_code));
                }
            }
        }
        ResponseKind::Metadata(r) => {
            for t in &r.topics {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                out.push((name.clone(), t.error_code));
                for p in &t.partitions {
                    out.push((format!("{name}-{}", p.partition_index), p.error_code));
                }
            }
        }
        ResponseKind::CreateTopics(r) => {
            for t in &r.topics {
                out.push((t.name.to_string(), t.error_code));
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for t in &r.responses {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                out.push((name, t.error_code));
            }
        }
        ResponseKind::DescribeConfigs(r) => {
            for res in &r.results {
                out.push((res.resource_name.to_string(), res.error_code));
            }
        }
        ResponseKind::InitProducerId(r) => out.push(("error_code".into(), r.error_code)),
        ResponseKind::FindCoordinator(r) => {
            out.push(("error_code".into(), r.error_code));
            for c in &r.coordinators {
                out.push((c.key.to_string(), c.error_code));
            }
        }
        _ => return None,
    }
    Some(out)
}

/// The topics and highest partition a data request names.
fn named_partitions(request: &RequestKind) -> Vec<(String, i32)> {
    match request {
        RequestKind::Produce(r) => r
            .topic_data
            .iter()
            .flat_map(|t| t.partition_data.iter().map(|p| (t.name.to_string(), p.index)))
            .collect(),
        RequestKind::Fetch(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), p.partition)))
            .collect(),
        RequestKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Creates the topics a data request names when the replayed session has not created them.
fn ensure_topics(broker: &Arc<Broker>, request: &RequestKind) {
    let mut wanted: BTreeMap<String, i32> = BTreeMap::new();
    for (topic, partition) in named_partitions(request) {
        let n = wanted.entry(topic).or_insert(1);
        *n = (*n).max(partition + 1);
    }
    let config = broker.config();
    for (topic, partitions) in wanted {
        if broker.topics.get(&topic).is_none() {
            broker
                .topics
                .create(&config, &topic, partitions, BTreeMap::new(), false)
                .unwrap_or_else(|e| panic!("creating {topic}: {e}"));
        }
    }
}

#[test]
fn golden_versions_are_served() {
    for frames in load().values() {
        for g in frames {
            let s = supported(g.key).unwrap_or_else(|| panic!("{}: {:?} is not served", g.name, g.key));
            assert!(
                (s.min_decodable..=s.max_version).contains(&g.version)
                    || (g.key == ApiKey::ApiVersions && g.version > s.max_version),
                "{}: {:?} v{} is outside the served range {}..={}",
                g.name,
                g.key,
                g.version,
                s.min_decodable,
                s.max_version
            );
        }
    }
}

#[test]
fn recorded_responses_decode() {
    for frames in load().values() {
        for g in frames {
            let request = decode_request(g);
            match &g.response {
                Some(frame) => {
                    check_response(g, "recorded", frame);
                }
                None => assert!(
                    matches!(request, RequestKind::Produce(ref r) if r.acks == 0),
                    "{}: no recorded response",
                    g.name
                ),
            }
        }
    }
}

#[test]
fn golden_requests_replay_without_errors() {
    for (client, frames) in load() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path().to_path_buf())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for g in &frames {
                let request = decode_request(g);
                ensure_topics(&broker, &request);
                let outcome = dispatch(&broker, g.request.clone(), PEER.parse::<SocketAddr>().unwrap())
                    .unwrap_or_else(|e| panic!("{}: refused: {e}", g.name));
                let framed = match outcome {
                    Some(Pending::Ready(bytes)) => bytes,
                    Some(Pending::Task(handle)) => handle
                        .await
                        .unwrap_or_else(|e| panic!("{}: task failed: {e}", g.name))
                        .unwrap_or_else(|| panic!("{}: no response built", g.name)),
                    None => {
                        assert!(
                            matches!(request, RequestKind::Produce(ref r) if r.acks == 0),
                            "{}: no answer",
                            g.name
                        );
                        continue;
                    }
                };
                let len = i32::from_be_bytes(framed[..4].try_into().unwrap());
                assert_eq!(len as usize, framed.len() - 4, "{}: length prefix", g.name);
                let response = check_response(g, "replayed", &framed.slice(4..));
                let codes = error_codes(&response).unwrap_or_else(|| panic!("{}: list its error codes", g.name));
                let errors: Vec<_> = codes.into_iter().filter(|(_, code)| *code != 0).collect();
                let fallback = g.key == ApiKey::ApiVersions && response_version(g) != g.version;
                if !fallback {
                    assert!(errors.is_empty(), "{}: errors {errors:?}", g.name);
                }
            }
        });
        drop(runtime);
        broker.close().unwrap();
        eprintln!("{client}: {} golden frames replayed", frames.len());
    }
}

/// The advertised (api, version) pairs no capture covers, one line per API, as the README lists them.
fn uncovered_block() -> String {
    let covered: BTreeSet<(i16, i16)> = load().values().flatten().map(|g| (g.key as i16, g.version)).collect();
    let mut out = String::new();
    for s in SUPPORTED {
        let missing: Vec<String> = (s.min_version..=s.max_version)
            .filter(|v| !covered.contains(&(s.key as i16, *v)))
            .map(|v| format!("v{v}"))
            .collect();
        if !missing.is_empty() {
            out.push_str(&format!("{:?}: {}\n", s.key, missing.join(" ")));
        }
    }
    out
}

#[test]
fn readme_lists_uncovered_versions() {
    let readme = std::fs::read_to_string(golden_dir().join("README.md")).unwrap();
    let start = readme
        .find(README_BEGIN)
        .expect("README has the uncovered:begin marker")
        + README_BEGIN.len();
    let end = readme.find(README_END).expect("README has the uncovered:end marker");
    let listed = readme[start..end].trim();
    let want = uncovered_block();
    assert_eq!(
        listed,
        want.trim(),
        "broker/tests/golden/README.md must list the uncovered advertised versions; replace its block with:\n{want}"
    );
}
