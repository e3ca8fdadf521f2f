//! CSV exports of what the caller may see: instances, alerts, backups and the audit trail.
//! Every cell that a
//! spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
//! return) is written with a leading `'`, so names chosen by a PBX or a tenant cannot run in the
//! reader's spreadsheet.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::access;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::queries::{alert_list, fleet_entries, status_param, FleetFilter};
use crate::state::Shared;
use crate::streamed;
use restorable_pipeline::read_model;
use restorable_projections::alerts::AlertRow;
use restorable_projections::audit::AuditRow;
use restorable_projections::backups::BackupRow;

/// The CSV exports.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/export/instances.csv", get(instances))
        .route("/api/v1/export/alerts.csv", get(alerts))
        .route("/api/v1/export/backups.csv", get(backups))
        .route("/api/v1/export/audit.csv", get(audit))
}

/// A cell as written: with a leading `'` if a spreadsheet would take it for a formula.
pub fn cell(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Text a reader's spreadsheet cannot take for a formula (see [`cell`]); every column of the
/// exports is one, so no row can forget it.
#[derive(Default)]
struct Cell(String);

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&cell(&self.0))
    }
}

impl<T: ToString> From<Option<T>> for Cell {
    fn from(value: Option<T>) -> Self {
        Cell(value.map(|v| v.to_string()).unwrap_or_default())
    }
}

fn text(value: impl ToString) -> Cell {
    Cell(value.to_string())
}

/// An RFC 3339 time, or empty for none.
fn time(at: Option<DateTime<Utc>>) -> Cell {
    Cell(at.map(|t| t.to_rfc3339()).unwrap_or_default())
}

/// The header row of a CSV of `R` (its field names), written from a default row.
fn csv_header<R: Serialize + Default>() -> Result<Vec<u8>, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.serialize(R::default()).map_err(ApiError::internal)?;
    let mut bytes = writer.into_inner().map_err(ApiError::internal)?;
    let header_end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .map_or(0, |at| at + 1);
    bytes.truncate(header_end);
    Ok(bytes)
}

/// Rows as CSV lines, without a header.
fn csv_lines<R: Serialize>(rows: impl IntoIterator<Item = R>) -> Result<Vec<u8>, ApiError> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    for row in rows {
        writer.serialize(row).map_err(ApiError::internal)?;
    }
    writer.into_inner().map_err(ApiError::internal)
}

/// The headers of a CSV download named `name`.
fn csv_headers(name: &str) -> [(header::HeaderName, String); 2] {
    [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ),
    ]
}

/// The rows as CSV (a header row from the field names first, even with no rows), as a
/// download named `name`.
fn csv_response<R: Serialize + Default>(
    name: &str,
    rows: impl IntoIterator<Item = R>,
) -> Result<Response, ApiError> {
    let mut bytes = csv_header::<R>()?;
    bytes.extend(csv_lines(rows)?);
    Ok((csv_headers(name), bytes).into_response())
}

/// A row of `instances.csv`.
#[derive(Default, Serialize)]
struct InstanceLine {
    instance_id: Cell,
    tenant: Cell,
    name: Cell,
    fqdn: Cell,
    status: Cell,
    latest_rung: Cell,
    last_cycle_at: Cell,
    last_secured: Cell,
    last_verified: Cell,
    last_restore_tested: Cell,
    failure_stage: Cell,
    failure_reason: Cell,
}

/// `instances.csv`.
///
/// # Errors
/// Writing the CSV failed.
pub async fn instances(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let entries = fleet_entries(&state, &who, &FleetFilter::default())?;
    let lines = entries.into_iter().map(|entry| {
        let r = entry.row;
        InstanceLine {
            instance_id: text(r.instance_id),
            tenant: text(&r.tenant_id),
            name: Cell(r.name),
            fqdn: Cell(r.fqdn),
            status: text(status_param(entry.status)),
            latest_rung: r.last_rung.map(|x| x.label()).into(),
            last_cycle_at: time(r.last_cycle_at),
            last_secured: time(r.last_secured),
            last_verified: time(r.last_verified),
            last_restore_tested: time(r.last_restore_tested),
            failure_stage: r.last_failure.as_ref().map(|f| &f.stage).into(),
            failure_reason: r.last_failure.as_ref().map(|f| &f.reason).into(),
        }
    });
    csv_response("instances.csv", lines)
}

/// A row of `alerts.csv`.
#[derive(Default, Serialize)]
struct AlertLine {
    alert_id: Cell,
    alert: Cell,
    tenant: Cell,
    instance_id: Cell,
    cycle_id: Cell,
    reason: Cell,
    raised_at: Cell,
    resolved_at: Cell,
}

