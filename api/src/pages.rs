//! The web pages, rendered on the server: sign-in, the fleet-wide Managed Backups page (filter
//! by tenant and status, the ladder of each instance's latest copy at a glance, live updates)
//! and each instance's Backups tab (the ladder per copy, failure reasons, download and — for
//! owners — the audited password reveal). Forms carry the session's CSRF token.

use axum::body::{Body, Bytes};
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    SET_COOKIE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Datelike, Timelike, Utc};
use restorable_domain::ladder::Rung;
use restorable_projections::backups::BackupRow;
use restorable_projections::fleet::{FleetRow, Status};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::actions::{self, InstanceAction};
use crate::auth::{self, Principal, Role};
use crate::error::ApiError;
use crate::json::{backup_rows, fleet_window, FleetFilter};
use crate::{access, Shared};

/// The pages.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(fleet_page))
        .route("/login", get(login_page).post(log_in))
        .route("/logout", post(log_out))
        .route("/instances/{instance_id}", get(instance_page))
        .route("/instances/{instance_id}/action", post(instance_action))
        .route("/cycles/{cycle_id}/reveal", post(reveal_page))
        .route("/static/live.js", get(live_js))
        .route("/static/style.css", get(style_css))
}

/// A page's visitor: signed in, or sent to the sign-in page.
pub struct Visitor(pub Principal);

impl FromRequestParts<Shared> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        match auth::identify(parts, &state.pipeline.store).await {
            Ok(Some(who)) => Ok(Visitor(who)),
            Ok(None) => Err(redirect("/login")),
            Err(error) => Err(error.into_response()),
        }
    }
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// Escapes text for HTML.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-11-25 14:05 UTC`, or a dash for never (written field by field: a strftime pattern is
/// parsed again on every call).
fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or("—".to_owned(), |t| {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute()
        )
    })
}

fn page(title: &str, who: Option<&Principal>, body: &str) -> Response {
    page_around(title, who, Bytes::copy_from_slice(body.as_bytes()))
}

/// A page whose main part is `body`, sent as is (a cached fleet body is shared, not copied).
fn page_around(title: &str, who: Option<&Principal>, body: Bytes) -> Response {
    let nav = who.map_or(String::new(), |w| {
        format!(
            "<nav><a href=\"/\">Managed Backups</a><span class=\"who\">{} ({})</span>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form></nav>",
            esc(&w.actor),
            w.role.as_str(),
            esc(w.csrf())
        )
    });
    let head = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — Restorable</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body>{nav}<main>",
        esc(title)
    );
    let tail = Bytes::from_static(b"</main></body></html>");
    let length = head.len() + body.len() + tail.len();
    let parts = [Bytes::from(head), body, tail].map(Ok::<_, std::convert::Infallible>);
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (CONTENT_LENGTH, length.to_string()),
            (CONTENT_SECURITY_POLICY, crate::headers::CSP.to_owned()),
            (CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(futures_util::stream::iter(parts)),
    )
        .into_response()
}

async fn login_page() -> Response {
    page("Sign in", None, LOGIN_FORM)
}

const LOGIN_FORM: &str = "<h1>Sign in</h1><form method=\"post\" action=\"/login\" class=\"login\">\
    <label>E-mail <input type=\"email\" name=\"email\" id=\"email\" required autocomplete=\"username\"></label>\
    <label>Password <input type=\"password\" name=\"password\" id=\"password\" required autocomplete=\"current-password\"></label>\
    <button type=\"submit\" id=\"sign-in\">Sign in</button></form>";

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: SecretString,
}

/// The client's address, when the server recorded it (see [`crate::serve`]).
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

