//! The reads the JSON API, the pages and the CSV exports share: the fleet filtered to the
//! caller's scope (whole or one window of it), an instance's backups, a cycle and its event
//! history, the visible alerts, and the cache key of a fleet answer. A leaf: it imports no
//! module that answers requests, so `json`, `pages` and `export` all build on it.

use chrono::Utc;
use restorable_pipeline::read_model;
use restorable_projections::alerts::AlertRow;
use restorable_projections::backups::BackupRow;
use restorable_projections::fleet::{FleetRow, Status};
use serde::de::IntoDeserializer;
use serde::{Deserialize, Deserializer, Serialize};

use crate::access;
use crate::auth::Principal;
use crate::cache::CacheKey;
use crate::error::ApiError;
use crate::state::AppState;

/// Filters of the fleet, as a query string carries them (`?tenant=acme&status=stopped`); an
/// empty value means no filter, and a status outside `healthy`, `needs_attention` and
/// `stopped` fails to parse (400 before any handler runs).
#[derive(Debug, Default, Deserialize)]
pub struct FleetFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this status.
    #[serde(default, deserialize_with = "empty_is_none")]
    pub status: Option<Status>,
}

/// The fleet status as query strings, CSV cells and metrics spell it.
#[derive(Deserialize)]
#[serde(remote = "Status", rename_all = "snake_case")]
enum StatusParam {
    Healthy,
    NeedsAttention,
    Stopped,
}

/// `healthy`, `needs_attention` or `stopped`: how a query string, a CSV cell and the metrics
/// spell a status.
pub fn status_param(status: Status) -> &'static str {
    status.code()
}

/// An optional status where an empty value means none.
fn empty_is_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Status>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    match text.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => StatusParam::deserialize(text.into_deserializer()).map(Some),
    }
}

/// A fleet row with its status now.
#[derive(Serialize)]
pub struct FleetEntry {
    /// The row.
    #[serde(flatten)]
    pub row: FleetRow,
    /// Healthy, Needs attention or Stopped.
    pub status: Status,
}

/// The fleet rows the caller may see, filtered.
///
/// # Errors
/// None today (kept for the callers' sake: a filter may come to fail).
pub fn fleet_entries(
    state: &AppState,
    who: &Principal,
    filter: &FleetFilter,
) -> Result<Vec<FleetEntry>, ApiError> {
    Ok(fleet_window(state, who, filter, FleetOrder::Listed, 0, usize::MAX)?.entries)
}

/// The order of a fleet window's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetOrder {
    /// The fleet's order: tenant, then name.
    Listed,
    /// Needs attention first, then the rest; each in the fleet's order.
    NeedsAttentionFirst,
}

/// Some of the fleet rows that match a filter, and how many match in all.
pub struct FleetWindow {
    /// How many rows match the filter.
    pub total: usize,
    /// The matching rows from the window's start, at most its length.
    pub entries: Vec<FleetEntry>,
    /// How many rows of the caller's scope and tenant filter have each status (whatever the
    /// status filter): Healthy, Needs attention, Stopped.
    pub counts: StatusCounts,
}

/// How many instances have each status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Healthy.
    pub healthy: usize,
    /// Needs attention.
    pub needs_attention: usize,
    /// Stopped.
    pub stopped: usize,
}

/// The `take` matching rows after the first `skip`, in `order`, and the counts by status; only
/// the rows taken are copied.
///
/// # Errors
/// None today (see [`fleet_entries`]).
pub fn fleet_window(
    state: &AppState,
    who: &Principal,
    filter: &FleetFilter,
    order: FleetOrder,
    skip: usize,
    take: usize,
) -> Result<FleetWindow, ApiError> {
    let wanted = filter.status;
    let tenant = filter.tenant.as_deref().filter(|t| !t.is_empty());
    let now = Utc::now();
    let model = state.read.read();
    let mut window = FleetWindow {
        total: 0,
        entries: Vec::new(),
        counts: StatusCounts::default(),
    };
    let visible: Vec<(&FleetRow, Status)> = model
        .fleet
        .rows()
        .into_iter()
        .filter(|r| who.scope.allows(&r.tenant_id))
        .filter(|r| tenant.is_none_or(|t| r.tenant_id.as_str() == t))
        .map(|r| (r, r.status(now)))
        .collect();
    for (_, status) in &visible {
        match status {
            Status::Healthy => window.counts.healthy += 1,
            Status::NeedsAttention => window.counts.needs_attention += 1,
            Status::Stopped => window.counts.stopped += 1,
        }
    }
    let matching = visible
        .iter()
        .filter(|(_, status)| wanted.is_none_or(|w| *status == w));
    let passes: [fn(&Status) -> bool; 2] = match order {
        FleetOrder::Listed => [|_| true, |_| false],
        FleetOrder::NeedsAttentionFirst => [
            |s| *s == Status::NeedsAttention,
            |s| *s != Status::NeedsAttention,
        ],
    };
    for pass in passes {
        for (row, status) in matching.clone().filter(|(_, status)| pass(status)) {
            if window.total >= skip && window.entries.len() < take {
                window.entries.push(FleetEntry {
                    row: (*row).clone(),
                    status: *status,
                });
            }
            window.total += 1;
        }
    }
    Ok(window)
}

