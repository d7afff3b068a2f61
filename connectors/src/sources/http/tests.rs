//! Tests of the `http` source: bodies split into records, acknowledgements only after the next
//! poll, and the shared compliance check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::compliance::{check_source, SourceUnderTest};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn ctx() -> Context {
    Context {
        name: format!("test.http{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        base_dir: std::env::temp_dir(),
    }
}

#[test]
fn bodies_split_into_objects_and_rejects() {
    let parts = ingress::split(&Bytes::from_static(b"{\"a\":1}\n\n{\"a\":2}\nnope\n[1]\n"));
    assert_eq!(parts.len(), 4);
    assert!(parts[0].is_ok() && parts[1].is_ok());
    assert!(parts[2].is_err() && parts[3].is_err());
    let parts = ingress::split(&Bytes::from_static(b"[{\"a\":1},{\"b\":2},3]"));
    assert_eq!(parts.iter().filter(|p| p.is_ok()).count(), 2);
    assert_eq!(ingress::split(&Bytes::from_static(b"{\"a\": {\"b\": 1}}")).len(), 1);
}

#[tokio::test]
async fn a_request_is_answered_only_after_the_next_poll() {
    let ctx = ctx();
    let mut source = build(&ctx, serde_json::json!({})).unwrap();
    source.open(None).await.unwrap();
    let name = ctx.name.clone();
    let delivery = tokio::spawn(async move { ingress().deliver(&name, Bytes::from_static(b"{\"a\":1}\nbad")).await });
    let mut items = Vec::new();
    while items.len() < 2 {
        items.extend(source.poll(10, 100).await.unwrap().unwrap());
    }
    assert!(matches!(items[0], SourceItem::Record(_)));
    assert!(matches!(items[1], SourceItem::Bad { .. }));
    assert!(!delivery.is_finished(), "answered before the records were written");
    source.poll(10, 10).await.unwrap();
    let delivered = delivery.await.unwrap().unwrap();
    assert_eq!(
        delivered,
        Delivered {
            records: 1,
            rejected: 1
        }
    );
    let err = ingress()
        .deliver("test.nobody", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(err, IngressError::NotFound(_)));
}

#[tokio::test]
async fn the_http_source_passes_the_compliance_check() {
    let ctx = Arc::new(ctx());
    let make_ctx = ctx.clone();
    let feed_name = ctx.name.clone();
    check_source(SourceUnderTest {
        make: Box::new(move || build(&make_ctx, serde_json::json!({})).unwrap()),
        feed: Box::new(move |first, n| {
            let name = feed_name.clone();
            Box::pin(async move {
                let body: String = (first..first + n as u64).map(|i| format!("{{\"id\":{i}}}\n")).collect();
                // The source acknowledges at its next poll; the check polls, so do not wait.
                // Records posted while no source runs are refused; retry like a client would.
                tokio::spawn(async move {
                    for _ in 0..1000 {
                        match ingress().deliver(&name, Bytes::from(body.clone())).await {
                            Err(IngressError::NotFound(_)) => {
                                tokio::time::sleep(std::time::Duration::from_millis(10)).await
                            }
                            _ => return,
                        }
                    }
                });
                tokio::task::yield_now().await;
            })
        }),
        id_of: Box::new(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.value).unwrap()["id"]
                .as_u64()
                .unwrap()
        }),
    })
    .await;
}