async fn log_in(
    State(state): State<Shared>,
    ClientAddress(address): ClientAddress,
    Form(form): Form<LoginForm>,
) -> Response {
    match auth::log_in_from(&state, &form.email, form.password, address).await {
        Ok(auth::LogIn::Throttled(wait)) => {
            let secs = crate::throttle::retry_after_secs(wait);
            let body = format!(
                "<p class=\"error\" id=\"login-error\">Too many attempts: try again in {secs} s.</p>{LOGIN_FORM}"
            );
            let mut response = page("Sign in", None, &body);
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
                .headers_mut()
                .insert(RETRY_AFTER, axum::http::HeaderValue::from(secs));
            response
        }
        Ok(auth::LogIn::Session(session)) => (
            StatusCode::SEE_OTHER,
            [
                (LOCATION, "/".to_owned()),
                (SET_COOKIE, auth::session_cookie(Some(&session.token))),
            ],
        )
            .into_response(),
        Ok(auth::LogIn::Wrong) => {
            let body = format!("<p class=\"error\" id=\"login-error\">Wrong e-mail address or password.</p>{LOGIN_FORM}");
            let mut response = page("Sign in", None, &body);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        Err(error) => ApiError::internal(error).into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn log_out(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(token) = auth::session_token(&headers) {
        if let Err(error) = auth::log_out(&state.pipeline.store, &token).await {
            return ApiError::from(error).into_response();
        }
        state.credentials_changed.notify_waiters();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/login".to_owned()),
            (SET_COOKIE, auth::session_cookie(None)),
        ],
    )
        .into_response()
}

fn status_badge(status: Status) -> String {
    let class = match status {
        Status::Healthy => "healthy",
        Status::NeedsAttention => "attention",
        Status::Stopped => "stopped",
    };
    format!("<span class=\"status {class}\">{status}</span>")
}

/// The ladder of one copy: each rung reached, the one it failed at, or not (yet) reached.
fn ladder(reached: Option<Rung>, failed: bool) -> String {
    let rungs = [
        (Rung::Captured, "Captured"),
        (Rung::Secured, "Secured"),
        (Rung::Verified, "Verified"),
        (Rung::RestoreTested, "Restore-Tested"),
    ];
    let mut out = String::from("<span class=\"ladder\">");
    let mut failure_shown = false;
    for (rung, label) in rungs {
        let class = match reached {
            Some(r) if r >= rung => "reached",
            _ if failed && !failure_shown => {
                failure_shown = true;
                "failed"
            }
            _ => "pending",
        };
        out.push_str(&format!(
            "<span class=\"rung {class}\" title=\"{label}: {class}\">{label}</span>"
        ));
    }
    out.push_str("</span>");
    out
}

fn fleet_row(row: &FleetRow, status: Status) -> String {
    let failure = row.last_failure.as_ref().map_or(String::new(), |f| {
        format!(
            "<div class=\"reason\">{} failed: {}</div>",
            f.stage,
            esc(&f.reason.to_string())
        )
    });
    format!(
        "<tr data-instance=\"{id}\"><td><a href=\"/instances/{id}\">{name}</a><div class=\"fqdn\">{fqdn}</div></td>\
         <td>{tenant}</td><td>{status}</td><td>{ladder}{failure}</td><td>{last}</td><td>{secured}</td>\
         <td>{verified}</td><td>{tested}</td></tr>",
        id = row.instance_id,
        name = esc(&row.name),
        fqdn = esc(&row.fqdn),
        tenant = esc(row.tenant_id.as_str()),
        status = status_badge(status),
        ladder = ladder(row.last_rung, row.last_failure.is_some()),
        last = time(row.last_cycle_at),
        secured = time(row.last_secured),
        verified = time(row.last_verified),
        tested = time(row.last_restore_tested),
    )
}

/// Rows on one page of the fleet page: ten thousand rows are seven megabytes of HTML, too slow
/// to send and to read; the filters and the CSV export reach the rest.
pub const FLEET_PAGE_ROWS: usize = 200;

/// The fleet page's query: the fleet's filters and the page number (from 1).
#[derive(Debug, Default, Deserialize)]
struct FleetPageQuery {
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

async fn fleet_page(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Query(query): Query<FleetPageQuery>,
) -> Response {
    let (filter, page) = match query.split() {
        Ok(asked) => asked,
        Err(error) => return page_error(&who, error),
    };
    let key = crate::AppState::fleet_key("fleet.html", &who, &filter, page);
    let minute = Utc::now().timestamp() / 60;
    let body = state
        .cache
        .get_or_render(key, state.read.position(), minute, || {
            fleet_body(&state, &who, &filter, page).map(Bytes::from)
        })
        .await;
    match body {
        Ok(body) => page_around("Managed Backups", Some(&who), body),
        Err(error) => page_error(&who, error),
    }
}

/// The address of page `page` of the fleet page with `filter`.
fn fleet_page_link(filter: &FleetFilter, page: usize) -> String {
    let mut query: Vec<(&str, String)> = Vec::new();
    for (name, value) in [("tenant", &filter.tenant), ("status", &filter.status)] {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            query.push((name, value.clone()));
        }
    }
    if page > 1 {
        query.push(("page", page.to_string()));
    }
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    if query.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{}", esc(&query))
    }
}

/// "Page 2 of 50" with links to the pages either side.
fn fleet_pager(filter: &FleetFilter, page: usize, pages: usize) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut out = String::from("<div class=\"pager\">");
    if page > 1 {
        out.push_str(&format!(
            "<a rel=\"prev\" href=\"{}\">← Previous</a> ",
            fleet_page_link(filter, page - 1)
        ));
    }
    out.push_str(&format!("<span>Page {page} of {pages}</span>"));
    if page < pages {
        out.push_str(&format!(
            " <a rel=\"next\" href=\"{}\">Next →</a>",
            fleet_page_link(filter, page + 1)
        ));
    }
    out.push_str("</div>");
    out
}

