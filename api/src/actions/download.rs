//! Downloads: a cycle's stored copy streamed out of the vault (administrators and owners), its
//! SHA-256 checked on the way and its last chunk held back until the whole copy matches.

use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Response};
use chrono::Utc;
use futures_util::Stream;
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::cycle::BackupCycle;
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;

use super::audit::record;
use crate::access;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// Streams a cycle's stored copy out of the vault (never a storage URL). The SHA-256 is
/// computed on the way and the last chunk is held back until it matches the recorded one: if the
/// bytes differ, the body ends with an error instead, the connection is aborted short of its
/// `Content-Length`, and the refusal is logged and audited (`download_corrupt`). A client never
/// receives a wrong file as complete.
///
/// # Errors
/// 404 if not visible, never stored or removed by retention, 403 for viewers.
pub async fn download(
    state: &AppState,
    who: &Principal,
    cycle: &str,
) -> Result<Response<Body>, ApiError> {
    let row = access::cycle(state, who, cycle).await?;
    who.require(&[Role::Administrator, Role::Owner])?;
    let stored: BackupCycle = state.pipeline.store.load(&row.cycle_id.to_string()).await?;
    // A copy retention removed is no longer stored: as one never stored.
    let captured = stored
        .captured
        .filter(|_| stored.removed.is_none())
        .ok_or(ApiError::NotFound)?;
    let reader = state
        .pipeline
        .vault
        .open(&captured.object_key, &captured.version_id)
        .await
        .map_err(ApiError::internal)?;
    record(
        state,
        who,
        &row.tenant_id,
        AuditAction::Download,
        Some(row.instance_id),
        Some(row.cycle_id),
        Some(captured.key_version),
    )
    .await?;
    let stream = ReaderStream::with_capacity(reader, 256 * 1024);
    let store = state.pipeline.store.clone();
    let refusal = ActionRecorded {
        tenant_id: row.tenant_id.clone(),
        actor: who.actor.clone(),
        action: AuditAction::DownloadCorrupt,
        instance_id: Some(row.instance_id),
        cycle_id: Some(row.cycle_id),
        key_version: Some(captured.key_version),
        at: Utc::now(),
    };
    let on_mismatch = move || {
        tokio::spawn(async move {
            let tenant = refusal.tenant_id.to_string();
            if let Err(error) = store.audit(&tenant, refusal).await {
                tracing::error!(%error, "recording a refused download in the audit trail failed");
            }
        });
    };
    let expected = Expected {
        sha256: captured.sha256.clone(),
        size: captured.size,
        cycle: row.cycle_id.to_string(),
    };
    let body = Body::from_stream(checked_against(stream, expected, on_mismatch));
    let name = format!("{}-{}.zip", row.instance_id, row.cycle_id);
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(captured.size));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&captured.sha256) {
        headers.insert("x-restorable-sha256", value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// What a download must add up to.
pub struct Expected {
    /// The recorded SHA-256 (hex).
    pub sha256: String,
    /// The recorded size.
    pub size: u64,
    /// The cycle (for the log).
    pub cycle: String,
}

/// Passes chunks through while hashing them, always one chunk behind: the last chunk is only
/// released once the whole copy hashes to `expected` (and has its size). Otherwise the stream
/// ends with an error in its place, so a server that stops at `Content-Length` never sends the
/// final bytes and the client sees a failed transfer, not a wrong file; `on_mismatch` runs
/// once (the audit record).
pub fn checked_against(
    stream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    expected: Expected,
    on_mismatch: impl FnOnce() + Send + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let mut hasher = Some(Sha256::new());
    let mut held: Option<Bytes> = None;
    let mut seen = 0u64;
    let mut stream = Box::pin(stream);
    let mut on_mismatch = Some(on_mismatch);
    futures_util::stream::poll_fn(move |cx| loop {
        let Some(running) = hasher.as_mut() else {
            // Verified: release what was held, then end.
            return Poll::Ready(held.take().map(Ok));
        };
        match stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if bytes.is_empty() {
                    continue;
                }
                running.update(&bytes);
                seen += bytes.len() as u64;
                if let Some(previous) = held.replace(bytes) {
                    return Poll::Ready(Some(Ok(previous)));
                }
            }
            Poll::Ready(Some(Err(error))) => {
                hasher = None;
                held = None;
                tracing::error!(cycle = %expected.cycle, %error, "reading a download from the vault failed; cut off");
                return Poll::Ready(Some(Err(error)));
            }
            Poll::Ready(None) => {
                let actual = hasher.take().map(|h| hex::encode(h.finalize()));
                if actual.as_deref() == Some(expected.sha256.as_str()) && seen == expected.size {
                    continue;
                }
                held = None;
                tracing::error!(
                    cycle = %expected.cycle,
                    expected = %expected.sha256,
                    ?actual,
                    expected_size = expected.size,
                    size = seen,
                    "a download differs from its recorded SHA-256; cut off before its last bytes"
                );
                if let Some(callback) = on_mismatch.take() {
                    callback();
                }
                return Poll::Ready(Some(Err(std::io::Error::other(
                    "the stored copy differs from its recorded SHA-256",
                ))));
            }
            Poll::Pending => return Poll::Pending,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn expected(all: &[u8]) -> Expected {
        Expected {
            sha256: hex::encode(Sha256::digest(all)),
            size: all.len() as u64,
            cycle: "c".into(),
        }
    }

    #[tokio::test]
    async fn the_last_chunk_is_released_only_when_the_hash_matches() {
        let out: Vec<_> =
            checked_against(chunks(&[b"ab", b"cd", b"ef"]), expected(b"abcdef"), || {
                panic!("no mismatch")
            })
            .collect()
            .await;
        let bytes: Vec<u8> = out
            .into_iter()
            .flat_map(|c| c.expect("no error").to_vec())
            .collect();
        assert_eq!(bytes, b"abcdef");

        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = called.clone();
        let out: Vec<_> = checked_against(
            chunks(&[b"ab", b"cd", b"eX"]),
            expected(b"abcdef"),
            move || flag.store(true, std::sync::atomic::Ordering::SeqCst),
        )
        .collect()
        .await;
        assert_eq!(
            out.len(),
            3,
            "two chunks, then the error in place of the last"
        );
        assert_eq!(out[0].as_ref().expect("first").as_ref(), b"ab");
        assert_eq!(out[1].as_ref().expect("second").as_ref(), b"cd");
        assert!(out[2].is_err());
        assert!(called.load(std::sync::atomic::Ordering::SeqCst), "audited");

        // Right bytes, wrong size on record: refused too.
        let mut wrong_size = expected(b"abcdef");
        wrong_size.size = 7;
        let out: Vec<_> = checked_against(chunks(&[b"abcdef"]), wrong_size, || {})
            .collect()
            .await;
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }
}
