//! The fleet-wide Managed Backups page (`/`): how many instances are Healthy, Need attention or
//! are Stopped (each a link to that filter), then the fleet filtered by tenant and status, those
//! that need attention first, one page of [`FLEET_PAGE_ROWS`] rows at a time, each with its
//! status and the ladder of its latest copy, under the re-check coverage of the stored copies
//! ([`super::recheck`]) and the failures of the last 24 hours ([`super::recent_failures`]). The part below the navigation is cached per scope,
//! filter and page.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use restorable_projections::fleet::{FleetRow, Status};
use serde::Deserialize;

use super::layout::{html, ladder, page_error, time, Badge, Nav, PageQuery, RungMark, Visitor};
use super::native::NativeSummary;
use super::recent_failures::RecentFailures;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::queries::{fleet_key, fleet_window, status_param, FleetFilter, FleetOrder};
use crate::state::{AppState, Shared};

/// Rows on one page of the fleet page: ten thousand rows are seven megabytes of HTML, too slow
/// to send and to read; the filters and the CSV export reach the rest.
pub const FLEET_PAGE_ROWS: usize = 200;

/// The fleet page's query: the fleet's filters and the page number (from 1).
#[derive(Debug, Default, Deserialize)]
pub(super) struct FleetPageQuery {
    #[serde(flatten)]
    filter: FleetFilter,
    page: Option<String>,
}

impl FleetPageQuery {
    /// The filter and the page asked for.
    fn split(self) -> Result<(FleetFilter, usize), ApiError> {
        let page = match self.page.as_deref().map(str::trim) {
            None | Some("") => 1,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|page| *page >= 1)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("page {text:?} is not a number from 1"))
                })?,
        };
        Ok((self.filter, page))
    }
}

/// The layout around an already rendered body (the cached fleet body).
#[derive(Template)]
#[template(path = "framed.html")]
struct Framed<'a> {
    title: &'a str,
    nav: Option<Nav<'a>>,
    body: &'a str,
}

pub(super) async fn fleet_page(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    PageQuery(query): PageQuery<FleetPageQuery>,
) -> Response {
    let (filter, page) = match query.split() {
        Ok(asked) => asked,
        Err(error) => return page_error(Some(&who), error),
    };
    let key = fleet_key("fleet.html", &who, &filter, page);
    let minute = Utc::now().timestamp() / 60;
    let body = state
        .cache
        .get_or_render(key, state.read.position(), minute, || async {
            let coverage = super::recheck::coverage_line(&state, &who, &filter).await;
            let recent =
                super::recent_failures::recent_failures(&state, &who, &filter, Utc::now()).await;
            fleet_body(&state, &who, &filter, page, coverage, recent).map(Bytes::from)
        })
        .await;
    match body {
        Ok(body) => html(&Framed {
            title: "Managed Backups",
            nav: Nav::of(Some(&who)),
            body: std::str::from_utf8(&body).unwrap_or_default(),
        }),
        Err(error) => page_error(Some(&who), error),
    }
}

/// The address of page `page` of the fleet page with `filter` (not escaped: the template
/// does that).
fn fleet_page_link(filter: &FleetFilter, page: usize) -> String {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(tenant) = filter.tenant.as_ref().filter(|v| !v.is_empty()) {
        query.push(("tenant", tenant.clone()));
    }
    if let Some(status) = filter.status {
        query.push(("status", status_param(status).to_owned()));
    }
    if page > 1 {
        query.push(("page", page.to_string()));
    }
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    if query.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{query}")
    }
}

/// "Page 2 of 50" and the links either side, as the `pager` macro shows it.
struct Pager {
    page: usize,
    pages: usize,
    prev: Option<String>,
    next: Option<String>,
}

fn fleet_pager(filter: &FleetFilter, page: usize, pages: usize) -> Option<Pager> {
    (pages > 1).then(|| Pager {
        page,
        pages,
        prev: (page > 1).then(|| fleet_page_link(filter, page - 1)),
        next: (page < pages).then(|| fleet_page_link(filter, page + 1)),
    })
}

/// One choice of the status filter.
struct StatusOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// One status's count at the top of the page, a link to that filter.
struct StatusCount {
    label: &'static str,
    class: &'static str,
    count: usize,
    link: String,
}

/// One fleet row as the page shows it.
struct Line {
    id: String,
    name: String,
    fqdn: String,
    tenant: String,
    status: Badge,
    ladder: [RungMark; 4],
    failure: Option<String>,
    last: String,
    secured: String,
    verified: String,
    tested: String,
    native: NativeSummary,
}

impl Line {
    fn of(row: &FleetRow, status: Status, native_grace: chrono::Duration) -> Self {
        Line {
            native: NativeSummary::of(row.native_backups.as_ref(), native_grace),
            id: row.instance_id.to_string(),
            name: row.name.clone(),
            fqdn: row.fqdn.clone(),
            tenant: row.tenant_id.to_string(),
            status: Badge::of(status),
            ladder: ladder(row.last_rung, row.last_failure.is_some()),
            failure: row
                .last_failure
                .as_ref()
                .map(|f| format!("{} failed: {}", f.stage, f.reason)),
            last: time(row.last_cycle_at),
            secured: time(row.last_secured),
            verified: time(row.last_verified),
            tested: time(row.last_restore_tested),
        }
    }
}

/// The fleet page below the navigation.
#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetBody {
    tenant: String,
    status_options: [StatusOption; 4],
    counts: Vec<StatusCount>,
    coverage: String,
    recent: RecentFailures,
    summary: String,
    pager: Option<Pager>,
    rows: Vec<Line>,
}