/// The fleet page below the navigation (the same for every user of a scope, filter and page;
/// a page past the last shows the last).
fn fleet_body(
    state: &crate::AppState,
    who: &Principal,
    filter: &FleetFilter,
    page: usize,
) -> Result<String, ApiError> {
    let mut window = fleet_window(
        state,
        who,
        filter,
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
            (page - 1) * FLEET_PAGE_ROWS,
            FLEET_PAGE_ROWS,
        )?;
    }
    let mut body = String::with_capacity(700 * (window.entries.len() + 8));
    let tenant = filter.tenant.clone().unwrap_or_default();
    let status = filter.status.clone().unwrap_or_default();
    body.push_str(&format!(
        "<h1>Managed Backups</h1><form method=\"get\" action=\"/\" class=\"filters\">\
         <label>Tenant <input name=\"tenant\" value=\"{}\"></label>\
         <label>Status <select name=\"status\">",
        esc(&tenant)
    ));
    for (value, label) in [
        ("", "All"),
        ("healthy", "Healthy"),
        ("needs_attention", "Needs attention"),
        ("stopped", "Stopped"),
    ] {
        let selected = if value == status { " selected" } else { "" };
        body.push_str(&format!(
            "<option value=\"{value}\"{selected}>{label}</option>"
        ));
    }
    let pager = fleet_pager(filter, page, pages);
    body.push_str(&format!(
        "</select></label><button type=\"submit\">Filter</button></form>\
         <p class=\"summary\">{} · <a href=\"/api/v1/export/instances.csv\">CSV</a></p>{pager}\
         <table id=\"fleet\"><thead><tr><th>Instance</th><th>Tenant</th><th>Status</th>\
         <th>Latest copy</th><th>Last cycle</th><th>Last Secured</th><th>Last Verified</th>\
         <th>Last Restore-Tested</th></tr></thead><tbody>",
        match window.total {
            1 => "1 instance".to_owned(),
            n => format!("{n} instances"),
        }
    ));
    for entry in &window.entries {
        body.push_str(&fleet_row(&entry.row, entry.status));
    }
    body.push_str(&format!(
        "</tbody></table>{pager}<script src=\"/static/live.js\"></script>"
    ));
    Ok(body)
}

