//! The Audit page (`/audit`): the audited actions the visitor may see (their tenant's, or every
//! tenant's for a `*` scope), newest first, [`AUDIT_PAGE_ROWS`] at a time, filtered by tenant,
//! action and actor (a part of the e-mail address or token name). "Older" goes on from the last
//! row shown (`?before=` its log position). The trail grows with history, so a page reads the
//! stored view a page at a time and stops after [`AUDIT_SCANNED_ROWS`] rows even when a narrow
//! filter has not filled it (the link then goes on from where the reading stopped). The CSV
//! export (`/api/v1/export/audit.csv`) has every record the visitor may see.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use restorable_domain::audit::AuditAction;
use restorable_pipeline::read_model::audit_pages;
use restorable_projections::audit::AuditRow;
use serde::Deserialize;

use super::layout::{html, page_error, time, Nav, PageQuery, Visitor};
use crate::auth::Scope;
use crate::error::ApiError;
use crate::state::Shared;

/// The most rows a page shows.
pub const AUDIT_PAGE_ROWS: usize = 100;
/// The most stored rows one page reads looking for matches.
pub const AUDIT_SCANNED_ROWS: usize = 2_000;
/// The longest actor filter (an e-mail address is at most 254 characters).
const ACTOR_FILTER_MAX: usize = 254;

/// The page's query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    tenant: Option<String>,
    /// An action's wire name (`backup_now`, ...); empty or absent: every action.
    action: Option<String>,
    actor: Option<String>,
    /// Only records before this log position (the "Older" link).
    before: Option<i64>,
}

/// One row as shown.
struct AuditLine {
    /// Its place in the log.
    position: i64,
    at: String,
    tenant: String,
    actor: String,
    action: &'static str,
    instance_id: String,
    cycle_id: String,
    key_version: String,
}

/// An action in the filter's menu.
struct ActionOption {
    value: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage<'a> {
    title: &'a str,
    nav: Option<Nav<'a>>,
    tenant: &'a str,
    actor: &'a str,
    actions: Vec<ActionOption>,
    summary: String,
    rows: Vec<AuditLine>,
    /// The query of the "Older" link, or empty for none.
    older: String,
}

/// The filters, checked.
struct Filter<'a> {
    tenant: &'a str,
    action: Option<AuditAction>,
    actor: String,
}

impl Filter<'_> {
    fn admits(&self, row: &AuditRow) -> bool {
        let action = &row.action;
        (self.tenant.is_empty() || action.tenant_id.as_str() == self.tenant)
            && self.action.is_none_or(|wanted| action.action == wanted)
            && (self.actor.is_empty() || action.actor.to_lowercase().contains(&self.actor))
    }
}

/// The query checked: what is wrong with it named.
fn checked(query: &AuditQuery) -> Result<Filter<'_>, ApiError> {
    let tenant = query.tenant.as_deref().map(str::trim).unwrap_or_default();
    if tenant.len() > 64 {
        return Err(ApiError::BadRequest("tenant: at most 64 characters".into()));
    }
    let actor = query.actor.as_deref().map(str::trim).unwrap_or_default();
    if actor.len() > ACTOR_FILTER_MAX {
        return Err(ApiError::BadRequest(format!(
            "actor: at most {ACTOR_FILTER_MAX} characters"
        )));
    }
    let action = match query.action.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(
            AuditAction::ALL
                .into_iter()
                .find(|a| a.as_str() == name)
                .ok_or_else(|| {
                    let shown: String = name.chars().take(40).collect();
                    ApiError::BadRequest(format!("action: no action named {shown:?}"))
                })?,
        ),
    };
    if query.before.is_some_and(|before| before < 1) {
        return Err(ApiError::BadRequest(
            "before: a log position (1 or more)".into(),
        ));
    }
    Ok(Filter {
        tenant,
        action,
        actor: actor.to_lowercase(),
    })
}

/// What one page found: the rows to show, and where the next page starts (if it may have more).
struct Found {
    rows: Vec<AuditRow>,
    older_than: Option<i64>,
}

/// Reads the visitor's trail from `before` (newest first) until a page is full, the scan limit
/// is reached or the trail ends.
async fn find(
    state: &Shared,
    scope_tenant: Option<&str>,
    filter: &Filter<'_>,
    before: Option<i64>,
) -> Result<Found, ApiError> {
    let mut pages = audit_pages(&state.pipeline.store, scope_tenant);
    if let Some(before) = before {
        pages = pages.before_position(before);
    }
    let mut rows = Vec::new();
    let mut scanned = 0usize;
    while let Some(page) = pages.next_page().await? {
        for row in page {
            scanned += 1;
            let position = row.position;
            if filter.admits(&row) {
                rows.push(row);
                if rows.len() == AUDIT_PAGE_ROWS {
                    let older_than = rows.last().map(|r| r.position);
                    return Ok(Found { rows, older_than });
                }
            }
            if scanned == AUDIT_SCANNED_ROWS {
                return Ok(Found {
                    rows,
                    older_than: Some(position),
                });
            }
        }
    }
    Ok(Found {
        rows,
        older_than: None,
    })
}

