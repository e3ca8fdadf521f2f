//! Decoding the event log into typed events for the read side and the CLI. A malformed event is
//! reported (by position) and skipped; it stays in the store untouched.

use anyhow::Result;
use restorable_pipeline::store::{LoggedEvent, Store};
use restorable_projections::fleet::FleetView;
use restorable_projections::AnyEvent;

/// Decodes one logged event (see [`restorable_pipeline::read_model::decode`]).
///
/// # Errors
/// A malformed payload or an unknown aggregate type.
pub fn decode(event: &LoggedEvent) -> Result<AnyEvent> {
    Ok(restorable_pipeline::read_model::decode(event)?)
}

/// Every event after `position`, decoded, in commit order; returns the last position read.
///
/// # Errors
/// A store failure (malformed events are skipped with a warning).
pub async fn read_after(store: &Store, mut position: i64) -> Result<(Vec<AnyEvent>, i64)> {
    let mut events = Vec::new();
    loop {
        let batch = store.read_after(position, 1000).await?;
        let Some(last) = batch.last() else {
            return Ok((events, position));
        };
        position = last.position;
        for logged in &batch {
            match decode(logged) {
                Ok(event) => events.push(event),
                Err(error) => {
                    tracing::warn!(%error, "skipping an event the read side cannot decode")
                }
            }
        }
    }
}

/// The fleet view rebuilt from the whole history.
///
/// # Errors
/// A store failure.
pub async fn fleet(store: &Store) -> Result<FleetView> {
    let (events, _) = read_after(store, 0).await?;
    Ok(FleetView::from_events(&events))
}
