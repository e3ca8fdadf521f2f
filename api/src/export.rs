//! CSV exports of what the caller may see: instances, alerts and backups. Every cell that a
//! spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
//! return) is written with a leading `'`, so names chosen by a PBX or a tenant cannot run in the
//! reader's spreadsheet.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use restorable_projections::fleet::Status;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::{alert_rows, fleet_entries, FleetFilter};
use crate::Shared;

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// A cell as written: with a leading `'` if a spreadsheet would take it for a formula.
pub fn cell(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn csv_response(name: &str, rows: Vec<Vec<String>>) -> Result<Response, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .write_record(row.iter().map(|c| cell(c).into_owned()))
            .map_err(ApiError::internal)?;
    }
    let bytes = writer.into_inner().map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

fn strings<const N: usize>(fields: [&str; N]) -> Vec<String> {
    fields.iter().map(|s| (*s).to_owned()).collect()
}

/// `instances.csv`.
///
/// # Errors
/// Writing the CSV failed.
pub async fn instances(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let mut rows = vec![strings([
        "instance_id",
        "tenant",
        "name",
        "fqdn",
        "status",
        "latest_rung",
        "last_cycle_at",
        "last_secured",
        "last_verified",
        "last_restore_tested",
        "failure_stage",
        "failure_reason",
    ])];
    for entry in fleet_entries(&state, &who, &FleetFilter::default())? {
        let r = entry.row;
        rows.push(vec![
            r.instance_id.to_string(),
            r.tenant_id.to_string(),
            r.name,
            r.fqdn,
            match entry.status {
                Status::Healthy => "healthy",
                Status::NeedsAttention => "needs_attention",
                Status::Stopped => "stopped",
            }
            .to_owned(),
            r.last_rung
                .map(|x| x.label().to_owned())
                .unwrap_or_default(),
            time(r.last_cycle_at),
            time(r.last_secured),
            time(r.last_verified),
            time(r.last_restore_tested),
            r.last_failure
                .as_ref()
                .map(|f| f.stage.to_string())
                .unwrap_or_default(),
            r.last_failure
                .as_ref()
                .map(|f| f.reason.to_string())
                .unwrap_or_default(),
        ]);
    }
    csv_response("instances.csv", rows)
}

/// `alerts.csv`.
///
/// # Errors
/// Writing the CSV failed.
pub async fn alerts(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let mut rows = vec![strings([
        "alert_id",
        "alert",
        "tenant",
        "instance_id",
        "cycle_id",
        "reason",
        "raised_at",
        "resolved_at",
    ])];
    for a in alert_rows(&state, &who) {
        rows.push(vec![
            a.alert_id,
            a.kind.title().to_owned(),
            a.tenant_id.to_string(),
            a.instance_id.to_string(),
            a.cycle_id.map(|c| c.to_string()).unwrap_or_default(),
            a.reason.map(|r| r.to_string()).unwrap_or_default(),
            a.raised_at.to_rfc3339(),
            time(a.resolved_at),
        ]);
    }
    csv_response("alerts.csv", rows)
}

/// `backups.csv`.
///
/// # Errors
/// Writing the CSV failed.
pub async fn backups(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let mut rows = vec![strings([
        "cycle_id",
        "instance_id",
        "tenant",
        "rung",
        "size",
        "sha256",
        "key_version",
        "retain_until",
        "started_at",
        "secured_at",
        "verified_at",
        "restore_tested_at",
        "failure_stage",
        "failure_reason",
    ])];
    let model = state.read.read();
    for b in model
        .backups
        .rows()
        .filter(|b| who.scope.allows(&b.tenant_id))
    {
        rows.push(vec![
            b.cycle_id.to_string(),
            b.instance_id.to_string(),
            b.tenant_id.to_string(),
            b.rung.label().to_owned(),
            b.size.map(|s| s.to_string()).unwrap_or_default(),
            b.sha256.clone().unwrap_or_default(),
            b.key_version.map(|v| v.to_string()).unwrap_or_default(),
            time(b.retain_until),
            b.started_at.to_rfc3339(),
            time(b.secured_at),
            time(b.verified_at),
            time(b.restore_tested_at),
            b.failure
                .as_ref()
                .map(|f| f.stage.to_string())
                .unwrap_or_default(),
            b.failure
                .as_ref()
                .map(|f| f.reason.to_string())
                .unwrap_or_default(),
        ]);
    }
    drop(model);
    csv_response("backups.csv", rows)
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn formula_cells_get_a_leading_quote() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(cell(formula), format!("'{formula}"));
        }
        for plain in ["acme", "", "1-2", "a=b", "'quoted"] {
            assert_eq!(cell(plain), plain);
        }
    }
}