fn backup_row(row: &BackupRow, who: &Principal) -> String {
    let failure = row.failure.as_ref().map_or(String::new(), |f| {
        format!(
            "<div class=\"reason failure\">Failed at {}: <code>{}</code> — {}</div>",
            f.stage,
            esc(&f.reason.to_string()),
            esc(&f.detail)
        )
    });
    let mut actions = String::new();
    if row.downloadable() && matches!(who.role, Role::Administrator | Role::Owner) {
        actions.push_str(&format!(
            "<a class=\"button\" href=\"/api/v1/cycles/{}/download\">Download</a>",
            row.cycle_id
        ));
    }
    if row.key_version.is_some() && who.role == Role::Owner {
        actions.push_str(&format!(
            "<form method=\"post\" action=\"/cycles/{}/reveal\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Reveal password</button></form>",
            row.cycle_id,
            esc(who.csrf())
        ));
    }
    format!(
        "<tr data-cycle=\"{id}\"><td>{started}<div class=\"trigger\">{trigger:?}</div></td><td>{ladder}{failure}</td>\
         <td>{size}</td><td><code class=\"sha\">{sha}</code></td><td>{key}</td><td>{retain}</td>\
         <td>{secured}</td><td>{verified}</td><td>{tested}</td><td>{actions}</td></tr>",
        id = row.cycle_id,
        started = time(Some(row.started_at)),
        trigger = row.trigger,
        ladder = ladder(Some(row.rung), row.failure.is_some()),
        size = row.size.map_or("—".to_owned(), |s| format!("{s} bytes")),
        sha = row.sha256.as_deref().map_or("—".to_owned(), esc),
        key = row.key_version.map_or("—".to_owned(), |v| format!("v{v}")),
        retain = time(row.retain_until),
        secured = time(row.secured_at),
        verified = time(row.verified_at),
        tested = time(row.restore_tested_at),
    )
}

async fn instance_page(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
) -> Response {
    let (row, backups) = match access::instance(&state, &who, &id)
        .and_then(|row| backup_rows(&state, &who, &id).map(|b| (row, b)))
    {
        Ok(found) => found,
        Err(error) => return page_error(&who, error),
    };
    let status = row.status(Utc::now());
    let mut body = format!(
        "<p><a href=\"/\">← Managed Backups</a></p><h1>{name}</h1>\
         <p class=\"meta\">{fqdn} · tenant {tenant} · {status}</p>",
        name = esc(&row.name),
        fqdn = esc(&row.fqdn),
        tenant = esc(row.tenant_id.as_str()),
        status = status_badge(status),
    );
    body.push_str(&endpoint_section(&state, &id).await);
    if who.role == Role::Administrator {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/instances/{}/action\" class=\"admin\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button name=\"action\" value=\"backup-now\">Back up now</button>\
             <button name=\"action\" value=\"{}\">{}</button></form>",
            row.instance_id,
            esc(who.csrf()),
            if row.stopped { "resume" } else { "stop" },
            if row.stopped {
                "Resume managed backups"
            } else {
                "Stop managed backups"
            },
        ));
    }
    body.push_str(
        "<h2>Backups</h2><table id=\"backups\"><thead><tr><th>Started</th><th>Ladder</th>\
         <th>Size</th><th>SHA-256</th><th>Key</th><th>Retain until</th><th>Secured</th>\
         <th>Verified</th><th>Restore-Tested</th><th></th></tr></thead><tbody>",
    );
    for backup in &backups {
        body.push_str(&backup_row(backup, &who));
    }
    if backups.is_empty() {
        body.push_str("<tr><td colspan=\"10\">No backups yet.</td></tr>");
    }
    body.push_str("</tbody></table><script src=\"/static/live.js\"></script>");
    page(&row.name, Some(&who), &body)
}

