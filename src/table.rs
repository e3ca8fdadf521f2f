//! The fleet table as text: one line per instance with its ladder at a glance.

use chrono::{DateTime, Utc};
use restorable_domain::ladder::Rung;
use restorable_projections::fleet::{FleetRow, FleetView};

/// The ladder as four marks: Captured, Secured, Verified, Restore-Tested.
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
