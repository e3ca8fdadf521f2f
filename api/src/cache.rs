//! Rendered answers of the fleet (JSON and the page's table) kept until the views move on or
//! the minute changes (an instance's status depends on the time, at minute resolution). Ten
//! thousand rows take tens of milliseconds to render and almost nothing to send again; between
//! changes every request for the same scope and filter gets the same bytes.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

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
    body: Bytes,
}

/// At most this many answers are kept (then all are dropped: filters are few in practice).
const MAX_ENTRIES: usize = 256;

/// See the module documentation.
#[derive(Default)]
pub struct RenderCache {
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

impl RenderCache {
    /// The answer for `key` rendered at view `position` in `minute`, rendering it if needed.
    ///
    /// # Errors
    /// Whatever `render` returns.
    pub fn get_or_render(
        &self,
        key: CacheKey,
        position: i64,
        minute: i64,
        render: impl FnOnce() -> Result<Bytes, ApiError>,
    ) -> Result<Bytes, ApiError> {
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = entries.get(&key) {
                if entry.position == position && entry.minute == minute {
                    return Ok(entry.body.clone());
                }
            }
        }
        let body = render()?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                position,
                minute,
                body: body.clone(),
            },
        );
        Ok(body)
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

    #[test]
    fn renders_again_only_when_the_views_or_the_minute_move() {
        let cache = RenderCache::default();
        let renders = std::cell::Cell::new(0);
        let get = |position, minute| {
            cache
                .get_or_render(key(), position, minute, || {
                    renders.set(renders.get() + 1);
                    Ok(Bytes::from(format!("{position}/{minute}")))
                })
                .expect("render")
        };
        assert_eq!(get(1, 10), "1/10");
        assert_eq!(get(1, 10), "1/10");
        assert_eq!(get(2, 10), "2/10");
        assert_eq!(get(2, 11), "2/11");
        assert_eq!(renders.get(), 3);
    }
}