/// The fleet page below the navigation (the same for every user of a scope, filter and page;
/// a page past the last shows the last).
fn fleet_body(
    state: &AppState,
    who: &Principal,
    filter: &FleetFilter,
    page: usize,
    coverage: String,
    recent: RecentFailures,
) -> Result<String, ApiError> {
    let order = FleetOrder::NeedsAttentionFirst;
    let mut window = fleet_window(
        state,
        who,
        filter,
        order,
        (page - 1).saturating_mul(FLEET_PAGE_ROWS),
        FLEET_PAGE_ROWS,
    )?;
    let pages = window.total.div_ceil(FLEET_PAGE_ROWS).max(1);
    let page = page.min(pages);
    if window.entries.is_empty() && window.total > 0 {
        window = fleet_window(
            state,
            who,
            filter,
            order,
            (page - 1) * FLEET_PAGE_ROWS,
            FLEET_PAGE_ROWS,
        )?;
    }
    let option = |value: &'static str, label, status: Option<Status>| StatusOption {
        value,
        label,
        selected: filter.status == status,
    };
    let count = |label, class, count, status| StatusCount {
        label,
        class,
        count,
        link: fleet_page_link(
            &FleetFilter {
                tenant: filter.tenant.clone(),
                status: Some(status),
            },
            1,
        ),
    };
    let counts = vec![
        count(
            "Needs attention",
            "needs-attention",
            window.counts.needs_attention,
            Status::NeedsAttention,
        ),
        count("Healthy", "healthy", window.counts.healthy, Status::Healthy),
        count("Stopped", "stopped", window.counts.stopped, Status::Stopped),
    ];
    FleetBody {
        tenant: filter.tenant.clone().unwrap_or_default(),
        counts,
        coverage,
        recent,
        status_options: [
            option("", "All", None),
            option("healthy", "Healthy", Some(Status::Healthy)),
            option(
                "needs_attention",
                "Needs attention",
                Some(Status::NeedsAttention),
            ),
            option("stopped", "Stopped", Some(Status::Stopped)),
        ],
        summary: match window.total {
            1 => "1 instance".to_owned(),
            n => format!("{n} instances"),
        },
        pager: fleet_pager(filter, page, pages),
        rows: window
            .entries
            .iter()
            .map(|entry| {
                Line::of(
                    &entry.row,
                    entry.status,
                    state.pipeline.settings.pbx.native_backup_grace,
                )
            })
            .collect(),
    }
    .render()
    .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_numbers_start_at_one() {
        let asked = |page: Option<&str>| {
            FleetPageQuery {
                page: page.map(str::to_owned),
                ..FleetPageQuery::default()
            }
            .split()
            .map(|(_, page)| page)
        };
        assert_eq!(asked(None).ok(), Some(1));
        assert_eq!(asked(Some("")).ok(), Some(1));
        assert_eq!(asked(Some("3")).ok(), Some(3));
        for bad in ["0", "-2", "x", "1.5"] {
            assert!(
                matches!(asked(Some(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_links_keep_the_filters_encoded_and_the_pager_escapes_them() {
        let filter = FleetFilter {
            tenant: Some("a&b c".into()),
            status: None,
        };
        assert_eq!(fleet_page_link(&filter, 1), "/?tenant=a%26b+c");
        assert_eq!(fleet_page_link(&filter, 2), "/?tenant=a%26b+c&page=2");
        assert_eq!(fleet_page_link(&FleetFilter::default(), 1), "/");
        let stopped = FleetFilter {
            tenant: None,
            status: Some(Status::Stopped),
        };
        assert_eq!(fleet_page_link(&stopped, 3), "/?status=stopped&page=3");
        assert!(fleet_pager(&FleetFilter::default(), 1, 1).is_none());

        let body = FleetBody {
            tenant: "a&b c".into(),
            status_options: [(); 4].map(|()| StatusOption {
                value: "",
                label: "All",
                selected: false,
            }),
            counts: Vec::new(),
            coverage: "Re-check coverage: <none>".into(),
            recent: RecentFailures {
                line: "Failures in the last 24 h: 1".into(),
                newest: vec![super::super::recent_failures::RecentFailure {
                    instance: "i-1".into(),
                    name: "<hq>".into(),
                    tenant: "acme".into(),
                    at: "2026-11-29 01:00 UTC".into(),
                    what: "verify failed: wrong_key".into(),
                }],
            },
            summary: "400 instances".into(),
            pager: fleet_pager(&filter, 1, 2),
            rows: Vec::new(),
        }
        .render()
        .expect("rendered");
        assert!(
            body.contains("<a rel=\"next\" href=\"/?tenant=a%26b+c&amp;page=2\">Next →</a>"),
            "{body}"
        );
        assert!(body.contains("value=\"a&amp;b c\""), "{body}");
        assert!(
            body.contains("<p class=\"coverage\">Re-check coverage: &lt;none&gt;</p>"),
            "{body}"
        );
        assert!(
            body.contains(
                "<p class=\"recent\">Failures in the last 24 h: 1</p><ul class=\"recent-failures\">\
                 <li><a href=\"/instances/i-1\">&lt;hq&gt;</a> (acme) 2026-11-29 01:00 UTC: \
                 verify failed: wrong_key</li></ul>"
            ),
            "{body}"
        );
        assert!(body.contains("<span>Page 1 of 2</span>"), "{body}");
    }
}
