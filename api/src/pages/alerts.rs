//! The Alerts page (`/alerts`): the alerts the visitor may see, newest first, filtered by state
//! (`open`, the default; `resolved`; `all`) and by tenant, at most [`ALERTS_PAGE_ROWS`] of them
//! (the CSV export has every one). Each row names its kind, instance (a link to its page),
//! stage and reason, the detail, when it was raised and when and by which cycle it was resolved.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use restorable_projections::alerts::AlertRow;
use serde::Deserialize;

use super::layout::{html, page_error, time, Nav, PageQuery, Visitor};
use crate::error::ApiError;
use crate::queries::alert_rows;
use crate::state::Shared;

/// The most rows the page shows.
pub const ALERTS_PAGE_ROWS: usize = 500;

/// Which alerts the page shows.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum AlertState {
    /// Not resolved yet.
    #[default]
    Open,
    /// Resolved.
    Resolved,
    /// Both.
    All,
}

impl AlertState {
    fn admits(self, row: &AlertRow) -> bool {
        match self {
            AlertState::Open => row.resolved_at.is_none(),
            AlertState::Resolved => row.resolved_at.is_some(),
            AlertState::All => true,
        }
    }
}

/// The page's query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsQuery {
    #[serde(default)]
    state: AlertState,
    tenant: Option<String>,
}

/// One row as shown.
struct AlertLine {
    kind: &'static str,
    open: bool,
    tenant: String,
    instance_id: String,
    stage: String,
    reason: String,
    detail: String,
    raised: String,
    resolved: String,
    resolved_by: String,
}

/// A state in the filter's menu.
struct StateOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage<'a> {
    title: &'a str,
    nav: Option<Nav<'a>>,
    tenant: &'a str,
    states: Vec<StateOption>,
    summary: String,
    rows: Vec<AlertLine>,
}

pub(super) async fn alerts_page(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    PageQuery(query): PageQuery<AlertsQuery>,
) -> Response {
    let tenant = query.tenant.as_deref().map(str::trim).unwrap_or_default();
    if tenant.len() > 64 {
        return page_error(
            Some(&who),
            ApiError::BadRequest("tenant: at most 64 characters".into()),
        );
    }
    let matching: Vec<AlertRow> = alert_rows(&state, &who)
        .into_iter()
        .filter(|row| query.state.admits(row))
        .filter(|row| tenant.is_empty() || row.tenant_id.as_str() == tenant)
        .collect();
    let shown = matching.len().min(ALERTS_PAGE_ROWS);
    let summary = if shown < matching.len() {
        format!(
            "the newest {shown} of {} alerts; the CSV has every one",
            matching.len()
        )
    } else if matching.len() == 1 {
        "1 alert".to_owned()
    } else {
        format!("{} alerts", matching.len())
    };
    let rows = matching
        .into_iter()
        .take(ALERTS_PAGE_ROWS)
        .map(|row| AlertLine {
            kind: row.kind.title(),
            open: row.resolved_at.is_none(),
            tenant: row.tenant_id.to_string(),
            instance_id: row.instance_id.to_string(),
            stage: row.stage.map(|s| s.to_string()).unwrap_or_default(),
            reason: row.reason.map(|r| r.to_string()).unwrap_or_default(),
            detail: row.detail,
            raised: time(Some(row.raised_at)),
            resolved: time(row.resolved_at),
            resolved_by: row.resolved_by.map(|c| c.to_string()).unwrap_or_default(),
        })
        .collect();
    let states = [
        (AlertState::Open, "open", "Open"),
        (AlertState::Resolved, "resolved", "Resolved"),
        (AlertState::All, "all", "All"),
    ]
    .into_iter()
    .map(|(option, value, label)| StateOption {
        value,
        label,
        selected: option == query.state,
    })
    .collect();
    html(&AlertsPage {
        title: "Alerts",
        nav: Nav::of(Some(&who)),
        tenant,
        states,
        summary,
        rows,
    })
}