/// The cache key of a fleet answer for `who` with `filter` (`page` 0 for the whole fleet).
pub fn fleet_key(
    kind: &'static str,
    who: &Principal,
    filter: &FleetFilter,
    page: usize,
) -> CacheKey {
    CacheKey {
        kind,
        scope: who.scope.to_string(),
        tenant: filter.tenant.clone().unwrap_or_default(),
        status: filter
            .status
            .map(status_param)
            .unwrap_or_default()
            .to_owned(),
        page,
    }
}

/// Every cycle of a visible instance, newest first (the stored view's rows of that instance).
///
/// # Errors
/// 404 if not visible; a store failure.
pub async fn backup_rows(
    state: &AppState,
    who: &Principal,
    instance: &str,
) -> Result<Vec<BackupRow>, ApiError> {
    let row = access::instance(state, who, instance)?;
    Ok(read_model::backup_rows_of(&state.pipeline.store, &row.instance_id).await?)
}

/// One event of a cycle's history.
#[derive(Serialize)]
pub struct HistoryEntry {
    /// Order within the cycle.
    pub sequence: i64,
    /// e.g. `Captured`.
    pub event_type: String,
    /// e.g. `1.0`.
    pub event_version: String,
    /// The event as stored.
    pub payload: serde_json::Value,
}

/// A cycle and its event history, oldest first.
///
/// # Errors
/// 404 if not visible.
pub async fn cycle_detail(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<(BackupRow, Vec<HistoryEntry>), ApiError> {
    let row = access::cycle(state, who, id).await?;
    let history = state
        .pipeline
        .store
        .history("BackupCycle", &row.cycle_id.to_string())
        .await?
        .into_iter()
        .map(|e| HistoryEntry {
            sequence: e.sequence,
            payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
            event_type: e.event_type,
            event_version: e.event_version,
        })
        .collect();
    Ok((row, history))
}

/// Alerts the caller may see, newest first, of those held in memory: every open alert and the
/// most recently resolved ([`alert_list`] lists every alert ever raised).
pub fn alert_rows(state: &AppState, who: &Principal) -> Vec<AlertRow> {
    let model = state.read.read();
    model
        .alerts
        .rows()
        .into_iter()
        .filter(|a| who.scope.allows(&a.tenant_id))
        .cloned()
        .collect()
}

/// Every alert the caller may see: those held, newest first, then the older resolved ones
/// from storage (see [`read_model::alert_list`]).
pub fn alert_list(state: &AppState, who: &Principal) -> read_model::AlertList {
    read_model::alert_list(
        &state.read,
        &state.pipeline.store,
        access::tenant_of(who),
        |row| who.scope.allows(&row.tenant_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
        serde_urlencoded::from_str(query).map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    #[test]
    fn a_status_filter_is_one_of_three_words_or_empty() {
        let status = |query: &str| parse_query::<FleetFilter>(query).map(|f| f.status);
        assert_eq!(status("").ok(), Some(None));
        assert_eq!(status("status=").ok(), Some(None));
        assert_eq!(status("status=healthy").ok(), Some(Some(Status::Healthy)));
        assert_eq!(
            status("status=needs_attention").ok(),
            Some(Some(Status::NeedsAttention))
        );
        assert_eq!(status("status=stopped").ok(), Some(Some(Status::Stopped)));
        for bad in ["Healthy", "needs-attention", "all", "1"] {
            assert!(
                matches!(
                    status(&format!("status={bad}")),
                    Err(ApiError::BadRequest(_))
                ),
                "{bad}"
            );
        }
        for status in [Status::Healthy, Status::NeedsAttention, Status::Stopped] {
            let query = format!("status={}", status_param(status));
            assert_eq!(
                parse_query::<FleetFilter>(&query)
                    .ok()
                    .and_then(|f| f.status),
                Some(status)
            );
        }
    }
}
