//! Malformed requests on raw TCP: a garbage body, a body whose array length claims two billion
//! entries, a truncated frame, an unknown API key, an oversized and a negative length prefix.
//! The broker may answer with an error or close the connection, but it must not hang on a frame it
//! cannot finish, must close on a frame larger than socket.request.max.bytes, must not crash, and
//! must keep serving well-formed clients (raw ApiVersions, and kcat -L when kcat is installed).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{run, Broker, TestDir};

/// A hang guard on reads: a broker that neither answers nor closes fails the test.
const READ_DEADLINE: Duration = Duration::from_secs(30);
const MAX_REQUEST: usize = 1 << 20;

fn connect(broker: &Broker) -> TcpStream {
    let s = TcpStream::connect(&broker.addr).expect("connect to broker");
    s.set_read_timeout(Some(READ_DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A request header v1 (api key, version, correlation id, client id) followed by `body`, framed.
fn frame(api_key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&correlation.to_be_bytes());
    payload.extend_from_slice(&(7i16).to_be_bytes());
    payload.extend_from_slice(b"e2e-bad");
    payload.extend_from_slice(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

/// What the broker did with a request: closed the connection, or answered (correlation id, body).
#[derive(Debug)]
enum Reaction {
    Closed,
    Answered(i32, Vec<u8>),
}

/// Reads one response frame or the connection's end; panics if neither happens before the deadline.
fn reaction(s: &mut TcpStream, what: &str) -> Reaction {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ) =>
        {
            return Reaction::Closed
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("{what}: the broker neither answered nor closed the connection within {READ_DEADLINE:?}")
        }
        Err(e) => panic!("{what}: reading the reaction failed: {e}"),
    }
    let n = i32::from_be_bytes(len);
    assert!(
        n >= 4 && (n as usize) < 64 << 20,
        "{what}: response length {n} is invalid"
    );
    let mut body = vec![0u8; n as usize];
    s.read_exact(&mut body)
        .unwrap_or_else(|e| panic!("{what}: truncated response: {e}"));
    let corr = i32::from_be_bytes(body[..4].try_into().unwrap());
    Reaction::Answered(corr, body[4..].to_vec())
}

/// Sends bytes, tolerating a broker that already closed the connection.
fn send(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
    let _ = s.flush();
}

/// ApiVersions v0 on a fresh connection; asserts error 0 and the core APIs are listed.
fn assert_api_versions_ok(broker: &Broker, after: &str) {
    let mut s = connect(broker);
    send(&mut s, &frame(18, 0, 4242, &[]));
    match reaction(&mut s, "ApiVersions") {
        Reaction::Answered(corr, body) => {
            assert_eq!(corr, 4242, "ApiVersions correlation id after {after}");
            let err = i16::from_be_bytes(body[..2].try_into().unwrap());
            assert_eq!(err, 0, "ApiVersions error code after {after}");
            let n = i32::from_be_bytes(body[2..6].try_into().unwrap());
            assert!(
                n > 0 && body.len() >= 6 + 6 * n as usize,
                "ApiVersions v0 body of {} bytes lists {n} APIs",
                body.len()
            );
            let keys: Vec<i16> = (0..n as usize)
                .map(|k| i16::from_be_bytes(body[6 + 6 * k..8 + 6 * k].try_into().unwrap()))
                .collect();
            for api in [0i16, 1, 2, 3, 18] {
                assert!(keys.contains(&api), "ApiVersions should list API {api}: {keys:?}");
            }
        }
        Reaction::Closed => panic!("the broker closed a well-formed ApiVersions request after {after}"),
    }
}

/// Sends `bytes` on a fresh connection, checks that the broker answers with the request's
/// correlation id or closes, and that it still serves ApiVersions.
fn check_survives(broker: &mut Broker, what: &str, bytes: &[u8], correlation: Option<i32>) {
    let mut s = connect(broker);
    send(&mut s, bytes);
    let r = reaction(&mut s, what);
    println!(
        "{what}: {}",
        match &r {
            Reaction::Closed => "closed".to_string(),
            Reaction::Answered(c, b) => format!("answered correlation {c} with {} bytes", b.len()),
        }
    );
    match r {
        Reaction::Closed => {}
        Reaction::Answered(corr, _) => {
            if let Some(c) = correlation {
                assert_eq!(corr, c, "{what}: a response must carry the request's correlation id");
            } else {
                panic!("{what}: the broker answered a frame it could not have parsed (correlation {corr})");
            }
        }
    }
    broker.assert_running(what);
    assert_api_versions_ok(broker, what);
}

#[test]
fn malformed_requests_do_not_break_the_broker() {
    let dir = TestDir::new();
    let max = MAX_REQUEST.to_string();
    let mut broker = dir.start_broker(&[("socket.request.max.bytes", max.as_str())]);
    assert_api_versions_ok(&broker, "start");

    // A Metadata v9 request whose body is random bytes.
    let garbage: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    check_survives(
        &mut broker,
        "garbage Metadata body",
        &frame(3, 9, 11, &garbage),
        Some(11),
    );

    // A Metadata v1 request whose topics array claims i32::MAX entries (must not allocate them).
    check_survives(
        &mut broker,
        "huge array length",
        &frame(3, 1, 12, &i32::MAX.to_be_bytes()),
        Some(12),
    );

    // A Produce v9 request that is only a header: the body ends before its first field.
    check_survives(&mut broker, "empty Produce body", &frame(0, 9, 13, &[]), Some(13));

    // An unknown API key, and a known key at a version nobody supports.
    check_survives(&mut broker, "unknown API key", &frame(9999, 0, 14, &[]), Some(14));
    check_survives(
        &mut broker,
        "unsupported Metadata version",
        &frame(3, 999, 15, &[]),
        Some(15),
    );

    // A frame shorter than a request header.
    check_survives(
        &mut broker,
        "frame shorter than a header",
        &[0, 0, 0, 3, 0, 18, 0],
        None,
    );

    // A truncated frame: the prefix promises 100 bytes, 20 arrive, then the client stops writing.
    {
        let mut s = connect(&broker);
        let mut bytes = 100i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&frame(18, 0, 16, &[0u8; 40])[4..20]);
        send(&mut s, &bytes);
        s.shutdown(Shutdown::Write).unwrap();
        match reaction(&mut s, "truncated frame") {
            Reaction::Closed => {}
            Reaction::Answered(corr, _) => panic!("truncated frame: the broker answered an incomplete frame ({corr})"),
        }
        broker.assert_running("truncated frame");
        assert_api_versions_ok(&broker, "truncated frame");
    }

    // A truncated frame abandoned mid-way (the connection just drops).
    {
        let mut s = connect(&broker);
        send(&mut s, &1000i32.to_be_bytes());
        send(&mut s, &[0u8; 10]);
        drop(s);
        broker.assert_running("abandoned frame");
        assert_api_versions_ok(&broker, "abandoned frame");
    }

    // Length prefixes over socket.request.max.bytes, and a negative one: the broker closes at once,
    // without waiting for (or allocating) the body.
    for (what, len) in [
        ("length just over socket.request.max.bytes", MAX_REQUEST as i32 + 1),
        ("length of 2 GiB", i32::MAX),
        ("negative length", -1),
    ] {
        let mut s = connect(&broker);
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&frame(18, 0, 17, &[])[4..]);
        send(&mut s, &bytes);
        match reaction(&mut s, what) {
            Reaction::Closed => {}
            Reaction::Answered(corr, _) => panic!("{what}: the broker answered instead of closing ({corr})"),
        }
        broker.assert_running(what);
        assert_api_versions_ok(&broker, what);
    }

    // A request exactly at the limit is read, not refused for its size: it gets an answer or a
    // close for its content, and the broker lives on.
    {
        let mut s = connect(&broker);
        let body = vec![0u8; MAX_REQUEST - 17];
        let bytes = frame(3, 1, 18, &body);
        assert_eq!(bytes.len() - 4, MAX_REQUEST);
        send(&mut s, &bytes);
        let _ = reaction(&mut s, "request at the size limit");
        broker.assert_running("request at the size limit");
    }

    // A normal client still works: raw ApiVersions, then kcat -L when kcat is installed.
    assert_api_versions_ok(&broker, "all malformed requests");
    if let Some(kcat) = common::require_kcat() {
        let mut cmd = Command::new(kcat);
        cmd.args(["-b", &broker.addr, "-L", "-m", "30"]);
        let out = run(cmd, "kcat -L");
        assert!(
            out.status.success(),
            "kcat -L after malformed requests failed: {}",
            out.stderr
        );
        assert!(out.stdout.contains("1 brokers"), "kcat -L output: {}", out.stdout);
    }
}