/// The line of one alert in `alerts.csv`.
fn alert_line(a: &AlertRow) -> AlertLine {
    AlertLine {
        alert_id: text(&a.alert_id),
        alert: text(a.kind.title()),
        tenant: text(&a.tenant_id),
        instance_id: text(a.instance_id),
        cycle_id: a.cycle_id.into(),
        reason: a.reason.into(),
        raised_at: text(a.raised_at.to_rfc3339()),
        resolved_at: time(a.resolved_at),
    }
}

/// `alerts.csv`: every alert the caller may see — those held in memory newest first, then
/// older resolved ones from storage a page at a time (see [`alert_list`]).
///
/// # Errors
/// Writing the CSV or reading the first page failed.
pub async fn alerts(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let list = alert_list(&state, &who);
    let mut head = csv_header::<AlertLine>()?;
    head.extend(csv_lines(list.held.iter().map(alert_line))?);
    let layout = streamed::Layout {
        head,
        tail: b"",
        page: |rows: &[AlertRow]| csv_lines(rows.iter().map(alert_line)),
    };
    let body = streamed::body(list.older, layout).await?;
    Ok((csv_headers("alerts.csv"), body).into_response())
}

/// A row of `backups.csv`.
#[derive(Default, Serialize)]
struct BackupLine {
    cycle_id: Cell,
    instance_id: Cell,
    tenant: Cell,
    rung: Cell,
    size: Cell,
    sha256: Cell,
    key_version: Cell,
    retain_until: Cell,
    started_at: Cell,
    secured_at: Cell,
    verified_at: Cell,
    restore_tested_at: Cell,
    failure_stage: Cell,
    failure_reason: Cell,
}

/// The line of one cycle in `backups.csv`.
fn backup_line(b: &BackupRow) -> BackupLine {
    BackupLine {
        cycle_id: text(b.cycle_id),
        instance_id: text(b.instance_id),
        tenant: text(&b.tenant_id),
        rung: text(b.rung.label()),
        size: b.size.into(),
        sha256: b.sha256.as_ref().into(),
        key_version: b.key_version.into(),
        retain_until: time(b.retain_until),
        started_at: text(b.started_at.to_rfc3339()),
        secured_at: time(b.secured_at),
        verified_at: time(b.verified_at),
        restore_tested_at: time(b.restore_tested_at),
        failure_stage: b.failure.as_ref().map(|f| &f.stage).into(),
        failure_reason: b.failure.as_ref().map(|f| &f.reason).into(),
    }
}

/// `backups.csv`: every cycle the caller may see, by cycle id, written a page at a time as it
/// is read (a row per cycle ever run: see [`streamed`]).
///
/// # Errors
/// Reading the first page failed.
pub async fn backups(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let pages = read_model::backup_pages(&state.pipeline.store, access::tenant_of(&who));
    let layout = streamed::Layout {
        head: csv_header::<BackupLine>()?,
        tail: b"",
        page: |rows: &[BackupRow]| csv_lines(rows.iter().map(backup_line)),
    };
    let body = streamed::body(pages, layout).await?;
    Ok((csv_headers("backups.csv"), body).into_response())
}

/// A row of `audit.csv`.
#[derive(Default, Serialize)]
struct AuditLine {
    position: Cell,
    at: Cell,
    tenant: Cell,
    actor: Cell,
    action: Cell,
    instance_id: Cell,
    cycle_id: Cell,
    key_version: Cell,
}

/// The line of one audited action in `audit.csv`.
fn audit_line(row: &AuditRow) -> AuditLine {
    let a = &row.action;
    AuditLine {
        position: text(row.position),
        at: text(a.at.to_rfc3339()),
        tenant: text(&a.tenant_id),
        actor: text(&a.actor),
        action: text(a.action.as_str()),
        instance_id: a.instance_id.into(),
        cycle_id: a.cycle_id.into(),
        key_version: a.key_version.into(),
    }
}

/// `audit.csv`: every audited action the caller may see, newest first, written a page at a
/// time as it is read (a row per action ever recorded: see [`streamed`]).
///
/// # Errors
/// Reading the first page failed.
pub async fn audit(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let pages = read_model::audit_pages(&state.pipeline.store, access::tenant_of(&who));
    let layout = streamed::Layout {
        head: csv_header::<AuditLine>()?,
        tail: b"",
        page: |rows: &[AuditRow]| csv_lines(rows.iter().map(audit_line)),
    };
    let body = streamed::body(pages, layout).await?;
    Ok((csv_headers("audit.csv"), body).into_response())
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
