//! Answers written as they are read, for lists that grow with history (`backups.csv`,
//! `alerts.csv`, `/api/v1/audit`, `/api/v1/alerts`): the rows come from the store a page at a
//! time ([`RowPages`]) and go out as each page is read, so a request holds one page however long
//! the history is.
//!
//! The first page is read before anything is sent: a store that fails at once gets a proper
//! error status. A page that fails later cannot change the status any more; the body is cut
//! short instead (the chunked transfer never finishes, so a client sees a broken download, never
//! a complete-looking list missing its end) and the cause is logged.

use axum::body::{Body, Bytes};
use futures_util::{stream, StreamExt, TryStreamExt};
use restorable_pipeline::read_model::RowPages;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// How a list is written: what comes before the rows read (a CSV header, `[`, rows from
/// memory), what after the last, and how a page of rows is written.
pub struct Layout<F> {
    /// Written first.
    pub head: Vec<u8>,
    /// Written last (nothing, `]`).
    pub tail: &'static [u8],
    /// Writes one page of rows.
    pub page: F,
}

/// What the stream carries between pages.
struct Reading<T, F> {
    pages: RowPages<T>,
    page: F,
    finished: bool,
}

/// The body of a list read from `pages` and written as `layout` says.
///
/// # Errors
/// Reading or writing the first page failed (nothing has been sent).
pub async fn body<T, F>(mut pages: RowPages<T>, layout: Layout<F>) -> Result<Body, ApiError>
where
    T: DeserializeOwned + Send + 'static,
    F: FnMut(&[T]) -> Result<Vec<u8>, ApiError> + Send + 'static,
{
    let Layout {
        head: mut opening,
        tail,
        mut page,
    } = layout;
    if let Some(rows) = pages.next_page().await? {
        opening.extend(page(&rows)?);
    }
    let reading = Reading {
        pages,
        page,
        finished: false,
    };
    let rest = stream::try_unfold(reading, move |mut reading| async move {
        if reading.finished {
            return Ok(None);
        }
        match reading.pages.next_page().await? {
            Some(rows) => {
                let bytes = (reading.page)(&rows)?;
                Ok(Some((Bytes::from(bytes), reading)))
            }
            None => {
                reading.finished = true;
                Ok(Some((Bytes::from_static(tail), reading)))
            }
        }
    })
    .inspect_err(|error: &ApiError| {
        tracing::error!(%error, cause = ?error, "a list failed while it was being sent; its body is cut short");
    });
    let whole = stream::once(async move { Ok::<_, ApiError>(Bytes::from(opening)) }).chain(rest);
    Ok(Body::from_stream(whole))
}

/// A JSON array of `first` (rows from memory), then the rows of `pages`.
///
/// # Errors
/// As [`body`].
pub async fn json_array<T>(first: &[T], pages: RowPages<T>) -> Result<Body, ApiError>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let mut head = b"[".to_vec();
    let mut separator: &[u8] = b"";
    for row in first {
        head.extend(separator);
        serde_json::to_writer(&mut head, row).map_err(ApiError::internal)?;
        separator = b",";
    }
    let mut continued = !first.is_empty();
    let layout = Layout {
        head,
        tail: b"]",
        page: move |rows: &[T]| {
            let mut bytes = Vec::new();
            for row in rows {
                if continued {
                    bytes.push(b',');
                }
                serde_json::to_writer(&mut bytes, row).map_err(ApiError::internal)?;
                continued = true;
            }
            Ok(bytes)
        },
    };
    body(pages, layout).await
}
