//! `restorable fleet`: the fleet table, one line per instance with its ladder at a glance, read
//! from the stored fleet view plus the events the projector has not stored yet (also the end of
//! `restorable demo`); its cost follows the fleet, not the history.
//!
//! Decoding the log: a malformed event is reported (by position) and skipped; it stays in the
//! store untouched.

use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use restorable_domain::ladder::Rung;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::store::{LoggedEvent, Store};
use restorable_projections::fleet::{FleetRow, FleetView};
use restorable_projections::AnyEvent;

use crate::cli::FleetArgs;
use crate::output::{self, FleetFailure, FleetLine, FleetReport};
use crate::runtime::open;

/// Prints the fleet table.
///
/// # Errors
/// A store failure.
pub async fn run(args: FleetArgs) -> Result<ExitCode> {
    let pipeline = open(&args.data, Settings::default()).await?;
    let view = view(&pipeline.store).await?;
    if args.json {
        output::print(&report(&view, Utc::now()))?;
    } else {
        print!("{}", render(&view, Utc::now()));
    }
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Decodes one logged event (see [`restorable_pipeline::read_model::decode`]).
///
/// # Errors
/// A malformed payload or an unknown aggregate type.
pub fn decode(event: &LoggedEvent) -> Result<AnyEvent> {
    Ok(restorable_pipeline::read_model::decode(event)?)
}

/// The fleet view as of now: the stored rows and the log the projector has not stored yet
/// ([`restorable_pipeline::read_model::fleet_now`]), not the whole history.
///
/// # Errors
/// A store failure, or a stored row that does not parse.
pub async fn view(store: &Store) -> Result<FleetView> {
    Ok(restorable_pipeline::read_model::fleet_now(store).await?)
}

/// The ladder as four marks: Captured, Secured, Verified, Restore-Tested.
/// The fleet as `--json` prints it.
fn report(view: &FleetView, now: DateTime<Utc>) -> FleetReport {
    FleetReport {
        instances: view
            .rows()
            .into_iter()
            .map(|row| FleetLine {
                instance_id: row.instance_id.to_string(),
                tenant: row.tenant_id.to_string(),
                name: row.name.clone(),
                cycles: row.cycles,
                last_cycle: row.last_cycle.map(|c| c.to_string()),
                last_cycle_at: row.last_cycle_at.map(|t| t.to_rfc3339()),
                rung: row.last_rung.map(|r| r.label().to_owned()),
                status: row.status(now).code().to_owned(),
                failure: row.last_failure.as_ref().map(|f| FleetFailure {
                    stage: f.stage.to_string(),
                    reason: f.reason.to_string(),
                }),
                last_secured: row.last_secured.map(|t| t.to_rfc3339()),
                last_verified: row.last_verified.map(|t| t.to_rfc3339()),
                last_restore_tested: row.last_restore_tested.map(|t| t.to_rfc3339()),
            })
            .collect(),
    }
}

fn ladder(row: &FleetRow) -> String {
    let reached = row.last_rung.unwrap_or(Rung::Started);
    [
        Rung::Captured,
        Rung::Secured,
        Rung::Verified,
        Rung::RestoreTested,
    ]
    .iter()
    .map(|rung| if reached >= *rung { '■' } else { '·' })
    .collect()
}

fn reason(row: &FleetRow) -> String {
    row.last_failure
        .as_ref()
        .map(|f| format!("{} at {}", f.reason, f.stage))
        .unwrap_or_default()
}

/// Renders the view at `now`.
pub fn render(view: &FleetView, now: DateTime<Utc>) -> String {
    let header = [
        "TENANT",
        "INSTANCE",
        "LAST CYCLE",
        "CYCLES",
        "LADDER",
        "RUNG",
        "STATUS",
        "REASON",
    ];
    let rows: Vec<[String; 8]> = view
        .rows()
        .into_iter()
        .map(|row| {
            [
                row.tenant_id.to_string(),
                row.name.clone(),
                row.last_cycle
                    .map(|c| c.to_string()[..8].to_owned())
                    .unwrap_or_else(|| "-".into()),
                row.cycles.to_string(),
                ladder(row),
                row.last_rung.map_or("-".into(), |r| r.label().to_owned()),
                row.status(now).to_string(),
                reason(row),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            out.push_str(cell);
            out.push_str(&" ".repeat(width - cell.chars().count() + 2));
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
