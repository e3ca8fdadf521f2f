//! The Alerts page (`/alerts`): the alerts the visitor may see, newest first, filtered by state
//! (`open`, the default: nobody has taken it on; `acknowledged`; `snoozed`; `resolved`; `all`)
//! and by tenant, at most [`ALERTS_PAGE_ROWS`] of them (the CSV export has every one). Each row
//! names its kind, state, instance (a link to its page), stage and reason, the detail, when it
//! was raised and when and by which cycle it was resolved, who acknowledged or snoozed it; for
//! administrators and owners an open alert carries its lifecycle actions (acknowledge with a
//! note, snooze for some hours), posted with the session's form token to
//! `/alerts/{id}/acknowledge` and `/alerts/{id}/snooze`.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use restorable_projections::alerts::{AlertRow, AlertState};
use serde::Deserialize;

use super::layout::{html, page_error, redirect, time, Nav, PageForm, PageQuery, Visitor};
use crate::access;
use crate::actions::{self, AlertAction, SnoozeBody};
use crate::auth::Role;
use crate::error::ApiError;
use crate::queries::alert_rows;
use crate::state::Shared;

/// The most rows the page shows.
pub const ALERTS_PAGE_ROWS: usize = 500;

/// Which alerts the page shows: one state, or all.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum StateFilter {
    /// Open, not acknowledged, not snoozed.
    #[default]
    Open,
    /// Acknowledged.
    Acknowledged,
    /// Snoozed.
    Snoozed,
    /// Resolved.
    Resolved,
    /// Every state.
    All,
}

impl StateFilter {
    fn admits(self, state: AlertState) -> bool {
        match self {
            StateFilter::Open => state == AlertState::Open,
            StateFilter::Acknowledged => state == AlertState::Acknowledged,
            StateFilter::Snoozed => state == AlertState::Snoozed,
            StateFilter::Resolved => state == AlertState::Resolved,
            StateFilter::All => true,
        }
    }
}

/// The label of a state, as the page shows it.
fn state_label(state: AlertState) -> &'static str {
    match state {
        AlertState::Open => "open",
        AlertState::Acknowledged => "acknowledged",
        AlertState::Snoozed => "snoozed",
        AlertState::Resolved => "resolved",
    }
}

/// The page's query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsQuery {
    #[serde(default)]
    state: StateFilter,
    tenant: Option<String>,
}

/// One row as shown.
struct AlertLine {
    alert_id: String,
    kind: &'static str,
    state: &'static str,
    /// The visitor may acknowledge or snooze it (open, and an administrator or owner).
    actions: bool,
    /// "acknowledged by x at t: note" or "snoozed by x until t: note", or empty.
    taken: String,
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
    csrf: &'a str,
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
    let now = Utc::now();
    let may_act = matches!(who.role, Role::Administrator | Role::Owner);
    let matching: Vec<AlertRow> = alert_rows(&state, &who)
        .into_iter()
        .filter(|row| query.state.admits(row.state(now)))
        .filter(|row| tenant.is_empty() || row.tenant_id.as_str() == tenant)
        .collect();
    let shown = matching.len().min(ALERTS_PAGE_ROWS);
    let summary = if shown < matching.len() {
        format!("the newest {shown} alerts; the CSV has every one")
    } else if matching.len() == 1 {
        "1 alert".to_owned()
    } else {
        format!("{} alerts", matching.len())
    };
    let rows = matching
        .into_iter()
        .take(ALERTS_PAGE_ROWS)
        .map(|row| AlertLine {
            alert_id: row.alert_id.clone(),
            kind: row.kind.title(),
            state: state_label(row.state(now)),
            actions: may_act && row.resolved_at.is_none(),
            taken: taken(&row),
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
        (StateFilter::Open, "open", "Open"),
        (StateFilter::Acknowledged, "acknowledged", "Acknowledged"),
        (StateFilter::Snoozed, "snoozed", "Snoozed"),
        (StateFilter::Resolved, "resolved", "Resolved"),
        (StateFilter::All, "all", "All"),
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
        csrf: who.csrf(),
    })
}

/// Who took the alert on: the latest acknowledgement, else the latest snooze.
fn taken(row: &AlertRow) -> String {
    let with_note = |text: String, note: &str| {
        if note.is_empty() {
            text
        } else {
            format!("{text}: {note}")
        }
    };
    match (&row.acknowledged, &row.snoozed) {
        (Some(ack), _) => with_note(
            format!("acknowledged by {} at {}", ack.by, time(Some(ack.at))),
            &ack.note,
        ),
        (None, Some(snooze)) => with_note(
            format!(
                "snoozed by {} until {}",
                snooze.by,
                time(Some(snooze.until))
            ),
            &snooze.note,
        ),
        (None, None) => String::new(),
    }
}

/// The acknowledge form: the form token and a note.
#[derive(Deserialize)]
pub(super) struct AcknowledgeForm {
    csrf: Option<String>,
    #[serde(default)]
    note: String,
}

/// The snooze form: the form token, the hours and a note.
#[derive(Deserialize)]
pub(super) struct SnoozeForm {
    csrf: Option<String>,
    hours: u32,
    #[serde(default)]
    note: String,
}

/// Checks visibility, role and form token (in that order), acts, and goes back to the page.
async fn act(
    state: &Shared,
    who: &crate::auth::Principal,
    id: &str,
    csrf: Option<&str>,
    action: Result<AlertAction, ApiError>,
) -> Response {
    let checked = access::alert(state, who, id)
        .and_then(|_| who.require(&[Role::Administrator, Role::Owner]))
        .and_then(|()| who.check_csrf(csrf))
        .and(action);
    let acted = match checked {
        Ok(action) => actions::act_on_alert(state, who, id, action).await,
        Err(error) => Err(error),
    };
    match acted {
        Ok(()) => redirect("/alerts?state=all"),
        Err(error) => page_error(Some(who), error),
    }
}

pub(super) async fn acknowledge(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
    PageForm(form): PageForm<AcknowledgeForm>,
) -> Response {
    let action = Ok(AlertAction::Acknowledge { note: form.note });
    act(&state, &who, &id, form.csrf.as_deref(), action).await
}

pub(super) async fn snooze(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
    PageForm(form): PageForm<SnoozeForm>,
) -> Response {
    let body = SnoozeBody {
        until: None,
        hours: Some(form.hours),
        note: form.note,
    };
    let action = body.action(Utc::now());
    act(&state, &who, &id, form.csrf.as_deref(), action).await
}