/// One `endpoint_changed`: when, the old and the new origin.
fn endpoint_change(change: &restorable_domain::instance::EndpointChanged) -> String {
    use restorable_pipeline::pbx::origin_of;
    let from = change
        .previous_api_url
        .as_deref()
        .map_or("—".to_owned(), |url| {
            format!("<code>{}</code>", esc(&origin_of(url)))
        });
    let insecure = if change.allow_insecure_http {
        " (plain http allowed)"
    } else {
        ""
    };
    format!(
        "<li>{at}: <code>endpoint_changed</code> {from} → <code>{to}</code>{insecure}</li>",
        at = time(Some(change.changed_at)),
        to = esc(&origin_of(&change.api_url)),
    )
}

/// The instance's PBX origin, a warning when plain http to a host that is not loopback is
/// allowed, and every change of its URL (`endpoint_changed`: old and new origin). Empty when
/// the instance cannot be read (the page shows the rest).
async fn endpoint_section(state: &Shared, id: &str) -> String {
    use restorable_domain::instance::{Instance, InstanceEvent};
    use restorable_pipeline::pbx::{check_endpoint, origin_of};
    let Ok(instance) = state.pipeline.store.load::<Instance>(id).await else {
        return String::new();
    };
    let Some(enrolled) = instance.enrolled else {
        return String::new();
    };
    let mut out = format!(
        "<p class=\"meta\">PBX <code>{}</code></p>",
        esc(&origin_of(&enrolled.api_url))
    );
    if enrolled.allow_insecure_http && check_endpoint(&enrolled.api_url, false).is_err() {
        out.push_str(
            "<div class=\"reason failure\" role=\"alert\">Warning: plain http is allowed for \
             this PBX (<code>allow_insecure_http</code>). The tenant's backup password and the \
             PBX credentials cross the network in clear; enrol it again at an https URL.</div>",
        );
    }
    let history = state
        .pipeline
        .store
        .history("Instance", id)
        .await
        .unwrap_or_default();
    let changes: Vec<String> = history
        .iter()
        .filter(|e| e.event_type == "EndpointChanged")
        .filter_map(|e| serde_json::from_str::<InstanceEvent>(&e.payload).ok())
        .filter_map(|e| match e {
            InstanceEvent::EndpointChanged(change) => Some(endpoint_change(&change)),
            _ => None,
        })
        .collect();
    if !changes.is_empty() {
        out.push_str("<h2>Endpoint changes</h2><ul class=\"endpoint-changes\">");
        out.push_str(&changes.concat());
        out.push_str("</ul>");
    }
    out
}

fn page_error(who: &Principal, error: ApiError) -> Response {
    let status = error.status();
    let message = match &error {
        ApiError::Internal(_) => "Something went wrong on our side.".to_owned(),
        other => other.to_string(),
    };
    if let ApiError::Internal(cause) = &error {
        tracing::error!(%cause, "page failed");
    }
    let mut response = page(
        "Error",
        Some(who),
        &format!("<h1>{}</h1><p>{}</p>", status.as_u16(), esc(&message)),
    );
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: Option<String>,
    action: String,
}

async fn instance_action(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let action = match form.action.as_str() {
        "stop" => InstanceAction::Stop,
        "resume" => InstanceAction::Resume,
        "backup-now" => InstanceAction::BackupNow,
        other => {
            return page_error(
                &who,
                ApiError::BadRequest(format!("unknown action {other:?}")),
            )
        }
    };
    let checked = access::instance(&state, &who, &id)
        .and_then(|_| who.require(&[Role::Administrator]))
        .and_then(|()| who.check_csrf(form.csrf.as_deref()));
    if let Err(error) = checked {
        return page_error(&who, error);
    }
    match actions::act_on_instance(&state, &who, &id, action).await {
        Ok(_) => redirect(&format!("/instances/{id}")),
        Err(error) => page_error(&who, error),
    }
}