pub(super) async fn audit_page(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    PageQuery(query): PageQuery<AuditQuery>,
) -> Response {
    let filter = match checked(&query) {
        Ok(filter) => filter,
        Err(error) => return page_error(Some(&who), error),
    };
    let scope_tenant = match &who.scope {
        Scope::All => (!filter.tenant.is_empty()).then_some(filter.tenant),
        Scope::Tenant(own) => Some(own.as_str()),
    };
    // Another tenant's trail: nothing to read.
    let outside = scope_tenant.is_some_and(|t| !filter.tenant.is_empty() && t != filter.tenant);
    let found = if outside {
        Ok(Found {
            rows: Vec::new(),
            older_than: None,
        })
    } else {
        find(&state, scope_tenant, &filter, query.before).await
    };
    let found = match found {
        Ok(found) => found,
        Err(error) => return page_error(Some(&who), error),
    };
    let summary = match (found.rows.len(), found.older_than) {
        (0, None) => "no audited actions".to_owned(),
        (1, None) => "1 audited action".to_owned(),
        (n, None) => format!("{n} audited actions"),
        (n, Some(_)) if n == AUDIT_PAGE_ROWS => {
            format!("{n} audited actions, newest first; older ones follow")
        }
        (n, Some(_)) => format!(
            "{n} matching among the newest {AUDIT_SCANNED_ROWS} records read; older ones follow"
        ),
    };
    let older = found.older_than.map_or_else(String::new, |position| {
        older_query(&filter, &query, position)
    });
    let rows = found
        .rows
        .into_iter()
        .map(|row| {
            let a = row.action;
            AuditLine {
                position: row.position,
                at: time(Some(a.at)),
                tenant: a.tenant_id.to_string(),
                actor: a.actor,
                action: a.action.as_str(),
                instance_id: a.instance_id.map(|i| i.to_string()).unwrap_or_default(),
                cycle_id: a.cycle_id.map(|c| c.to_string()).unwrap_or_default(),
                key_version: a.key_version.map(|k| k.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    let actions = AuditAction::ALL
        .into_iter()
        .map(|action| ActionOption {
            value: action.as_str(),
            selected: filter.action == Some(action),
        })
        .collect();
    html(&AuditPage {
        title: "Audit",
        nav: Nav::of(Some(&who)),
        tenant: filter.tenant,
        actor: query.actor.as_deref().map(str::trim).unwrap_or_default(),
        actions,
        summary,
        rows,
        older,
    })
}

/// The query string of the "Older" link: the same filters, before `position`.
fn older_query(filter: &Filter<'_>, query: &AuditQuery, position: i64) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if !filter.tenant.is_empty() {
        pairs.push(("tenant", filter.tenant));
    }
    if let Some(action) = filter.action {
        pairs.push(("action", action.as_str()));
    }
    if let Some(actor) = query
        .actor
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        pairs.push(("actor", actor));
    }
    let before = position.to_string();
    pairs.push(("before", &before));
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{checked, AuditQuery};
    use restorable_domain::audit::AuditAction;

    fn query(action: Option<&str>, actor: Option<&str>, before: Option<i64>) -> AuditQuery {
        AuditQuery {
            tenant: None,
            action: action.map(str::to_owned),
            actor: actor.map(str::to_owned),
            before,
        }
    }

    #[test]
    fn a_wrong_filter_is_named() {
        let unknown = query(Some("format_disk"), None, None);
        let error = checked(&unknown).err().expect("refused").to_string();
        assert!(error.contains("format_disk"), "{error}");
        let long = "a".repeat(255);
        assert!(checked(&query(None, Some(&long), None)).is_err());
        assert!(checked(&query(None, None, Some(0))).is_err());
        assert!(checked(&query(None, None, Some(-5))).is_err());
    }

    #[test]
    fn every_action_is_offered_by_its_wire_name() {
        for action in AuditAction::ALL {
            let q = query(Some(action.as_str()), None, None);
            assert_eq!(checked(&q).expect("known").action, Some(action));
        }
        assert_eq!(
            checked(&query(Some(""), None, None)).expect("all").action,
            None
        );
    }
}
