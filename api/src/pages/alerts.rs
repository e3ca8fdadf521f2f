//! The Alerts page (`/alerts`): the alerts the visitor may see, newest first, filtered by state
//! (`open`, the default: nobody has taken it on; `acknowledged`; `snoozed`; `resolved`; `all`)
//! and by tenant, [`ALERTS_PAGE_ROWS`] at a time (`?page=`, from 1, with "Newer" and "Older"
//! links that keep the filters; the CSV export has every one). Each row
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

/// The most rows a page shows.
pub const ALERTS_PAGE_ROWS: usize = 100;

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
    /// Its value in the query string.
    fn value(self) -> &'static str {
        match self {
            StateFilter::Open => "open",
            StateFilter::Acknowledged => "acknowledged",
            StateFilter::Snoozed => "snoozed",
            StateFilter::Resolved => "resolved",
            StateFilter::All => "all",
        }
    }

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
    /// Which page of the matching alerts, from 1 (the newest).
    page: Option<usize>,
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
    /// The query of the "Newer" link, or empty for none.
    newer: String,
    /// The query of the "Older" link, or empty for none.
    older: String,
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
    let page = query.page.unwrap_or(1);
    if page == 0 {
        return page_error(
            Some(&who),
            ApiError::BadRequest("page: from 1 (the newest alerts)".into()),
        );
    }
    let total = matching.len();
    let skip = (page - 1).saturating_mul(ALERTS_PAGE_ROWS);
    let summary = summary(total, skip);
    let link = |to: usize| page_query(query.state, tenant, to);
    // From past the last page, "Newer" goes to the last page that has alerts.
    let last = total.div_ceil(ALERTS_PAGE_ROWS).max(1);
    let newer = if page > 1 {
        link((page - 1).min(last))
    } else {
        String::new()
    };
    let older = if skip.saturating_add(ALERTS_PAGE_ROWS) < total {
        link(page + 1)
    } else {
        String::new()
    };
    let rows = matching
        .into_iter()
        .skip(skip)
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
            resolved_by: match (row.resolved_at, row.resolved_by) {
                (None, _) => String::new(),
                (Some(_), Some(cycle)) => format!("cycle {cycle}"),
                (Some(_), None) => "the native backup watch".to_owned(),
            },
        })
        .collect();
    let states = [
        (StateFilter::Open, "Open"),
        (StateFilter::Acknowledged, "Acknowledged"),
        (StateFilter::Snoozed, "Snoozed"),
        (StateFilter::Resolved, "Resolved"),
        (StateFilter::All, "All"),
    ]
    .into_iter()
    .map(|(option, label)| StateOption {
        value: option.value(),
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
        newer,
        older,
    })
}

/// What the page holds: every matching alert, or which of them.
fn summary(total: usize, skip: usize) -> String {
    let shown = total.saturating_sub(skip).min(ALERTS_PAGE_ROWS);
    match total {
        1 if skip == 0 => "1 alert".to_owned(),
        total if skip == 0 && shown == total => format!("{total} alerts"),
        total if shown == 0 => format!("no alerts on this page; {total} in all"),
        total => format!(
            "alerts {}–{} of {total}, newest first; the CSV has every one",
            skip + 1,
            skip + shown
        ),
    }
}

/// The query string of the page `page` with the same filters.
fn page_query(state: StateFilter, tenant: &str, page: usize) -> String {
    let page = page.to_string();
    let mut pairs = vec![("state", state.value())];
    if !tenant.is_empty() {
        pairs.push(("tenant", tenant));
    }
    pairs.push(("page", &page));
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::{page_query, summary, StateFilter, ALERTS_PAGE_ROWS};

    #[test]
    fn the_summary_says_which_alerts_the_page_holds() {
        assert_eq!(summary(1, 0), "1 alert");
        assert_eq!(summary(0, 0), "0 alerts");
        assert_eq!(summary(42, 0), "42 alerts");
        let total = ALERTS_PAGE_ROWS * 2 + 5;
        assert_eq!(
            summary(total, ALERTS_PAGE_ROWS),
            format!(
                "alerts {}–{} of {total}, newest first; the CSV has every one",
                ALERTS_PAGE_ROWS + 1,
                ALERTS_PAGE_ROWS * 2
            )
        );
        assert_eq!(
            summary(total, ALERTS_PAGE_ROWS * 3),
            format!("no alerts on this page; {total} in all")
        );
    }

    #[test]
    fn a_page_link_keeps_the_filters() {
        assert_eq!(
            page_query(StateFilter::Resolved, "a&b", 3),
            "state=resolved&tenant=a%26b&page=3"
        );
        assert_eq!(page_query(StateFilter::Open, "", 2), "state=open&page=2");
    }
}