async fn reveal_page(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let checked = access::cycle(&state, &who, &id)
        .and_then(|row| who.require(&[Role::Owner]).map(|()| row))
        .and_then(|row| who.check_csrf(form.csrf.as_deref()).map(|()| row));
    let row = match checked {
        Ok(row) => row,
        Err(error) => return page_error(&who, error),
    };
    match actions::reveal_password(&state, &who, &id).await {
        Ok((version, password)) => page(
            "Backup password",
            Some(&who),
            &format!(
                "<p><a href=\"/instances/{}\">← Backups</a></p><h1>Backup password</h1>\
                 <p>Key version v{version}. 3CX asks for it when you restore this backup. \
                 This reveal was recorded in the audit log.</p>\
                 <p><code id=\"password\">{}</code></p>",
                row.instance_id,
                esc(password.expose_secret())
            ),
        ),
        Err(error) => page_error(&who, error),
    }
}

async fn live_js() -> Response {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], LIVE_JS).into_response()
}

/// Reloads the page (at most every two seconds) when the ladder changes.
const LIVE_JS: &str = r#"(function () {
  if (!window.EventSource) return;
  var pending = null;
  var source = new EventSource('/api/v1/stream');
  function refresh() {
    if (pending) return;
    pending = setTimeout(function () { window.location.reload(); }, 2000);
  }
  ['fleet', 'backups', 'alerts', 'resync'].forEach(function (name) {
    source.addEventListener(name, refresh);
  });
})();
"#;

async fn style_css() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS).into_response()
}

const STYLE_CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330}\
nav{display:flex;gap:1rem;align-items:center;padding:.6rem 1rem;background:#1d2330;color:#fff}\
nav a{color:#fff;font-weight:600;text-decoration:none}nav .who{margin-left:auto;opacity:.8}\
nav form{margin:0}main{padding:1rem 1.5rem}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e3e6ec;vertical-align:top}\
.fqdn,.trigger,.meta{color:#667;font-size:.85em}.status{padding:.1rem .4rem;border-radius:.3rem}\
.healthy{background:#d8f5df}.attention{background:#ffe0d6}.stopped{background:#e8e8e8}\
.ladder{display:inline-flex;gap:.2rem}.rung{font-size:.75em;padding:.1rem .35rem;border-radius:.3rem;border:1px solid #ccd}\
.rung.reached{background:#2f9e55;color:#fff;border-color:#2f9e55}.rung.failed{background:#d9412b;color:#fff;border-color:#d9412b}\
.rung.pending{color:#99a}.reason{color:#b3321e;font-size:.85em;margin-top:.2rem}.sha{font-size:.7em;word-break:break-all}\
.filters,.admin,.login{display:flex;gap:1rem;align-items:end;margin:.5rem 0}.login{flex-direction:column;align-items:start;max-width:20rem}\
.pager{display:flex;gap:1rem;margin:.5rem 0}.error{color:#b3321e}.button{display:inline-block;padding:.2rem .5rem;border:1px solid #99a;border-radius:.3rem;text-decoration:none}";

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_are_written_to_the_minute_in_utc() {
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 59).single();
        assert_eq!(time(at), "2026-03-04 05:06 UTC");
        assert_eq!(time(None), "—");
    }

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
    fn page_links_keep_the_filters_encoded_and_escaped() {
        let filter = FleetFilter {
            tenant: Some("a&b c".into()),
            status: Some(String::new()),
        };
        assert_eq!(fleet_page_link(&filter, 1), "/?tenant=a%26b+c");
        assert_eq!(fleet_page_link(&filter, 2), "/?tenant=a%26b+c&amp;page=2");
        assert_eq!(fleet_page_link(&FleetFilter::default(), 1), "/");
        assert_eq!(fleet_pager(&FleetFilter::default(), 1, 1), "");
    }
}
