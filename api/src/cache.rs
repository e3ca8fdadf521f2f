//! Rendered answers of the fleet (JSON and the page's table) kept until the views move on or
//! the minute changes (an instance's status depends on the time, at minute resolution). Ten
//! thousand rows take tens of milliseconds to render and almost nothing to send again; between
//! changes every request for the same scope and filter gets the same bytes. Requests that arrive
//! while an answer is being rendered wait for that one rendering instead of each rendering their
//! own (eight clients would otherwise render the whole fleet eight times over after each change).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::OnceCell;

use crate::error::ApiError;

/// What was rendered: which answer, for whom, with which filter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// `fleet.json` or `fleet.html`.
    pub kind: &'static str,
    /// The caller's scope (`*` or a tenant).
    pub scope: String,
    /// The tenant filter.
    pub tenant: String,
    /// The status filter.
    pub status: String,
    /// The page of the fleet page (0: the whole fleet).
    pub page: usize,
}

struct Entry {
    position: i64,
    minute: i64,
    body: Arc<OnceCell<Bytes>>,
}

/// At most this many answers are kept (then all are dropped: filters are few in practice).
const MAX_ENTRIES: usize = 256;

/// See the module documentation.
#[derive(Default)]
pub struct RenderCache {
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

impl RenderCache {
    /// The answer for `key` rendered at view `position` in `minute`, rendering it if needed
    /// (once, however many ask at the same time; a failed rendering is not kept).
    ///
    /// # Errors
    /// Whatever `render` returns.
    pub async fn get_or_render<Rendered>(
        &self,
        key: CacheKey,
        position: i64,
        minute: i64,
        render: impl FnOnce() -> Rendered,
    ) -> Result<Bytes, ApiError>
    where
        Rendered: std::future::Future<Output = Result<Bytes, ApiError>>,
    {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            match entries.get(&key) {
                Some(entry) if entry.position == position && entry.minute == minute => {
                    entry.body.clone()
                }
                _ => {
                    if entries.len() >= MAX_ENTRIES {
                        entries.clear();
                    }
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(
                        key,
                        Entry {
                            position,
                            minute,
                            body: cell.clone(),
                        },
                    );
                    cell
                }
            }
        };
        cell.get_or_try_init(render).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            kind: "fleet.json",
            scope: "acme".into(),
            tenant: String::new(),
            status: String::new(),
            page: 0,
        }
    }

    #[tokio::test]
    async fn renders_again_only_when_the_views_or_the_minute_move() {
        let cache = RenderCache::default();
        let renders = std::sync::atomic::AtomicUsize::new(0);
        let get = |position, minute| {
            let (cache, renders) = (&cache, &renders);
            async move {
                cache
                    .get_or_render(key(), position, minute, || async move {
                        renders.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(Bytes::from(format!("{position}/{minute}")))
                    })
                    .await
                    .expect("render")
            }
        };
        assert_eq!(get(1, 10).await, "1/10");
        assert_eq!(get(1, 10).await, "1/10");
        assert_eq!(get(2, 10).await, "2/10");
        assert_eq!(get(2, 11).await, "2/11");
        assert_eq!(renders.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_rendering() {
        let cache = Arc::new(RenderCache::default());
        let renders = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let asks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, renders) = (cache.clone(), renders.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_render(key(), 1, 1, || async move {
                            renders.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(Bytes::from_static(b"rendered"))
                        })
                        .await
                })
            })
            .collect();
        for ask in asks {
            assert_eq!(ask.await.expect("task").expect("render"), "rendered");
        }
        assert_eq!(renders.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_rendering_is_not_kept() {
        let cache = RenderCache::default();
        let failed = cache
            .get_or_render(key(), 1, 1, || async {
                Err(ApiError::BadRequest("no".into()))
            })
            .await;
        assert!(failed.is_err());
        let again = cache
            .get_or_render(key(), 1, 1, || async { Ok(Bytes::from_static(b"ok")) })
            .await
            .expect("rendered this time");
        assert_eq!(again, "ok");
    }
}
