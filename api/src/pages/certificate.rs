//! Restore certificates on the web: the signed certificate of a Restore-Tested cycle, for a
//! signed-in user who may see the cycle (`/cycles/{id}/certificate`, a JSON file), and the
//! public verification page `/certificates/{id}` — no sign-in, only the certificate's facts
//! (no secret of the tenant), and whether it is genuine and still in an intact chain.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use restorable_pipeline::evidence::{certificate_standing, issue_certificate, Standing};

use super::layout::{html, page_error, time, Nav, Visitor};
use crate::access;
use crate::error::ApiError;
use crate::state::Shared;

/// Longest certificate id looked up (a cycle id, a dot, 32 hex digits).
const MAX_ID: usize = 80;

/// `GET /cycles/{cycle_id}/certificate`: the signed certificate as a file.
pub(super) async fn certificate_download(
    State(state): State<Shared>,
    Visitor(who): Visitor,
    Path(id): Path<String>,
) -> Response {
    if let Err(error) = access::cycle(&state, &who, &id).await {
        return page_error(Some(&who), error);
    }
    let Some(signer) = &state.signer else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "certificates are not signed by this server (no signing key)",
        )
            .into_response();
    };
    match issue_certificate(&state.pipeline.store, signer.as_ref(), &id).await {
        Ok(Some(certificate)) => match serde_json::to_string_pretty(&certificate) {
            Ok(body) => (
                [
                    (CONTENT_TYPE, "application/json".to_owned()),
                    (CACHE_CONTROL, "no-store".to_owned()),
                    (
                        CONTENT_DISPOSITION,
                        format!("attachment; filename=\"certificate-{id}.json\""),
                    ),
                ],
                body,
            )
                .into_response(),
            Err(error) => page_error(Some(&who), ApiError::internal(error)),
        },
        Ok(None) => page_error(Some(&who), ApiError::NotFound),
        Err(error) => page_error(Some(&who), ApiError::internal(error)),
    }
}

#[derive(Template)]
#[template(path = "certificate.html")]
struct CertificatePage<'a> {
    title: &'a str,
    nav: Option<Nav<'a>>,
    id: String,
    verdict: &'static str,
    detail: String,
    facts: Vec<(&'static str, String)>,
}

/// `GET /certificates/{id}`: public; says whether the certificate is genuine.
pub(super) async fn certificate_page(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Response {
    let id: String = id.chars().take(MAX_ID).collect();
    let standing =
        match certificate_standing(&state.pipeline.store, state.pipeline.vault.as_ref(), &id).await
        {
            Ok(standing) => standing,
            Err(error) => return page_error(None, ApiError::internal(error)),
        };
    let page = match standing {
        Standing::Unknown => CertificatePage {
            title: "Restore certificate",
            nav: None,
            id,
            verdict: "Not genuine",
            detail: "No restore test on record has these facts: the certificate is unknown, or \
                     was altered."
                .into(),
            facts: Vec::new(),
        },
        Standing::Genuine { facts, chain_fault } => {
            let (verdict, detail) = match chain_fault {
                None => (
                    "Genuine",
                    "These facts are on record, and their event is in an intact, signed history."
                        .to_owned(),
                ),
                Some(why) => (
                    "Genuine, history not vouched for",
                    format!("These facts are on record, but {why}."),
                ),
            };
            let f = &*facts;
            let counts = |c: &restorable_domain::ladder::ManifestCounts| {
                format!(
                    "{} extensions, {} queues, {} ring groups, {} receptionists, {} trunks, {} settings",
                    c.extensions, c.queues, c.ring_groups, c.ivrs, c.trunks, c.settings
                )
            };
            CertificatePage {
                title: "Restore certificate",
                nav: None,
                id,
                verdict,
                detail,
                facts: vec![
                    ("Tenant", f.tenant.clone()),
                    ("Instance", f.instance_id.clone()),
                    ("Cycle", f.cycle_id.clone()),
                    ("Copy SHA-256", f.copy_sha256.clone()),
                    ("Copy size", format!("{} bytes", f.copy_size)),
                    ("Key version", format!("v{}", f.key_version)),
                    ("Reported by the PBX", counts(&f.expected)),
                    ("Found after the restore", counts(&f.restored)),
                    ("Sandbox", f.sandbox.clone()),
                    ("Cycle started", time(Some(f.cycle_started_at))),
                    ("Restore test ended", time(Some(f.restore_tested_at))),
                    (
                        "Restore duration",
                        format!("{:.1} s", f.restore_duration_ms as f64 / 1000.0),
                    ),
                    (
                        "Place in the history",
                        format!("event {} of tenant {}", f.chain_index, f.tenant),
                    ),
                ],
            }
        }
    };
    html(&page)
}
