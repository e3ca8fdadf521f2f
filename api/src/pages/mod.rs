//! The web pages, rendered on the server from the askama templates in `api/templates/`:
//! sign-in, the fleet-wide Managed Backups page (filter by tenant and status, the ladder of each
//! instance's latest copy at a glance, live updates) and each instance's Backups tab (the ladder
//! per copy, failure reasons, download and — for owners — the audited password reveal). Forms
//! carry the session's CSRF token. Every value a template writes is escaped ([`HtmlEntities`]);
//! the CSS and JavaScript are files under `api/assets/`, compiled in.
//!
//! Here: the routes. `layout.rs` holds what every page shares (the visitor, the extractors that
//! parse a query or form before a handler runs, the escaping, the navigation, error pages, the
//! ladder); one file per page beside it: `fleet.rs`, `alerts.rs` (the Alerts page and its
//! acknowledge and snooze forms), `audit.rs` (the Audit page),
//! `native.rs` (how both show the PBX's own backups),
//! `instance.rs` (with its actions and the reveal), `sign_in.rs`, `certificate.rs` (a cycle's restore certificate, and the public page that
//! says whether one is genuine).

mod alerts;
mod audit;
mod certificate;
mod chart;
mod fleet;
mod instance;
mod layout;
mod native;
mod recent_failures;
mod recheck;
mod sign_in;

use axum::routing::{get, post};
use axum::Router;

use crate::state::Shared;

pub use alerts::ALERTS_PAGE_ROWS;
pub use audit::{AUDIT_PAGE_ROWS, AUDIT_SCANNED_ROWS};
pub use fleet::FLEET_PAGE_ROWS;
pub use layout::Visitor;
pub use sign_in::ClientAddress;

/// The pages.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(fleet::fleet_page))
        .route("/login", get(sign_in::login_page).post(sign_in::log_in))
        .route("/logout", post(sign_in::log_out))
        .route("/alerts", get(alerts::alerts_page))
        .route("/alerts/{alert_id}/acknowledge", post(alerts::acknowledge))
        .route("/alerts/{alert_id}/snooze", post(alerts::snooze))
        .route("/audit", get(audit::audit_page))
        .route("/instances/{instance_id}", get(instance::instance_page))
        .route(
            "/instances/{instance_id}/action",
            post(instance::instance_action),
        )
        .route("/cycles/{cycle_id}/reveal", post(instance::reveal_page))
        .route(
            "/cycles/{cycle_id}/certificate",
            get(certificate::certificate_download),
        )
        .route("/certificates/{id}", get(certificate::certificate_page))
        .route("/static/live.js", get(layout::live_js))
        .route("/static/style.css", get(layout::style_css))
}
