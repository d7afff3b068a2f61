//! Tests of the `stdin` source over in-memory readers and pipes standing in for standard input.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::*;
use crate::compliance::{check_source, SourceUnderTest};
use crate::sources::texts;

fn source(config: serde_json::Value, input: impl AsyncRead + Send + Unpin + 'static) -> StdinSource {
    let config: StdinConfig = serde_json::from_value(config).unwrap();
    let parser = Arc::new(config.parse_config().compile(TYPE).unwrap());
    StdinSource::new(parser, Some(Box::new(input)))
}

#[tokio::test]
async fn lines_are_read_to_the_end_then_the_source_ends() {
    let input: &[u8] = b"{\"a\": 1}\nnot json\n{\"b\": 2}";
    let mut s = source(json!({"format": "json"}), input);
    s.open(None).await.unwrap();
    let mut items = Vec::new();
    while let Some(batch) = s.poll(2, 60_000).await.unwrap() {
        assert!(batch.len() <= 2);
        items.extend(batch);
    }
    assert_eq!(texts(&items)[0], "{\"a\": 1}");
    assert!(texts(&items)[1].starts_with("bad: the line is not JSON"));
    // The last line counts at the end of input even without a newline.
    assert_eq!(texts(&items)[2], "{\"b\": 2}");
    let positions: Vec<_> = items.iter().map(|i| (i.position().start, i.position().end)).collect();
    assert_eq!(positions, [(0, 9), (9, 18), (18, 26)]);
    assert!(items.iter().all(|i| i.position().stream == s.stream_name()));
    assert!(s.poll(10, 0).await.unwrap().is_none());
    assert_eq!(s.checkpoint()["offset"], 26);
}

#[tokio::test]
async fn each_run_is_its_own_stream() {
    let a = source(json!({}), &b""[..]);
    let b = source(json!({}), &b""[..]);
    assert!(a.stream_name().starts_with("stdin:"));
    assert_ne!(a.stream_name(), b.stream_name());
}

#[tokio::test]
async fn a_poll_without_input_returns_empty_and_a_multi_line_record_flushes_on_quiet() {
    let (mut writer, reader) = tokio::io::duplex(1024);
    let mut s = source(
        json!({"multiline": {"start_pattern": "^\\S", "timeout_ms": 20}}),
        reader,
    );
    s.open(Some(json!({"stream": "stdin:earlier", "offset": 5})))
        .await
        .unwrap();
    assert_eq!(s.poll(10, 0).await.unwrap(), Some(vec![]));
    writer.write_all(b"Error: boom\n  at a\n").await.unwrap();
    // The record has no next start line: only the quiet timeout emits it.
    let mut items = Vec::new();
    while items.is_empty() {
        items = s.poll(10, 60_000).await.unwrap().unwrap();
    }
    assert_eq!(texts(&items), ["Error: boom\n  at a"]);
    drop(writer);
    assert!(s.poll(10, 60_000).await.unwrap().is_none());
}

#[test]
fn bad_settings_are_refused_when_building() {
    let ctx = Context {
        name: "t".into(),
        base_dir: ".".into(),
    };
    let err = |c| build(&ctx, c).err().expect("refused").to_string();
    assert!(err(json!({"path": "x"})).contains("unknown field `path`"));
    assert!(err(json!({"format": "csv"})).contains("csv.columns"));
    assert!(build(&ctx, serde_json::Value::Null).is_ok());
}

/// A pipe shared by every source built over it, as one standard input outliving a restart.
#[derive(Clone, Default)]
struct Pipe(Arc<Mutex<(VecDeque<u8>, Option<Waker>)>>);

impl Pipe {
    fn write(&self, data: &[u8]) {
        let mut inner = self.0.lock().unwrap();
        inner.0.extend(data);
        if let Some(w) = inner.1.take() {
            w.wake();
        }
    }
}

impl AsyncRead for Pipe {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let mut inner = self.0.lock().unwrap();
        if inner.0.is_empty() {
            inner.1 = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.remaining().min(inner.0.len());
        let bytes: Vec<u8> = inner.0.drain(..n).collect();
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn the_stdin_source_passes_the_compliance_check() {
    let pipe = Pipe::default();
    let feed_pipe = pipe.clone();
    check_source(SourceUnderTest {
        make: Box::new(move || Box::new(source(json!({}), pipe.clone()))),
        feed: Box::new(move |first, n| {
            let text: String = (first..first + n as u64).map(|i| format!("{i}\n")).collect();
            feed_pipe.write(text.as_bytes());
            Box::pin(async {})
        }),
        id_of: Box::new(|r| std::str::from_utf8(&r.value).unwrap().parse().unwrap()),
    })
    .await;
}
